#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: snapshot
short_description: Create or delete a VM snapshot
version_added: 0.1.0
description:
  - Creates a snapshot of a VM, running or stopped. Every persistent disk gets an external qcow2 overlay
    (C(<disk>.<snapshot>.qcow2) beside it) that receives new writes, so the disk as it was stays untouched.
    Independent and non-persistent disks never take part; a VM with a raw device mapping cannot be snapshotted.
  - O(memory=true) also saves the guest's RAM and device state (beside the system disk), so a revert resumes the
    VM where it was. The VM keeps running while it is saved.
  - "O(quiesce=true) freezes the guest's file systems through the guest agent for a consistent snapshot and FAILS
    when the agent does not answer. O(quiesce=best_effort) falls back to a plain snapshot then, never silently:
    the result says RV(quiesced=false) and warns."
  - O(state=absent) deletes a snapshot, any one in the chain, merging its data so that no other snapshot and no
    current data is lost (libvirt's block commit, live or offline); its memory file is removed too.
  - Snapshots are immutable; asking for an existing name with other settings fails.
  - On a VM under HA (M(kvmfusion.compute.ha)), taking or deleting a snapshot is refused before any change, because the
    cluster restarts the VM from its definition copy as a transient domain, where no snapshot survives. Take it out
    of HA first, then put it back.
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
    description: Snapshot name, unique per VM.
    type: str
    required: true
  state:
    description: Whether the snapshot should exist.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: Free text kept with the snapshot.
    type: str
  memory:
    description: Also save guest memory and device state (running VMs only).
    type: bool
    default: false
  quiesce:
    description: Freeze guest file systems through the guest agent while the snapshot is taken.
    type: str
    choices: ['false', 'true', best_effort]
    default: 'false'
notes:
  - libvirt 9.0 (Debian 12) cannot revert external snapshots; M(kvmfusion.compute.snapshot_revert) does (on libvirt 11
    it lets libvirt do the reverts libvirt can do exactly as asked).
  - "libvirt with virtlockd leases (seen on 9.0 and on 11.3): after a snapshot that is not the current one is deleted while the VM runs (a
    merge into an older image), that image's lease stays held until the VM powers off, so a later live delete that merges
    into the same image is refused (one line, nothing changed). Deleting the current snapshot live works any number of
    times; deleting with the VM stopped always works."
seealso:
  - module: kvmfusion.compute.snapshot_info
'''

EXAMPLES = r'''
- name: A consistent snapshot before an upgrade (fails if the guest agent does not answer)
  kvmfusion.compute.snapshot:
    vm: db1
    name: before-upgrade
    description: PostgreSQL 15 -> 16
    quiesce: "true"

- name: A snapshot with memory
  kvmfusion.compute.snapshot:
    vm: web1
    name: warm
    memory: true

- name: Delete a snapshot (its data is merged into the image below it)
  kvmfusion.compute.snapshot:
    vm: web1
    name: warm
    state: absent
'''

RETURN = r'''
snapshot:
  description: The snapshot (see M(kvmfusion.compute.snapshot_info)); null when absent or only planned in check mode.
  returned: always
  type: dict
  sample:
    name: before-upgrade
    parent: null
    creation_time: 1795277000
    memory: false
    quiesced: true
    disks: [{target: vda, overlay: /var/lib/kvmfusion/shared/db1-system.before-upgrade.qcow2}]
    size_on_disk: 196608
    current: true
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: ["create snapshot before-upgrade of vda (quiesced)"]
quiesced:
  description: Whether the guest's file systems were frozen for the snapshot; null when nothing was created.
  returned: always
  type: bool
  sample: true
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.snapshots import SnapshotManager


def main():
    argspec = dict(
        vm=dict(type="str", required=True),
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        description=dict(type="str"),
        memory=dict(type="bool", default=False),
        quiesce=dict(type="str", choices=["false", "true", "best_effort"], default="false"),
    )
    m = KvmfModule(argspec, supports_check_mode=True)
    m.run(lambda m: m.manager(SnapshotManager).converge(m.params))


if __name__ == "__main__":
    main()
