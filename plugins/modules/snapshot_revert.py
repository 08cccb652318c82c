#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: snapshot_revert
short_description: Revert a VM to one of its snapshots
version_added: 0.1.0
description:
  - Returns a VM, running or stopped, to a snapshot taken with M(kvmfusion.compute.snapshot). Every disk of the
    snapshot gets a new, empty qcow2 overlay on the image that holds the snapshot's data, so the snapshot itself is
    never written and can be returned to again.
  - With a memory snapshot the VM resumes in the saved state (or stays paused with O(state=paused)); otherwise it
    is left stopped, or started with O(state=running).
  - "O(discard_newer=true) (the default) deletes the snapshots taken after the target, with their overlays and
    memory files, and discards the current state: the chain looks as if the target had just been taken."
  - "O(discard_newer=false) opens a new branch: the newer snapshots stay, and the current state is kept too, as a
    disk-only snapshot (O(save_current_as)), so both branches can be reverted to later. Nothing is saved when the
    VM has not written anything since its current snapshot."
  - Independent disks keep their data (that is what independent means). A VM with a raw device mapping, a disk
    set that changed since the snapshot, or a memory snapshot combined with independent disks is refused before
    anything changes.
  - "Idempotent: a VM that sits on the snapshot, has written nothing since and is in the asked state reports no
    change. Guest RAM is not compared: a VM resumed from a memory snapshot counts as unchanged while its disks are."
  - libvirt 9.0 (Debian 12) cannot revert external snapshots; this module does it on the qcow2 chains itself and
    keeps libvirt's snapshot metadata (current snapshot, tree) consistent.
  - "libvirt 9.9.0 and later revert external snapshots themselves, but this module does not hand them the revert: on
    libvirt 11.3 libvirt's revert left overlays readable by all (mode 0644) under names of its own, which later
    reverts could not discard. This module's engine reverts on every libvirt; C(engine) in RV(revert) says which did it."
  - On a VM under HA (M(kvmfusion.compute.ha)), a revert is refused before any change, because the cluster starts the VM
    from its definition copy, which a revert behind it would leave pointing at other images. Take it out of HA first.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  vm:
    description: The VM.
    type: str
    required: true
  name:
    description: The snapshot to return to.
    type: str
    required: true
  discard_newer:
    description:
      - V(true) deletes the snapshots after O(name) and the current state.
      - V(false) keeps them and the current state, and branches from O(name).
    type: bool
    default: true
  save_current_as:
    description:
      - With O(discard_newer=false), the name of the snapshot that keeps the current state.
      - Defaults to C(<name>-before-revert-<UTC time>).
    type: str
  state:
    description:
      - The VM's power state after the revert.
      - Defaults to V(running) for a memory snapshot (resume where it was) and V(stopped) otherwise.
      - V(stopped) with a memory snapshot reverts the disks only.
    type: str
    choices: [running, paused, stopped]
notes:
  - Must run on the CNA that holds the VM's disks (a local O(uri)); it works on the image files.
  - A revert is an action. Run again, it changes nothing while the VM still sits on the snapshot with nothing
    written since and in the asked state. In a play, other tasks that set the VM's power state must ask for the
    same state, or the two take turns changing it.
  - The new overlays are made first, the VM switched to them, and only then are old files deleted (the deletes are
    noted in the VM first, so a revert interrupted between the switch and the deletes finishes on its next run).
  - A running VM is powered off first (its state is discarded, or saved with O(discard_newer=false)).
seealso:
  - module: kvmfusion.compute.snapshot
  - module: kvmfusion.compute.snapshot_info
'''

EXAMPLES = r'''
- name: Back to the state before the upgrade, dropping everything after it
  kvmfusion.compute.snapshot_revert:
    vm: db1
    name: before-upgrade
    state: running

- name: Try something from an older point, keeping the current line of work as a snapshot
  kvmfusion.compute.snapshot_revert:
    vm: web1
    name: warm
    discard_newer: false
    save_current_as: experiment-1
'''

RETURN = r'''
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample:
    - power off (the current state is discarded)
    - discard snapshot s2
    - delete /var/lib/kvmfusion/shared/db1-system.s1.qcow2
    - new overlay /var/lib/kvmfusion/shared/db1-system.s1.qcow2 on /var/lib/kvmfusion/shared/db1-system.qcow2 for vda
    - point vda at the new overlay(s)
    - make s1 the current snapshot
    - start
revert:
  description:
    - What the revert did; null when nothing changed.
    - C(engine) is V(kvmfusion) (this collection's revert on the qcow2 chains). V(libvirt) (libvirt's own revert,
      C(disks) null) is reserved for when libvirt's revert is used again.
  returned: always
  type: dict
  sample:
    snapshot: s1
    state: running
    saved_as: null
    discarded: [s2]
    disks: {vda: /var/lib/kvmfusion/shared/db1-system.s1.qcow2}
    engine: kvmfusion
snapshots:
  description: The VM's snapshot tree afterwards (see M(kvmfusion.compute.snapshot_info)); null in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{name: s1, parent: null, current: true, memory: false, quiesced: false}]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.reverts import RevertManager


def main():
    argspec = dict(
        vm=dict(type="str", required=True),
        name=dict(type="str", required=True),
        discard_newer=dict(type="bool", default=True),
        save_current_as=dict(type="str"),
        state=dict(type="str", choices=["running", "paused", "stopped"]),
    )
    m = KvmfModule(argspec, supports_check_mode=True)
    m.run(lambda m: m.manager(RevertManager).converge(m.params))


if __name__ == "__main__":
    main()
