#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: dvs
short_description: Manage a distributed virtual switch (Open vSwitch) on compute nodes
version_added: 0.2.0
description:
  - A distributed virtual switch (DVS) is an Open vSwitch bridge of the same name on every CNA the play runs on,
    its uplink to the physical network, and a libvirt network of that name forwarding to the bridge, started and
    autostarted. VM NICs join it through port groups (M(kvmfusion.compute.portgroup)).
  - The uplink is one NIC, or a bond of several (O(bond_mode), O(lacp)). Changing the uplinks is one Open vSwitch
    transaction that touches no VM port, so running VMs keep their ports (traffic pauses only while the uplink
    itself changes).
  - O(state=absent) removes the network and the bridge; it refuses while VM NICs on this CNA use the DVS, naming
    the VMs, unless O(force=true).
  - Runs on the CNA itself (a local O(uri)); Open vSwitch is configured with C(ovs-vsctl) on the host.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  name:
    description:
      - DVS name, also the name of the OVS bridge and of the libvirt network (a Linux interface name, at most 15
        characters).
    type: str
    required: true
  state:
    description: Whether the DVS should exist on this CNA.
    type: str
    choices: [present, absent]
    default: present
  uplinks:
    description:
      - Host NICs that connect the DVS to the physical network. One NIC is added as it is; two or more form a
        bond. An empty list removes the uplink (a DVS local to the CNA). Omitted, the uplinks are not managed.
    type: list
    elements: str
  bond_mode:
    description: Load balancing of a bond (two or more uplinks). V(balance-tcp) needs O(lacp).
    type: str
    choices: [active-backup, balance-slb, balance-tcp]
  lacp:
    description: LACP negotiation of a bond with the physical switch.
    type: str
    choices: ['off', active, passive]
  mtu:
    description: MTU of the uplink NICs.
    type: int
  force:
    description: With O(state=absent), remove the DVS even though VM NICs use it (they are left without a network).
    type: bool
    default: false
seealso:
  - module: kvmfusion.compute.dvs_info
  - module: kvmfusion.compute.portgroup
'''

EXAMPLES = r'''
- name: A DVS on every CNA, uplinked through eth1
  kvmfusion.compute.dvs:
    name: dvs-prod
    uplinks: [eth1]

- name: The same DVS on a bond of two NICs with LACP
  kvmfusion.compute.dvs:
    name: dvs-prod
    uplinks: [eth1, eth2]
    bond_mode: balance-tcp
    lacp: active
    mtu: 9000

- name: Remove a DVS nothing uses any more
  kvmfusion.compute.dvs:
    name: dvs-old
    state: absent
'''

RETURN = r'''
dvs:
  description: The DVS on this CNA (see M(kvmfusion.compute.dvs_info)); null when absent or only planned in check mode.
  returned: always
  type: dict
  sample:
    name: dvs-prod
    bridge: true
    datapath: netdev
    uplinks: [eth1]
    uplink_port: eth1
    bond_mode: null
    lacp: null
    mtu: null
    network: {active: true, autostart: true, dvs: true}
    portgroups: [web]
    vms: [web1]
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: ["create OVS bridge dvs-prod (netdev datapath)", "set uplinks none -> eth1",
           "define network dvs-prod on OVS bridge dvs-prod", "autostart network dvs-prod", "start network dvs-prod"]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.netspec import BOND_MODES, LACP_MODES
from ansible_collections.kvmfusion.compute.plugins.module_utils.network import DvsManager


def main():
    argspec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        uplinks=dict(type="list", elements="str"),
        bond_mode=dict(type="str", choices=list(BOND_MODES)),
        lacp=dict(type="str", choices=list(LACP_MODES)),
        mtu=dict(type="int"),
        force=dict(type="bool", default=False),
    )
    m = KvmfModule(argspec, supports_check_mode=True)
    m.run(lambda m: m.manager(DvsManager).converge(m.params))


if __name__ == "__main__":
    main()
