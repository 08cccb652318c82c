# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: 100 linked clones of the example site's template defined and started, against parallel `virsh start`.

Issue (the whole site): 100 linked clones defined **and started** from the example inventory in at most 60 s; before,
a clone batch started VMs one by one (about 1.4 s each). The clone module now starts a batch `parallel` at a time
(default 4) after a free-memory check. The floor is `virsh start` of the same 100 VMs, `--parallel` at a time
(default 5), on the same CNA, in the same run.

    python3 bench/clone_start.py [--count 100] [--rounds 2] [--parallel 5] [--guest example|firmware]
        (root; the lab must be up with the example site applied: ./dev lab)

--guest example (default) clones tpl-web, the example site's template: the test guest (160 MiB) under TCG, so each
guest boots its kernel on the CNA's CPUs while the next ones start, and on a 2-core machine the starts wait for
CPU. --guest firmware clones a 64 MiB KVM guest with no system (it stops in its firmware and then idles), so the
figure is the orchestration: the same task and the same floor without the guests' own CPU load.

Method: each round times an empty play (Ansible's start-up, printed), then one clone task (kvmfusion.compute.clone,
source tpl-web of inventories/lab, count N, state running) from nothing: wall time of the play, start-up included.
The clones are then stopped (untimed) and started again by `virsh start` through xargs -P on the CNA (timed on the
CNA itself). The clones are removed after each round (untimed). Medians over the rounds are printed, with the
ratio clone task / floor. The guests are the test guest under TCG: they boot while the others start, as a real
batch's would. Never fails on timing; exits non-zero only when a play fails.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import subprocess
import tempfile

from _lab import median, play

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "inventories", "lab")
PREFIX = "bench-cs-"

EMPTY = """
- name: Nothing (Ansible's start-up)
  hosts: cna[0]
  gather_facts: false
  tasks:
    - name: Nothing
      ansible.builtin.meta: noop
"""

CLONE = """
- name: Linked clones of the example template, started
  hosts: cna[0]
  gather_facts: false
  tasks:
    - name: Clones, started
      kvmfusion.compute.clone:
        source: "{{ source }}"
        count: "{{ count }}"
        name_pattern: "%s{index:03d}"
        state: running
""" % PREFIX

FLOOR = """
- name: The floor, on the CNA itself
  hosts: cna[0]
  gather_facts: false
  tasks:
    - name: Stop the clones (untimed)
      ansible.builtin.shell: |
        for d in $(virsh -c qemu:///system list --name | grep '^%(p)s[0-9]'); do virsh -c qemu:///system destroy $d >/dev/null; done
      changed_when: true

    - name: virsh start of the same VMs, in parallel (timed here)
      ansible.builtin.shell: |
        t0=$(date +%%s%%N)
        virsh -c qemu:///system list --all --name | grep '^%(p)s[0-9]' | xargs -P {{ parallel }} -n 1 virsh -q -c qemu:///system start >/dev/null
        t1=$(date +%%s%%N)
        echo "FLOOR $(( (t1 - t0) / 1000000 )) $(virsh -c qemu:///system list --name | grep -c '^%(p)s[0-9]')"
      register: floor
      changed_when: true

    - name: Say the floor
      ansible.builtin.debug:
        msg: "{{ floor.stdout }}"
""" % {"p": PREFIX}

FIRMWARE = """
- name: A firmware-only KVM template beside the example's
  hosts: cna[0]
  gather_facts: false
  tasks:
    - name: The template
      kvmfusion.compute.vm:
        name: %(p)stpl
        hypervisor: kvm
        memory: 64MiB
        graphics: none
        guest_agent: false
        disks:
          - {datastore: lab-shared, name: %(p)stpl.qcow2, size: 64MiB}
        template: true
""" % {"p": PREFIX}

REMOVE_TEMPLATE = """
- name: Remove the firmware-only template
  hosts: cna[0]
  gather_facts: false
  tasks:
    - name: Make it a VM again
      kvmfusion.compute.vm: {name: %(p)stpl, template: false}

    - name: Remove it with its disk
      kvmfusion.compute.vm: {name: %(p)stpl, state: absent, delete_disks: true}
""" % {"p": PREFIX}

CLEANUP = """
- name: Remove the benchmark's clones
  hosts: cna[0]
  gather_facts: false
  tasks:
    - name: Remove them with their disks
      ansible.builtin.shell: |
        for d in $(virsh -c qemu:///system list --all --name | grep '^%(p)s' | grep -v '^%(p)stpl$'); do
          virsh -c qemu:///system destroy $d >/dev/null 2>&1 || true
          virsh -c qemu:///system undefine --remove-all-storage --snapshots-metadata $d >/dev/null 2>&1 || true
        done
        find /var/lib/kvmfusion/shared/lab-shared -name '%(p)s*' ! -name '%(p)stpl.qcow2' -delete
        virsh -c qemu:///system pool-refresh lab-shared >/dev/null
      changed_when: true
""" % {"p": PREFIX}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=5, help="virsh starts at a time in the floor")
    ap.add_argument("--guest", choices=["example", "firmware"], default="example")
    a = ap.parse_args()
    inventory = subprocess.run([os.path.join(ROOT, "tools", "lab"), "inventory"], stdout=subprocess.PIPE,
                               universal_newlines=True, check=True).stdout.strip()
    inventories = [inventory, EXAMPLE]
    extra = {"count": a.count, "parallel": a.parallel,
             "source": "tpl-web" if a.guest == "example" else PREFIX + "tpl"}
    tmp = tempfile.mkdtemp(prefix="bench-cs-")
    rounds = []
    try:
        play(CLEANUP, inventories, extra, tmp)
        if a.guest == "firmware":
            play(FIRMWARE, inventories, extra, tmp)
        for _r in range(a.rounds):
            base = play(EMPTY, inventories, extra, tmp)[0]
            t_clone = play(CLONE, inventories, extra, tmp)[0]
            out = play(FLOOR, inventories, extra, tmp)[1]
            line = [ln for ln in out.splitlines() if "FLOOR " in ln][0]
            floor, running = line.split("FLOOR ", 1)[1].strip().strip('"').split()[:2]
            rounds.append({"base": base, "clone": t_clone, "floor": int(floor) / 1000.0, "running": int(running)})
            play(CLEANUP, inventories, extra, tmp)
    finally:
        play(CLEANUP, inventories, extra, tmp)
        if a.guest == "firmware":
            play(REMOVE_TEMPLATE, inventories, extra, tmp)
    clone_s, floor_s, base_s = (median([x[k] for x in rounds]) for k in ("clone", "floor", "base"))
    print("method: medians of %d rounds; the clone task's play timed whole (Ansible's start-up included), the floor "
          "timed on the CNA; clones removed between rounds, untimed" % a.rounds)
    print("rounds: %s" % json.dumps(rounds))
    print("empty play (Ansible's start-up): %.2f s" % base_s)
    print("guest: %s (source %s)" % (a.guest, extra["source"]))
    print("clone task, %d linked clones defined and started (parallel 4): %.1f s (%.2f s per clone)"
          % (a.count, clone_s, clone_s / a.count))
    print("floor, virsh start of the same %d VMs, %d at a time: %.1f s (%.2f s per VM); %d running after it"
          % (a.count, a.parallel, floor_s, floor_s / a.count, min(x["running"] for x in rounds)))
    print("ratio clone task (define + start) / floor (start only): %.2fx" % (clone_s / floor_s if floor_s else float("nan")))
    print("goal: defined and started in at most 60 s -> %s" % ("met" if clone_s <= 60 else "NOT met"))


if __name__ == "__main__":
    main()
