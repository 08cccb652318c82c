#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: security_group_info
short_description: Report the security groups of a compute node and the NICs in them
version_added: 0.2.0
description:
  - Lists the security groups defined on this CNA (or one of them) with their rules and the VM NICs of this CNA in
    each, running or not.
  - Runs on the CNA itself (a local O(uri)); Open vSwitch is read with C(ovs-vsctl) on the host.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options:
  name:
    description: Report only this group (an empty list when this CNA does not have it).
    type: str
seealso:
  - module: kvmfusion.compute.security_group
'''

EXAMPLES = r'''
- name: Read the security groups of each CNA
  kvmfusion.compute.security_group_info:
  register: groups_of_cna

- name: Show the NICs in group web
  ansible.builtin.debug:
    msg: "{{ groups_of_cna.security_groups | selectattr('name', 'equalto', 'web') | map(attribute='nics') | list }}"
'''

RETURN = r'''
security_groups:
  description: The groups of this CNA, by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Group name.
      type: str
      sample: web
    rules:
      description: Its rules in canonical form (ports as [low, high] ranges).
      type: list
      elements: dict
      sample: [{direction: in, protocol: tcp, ports: [[22, 22]]}]
    nics:
      description: The NICs of this CNA's VMs in the group.
      type: list
      elements: dict
      sample: [{vm: web1, mac: "52:54:00:12:34:56"}]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils import portsec
from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.network import security_group_users, security_state


def run(m):
    if m.params["name"]:
        portsec.validate_group_name(m.params["name"])
    mgr = m.manager(Manager)
    mgr.need_local("reading security groups from Open vSwitch")
    groups = security_state(mgr)["groups"]
    out = []
    for name in sorted(groups):
        if m.params["name"] and name != m.params["name"]:
            continue
        out.append({"name": name, "rules": groups[name],
                    "nics": [{"vm": vm, "mac": mac} for vm, mac in security_group_users(m.client, name)]})
    m.exit(changed=False, security_groups=out)


def main():
    m = KvmfModule(dict(name=dict(type="str")), supports_check_mode=True, readonly=True)
    m.run(run)


if __name__ == "__main__":
    main()
