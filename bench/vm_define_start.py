# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: define and start 20 VMs in one play, kvmfusion.compute.vm vs community.libvirt.virt.

Issue (VMs and templates): report per-VM seconds and compare with the same work through
community.libvirt's `virt` module (bundled by the `ansible` package on PyPI) in the same run.
The VMs are identical firmware-only KVM guests (64 MiB, no disk, no graphics; ours get the cluster CPU
model by default, theirs a hand-written host-model CPU without arch-capabilities, which this machine's
KVM cannot start with) so the figure is
the modules' own cost: the play runs against the first lab CNA, each module runs there.

    python3 bench/vm_define_start.py [--count 20] [--rounds 3]   (root; the lab must be up:
                                                                  tools/lab up, or ./dev lab)
Installs the `ansible` package into .cache/bench-venv on first use. Prints figures and ratios;
never fails on timing. Also times a second, no-change run of each play (idempotence cost).

Method: each round times both plays whole (Ansible start-up included), alternating which goes first;
the figures are medians over the rounds (an odd number: with an even one the median is the mean of the
middle two, and the output says so).
"""
from __future__ import absolute_import, division, print_function

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".cache", "bench-venv")
ANSIBLE_PKG = "ansible>=11,<12"

OURS = """
- name: kvmfusion.compute.vm
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Define and start VMs
      kvmfusion.compute.vm:
        name: "bench-ours-{{ item }}"
        hypervisor: kvm
        vcpus: 1
        memory: 64MiB
        graphics: none
        guest_agent: false
        state: running
      loop: "{{ range(count | int) | list }}"
"""

THEIRS = """
- name: community.libvirt.virt
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Define VMs
      community.libvirt.virt:
        command: define
        xml: |
          <domain type='kvm'>
            <name>bench-theirs-{{ item }}</name>
            <memory unit='MiB'>64</memory>
            <currentMemory unit='MiB'>64</currentMemory>
            <vcpu placement='static'>1</vcpu>
            <os><type arch='x86_64' machine='pc'>hvm</type></os>
            <features><acpi/><apic/></features>
            <cpu mode='host-model' check='partial'><feature policy='disable' name='arch-capabilities'/></cpu>
            <devices>
              <controller type='scsi' model='virtio-scsi'/>
              <serial type='pty'><target port='0'/></serial>
              <console type='pty'><target type='serial' port='0'/></console>
              <memballoon model='virtio'/>
              <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
            </devices>
          </domain>
      loop: "{{ range(count | int) | list }}"

    - name: Start VMs
      community.libvirt.virt:
        name: "bench-theirs-{{ item }}"
        state: running
      loop: "{{ range(count | int) | list }}"
"""


def venv():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(os.path.join(VENV, "bin", "ansible-playbook")):
        print("installing %s into %s (first run only)" % (ANSIBLE_PKG, VENV), flush=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", ANSIBLE_PKG], check=True)
    return os.path.join(VENV, "bin", "ansible-playbook")


def inventory():
    res = subprocess.run([os.path.join(ROOT, "tools", "lab"), "inventory"], stdout=subprocess.PIPE, text=True, check=False)
    if res.returncode != 0:
        sys.exit("the lab is not up: run tools/lab up (or ./dev lab) first")
    return res.stdout.strip()


def play(playbook, inv, text, target, count, env):
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write(text)
    try:
        t0 = time.monotonic()
        res = subprocess.run([playbook, "-i", inv, f.name, "-e", "target=%s count=%d" % (target, count)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, check=False)
        took = time.monotonic() - t0
    finally:
        os.unlink(f.name)
    if res.returncode != 0:
        sys.exit("play failed:\n" + res.stdout[-3000:])
    return took


def cleanup(target):
    script = ("for d in $(virsh -c qemu:///system list --all --name | grep '^bench-'); do "
              "virsh -c qemu:///system destroy $d >/dev/null 2>&1; virsh -c qemu:///system undefine $d >/dev/null; done")
    subprocess.run([os.path.join(ROOT, "tools", "lab"), "ssh", target, script], check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target", default="cna1")
    args = ap.parse_args()
    playbook = venv()
    inv = inventory()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_STDOUT_CALLBACK="default")
    coll = os.path.join(ROOT, ".cache", "collections", "ansible_collections", "kvmfusion", "compute")
    if not os.path.exists(coll):
        sys.exit("run ./dev setup first (links the collection into .cache/collections)")
    results = {"ours": [], "theirs": [], "ours_again": [], "theirs_again": []}
    cleanup(args.target)
    for rnd in range(args.rounds):
        order = [("ours", OURS), ("theirs", THEIRS)] if rnd % 2 == 0 else [("theirs", THEIRS), ("ours", OURS)]
        for name, text in order:
            results[name].append(play(playbook, inv, text, args.target, args.count, env))
            results[name + "_again"].append(play(playbook, inv, text, args.target, args.count, env))
            cleanup(args.target)
        print("round %d/%d: ours %.1fs (again %.1fs), theirs %.1fs (again %.1fs)" % (
            rnd + 1, args.rounds, results["ours"][-1], results["ours_again"][-1],
            results["theirs"][-1], results["theirs_again"][-1]), flush=True)
    med = dict((k, statistics.median(v)) for k, v in results.items())
    n = float(args.count)
    print()
    print("define + start %d VMs in one play on %s, median of %d rounds%s, order alternated per round" % (
        args.count, args.target, args.rounds, " (even: the mean of the middle two)" if args.rounds % 2 == 0 else ""))
    print("kvmfusion.compute.vm:        %6.2fs   %.3f s/VM" % (med["ours"], med["ours"] / n))
    print("community.libvirt.virt:      %6.2fs   %.3f s/VM" % (med["theirs"], med["theirs"] / n))
    print("ratio ours / community:      %.2fx  (below 1 is faster)" % (med["ours"] / med["theirs"]))
    print("second run (no change):      ours %.2fs (%.3f s/VM), community %.2fs (%.3f s/VM)" % (
        med["ours_again"], med["ours_again"] / n, med["theirs_again"], med["theirs_again"] / n))
    print("note: community.libvirt needs two tasks (define, then start) for what kvmfusion.compute.vm does in one;")
    print("      both plays are timed whole, Ansible start-up included.")


if __name__ == "__main__":
    main()
