#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: snapshot_info
short_description: Report the snapshot tree of a VM
version_added: 0.1.0
description:
  - Lists a VM's snapshots in creation order with parent (the tree), creation time, whether memory was saved
    and whether the file systems were quiesced, the overlay file of each disk, size on disk, and which snapshot
    the VM currently sits on.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options:
  vm:
    description: The VM.
    type: str
    required: true
seealso:
  - module: kvmfusion.compute.snapshot
'''

EXAMPLES = r'''
- name: Read the snapshot tree of db1
  kvmfusion.compute.snapshot_info:
    vm: db1
  register: snaps

- name: Name of the snapshot db1 sits on
  ansible.builtin.debug:
    msg: "{{ snaps.snapshots | selectattr('current') | map(attribute='name') | first | default('none') }}"
'''

RETURN = r'''
snapshots:
  description: The snapshots, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Snapshot name.
      type: str
      sample: before-upgrade
    parent:
      description: Parent snapshot; null for a root.
      type: str
      sample: null
    description:
      description: Description.
      type: str
      sample: PostgreSQL 15 -> 16
    creation_time:
      description: Creation time, seconds since the epoch.
      type: int
      sample: 1795277000
    vm_state:
      description: The VM's state when the snapshot was taken.
      type: str
      sample: running
    memory:
      description: Whether guest memory was saved.
      type: bool
      sample: false
    memory_file:
      description: The memory state file.
      type: str
      sample: null
    quiesced:
      description: Whether the guest's file systems were frozen.
      type: bool
      sample: true
    disks:
      description: The overlay file each disk got.
      type: list
      elements: dict
      sample: [{target: vda, overlay: /var/lib/kvmfusion/shared/db1-system.before-upgrade.qcow2}]
    size_on_disk:
      description: Bytes allocated by the overlays and memory file (null from a remote URI).
      type: int
      sample: 196608
    current:
      description: Whether the VM currently sits on this snapshot.
      type: bool
      sample: true
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils import snapshots


def run(m):
    vm = m.validate_name(m.params["vm"], kind="VM")
    dom = m.client.domain(vm)
    if dom is None:
        m.fail("unknown VM '%s' on %s" % (vm, m.uri))
    m.exit(changed=False, snapshots=snapshots.snapshot_facts(m.client, dom, vm, m.client.is_local))


def main():
    m = KvmfModule(dict(vm=dict(type="str", required=True)), supports_check_mode=True)
    m.run(run)


if __name__ == "__main__":
    main()
