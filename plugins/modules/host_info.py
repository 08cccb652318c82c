#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: host_info
short_description: Report what a compute node's libvirt offers
version_added: 0.1.0
description:
  - Connects to the libvirt daemon of a compute node (CNA) and reports its identity
    (host name, libvirt host UUID), versions, CPU and memory, the guest domain types it
    can run (V(kvm) for hardware virtualization, V(qemu) for software emulation) and
    how many domains, storage pools and networks it has.
  - Read-only; the connection is opened read-only.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options: {}
seealso:
  - name: libvirt connection URIs
    description: The URI forms accepted by O(uri).
    link: https://libvirt.org/uri.html
'''

EXAMPLES = r'''
- name: Read the compute node the task runs on
  kvmfusion.compute.host_info:
  register: host

- name: Read another compute node over SSH from the controller
  kvmfusion.compute.host_info:
    uri: qemu+ssh://root@cna2/system
  delegate_to: localhost
  register: cna2

- name: Refuse to place guests that need hardware virtualization on this host
  ansible.builtin.assert:
    that: "'kvm' in host.host.domain_types"
    fail_msg: "{{ inventory_hostname }} has no KVM"
'''

RETURN = r'''
host:
  description: What the host's libvirt reports.
  returned: success
  type: dict
  contains:
    hostname:
      description: Host name as libvirt sees it.
      type: str
      sample: cna1
    uri:
      description: The URI libvirt actually connected to.
      type: str
      sample: qemu:///system
    host_uuid:
      description: libvirt host UUID (unique per host; migration refuses hosts that share one).
      type: str
      sample: 43c722b4-498b-49b8-b269-8a10485744f7
    libvirt_version:
      description: Version of the libvirt daemon.
      type: str
      sample: 9.0.0
    hypervisor:
      description: Hypervisor driver name.
      type: str
      sample: QEMU
    hypervisor_version:
      description: Hypervisor version.
      type: str
      sample: 7.2.0
    arch:
      description: Host CPU architecture.
      type: str
      sample: x86_64
    cpus:
      description: Number of logical CPUs.
      type: int
      sample: 2
    memory_bytes:
      description: Host memory in bytes.
      type: int
      sample: 25769803776
    domain_types:
      description: Guest domain types the host can run, V(kvm) first when available.
      type: list
      elements: str
      sample: [kvm, qemu]
    domains:
      description: Number of defined domains (running or not).
      type: int
      sample: 3
    running_domains:
      description: Number of running domains.
      type: int
      sample: 1
    pools:
      description: Number of storage pools (datastores).
      type: int
      sample: 2
    networks:
      description: Number of libvirt networks.
      type: int
      sample: 1
    maintenance:
      description:
        - The maintenance mark (M(kvmfusion.compute.host_maintenance)) with since when and why. It is null when the
          host is in service.
      type: dict
      sample: {since: "2026-11-30T22:50:01Z", reason: kernel update}
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.hosts import host_summary


def main():
    km = KvmfModule(argument_spec={}, supports_check_mode=True, readonly=True)
    km.run(lambda m: m.exit(changed=False, host=host_summary(m.client)))


if __name__ == "__main__":
    main()
