# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sample, from the lab controller, which lab hosts run the QEMU processes of some VMs.

  vm_hosts.py VM[,VM...] SECONDS [--until-on HOST] [--not-before EPOCH]

Every 0.1 s it lists the QEMU processes of each VM (their command line holds guest=VM) and the network namespace
each runs in (the lab host). It stops after SECONDS, or, with --until-on, once every VM runs on HOST alone after
EPOCH. It prints one JSON object: the samples' count, the most hosts seen running one VM at once, every host seen,
the time of the last sample with a VM on a host other than HOST and when every VM was first seen on HOST (epoch
seconds). The ha integration target and bench/ha_recovery.py use it.
"""

import argparse
import json
import os
import time


def netns_of(pid):
    """The named network namespace (lab host) of a process, or None."""
    try:
        ino = os.stat("/proc/%d/ns/net" % pid).st_ino
    except OSError:
        return None
    for name in os.listdir("/run/netns"):
        try:
            if os.stat(os.path.join("/run/netns", name)).st_ino == ino:
                return name
        except OSError:
            continue
    return None


def hosts_running(vm):
    needle = ("guest=%s," % vm).encode()
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"/usr/bin/qemu-system") or b"qemu-system" in cmd.split(b"\0", 1)[0]:
            if needle in cmd:
                ns = netns_of(int(entry))
                if ns:
                    out.add(ns[len("kvmf-"):] if ns.startswith("kvmf-") else ns)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vm")
    ap.add_argument("seconds", type=float)
    ap.add_argument("--until-on")
    ap.add_argument("--not-before", type=float, default=0.0)
    a = ap.parse_args()
    end = time.time() + a.seconds
    samples, most, seen, first_on, last_elsewhere = 0, 0, set(), None, None
    vms = a.vm.split(",")
    while time.time() < end:
        now = time.time()
        per_vm = [hosts_running(vm) for vm in vms]
        samples += 1
        most = max([most] + [len(h) for h in per_vm])
        for h in per_vm:
            seen |= h
        if a.until_on:
            if any(h - {a.until_on} for h in per_vm):
                last_elsewhere = now
            if all(h == {a.until_on} for h in per_vm) and now >= a.not_before:
                if first_on is None:
                    first_on = now
                break
        time.sleep(0.1)
    print(json.dumps({"samples": samples, "most_hosts_at_once": most, "hosts_seen": sorted(seen),
                      "first_on": first_on, "last_elsewhere": last_elsewhere}))


if __name__ == "__main__":
    main()
