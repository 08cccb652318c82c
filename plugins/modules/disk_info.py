#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: disk_info
short_description: Report virtual disks of a compute node
version_added: 0.1.0
description:
  - Lists the virtual disks (volumes) in the running datastores of the CNA O(uri) points to, with path,
    format, provisioning type, virtual size, allocated bytes, backing chain and the VMs they are attached to
    (target, bus, mode, QoS).
  - With O(vm), lists the disks of that VM, including raw device mappings and files outside any datastore.
  - Each datastore's volume list is refreshed first, so disks that another CNA created on a shared datastore
    are seen; refreshing changes no data.
  - Provisioning is read from the file when the module runs on the CNA holding it (the intent recorded by
    M(kvmfusion.compute.disk), else detected from the file's extents); from a remote URI it is C(thin) or C(thick).
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options:
  datastore:
    description: Only disks of this datastore.
    type: str
  name:
    description: Only the disk of this name.
    type: str
  vm:
    description: Only disks attached to this VM (including ones outside datastores).
    type: str
seealso:
  - module: kvmfusion.compute.disk
'''

EXAMPLES = r'''
- name: Every disk of each CNA
  kvmfusion.compute.disk_info:
  register: all_disks

- name: The disks of web1
  kvmfusion.compute.disk_info:
    vm: web1
  register: web1_disks

- name: Find thin disks on the shared datastore
  ansible.builtin.debug:
    msg: "{{ all_disks.disks | selectattr('datastore', 'equalto', 'shared') | selectattr('provisioning', 'equalto', 'thin') | map(attribute='name') }}"
'''

RETURN = r'''
disks:
  description: The disks, by datastore and name.
  returned: always
  type: list
  elements: dict
  contains:
    datastore:
      description: Datastore name; null for a disk outside any datastore.
      type: str
      sample: shared
    name:
      description: Volume name; null outside datastores.
      type: str
      sample: web1-data.qcow2
    path:
      description: File or device path on the CNA.
      type: str
      sample: /var/lib/kvmfusion/shared/web1-data.qcow2
    format:
      description: Image format.
      type: str
      sample: qcow2
    provisioning:
      description:
        - V(thin), V(thick_lazy_zeroed) or V(thick_eager_zeroed) (V(thin) or V(thick) when read remotely).
        - Measured from the file's extents. A hole makes a disk thin and an unwritten extent makes it lazy zeroed,
          whatever type it was created with. The label the module stores on the file only tells what extents cannot
          (a thin disk whose guest wrote every block); it can lower the measured type, never raise it.
      type: str
      sample: thin
    provisioning_measured:
      description:
        - What the extents alone show, or null when they cannot be read (a remote URI, a filesystem without FIEMAP).
      type: str
      sample: thick_eager_zeroed
    provisioning_source:
      description:
        - What decided RV(disks[].provisioning). V(extents) is the file's extent map. V(label) is the stored intent,
          when it is a weaker type than the extents show, or when the extents cannot be read. V(allocation) is
          libvirt's allocation against capacity, read remotely.
      type: str
      choices: [extents, label, allocation]
      sample: extents
    size:
      description: Virtual size in bytes.
      type: int
      sample: 21474836480
    allocation:
      description: Bytes allocated on the datastore.
      type: int
      sample: 196608
    backing_chain:
      description: Backing files below this disk, nearest first (linked clones and snapshots).
      type: list
      elements: dict
      sample: [{path: /var/lib/kvmfusion/shared/base.qcow2, format: qcow2}]
    attached:
      description:
        - Attachments on this CNA. A disk with snapshot or revert layers on it is attached through them; each
          attachment names the declared disk (C(declared)) and the file the VM writes now (C(active)).
      type: list
      elements: dict
      sample: [{vm: web1, target: vdb, bus: virtio, mode: persistent, readonly: false, iotune: {},
                declared: /var/lib/kvmfusion/shared/web1-data.qcow2,
                active: /var/lib/kvmfusion/shared/web1-data.qcow2~before-upgrade.qcow2}]
    active:
      description: The file the VM writes now for this disk (itself, or the top snapshot layer on it); null if unattached.
      type: str
      sample: /var/lib/kvmfusion/shared/web1-data.qcow2~before-upgrade.qcow2
    layer_of:
      description: For a snapshot or revert layer, the declared disk it belongs to; null for a declared disk.
      type: str
      sample: null
    rdm:
      description: Whether this is a raw device mapping.
      type: bool
      sample: false
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils import disks


def run(m):
    p = m.params
    for key, kind in (("datastore", "datastore"), ("name", "disk"), ("vm", "VM")):
        if p[key]:
            m.validate_name(p[key], kind=kind)
    found = disks.inventory(m.client, m.client.is_local, datastore=p["datastore"], name=p["name"], vm=p["vm"],
                            refresh=True)
    m.exit(changed=False, disks=found)


def main():
    m = KvmfModule(dict(datastore=dict(type="str"), name=dict(type="str"), vm=dict(type="str")),
                   supports_check_mode=True)
    m.run(run)


if __name__ == "__main__":
    main()
