#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: host_maintenance
short_description: Put a compute node in maintenance (evacuate it) or return it
version_added: 0.5.0
description:
  - O(state=maintenance) evacuates the compute node (CNA) of O(uri).
    Every running VM is live-migrated (M(kvmfusion.compute.vm_migration)) to one of O(peers).
    The host is marked so that nothing new starts or lands there, and the result says where each VM went.
  - The plan is made before anything moves. Each running VM, largest first, goes to a peer that passes every migration
    precheck and has the most free memory left, counting the VMs already placed there. A peer in maintenance is not
    used.
  - A VM that has no destination blocks the maintenance, with its reason, before any change. With
    O(shutdown_unmovable=true) it is shut down instead (gracefully, then forced after O(shutdown_timeout) seconds).
  - Stopped VMs stay defined on the host.
  - A migration that fails leaves that VM running on the host, which stays in maintenance. The task fails, naming
    what moved and what did not, and a re-run goes on from there.
  - B(On a node of the CNAs' HA cluster) (the P(kvmfusion.compute.cna#role) role's C(cna_ha_cluster)), the VMs under HA
    that the cluster manages are moved by the cluster. The node is put in standby
    (C(crm_attribute --node NODE --name standby --update on --lifetime forever)), and the task waits for the cluster
    to move them (at most O(timeout) seconds, 600 when unset). Only the other VMs are live-migrated to O(peers).
    RV(cluster_moves) says where the cluster put each VM.
  - The standby is refused before any change when it would leave a VM under HA with nowhere to run. That is the
    case when every other node is offline or in standby, when the others are forbidden for the VM, when no other node
    has room for it (placement by utilization), or when the partition has no quorum. VMs under HA are not shut down
    by O(shutdown_unmovable).
  - A node already in standby is not changed again. With HA off (the cluster in maintenance mode), or for an
    unmanaged VM, the VMs under HA are live-migrated like the others.
    On a node of an HA cluster whose pacemaker does not run, the task is refused, because which VMs the cluster
    runs there cannot be told.
  - O(state=active) ends the maintenance, and takes the node out of standby. The VMs that left are not moved back
    by the task. The cluster may move a VM under HA back on its own, if the node is one of the VM's preferred hosts.
  - The mark is kept in the host's libvirt configuration, so it survives reboots.
    M(kvmfusion.compute.vm) and M(kvmfusion.compute.clone) refuse to start VMs on a host in maintenance,
    M(kvmfusion.compute.vm_migration) refuses to move VMs there, and M(kvmfusion.compute.host_info) reports it.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  state:
    description: V(maintenance) evacuates and marks the host; V(active) returns it.
    type: str
    choices: [maintenance, active]
    default: maintenance
  peers:
    description:
      - CNAs the VMs may go to, by inventory host name (reached the way O(uri) reaches its host) or by URI.
      - Needed when running VMs are to move.
    type: list
    elements: str
    default: []
  reason:
    description: Why the host is in maintenance (kept with the mark, reported by M(kvmfusion.compute.host_info)).
    type: str
  shutdown_unmovable:
    description: Shut down the VMs that cannot move instead of refusing the maintenance.
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds a VM that cannot move gets to shut down (O(shutdown_unmovable)) before it is powered off.
    type: int
    default: 120
  parallel:
    description: How many migrations run at once (1 to 16).
    type: int
    default: 2
  max_downtime:
    description: Maximum downtime of each live migration, in milliseconds (see M(kvmfusion.compute.vm_migration)).
    type: int
  bandwidth:
    description: Bandwidth limit of each migration, in MiB/s.
    type: int
  auto_converge:
    description: Slow down guests whose memory does not converge.
    type: bool
    default: false
  timeout:
    description:
      - Abort a migration that takes longer than this many seconds (that VM stays and blocks the maintenance).
      - On a node of the HA cluster, also how long to wait for the cluster to move the VMs under HA (600 when unset).
    type: int
  tls:
    description: Encrypt the migration streams (default as the P(kvmfusion.compute.cna#role) role set up).
    type: bool
seealso:
  - module: kvmfusion.compute.vm_migration
  - module: kvmfusion.compute.ha
'''

EXAMPLES = r'''
- name: Evacuate cna1 onto the other CNAs before patching it
  kvmfusion.compute.host_maintenance:
    state: maintenance
    peers: "{{ groups['cna'] | difference([inventory_hostname]) }}"
    reason: kernel update
    max_downtime: 300
  register: evacuated
  when: inventory_hostname == 'cna1'

- name: Show where the VMs went
  ansible.builtin.debug:
    msg: "{{ evacuated.moves | map(attribute='vm') | zip(evacuated.moves | map(attribute='to')) | list }}"
  when: inventory_hostname == 'cna1'

- name: Return cna1 to service
  kvmfusion.compute.host_maintenance:
    state: active
  when: inventory_hostname == 'cna1'
'''

RETURN = r'''
host:
  description: The host (its host name).
  returned: success
  type: str
  sample: cna1
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
  sample: ["mark cna1 in maintenance", "put cluster node cna1 in standby: the cluster moves db1", "migrate web1 to cna2"]
maintenance:
  description: The maintenance mark (since when, why); null after O(state=active) and in check mode.
  returned: success
  type: dict
  sample: {since: "2026-11-30T22:50:01Z", reason: kernel update}
moves:
  description: The VMs that moved, each with where it went and its migration's downtime, time and bytes.
  returned: success
  type: list
  elements: dict
  sample: [{vm: web1, to: cna2, downtime_ms: 25, total_time_ms: 790, transferred_bytes: 623738}]
cluster_moves:
  description: The VMs under HA that the cluster moved off the node, each with the node it runs on now. Empty in check
    mode and after O(state=active).
  returned: success
  type: list
  elements: dict
  sample: [{vm: db1, to: cna3}]
standby:
  description: Whether the node is in standby in the HA cluster after the task; null when the host is not a node of one.
  returned: success
  type: bool
  sample: true
shut_down:
  description: VMs shut down because they could not move (O(shutdown_unmovable)).
  returned: success
  type: list
  elements: str
  sample: []
total_time_ms:
  description: Time the evacuation took.
  returned: success
  type: int
  sample: 2140
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.maintenance import STATES, MaintenanceManager


def _run(m):
    peers = m.peer_clients(m.params["peers"], readonly=False)
    return MaintenanceManager(m.client, peers, check_mode=m.check_mode, run_command=m.run_command).converge(m.params)


def main():
    argspec = dict(
        state=dict(type="str", choices=list(STATES), default="maintenance"),
        peers=dict(type="list", elements="str", default=[]),
        reason=dict(type="str"),
        shutdown_unmovable=dict(type="bool", default=False),
        shutdown_timeout=dict(type="int", default=120),
        parallel=dict(type="int", default=2),
        max_downtime=dict(type="int"),
        bandwidth=dict(type="int"),
        auto_converge=dict(type="bool", default=False),
        timeout=dict(type="int"),
        tls=dict(type="bool"),
    )
    KvmfModule(argspec, supports_check_mode=True).run(_run)


if __name__ == "__main__":
    main()
