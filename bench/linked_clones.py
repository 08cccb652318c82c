# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: 100 linked clones of a 2 GiB template in one play (20 of them started) vs full clones.

Issue (snapshots and clones): report seconds per clone and bytes per clone for linked clones, and
compare with full clones of the same template in the same run. The template's 2 GiB disk is fully
allocated (every byte written), so a full clone really copies 2 GiB. The guests are firmware-only
KVM guests (64 MiB, the cluster CPU model the cna role computed: host-model cannot start
on this machine's KVM): the disk is data, the figure is the clone work. Everything runs on the first lab CNA through
kvmfusion.compute.clone, one task per batch.

    python3 bench/linked_clones.py [--linked 100] [--started 20] [--full 5]
        (root; the lab must be up: tools/lab up, or ./dev lab)

Method: --rounds rounds (default 3). Each round runs an empty play against the same host (the
baseline: Ansible's start-up), then the linked, start and full plays, each timed once and minus
that round's empty play; the clones are removed between rounds (untimed). The figures printed are
the medians over the rounds, and the method is printed with them. Never fails on timing. Exits
non-zero only when a play fails.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import subprocess
import tempfile

from _lab import median, play

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DS_DIR_VAR = "{{ kvmfusion_shared_datastore_path }}/bench-clone"

SETUP = """
- name: Template for the clone benchmark
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Remove what an earlier run left
      ansible.builtin.shell: |
        for d in $(virsh -c qemu:///system list --all --name | grep '^bench-'); do
          virsh -c qemu:///system destroy $d >/dev/null 2>&1 || true
          virsh -c qemu:///system undefine --snapshots-metadata $d >/dev/null 2>&1 || true
        done
        virsh -c qemu:///system pool-destroy bench-clone-ds >/dev/null 2>&1 || true
        virsh -c qemu:///system pool-undefine bench-clone-ds >/dev/null 2>&1 || true
        rm -rf DSDIR
      changed_when: true

    - name: Datastore
      kvmfusion.compute.datastore:
        name: bench-clone-ds
        type: dir
        path: "DSDIR"

    - name: Template VM
      kvmfusion.compute.vm:
        name: bench-tpl
        hypervisor: kvm
        memory: 64MiB
        graphics: none
        guest_agent: false
        disks:
          - {datastore: bench-clone-ds, name: bench-tpl.qcow2, size: 2GiB}

    - name: Fill the template's 2 GiB with data
      ansible.builtin.command: qemu-io -f qcow2 -c "write -P 0x5a 0 1G" -c "write -P 0xa5 1G 1G" DSDIR/bench-tpl.qcow2
      changed_when: true

    - name: Make it a template
      kvmfusion.compute.vm:
        name: bench-tpl
        template: true
""".replace("DSDIR", DS_DIR_VAR)

EMPTY = """
- name: Empty play (baseline)
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Nothing
      ansible.builtin.command: "true"
      changed_when: false
"""

LINKED = """
- name: Linked clones
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Linked clones of the template
      kvmfusion.compute.clone:
        source: bench-tpl
        count: "{{ linked | int }}"
        name_pattern: "bench-lc-{index:03d}"
"""

START = """
- name: Start linked clones
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Start some of them
      kvmfusion.compute.clone:
        source: bench-tpl
        count: "{{ started | int }}"
        name_pattern: "bench-lc-{index:03d}"
        state: running
"""

FULL = """
- name: Full clones
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Full clones of the template
      kvmfusion.compute.clone:
        source: bench-tpl
        count: "{{ full | int }}"
        name_pattern: "bench-fc-{index:03d}"
        linked: false
"""

MEASURE = """
- name: Measure
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Bytes on disk per clone file and running clones
      ansible.builtin.shell: |
        python3 - <<'PY'
        import glob, json, os, subprocess
        d = "DSDIR"
        out = {"linked": [], "full": []}
        for f in glob.glob(d + "/bench-lc-*.qcow2"):
            out["linked"].append(os.stat(f).st_blocks * 512)
        for f in glob.glob(d + "/bench-fc-*.qcow2"):
            out["full"].append(os.stat(f).st_blocks * 512)
        out["template"] = os.stat(d + "/bench-tpl.qcow2").st_blocks * 512
        names = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--name"], capture_output=True, text=True).stdout
        out["running"] = len([n for n in names.split() if n.startswith("bench-lc-")])
        print(json.dumps(out))
        PY
      args:
        executable: /bin/bash
      register: measured
      changed_when: false

    - name: Report
      ansible.builtin.debug:
        msg: "BENCH {{ measured.stdout }}"
""".replace("DSDIR", DS_DIR_VAR)

CLEANUP = SETUP.split("    - name: Datastore", maxsplit=1)[0]

REMOVE_CLONES = """
- name: Remove the clones of a round
  hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Remove every clone and its files, keep the template
      ansible.builtin.shell: |
        for d in $(virsh -c qemu:///system list --all --name | grep -E '^bench-(lc|fc)-'); do
          virsh -c qemu:///system destroy $d >/dev/null 2>&1 || true
          virsh -c qemu:///system undefine --snapshots-metadata $d >/dev/null
        done
        rm -f DSDIR/bench-lc-* DSDIR/bench-fc-*
        virsh -c qemu:///system pool-refresh bench-clone-ds >/dev/null
      changed_when: true
""".replace("DSDIR", DS_DIR_VAR)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--linked", type=int, default=100)
    ap.add_argument("--started", type=int, default=20)
    ap.add_argument("--full", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    inventory = subprocess.run([os.path.join(ROOT, "tools", "lab"), "inventory"], capture_output=True, text=True,
                               check=True).stdout.strip()
    extra = {"target": "cna[0]", "linked": a.linked, "started": a.started, "full": a.full}
    tmp = tempfile.mkdtemp(prefix="bench-clone-")
    rounds = []
    m = None
    try:
        t_setup, _o = play(SETUP, inventory, extra, tmp)
        for r in range(a.rounds):
            if r:
                play(REMOVE_CLONES, inventory, extra, tmp)
            base = play(EMPTY, inventory, extra, tmp)[0]
            t_linked = play(LINKED, inventory, extra, tmp)[0]
            t_start = play(START, inventory, extra, tmp)[0]
            t_full = play(FULL, inventory, extra, tmp)[0]
            rounds.append({"base": base, "linked": max(t_linked - base, 0.0) / a.linked,
                           "start": max(t_start - base, 0.0) / max(a.started, 1),
                           "full": max(t_full - base, 0.0) / a.full})
            if m is None:
                _t, out = play(MEASURE, inventory, extra, tmp)
                line = [ln for ln in out.splitlines() if "BENCH {" in ln][0]
                m = json.loads(line.split("BENCH ", 1)[1].rstrip('"').replace('\\"', '"'))
    finally:
        play(CLEANUP, inventory, extra, tmp)
    lin_s, start_s, full_s = (median([x[k] for x in rounds]) for k in ("linked", "start", "full"))
    lin_b = sum(m["linked"]) / max(len(m["linked"]), 1)
    full_b = sum(m["full"]) / max(len(m["full"]), 1)
    print("method: medians of %d rounds; in each round an empty play (Ansible's start-up, the baseline) is timed, "
          "then each clone play once, minus that round's empty play; clones removed between rounds, untimed"
          % a.rounds)
    print("template: 2 GiB virtual, %.2f GiB allocated (setup %.1f s)" % (m["template"] / 2.0 ** 30, t_setup))
    print("baseline (empty play): median %.2f s (rounds: %s)" % (median([x["base"] for x in rounds]),
                                                                 ", ".join("%.2f" % x["base"] for x in rounds)))
    print("linked: %d clones per round -> %.3f s per clone, %.0f KiB per clone (%d files)"
          % (a.linked, lin_s, lin_b / 1024.0, len(m["linked"])))
    print("        %d of them started per round -> %.3f s per start (%d running)" % (a.started, start_s, m["running"]))
    print("full:   %d clones per round -> %.3f s per clone, %.0f MiB per clone" % (a.full, full_s, full_b / 2.0 ** 20))
    print("ratio linked/full: time %.4fx, bytes %.5fx" % (lin_s / full_s if full_s else float("nan"),
                                                          lin_b / full_b if full_b else float("nan")))
    print("target: a few hundred KiB per linked clone -> %s" % ("met" if lin_b <= 1024 * 1024 else "NOT met"))


if __name__ == "__main__":
    main()
