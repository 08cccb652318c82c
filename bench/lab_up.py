# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: how fast the lab boots and what a lab host costs in memory.

Target (issue: foundation): 'tools/lab up' of the default lab (2 CNA + 1 VRM) boots in
<= 30 s. Baseline measured in the same run: booting a single host (1 CNA) the same way,
so the ratio shows how boot time scales with hosts on this machine whatever its load.
Memory: resident set of every process in each host once booted (systemd, journald,
sshd, libvirtd, virtlockd, OVS ...).

    python3 bench/lab_up.py [--rounds N]     (root; takes the lab down first and last)
Prints figures and ratios; never fails on timing.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "tools", "lab")
BUDGET = 30.0


def lab(*args):
    res = subprocess.run([LAB] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if res.returncode != 0 and args[0] != "status":
        sys.exit("lab %s failed: %s" % (" ".join(args), res.stderr.strip()))
    return res


def timed_up(cna, vrm):
    lab("down")
    t0 = time.monotonic()
    lab("up", "--cna", str(cna), "--vrm", str(vrm))
    return time.monotonic() - t0


def host_rss_kib():
    report = json.loads(lab("status", "--json").stdout)
    out = {}
    for h in report["hosts"]:
        pids = subprocess.run(["ip", "netns", "pids", "kvmf-" + h["name"]], stdout=subprocess.PIPE,
                              text=True, check=False).stdout.split()
        total = 0
        for p in pids:
            try:
                with open("/proc/%s/status" % p) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except FileNotFoundError:
                pass
        out[h["name"]] = (total, len(pids))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/lab_up.py needs root")
    single, full = [], []
    for _round in range(args.rounds):
        single.append(timed_up(1, 0))
        full.append(timed_up(2, 1))
    time.sleep(2)
    rss = host_rss_kib()
    lab("down")
    s, f = statistics.median(single), statistics.median(full)
    print("lab up, 1 host (baseline):    median %.2fs  runs %s" % (s, " ".join("%.2f" % x for x in single)))
    print("lab up, 2 CNA + 1 VRM:        median %.2fs  runs %s" % (f, " ".join("%.2f" % x for x in full)))
    print("ratio 3 hosts / 1 host:       %.2fx  (3.00x would be no parallelism)" % (f / s))
    print("ratio vs 30 s target:         %.3fx  (%s)" % (f / BUDGET, "meets target" if f <= BUDGET else "MISSES target"))
    for name, (kib, n) in sorted(rss.items()):
        print("memory %-6s %4d processes, RSS %6.1f MiB" % (name, n, kib / 1024.0))


if __name__ == "__main__":
    main()
