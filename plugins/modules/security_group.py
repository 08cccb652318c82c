#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: security_group
short_description: Manage a security group of VM NICs on distributed virtual switches
version_added: 0.2.0
description:
  - A security group is a named, stateful rule set for the VM NICs in it (a NIC joins one group at most, with
    C(security_group) in O(kvmfusion.compute.vm#module:nics)). Inbound traffic is denied unless a rule allows it;
    outbound traffic is allowed unless the group has outbound rules, and then only what they allow. Replies to
    allowed traffic and related ICMP errors always pass (connection tracking).
  - The rules are OpenFlow rules with Open vSwitch conntrack on the CNA's DVS bridges, programmed for each member
    port by the libvirt hook of the M(kvmfusion.compute.cna) role when the port appears (also after a live
    migration); a change of rules reaches the running members' ports of this CNA at once.
  - Runs on the CNA itself (a local O(uri)), on every CNA where members run or may run.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  name:
    description: Group name (letters, digits, C(_), C(.), C(-)).
    type: str
    required: true
  state:
    description: Whether the group should exist.
    type: str
    choices: [present, absent]
    default: present
  rules:
    description:
      - The whole rule set (authoritative). An empty list denies all inbound traffic and allows all outbound.
    type: list
    elements: dict
    default: []
    suboptions:
      direction:
        description: V(in) (to the member NICs) or V(out) (from them).
        type: str
        choices: [in, out]
        default: in
      protocol:
        description: V(any), V(tcp), V(udp), V(icmp) or V(icmpv6).
        type: str
        default: any
      ports:
        description: Destination ports (numbers or ranges like C(8000-8080)); for V(tcp) and V(udp) only.
        type: list
        elements: raw
      icmp_type:
        description: ICMP type (0-255); for V(icmp) and V(icmpv6) only.
        type: int
      remote_cidr:
        description: The remote end's address or network (IPv4 or IPv6); all addresses when left out.
        type: str
      remote_group:
        description:
          - The remote end is a NIC of this security group (it may be the group itself), matched by the members'
            C(bound_ips). Members are read from the VM definitions of this CNA and of O(peers) when the task runs;
            a NIC that joins the group later counts once the task runs again (a play that declares the VMs and
            then the groups converges in one run). A member without C(bound_ips) cannot be matched (the task warns).
          - Not with O(rules[].remote_cidr).
        type: str
  peers:
    description:
      - The other CNAs whose VMs may be members of a group named by a O(rules[].remote_group) rule, by inventory
        host name (reached like O(uri), over SSH by default) or as libvirt URIs. Required with such a rule; an empty
        list means this CNA only.
    type: list
    elements: str
  force:
    description:
      - With O(state=absent), delete the group even though NICs are in it. Their running ports keep its last rules;
        they cannot start on this CNA until they join a group it has.
    type: bool
    default: false
notes:
  - Needs the hook the M(kvmfusion.compute.cna) role installs on every CNA.
seealso:
  - module: kvmfusion.compute.security_group_info
  - module: kvmfusion.compute.portgroup
  - module: kvmfusion.compute.vm
'''

EXAMPLES = r'''
- name: Web servers take SSH from the admin network and HTTP(S) from anywhere
  kvmfusion.compute.security_group:
    name: web
    rules:
      - {protocol: tcp, ports: [22], remote_cidr: 10.77.0.0/24}
      - {protocol: tcp, ports: [80, 443]}
      - {protocol: icmp, icmp_type: 8}

- name: A database that may only talk to its subnet
  kvmfusion.compute.security_group:
    name: db
    rules:
      - {protocol: tcp, ports: ["5432"], remote_cidr: 192.0.2.0/24}
      - {direction: out, remote_cidr: 192.0.2.0/24}

- name: Application servers take TCP/8080 from the web group's NICs, wherever they run
  kvmfusion.compute.security_group:
    name: app
    rules:
      - {protocol: tcp, ports: [8080], remote_group: web}
    peers: "{{ groups['cna'] | difference([inventory_hostname]) }}"

- name: Remove a group no NIC is in
  kvmfusion.compute.security_group:
    name: old
    state: absent
'''

RETURN = r'''
security_group:
  description: The group as now defined (rules in canonical form and order); null when absent.
  returned: always
  type: dict
  sample: {name: app, rules: [{direction: in, protocol: tcp, ports: [[8080, 8080]], remote_group: web,
                               remote_ips: [192.0.2.15, 192.0.2.16]}]}
ports:
  description: How many running member ports of this CNA were given the new rules.
  returned: always
  type: int
  sample: 2
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: ["update security group web (3 rules)", "program port security of vnet4 (VM web1)"]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.network import SecurityGroupManager


def main():
    argspec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        rules=dict(type="list", elements="dict", default=[], options=dict(
            direction=dict(type="str", choices=["in", "out"], default="in"),
            protocol=dict(type="str", default="any"),
            ports=dict(type="list", elements="raw"),
            icmp_type=dict(type="int"),
            remote_cidr=dict(type="str"),
            remote_group=dict(type="str"),
        )),
        peers=dict(type="list", elements="str"),
        force=dict(type="bool", default=False),
    )
    m = KvmfModule(argspec, supports_check_mode=True)

    def run(m):
        params = dict(m.params)
        params["rules"] = [dict((k, v) for k, v in r.items() if v is not None) for r in params["rules"] or []]
        return m.manager(SecurityGroupManager).converge(params, peers=m.peer_clients(params.get("peers")))
    m.run(run)


if __name__ == "__main__":
    main()
