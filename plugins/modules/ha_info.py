#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: ha_info
short_description: Report the CNAs' HA cluster, its quorum, fencing and HA VMs
version_added: 0.1.0
description:
  - Reads the HA cluster the C(cna) role forms (O(kvmfusion.compute.cna#role:main:cna_ha_cluster)) on the CNA the
    task runs on, with pacemaker's and corosync's own tools (C(crm_mon), C(cibadmin), C(corosync-quorumtool)).
  - Reports the nodes, the quorum and its device (the VRM's arbiter), each fencing device with the host it fences
    and the last fencing action against that host, and the VMs under HA with the host they run on, their restart
    priority and failure counts.
  - On a host where pacemaker does not run, reports C(running=false) and nothing else; that is not an error.
  - Read-only. It opens no libvirt connection.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.attributes.info_module
options:
  uri:
    description:
      - Accepted so that C(module_defaults) of the group C(kvmfusion.compute.all) apply to this module too.
      - The cluster's tools run on the CNA the module runs on, so only a URI of that CNA (V(qemu:///system)) is
        accepted; a remote one is refused in one line.
    type: str
    aliases: [libvirt_uri]
notes:
  - Run it on a CNA of the cluster (any of them gives the same view while it has quorum; a CNA without quorum
    reports C(quorate=false)).
seealso:
  - name: Pacemaker Explained, fencing
    description: How pacemaker fences a node it has lost.
    link: https://clusterlabs.org/projects/pacemaker/doc/2.1/Pacemaker_Explained/html/fencing.html
'''

EXAMPLES = r'''
- name: Read the HA cluster from the first CNA
  kvmfusion.compute.ha_info:
  register: ha
  run_once: true

- name: Refuse to go on without a quorate cluster whose arbiter votes
  ansible.builtin.assert:
    that:
      - ha.cluster.quorate
      - ha.cluster.quorum.device.votes == 1
    fail_msg: the HA cluster has no quorum or its arbiter does not vote
  when: ha.cluster.running

- name: Show where each HA VM runs
  ansible.builtin.debug:
    msg: "{{ ha.cluster.vms | items2dict(key_name='name', value_name='hosts') }}"
  when: ha.cluster.running
'''

RETURN = r'''
cluster:
  description: The cluster as this CNA sees it.
  returned: success
  type: dict
  contains:
    running:
      description:
        - Whether pacemaker runs on this CNA (and has started its daemons). The other keys are absent when it is
          V(false).
      type: bool
      sample: true
    quorate:
      description: Whether this CNA's partition has quorum.
      type: bool
      sample: true
    dc:
      description: The node coordinating the cluster (pacemaker's designated controller).
      type: str
      sample: cna1
    stonith_enabled:
      description: Whether fencing is on (the C(cna) role turns it on once every CNA has a fencing device).
      type: bool
      sample: true
    no_quorum_policy:
      description: What a partition without quorum does with its resources.
      type: str
      sample: stop
    quorum:
      description:
        - corosync's votes and flags, and the quorum device's votes now and as configured (C(device) is null without a
          quorum device; C(votes) 0 with C(configured_votes) 1 means this node does not get the arbiter's vote).
      type: dict
      sample: {expected_votes: 3, total_votes: 3, quorum: 2, flags: [Quorate, WaitForAll, Qdevice],
               device: {votes: 1, configured_votes: 1}}
    nodes:
      description:
        - The cluster's nodes. A node is a full member when C(online) and neither C(pending) (still joining) nor
          C(standby).
      type: list
      elements: dict
      sample:
        - {name: cna1, online: true, standby: false, pending: false, maintenance: false, unclean: false, is_dc: true,
           resources_running: 1}
    fencing:
      description:
        - One entry per fencing device, with the host it fences (C(target)), where it runs (never on its target),
          and the last fencing action against that target known to the cluster (null if none).
      type: list
      elements: dict
      sample:
        - id: kvmfusion-fence-cna2
          agent: stonith:fence_redfish
          target: cna2
          role: Started
          running_on: [cna1]
          last: {action: reboot, status: success, delegate: cna1, origin: cna1, completed: "2026-12-01 20:02:46Z"}
    vms:
      description:
        - The VMs under HA (pacemaker C(VirtualDomain) resources), with the hosts they run on (one when all is well),
          their restart priority (C(high), C(medium), C(low), or the number pacemaker holds) and failure counts per
          host.
      type: list
      elements: dict
      sample:
        - {name: web1, resource: kvmfusion-vm-web1, role: Started, hosts: [cna2], priority: high, failcounts: {}}
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.cluster import Cluster, ha_summary


def main():
    km = KvmfModule(argument_spec={}, supports_check_mode=True, readonly=True, libvirt=False)
    km.run(lambda m: m.exit(changed=False, cluster=ha_summary(Cluster(m.run_command))))


if __name__ == "__main__":
    main()
