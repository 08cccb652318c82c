#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: ha
short_description: VM high availability on the CNAs' cluster, and the cluster's HA settings
version_added: 0.1.0
description:
  - Works on the pacemaker cluster the C(cna) role forms (O(kvmfusion.compute.cna#role:main:cna_ha_cluster)), from
    any of its CNAs that has quorum. The cluster already fences a lost CNA through its BMC before anything of it
    is restarted elsewhere.
  - With O(name), puts one VM under HA (O(state=present)) or takes it out (O(state=absent)). A VM under HA is a
    pacemaker C(ocf:heartbeat:VirtualDomain) resource started from the VM's definition copy beside its system
    disk. When its CNA fails, it is restarted on another CNA, highest O(priority) first. It live-migrates when
    the cluster moves it (a preferred host coming back). Every disk image must be on a shared datastore.
  - A VM is put under HA as it is. A running VM is found running where it is and keeps running; a stopped VM
    stays stopped. A paused or suspended VM is refused. The VM's libvirt autostart is turned off, because the
    cluster starts it. Taken out of HA, a running VM keeps running where it is, defined persistently there; a
    stopped one is defined on the CNA the task runs on.
  - Once the VM is under HA, its definition copy is the VM. A CNA's own definition is read only while the VM runs
    there, because a definition left behind by a failover may be older.
  - With O(cluster), sets the cluster's HA settings. These are HA on or off, the host isolation response,
    placement, and admission control. Admission control keeps capacity free for host failures, through pacemaker
    utilization. A VM that would use the capacity kept free is refused, with the numbers.
  - Shutting idle hosts down (the seed platform's DPM) is not done; it is a later step.
  - A VM with snapshots is refused (the cluster restarts a VM under HA as a transient domain, where snapshots do not
    survive); so are, while it is under HA, snapshots, reverts, linked clones, disk attachments and disk moves
    of it.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  name:
    description:
      - The VM to put under HA or take out of it. Give it or O(cluster), not both.
      - Put it under HA from the CNA where it is defined. Later runs work from any CNA that sees its datastore.
    type: str
  state:
    description:
      - V(present) puts the VM under HA with these settings. V(absent) takes it out and leaves it running where it
        runs.
    type: str
    choices: [present, absent]
    default: present
  priority:
    description:
      - Restart priority. When capacity is short after a failure, pacemaker starts V(high) VMs first and leaves
        V(low) ones stopped first.
    type: str
    choices: [high, medium, low]
    default: medium
  preferred_hosts:
    description:
      - CNAs the VM should run on when one of them is up. When one comes back, the VM live-migrates there.
    type: list
    elements: str
    default: []
  forbidden_hosts:
    description:
      - CNAs the VM must never run on. Forbidding every node of the cluster is refused.
    type: list
    elements: str
    default: []
  max_restarts:
    description:
      - Failures on one CNA before the VM is moved off it (pacemaker's C(migration-threshold)).
    type: int
    default: 3
  failure_timeout:
    description:
      - Seconds after which a failure is forgotten (pacemaker's C(failure-timeout)).
    type: int
    default: 600
  guest_monitor:
    description:
      - Detect guest failures through the QEMU guest agent. The cluster pings it every 10 seconds. A guest
        that stops answering is restarted, and so is a hung guest.
      - The guest must run the agent. Turning this on is refused when the VM has no agent channel or, running, its
        agent does not answer. The first start waits for the agent, within O(start_timeout).
    type: bool
    default: false
  start_timeout:
    description: Seconds a start may take, guest agent included with O(guest_monitor).
    type: int
    default: 120
  stop_timeout:
    description:
      - Seconds a stop by the cluster may take (including one asked through M(kvmfusion.compute.vm)). The agent
        powers the VM off when its shutdown has not ended 5 seconds before that.
    type: int
    default: 120
  migrate_timeout:
    description: Seconds a live migration may take.
    type: int
    default: 120
  timeout:
    description:
      - Seconds to wait for the cluster to carry out a change (the VM found, started or moved) before the task
        returns.
    type: int
    default: 120
  cluster:
    description:
      - The cluster's HA settings. Give it or O(name), not both. A setting that is left out is not changed.
    type: dict
    suboptions:
      enabled:
        description:
          - HA on or off. Off puts pacemaker in maintenance mode. It then neither watches nor restarts any VM,
            and VMs can be handled directly.
        type: bool
      isolation_response:
        description:
          - What the CNAs of a partition without quorum do with their HA VMs.
          - V(stop) stops them, so that the partition with quorum can restart them. This is safe with shared
            disks.
          - V(freeze) keeps them running but does not recover them.
        type: str
        choices: [stop, freeze]
      placement:
        description:
          - V(balanced) spreads HA VMs by their vCPUs and memory over the CNAs' capacity (the seed's DRS, at
            start and after failures).
          - V(default) uses no capacity unless admission control is on. With admission control on, capacity is
            still enforced.
        type: str
        choices: [balanced, default]
      admission_control:
        description:
          - Capacity kept free for host failures. Every VM under HA counts, stopped ones included, since the
            cluster may start them at any time.
        type: dict
        suboptions:
          enabled:
            description: Admission control on or off.
            type: bool
            default: true
          host_failures:
            description:
              - Keep room for this many CNA failures. The largest CNAs count as the failed ones.
              - When neither this nor O(cluster.admission_control.percentage) is given, the stored policy is kept,
                or 1 when none is stored.
            type: int
          percentage:
            description:
              - Instead of O(cluster.admission_control.host_failures), keep this percentage of the cluster's
                capacity free.
            type: int
          vcpu_ratio:
            description:
              - vCPUs a CNA may run per host CPU. A CNA's capacity is its CPUs times this, and all its memory.
              - Left out, the stored ratio is kept (4 when none is stored).
              - A CNA's memory as its kernel reports it moves a little while it runs (a balloon, hot-plug, reserved
                memory). The stored memory capacity is kept while the reading stays within 5% of it and within
                512 MiB, so a re-run changes nothing. A larger change is stored.
            type: float
notes:
  - Run it on a CNA of the cluster. It touches files only there (the definition copy of a VM defined on that
    CNA), so O(uri) must be local for O(name).
  - Under HA, a VM's power state and moves belong to the cluster. M(kvmfusion.compute.vm) starts, stops and
    restarts it through the cluster. M(kvmfusion.compute.vm_migration) and M(kvmfusion.compute.host_maintenance)
    do not go through the cluster yet. Move a VM under HA with pacemaker (C(crm_resource --move)) or with
    O(preferred_hosts), or take it out of HA first.
seealso:
  - module: kvmfusion.compute.ha_info
  - name: resource-agents VirtualDomain
    description: The resource agent that runs a VM under HA.
    link: https://github.com/ClusterLabs/resource-agents/blob/main/heartbeat/VirtualDomain
'''

EXAMPLES = r'''
- name: Keep room for one CNA failure and spread VMs by load
  kvmfusion.compute.ha:
    cluster:
      enabled: true
      isolation_response: stop
      placement: balanced
      admission_control:
        host_failures: 1
  run_once: true

- name: Put the database VM under HA, restarted first, watched through its guest agent
  kvmfusion.compute.ha:
    name: db1
    priority: high
    guest_monitor: true
    preferred_hosts: [cna1]
    max_restarts: 3
    failure_timeout: 600

- name: Take a VM out of HA (it keeps running where it is)
  kvmfusion.compute.ha:
    name: db1
    state: absent
'''

RETURN = r'''
vm:
  description: The VM's HA as it is after the task (with O(name)).
  returned: when name is given
  type: dict
  sample:
    name: db1
    ha: true
    resource: kvmfusion-vm-db1
    priority: high
    max_restarts: 3
    failure_timeout: 600
    guest_monitor: true
    preferred_hosts: [cna1]
    forbidden_hosts: []
    definition: /srv/kvmfusion/shared/ds1/.db1~vm.xml
    vcpus: 2
    memory_mib: 2048
    target_role: Started
cluster:
  description: The cluster's HA settings after the task (with O(cluster)).
  returned: when cluster is given
  type: dict
  sample:
    enabled: true
    isolation_response: stop
    placement: balanced
    admission_control: {enabled: true, host_failures: 1, percentage: null, vcpu_ratio: 4.0}
    capacity: {cna1: {cpu: "8", hv_memory: "7936"}, cna2: {cpu: "8", hv_memory: "7936"}}
actions:
  description: What was done, or would be done in check mode, in order.
  returned: always
  type: list
  elements: str
  sample: ["put VM db1 under HA (resource kvmfusion-vm-db1, started)", "prefer host cna1 for VM db1"]
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.ha import HaManager


def _run(km):
    for key in ("max_restarts", "failure_timeout", "start_timeout", "stop_timeout", "migrate_timeout", "timeout"):
        if km.params[key] < 1:
            km.fail("%s must be at least 1, not %s" % (key, km.params[key]))
    if km.params.get("name"):
        km.validate_name(km.params["name"], kind="VM")
    # other CNAs: the capacity of each (cluster settings), or defining a VM taken out of HA where it runs
    mgr = km.manager(HaManager, peers=lambda hosts: km.peer_clients(hosts, readonly=False), timeout=km.params["timeout"])
    return mgr.converge(km.params)


def main():
    argspec = dict(
        name=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        priority=dict(type="str", choices=["high", "medium", "low"], default="medium"),
        preferred_hosts=dict(type="list", elements="str", default=[]),
        forbidden_hosts=dict(type="list", elements="str", default=[]),
        max_restarts=dict(type="int", default=3),
        failure_timeout=dict(type="int", default=600),
        guest_monitor=dict(type="bool", default=False),
        start_timeout=dict(type="int", default=120),
        stop_timeout=dict(type="int", default=120),
        migrate_timeout=dict(type="int", default=120),
        timeout=dict(type="int", default=120),
        cluster=dict(type="dict", options=dict(
            enabled=dict(type="bool"),
            isolation_response=dict(type="str", choices=["stop", "freeze"]),
            placement=dict(type="str", choices=["balanced", "default"]),
            admission_control=dict(type="dict", options=dict(
                enabled=dict(type="bool", default=True),
                host_failures=dict(type="int"),
                percentage=dict(type="int"),
                vcpu_ratio=dict(type="float"),
            ), mutually_exclusive=[("host_failures", "percentage")]),
        )),
    )
    KvmfModule(argspec, supports_check_mode=True, mutually_exclusive=[("name", "cluster")],
               required_one_of=[("name", "cluster")]).run(_run)


if __name__ == "__main__":
    main()
