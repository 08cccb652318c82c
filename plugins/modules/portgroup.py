#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: portgroup
short_description: Manage a port group of a distributed virtual switch
version_added: 0.2.0
description:
  - A port group is a set of DVS ports with the same settings; a VM NIC joins it by naming the DVS and the port
    group (the O(kvmfusion.compute.vm#module:nics) option of M(kvmfusion.compute.vm)). VM NICs in one port group
    on different CNAs are on the same network.
  - "VLAN: an V(access) port group carries one VLAN, untagged to the guest; a V(trunk) port group passes the
    listed VLANs tagged (ranges like C(100-110) allowed) and, with O(native_vlan), one of them untagged. An access
    port group always has its VLAN and a trunk at least one VLAN: a port is never left an unrestricted trunk."
  - "Traffic shaping: O(shaping.outbound) shapes what the VMs send, O(shaping.inbound) what they receive, each as
    an average and a peak rate in Mbit/s and a burst in Mbit (peak at least the average)."
  - A change reaches the DVS's libvirt network (VMs started or migrated later) and, at once, the ports of the
    running VMs of this CNA (their OVS VLAN settings and libvirt's live bandwidth); nothing restarts.
  - Runs on the CNA itself (a local O(uri)), on every CNA of the DVS.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  dvs:
    description: The DVS (M(kvmfusion.compute.dvs)).
    type: str
    required: true
  name:
    description: Port group name, unique per DVS.
    type: str
    required: true
  state:
    description: Whether the port group should exist.
    type: str
    choices: [present, absent]
    default: present
  vlan_mode:
    description: V(access) (one VLAN, untagged in the guest) or V(trunk) (tagged VLANs).
    type: str
    choices: [access, trunk]
    default: access
  vlan:
    description: The VLAN of an access port group (1-4094).
    type: int
  trunk_vlans:
    description: VLANs a trunk port group passes tagged, as IDs or ranges (C(100-110)); each VLAN once.
    type: list
    elements: raw
  native_vlan:
    description: The VLAN a trunk port group passes untagged.
    type: int
  shaping:
    description: Traffic shaping of each port.
    type: dict
    suboptions:
      outbound:
        description: What the VMs send (C(average), C(peak) in Mbit/s, C(burst) in Mbit).
        type: dict
      inbound:
        description: What the VMs receive (C(average), C(peak) in Mbit/s, C(burst) in Mbit).
        type: dict
      priority:
        description:
          - "Priority under congestion of the uplink. Not applied (the task warns): the userspace datapath has no
            egress priority queues, and this version does not program them on the kernel datapath."
        type: str
        choices: [low, medium, high]
  dhcp_isolation:
    description:
      - VMs of the port group cannot serve DHCP (or DHCPv6) to anyone, on this CNA or across the DVS (nothing from
        a server port, nothing to a client port), nor send IPv6 router advertisements.
      - "Like O(ip_mac_binding), an OpenFlow rule on the CNA's bridge: programmed by the libvirt hook of the
        M(kvmfusion.compute.cna) role when a VM port appears (also after a live migration), and at once on the
        running ports of this CNA when the setting changes."
    type: bool
    default: false
  ip_mac_binding:
    description:
      - A VM NIC of the port group sends only from its own MAC and from the addresses in its C(bound_ips) (see
        O(kvmfusion.compute.vm#module:nics)), ARP included; DHCP requests and IPv6 link-local traffic from its MAC
        pass. IPv6 neighbour discovery carries its own MAC and claims only link-local or bound addresses. A NIC
        without C(bound_ips) is bound by MAC only; with C(bound_ips=dhcp) it is bound to the addresses its guest
        leases by DHCP.
    type: bool
    default: false
  force:
    description: With O(state=absent), delete the port group even though VM NICs use it.
    type: bool
    default: false
notes:
  - The port security settings need the hook the M(kvmfusion.compute.cna) role installs on every CNA.
seealso:
  - module: kvmfusion.compute.dvs
  - module: kvmfusion.compute.portgroup_info
  - module: kvmfusion.compute.security_group
'''

EXAMPLES = r'''
- name: An access port group on VLAN 100, its VMs sending at most 100 Mbit/s
  kvmfusion.compute.portgroup:
    dvs: dvs-prod
    name: web
    vlan: 100
    shaping:
      outbound: {average: 100, peak: 200, burst: 50}

- name: A trunk port group for a router VM
  kvmfusion.compute.portgroup:
    dvs: dvs-prod
    name: router-trunk
    vlan_mode: trunk
    trunk_vlans: [100, 200, "300-310"]
    native_vlan: 1

- name: A port group whose VMs cannot serve DHCP or send from addresses they were not given
  kvmfusion.compute.portgroup:
    dvs: dvs-prod
    name: tenant
    vlan: 300
    dhcp_isolation: true
    ip_mac_binding: true

- name: Remove a port group nothing uses
  kvmfusion.compute.portgroup:
    dvs: dvs-prod
    name: old
    state: absent
'''

RETURN = r'''
portgroup:
  description: The port group as now defined (bandwidth in libvirt's KiB/s and KiB); null when absent.
  returned: always
  type: dict
  sample: {dvs: dvs-prod, name: web, vlan_mode: access, vlan: 100, outbound: {average: 12207, peak: 24414, burst: 6104},
           dhcp_isolation: false, ip_mac_binding: false}
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: ["update port group web: vlan", "set VLAN of vnet3 (VM web1)"]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.netspec import PRIORITIES, VLAN_MODES
from ansible_collections.kvmfusion.compute.plugins.module_utils.network import PortgroupManager


def main():
    argspec = dict(
        dvs=dict(type="str", required=True),
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        vlan_mode=dict(type="str", choices=list(VLAN_MODES), default="access"),
        vlan=dict(type="int"),
        trunk_vlans=dict(type="list", elements="raw"),
        native_vlan=dict(type="int"),
        shaping=dict(type="dict", options=dict(
            outbound=dict(type="dict"),
            inbound=dict(type="dict"),
            priority=dict(type="str", choices=list(PRIORITIES)),
        )),
        dhcp_isolation=dict(type="bool", default=False),
        ip_mac_binding=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
    )
    m = KvmfModule(argspec, supports_check_mode=True)
    m.run(lambda m: m.manager(PortgroupManager).converge(m.params))


if __name__ == "__main__":
    main()
