# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: how fast an eager zeroed disk is created, against dd on the same filesystem.

Target (issue: disk provisioning): creating a thick_eager_zeroed disk reaches >= 0.90x
the throughput of 'dd if=/dev/zero of=F oflag=direct bs=4M' measured in the same run on
the same filesystem. Ours is module_utils/fileops: reserve() then zero_unwritten(), on a
raw file and on a qcow2 created with preallocation=falloc. For comparison, qemu-img's
own 'preallocation=full'. Also checks that creating a thin qcow2 costs the same for
1 GiB and 1 TiB.

    python3 bench/disk_provisioning.py [--dir DIR] [--size 2GiB] [--rounds 3] [--thin-reps 20]

Methods run interleaved in every round (order rotated), medians are reported. Every
timed writer uses O_DIRECT or its own flush, so the page cache is left alone (no global
drop_caches); after each file is removed the filesystem is synced so the discard of one
run does not land in the next. Works in a fresh directory under DIR (default /var/tmp)
and removes it, also on Ctrl-C. Prints figures and ratios; never fails on timing.
"""

from __future__ import absolute_import, division, print_function

import argparse
import importlib.util
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 0.90
BS = 4 * 1024 * 1024
UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4,
         "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4}


def load_fileops():
    # fileops has no Ansible imports: load the file itself, no collection path needed.
    spec = importlib.util.spec_from_file_location("fileops", os.path.join(ROOT, "plugins", "module_utils", "fileops.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_size(text):
    match = re.match(r"^\s*(\d+)\s*([kmgt]?)(i?)(b?)\s*$", text, re.I)
    if not match or (match.group(3) and not match.group(2)):
        raise argparse.ArgumentTypeError("not a size: %r (examples: 2GiB, 512M, 1GB)" % text)
    unit = match.group(2).lower()
    if match.group(4) and not match.group(3) and unit:
        unit += "b"
    return int(match.group(1)) * UNITS[unit]


def run(cmd):
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if res.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), res.stderr.strip()))
    return res.stdout


def timed(func):
    start = time.monotonic()
    func()
    return time.monotonic() - start


def settle(path):
    if os.path.exists(path):
        os.unlink(path)
    os.sync()


class Bench(object):
    def __init__(self, fileops, workdir, size):
        self.fileops, self.size, self.count = fileops, size, size // BS
        self.path = os.path.join(workdir, "disk")
        self.checks = {}

    def dd(self, sync=False):
        cmd = ["dd", "if=/dev/zero", "of=" + self.path, "oflag=direct", "bs=4M", "count=%d" % self.count, "status=none"]
        return timed(lambda: run(cmd + (["conv=fdatasync"] if sync else [])))

    def dd_sync(self):
        return self.dd(sync=True)

    def ours_raw(self):
        def create():
            self.fileops.reserve(self.path, self.size)
            self.fileops.zero_unwritten(self.path)
        seconds = timed(create)
        self.check("ours raw is thick_eager_zeroed afterwards", self.fileops.detect_provisioning(self.path) == "thick_eager_zeroed")
        return seconds

    def ours_qcow2(self):
        def create():
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1,preallocation=falloc", self.path, str(self.size)])
            self.fileops.zero_unwritten(self.path)
        seconds = timed(create)
        self.check("ours qcow2 is thick_eager_zeroed afterwards", self.fileops.detect_provisioning(self.path) == "thick_eager_zeroed")
        check = subprocess.run(["qemu-img", "check", "-q", self.path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        self.check("ours qcow2 passes qemu-img check", check.returncode == 0)
        return seconds

    def qemu_full(self):
        return timed(lambda: run(["qemu-img", "create", "-q", "-f", "raw", "-o", "preallocation=full", self.path, str(self.size)]))

    def check(self, name, ok):
        self.checks[name] = self.checks.get(name, True) and ok

    def thin(self, size):
        return timed(lambda: run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", self.path, str(size)]))


def mbps(size, seconds):
    return size / seconds / 1e6


def runs(values, unit=1.0, fmt="%.2f"):
    return " ".join(fmt % (v * unit) for v in values)


def describe_fs(path):
    res = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", path], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
    return res.stdout.strip() or "unknown filesystem"


def measure(args, bench):
    names = ["dd", "ours_raw", "ours_qcow2", "qemu_full", "dd_sync"]
    times = dict((name, []) for name in names)
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            settle(bench.path)
            times[name].append(getattr(bench, name)())
        settle(bench.path)
        print("  round %d/%d done (%s)" % (rnd + 1, args.rounds, ", ".join("%s %.2fs" % (n, times[n][-1]) for n in names)), flush=True)
    thin = {1024 ** 3: [], 1024 ** 4: []}
    for rep in range(args.thin_reps):
        for size in sorted(thin, reverse=bool(rep % 2)):
            settle(bench.path)
            thin[size].append(bench.thin(size))
    settle(bench.path)
    return times, thin


def report(args, bench, times, thin):
    med = dict((name, statistics.median(values)) for name, values in times.items())
    dd_rate = mbps(args.size, med["dd"])
    print()
    print("disk size %.2f GiB (%d x 4 MiB), %d rounds, medians; MB = 10^6 bytes" % (args.size / 1024 ** 3, bench.count, args.rounds))
    print("baseline dd oflag=direct bs=4M:          %6.0f MB/s  median %.2fs  runs %s" % (dd_rate, med["dd"], runs(times["dd"])))
    rows = [
        ("ours raw (reserve + zero_unwritten):    ", "ours_raw", True),
        ("ours qcow2 (falloc + zero_unwritten):   ", "ours_qcow2", True),
        ("qemu-img raw preallocation=full:        ", "qemu_full", False),
        ("dd oflag=direct conv=fdatasync (info):  ", "dd_sync", False),
    ]
    for label, name, targeted in rows:
        ratio = med["dd"] / med[name]
        line = "%s%6.0f MB/s  median %.2fs  runs %s  ratio %.3fx vs dd" % (label, mbps(args.size, med[name]), med[name], runs(times[name]), ratio)
        if targeted:
            line += "  target >= %.2fx  %s" % (TARGET, "met" if ratio >= TARGET else "MISSED")
        elif name == "qemu_full":
            line += "  (ours raw is %.1fx faster)" % (med[name] / med["ours_raw"])
        print(line)
    small, big = statistics.median(thin[1024 ** 3]), statistics.median(thin[1024 ** 4])
    noise = max(_iqr(thin[1024 ** 3]), _iqr(thin[1024 ** 4]))
    flat = abs(big - small) <= max(noise, 0.10 * small)
    print("thin qcow2 create 1 GiB:                 median %.1f ms  (%d reps, IQR %.1f ms)" % (small * 1e3, len(thin[1024 ** 3]), _iqr(thin[1024 ** 3]) * 1e3))
    print("thin qcow2 create 1 TiB:                 median %.1f ms  (%d reps, IQR %.1f ms)" % (big * 1e3, len(thin[1024 ** 4]), _iqr(thin[1024 ** 4]) * 1e3))
    print("ratio 1 TiB / 1 GiB:                     %.3fx  target: flat (within noise)  %s" % (big / small, "flat" if flat else "NOT flat"))
    for name, ok in sorted(bench.checks.items()):
        print("check: %-46s %s" % (name, "yes" if ok else "NO"))


def _iqr(values):
    if len(values) < 4:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--dir", default="/var/tmp", help="filesystem to measure (a temporary directory is made inside)")
    parser.add_argument("--size", type=parse_size, default=parse_size("2GiB"), help="disk size (default 2GiB; rounded down to 4 MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--thin-reps", type=int, default=20, help="repetitions of each thin qcow2 create")
    args = parser.parse_args()
    args.size = args.size // BS * BS
    if args.size <= 0 or args.rounds < 1 or args.thin_reps < 1:
        parser.error("--size must be at least 4MiB, --rounds and --thin-reps at least 1")
    for tool in ("dd", "qemu-img"):
        if shutil.which(tool) is None:
            sys.exit("bench/disk_provisioning.py needs %s" % tool)
    st = os.statvfs(args.dir)
    if st.f_bavail * st.f_frsize < args.size + 512 * 1024 ** 2:
        sys.exit("not enough free space in %s for a %d-byte disk" % (args.dir, args.size))

    # SIGTERM unwinds like Ctrl-C, so the finally below removes what was made.
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = tempfile.mkdtemp(prefix="kvmf-bench-", dir=args.dir)
    try:
        bench = Bench(load_fileops(), workdir, args.size)
        print("disk provisioning benchmark in %s (%s)" % (workdir, describe_fs(workdir)), flush=True)
        times, thin = measure(args, bench)
        report(args, bench, times, thin)
    except KeyboardInterrupt:
        print("\ninterrupted; removing %s" % workdir, file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
