#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: dvs_info
short_description: Report the distributed virtual switches of a compute node
version_added: 0.2.0
description:
  - Lists the DVSes of this CNA (libvirt networks in bridge mode on an Open vSwitch bridge), or one of them, with
    their bridge, datapath, uplinks (bond mode, LACP, MTU), network state, port groups and the VMs with NICs on them.
  - Runs on the CNA itself (a local O(uri)); Open vSwitch is read with C(ovs-vsctl) on the host.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options:
  name:
    description: Report only this DVS (an empty list when this CNA does not have it).
    type: str
seealso:
  - module: kvmfusion.compute.dvs
  - module: kvmfusion.compute.portgroup_info
'''

EXAMPLES = r'''
- name: Read the DVSes of each CNA
  kvmfusion.compute.dvs_info:
  register: switches

- name: Show which CNAs have dvs-prod without an uplink
  ansible.builtin.debug:
    msg: "{{ switches.dvs | selectattr('name', 'equalto', 'dvs-prod') | selectattr('uplinks', 'equalto', []) | list }}"
'''

RETURN = r'''
dvs:
  description: The DVSes of this CNA, by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: DVS, bridge and network name.
      type: str
      sample: dvs-prod
    bridge:
      description: Whether the OVS bridge exists.
      type: bool
      sample: true
    datapath:
      description: The bridge's datapath, V(system) (kernel) or V(netdev) (userspace).
      type: str
      sample: netdev
    uplinks:
      description: The uplink NICs (empty without an uplink).
      type: list
      elements: str
      sample: [eth1, eth2]
    uplink_port:
      description: The OVS port of the uplink (the NIC, or the bond C(<name>:uplink)).
      type: str
      sample: "dvs-prod:uplink"
    bond_mode:
      description: Bond load balancing; null without a bond.
      type: str
      sample: balance-slb
    lacp:
      description: Bond LACP mode; null without a bond.
      type: str
      sample: 'off'
    mtu:
      description: MTU requested on the uplink NICs; null when not set.
      type: int
      sample: 9000
    network:
      description: The libvirt network (active, autostart, whether it is a DVS network); null when missing.
      type: dict
      sample: {active: true, autostart: true, dvs: true}
    portgroups:
      description: Names of the port groups.
      type: list
      elements: str
      sample: [web, db]
    vms:
      description: VMs of this CNA with a NIC on the DVS.
      type: list
      elements: str
      sample: [web1]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils import netspec
from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.network import DvsManager, network_root


def run(m):
    mgr = m.manager(DvsManager)
    mgr.need_local("reading Open vSwitch")
    if m.params["name"]:
        netspec.validate_ifname(m.params["name"], "DVS name")
        wanted = [m.params["name"]]
    else:
        wanted = []
        for n in m.client.network_names():
            root = network_root(m.client, n)
            if root is not None and netspec.is_dvs_network(root):
                wanted.append(n)
    found = [f for f in (mgr.facts(n) for n in sorted(wanted)) if f is not None]
    m.exit(changed=False, dvs=found)


def main():
    m = KvmfModule(dict(name=dict(type="str")), supports_check_mode=True, readonly=True)
    m.run(run)


if __name__ == "__main__":
    main()
