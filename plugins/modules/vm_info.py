#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: vm_info
short_description: Report the virtual machines of a compute node
version_added: 0.1.0
description:
  - Lists the VMs of the CNA O(uri) points to, or one of them, with UUID, power state, host, vCPUs, memory,
    disks (datastore, path, provisioning, size, mode), NICs (MAC, network, and IP addresses reported by the
    guest agent when it runs), template flag and QoS.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options:
  name:
    description: Report only this VM (an empty list when it does not exist).
    type: str
seealso:
  - module: kvmfusion.compute.vm
'''

EXAMPLES = r'''
- name: Every VM of each CNA
  kvmfusion.compute.vm_info:
  register: vms

- name: IP addresses of web1 (from its guest agent)
  kvmfusion.compute.vm_info:
    name: web1
  register: web1

- name: Show them
  ansible.builtin.debug:
    msg: "{{ web1.vms[0].nics | map(attribute='ips') | flatten }}"
'''

RETURN = r'''
vms:
  description: The VMs, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: VM name.
      type: str
      sample: web1
    uuid:
      description: libvirt UUID.
      type: str
      sample: 5d5c3c1e-6f0d-4a6f-9d0e-2d3b1f8e9a10
    state:
      description: C(running), C(paused), C(shutoff), C(suspended) (saved to disk), C(crashed).
      type: str
      sample: running
    host:
      description: The CNA it is defined on.
      type: str
      sample: cna1
    hypervisor:
      description: C(kvm) or C(qemu) (software emulation).
      type: str
      sample: kvm
    machine:
      description:
        - The versioned machine type (what the guest's hardware is). A CNA whose QEMU does not provide it cannot
          run the VM, so M(kvmfusion.compute.vm_migration) refuses to move it there.
      type: str
      sample: pc-i440fx-7.2
    vcpus:
      description: Current vCPUs.
      type: int
      sample: 2
    max_vcpus:
      description: Maximum vCPUs.
      type: int
      sample: 8
    memory:
      description: Current memory in bytes.
      type: int
      sample: 2147483648
    max_memory:
      description: Maximum memory in bytes.
      type: int
      sample: 8589934592
    template:
      description: Whether the VM is a template.
      type: bool
      sample: false
    disks:
      description:
        - The VM's declared disks as M(kvmfusion.compute.disk_info) reports them, each with C(active), the file
          the VM writes now (a snapshot or revert layer on the disk, or the disk itself).
      type: list
      elements: dict
      sample: [{datastore: shared, name: web1-system.qcow2, path: /var/lib/kvmfusion/shared/web1-system.qcow2,
                active: /var/lib/kvmfusion/shared/web1-system.qcow2~s1.qcow2, layer_of: null}]
    nics:
      description:
        - NICs with MAC, network or bridge, port group, model, guest-reported IPs (C(ips)), and port security
          (C(security_group), C(bound_ips)).
      type: list
      elements: dict
      sample: [{network: prod, portgroup: web, bridge: null, model: virtio, mac: "52:54:00:12:34:56", ips: [192.0.2.15],
                security_group: web, bound_ips: [192.0.2.15]}]
    qos:
      description: CPU and memory QoS as set (see M(kvmfusion.compute.vm)).
      type: dict
      sample: {cpu_shares: 2048, cpu_limit: 80}
    clone_of:
      description: For a VM made by M(kvmfusion.compute.clone), its source, snapshot and whether it is linked; else null.
      type: dict
      sample: {source: win-desktop-template, snapshot: null, linked: true}
    definition_copy:
      description: Where the copy of the definition beside the system disk lives.
      type: str
      sample: /var/lib/kvmfusion/shared/.web1~vm.xml
    job:
      description:
        - What a running VM's domain job is doing now, as QEMU counts it, or null when it has none.
        - C(operation) is C(outgoing_migration) on the source of a M(kvmfusion.compute.vm_migration) in
          progress, C(incoming_migration) on its destination, or C(save), C(dump), C(snapshot)...
        - Bytes C(data_total), C(data_processed), C(data_remaining) (memory and copied disks), the memory
          round C(memory_iteration) and dirty rate (pages/s), C(disk_total) and C(disk_processed), and
          C(percent) of the data processed.
        - Poll it while a migration runs with C(async) to follow its progress.
      type: dict
      sample: {operation: outgoing_migration, elapsed_ms: 5210, data_total: 1090519040, data_processed: 402653184,
               data_remaining: 687865856, memory_iteration: 1, memory_dirty_rate: 120, disk_total: 0,
               disk_processed: 0, percent: 36.9}
    block_jobs:
      description:
        - The block jobs of a running VM's disks (a M(kvmfusion.compute.storage_migration) copy in progress is
          C(type=copy)) with bytes C(cur) of C(end), C(percent), the bandwidth limit in bytes/s, and whether a
          copy is C(ready) (in sync, about to switch).
      type: list
      elements: dict
      sample: [{disk: vda, type: copy, cur: 402653184, end: 1073741824, bandwidth: 0, percent: 37.5, ready: false}]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils import domains


def run(m):
    client = m.client
    if m.params["name"]:
        name = m.validate_name(m.params["name"], kind="VM")
        doms = [d for d in [client.domain(name)] if d is not None]
    else:
        doms = [client.domain(n) for n in client.domain_names()]
    local = client.is_local
    found = sorted((domains.vm_facts(client, d, local) for d in doms if d is not None), key=lambda v: v["name"])
    m.exit(changed=False, vms=found)


def main():
    m = KvmfModule(dict(name=dict(type="str")), supports_check_mode=True)
    m.run(run)


if __name__ == "__main__":
    main()
