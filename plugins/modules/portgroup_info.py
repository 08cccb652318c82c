#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: portgroup_info
short_description: Report the port groups of the distributed virtual switches of a compute node
version_added: 0.2.0
description:
  - Lists the port groups of one DVS, or of every DVS of this CNA, with VLAN settings, traffic shaping and the VM
    NICs of this CNA in each.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options:
  dvs:
    description: Only the port groups of this DVS.
    type: str
  name:
    description: Only the port group of this name.
    type: str
seealso:
  - module: kvmfusion.compute.portgroup
  - module: kvmfusion.compute.dvs_info
'''

EXAMPLES = r'''
- name: Read the port groups of dvs-prod
  kvmfusion.compute.portgroup_info:
    dvs: dvs-prod
  register: pgs

- name: Show the VLAN of each access port group
  ansible.builtin.debug:
    msg: "{{ pgs.portgroups | selectattr('vlan_mode', 'equalto', 'access') | items2dict(key_name='name', value_name='vlan') }}"
'''

RETURN = r'''
portgroups:
  description: The port groups, by DVS and name.
  returned: always
  type: list
  elements: dict
  contains:
    dvs:
      description: The DVS.
      type: str
      sample: dvs-prod
    name:
      description: Port group name.
      type: str
      sample: web
    vlan_mode:
      description: V(access) or V(trunk); null for a port group made elsewhere without a VLAN (an unrestricted trunk).
      type: str
      sample: access
    vlan:
      description: VLAN of an access port group.
      type: int
      sample: 100
    trunk_vlans:
      description: VLANs of a trunk port group.
      type: list
      elements: int
      sample: [100, 200]
    native_vlan:
      description: Untagged VLAN of a trunk port group.
      type: int
      sample: 1
    inbound:
      description: Shaping of what the VMs receive (libvirt's KiB/s and KiB).
      type: dict
      sample: {average: 12207, peak: 24414}
    outbound:
      description: Shaping of what the VMs send (libvirt's KiB/s and KiB).
      type: dict
      sample: {average: 12207}
    dhcp_isolation:
      description: Whether its VMs are kept from serving DHCP; null through a remote O(uri) (OVS is not read).
      type: bool
      sample: true
    ip_mac_binding:
      description: Whether its NICs send only from their MAC and bound IPs; null through a remote O(uri).
      type: bool
      sample: false
    nics:
      description: NICs of this CNA's VMs in the port group (VM, OVS port while running, running).
      type: list
      elements: dict
      sample: [{vm: web1, port: vnet3, running: true}]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils import names, netspec
from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.network import (
    network_root, nic_users, portgroup_security, security_state)


def run(m):
    client = m.client
    if m.params["dvs"]:
        netspec.validate_ifname(m.params["dvs"], "dvs")
    if m.params["name"]:
        names.validate_name(m.params["name"], kind="port group")
    out = []
    mgr = m.manager(Manager)
    state = security_state(mgr) if mgr.local else None
    for n in client.network_names():
        if m.params["dvs"] and n != m.params["dvs"]:
            continue
        root = network_root(client, n)
        if root is None or not netspec.is_dvs_network(root):
            continue
        for el in root.findall("portgroup"):
            if m.params["name"] and el.get("name") != m.params["name"]:
                continue
            view = netspec.portgroup_view(n, el)
            sec = portgroup_security(state, n, el.get("name")) if state else dict.fromkeys(netspec.PORT_SECURITY)
            view.update(sec)
            view["nics"] = [{"vm": vm, "port": dev, "running": running}
                            for vm, dev, running in nic_users(client, n, el.get("name"))]
            out.append(view)
    m.exit(changed=False, portgroups=sorted(out, key=lambda v: (v["dvs"], v["name"])))


def main():
    m = KvmfModule(dict(dvs=dict(type="str"), name=dict(type="str")), supports_check_mode=True, readonly=True)
    m.run(run)


if __name__ == "__main__":
    main()
