#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: vm_migration
short_description: Move a VM to another compute node, live or stopped
version_added: 0.5.0
description:
  - Moves VM O(name) from the compute node (CNA) of O(uri) to the CNA of O(dest_host) or O(dest_uri).
    Afterwards the VM is defined on the destination and undefined on the source.
  - B(Live) migration of a running (or paused) VM copies its memory while it runs. It goes round after round
    until what is left fits in O(max_downtime); then the VM pauses, the rest is copied, and the VM resumes on
    the destination. libvirt drives it peer to peer from the source, so a lost controller does not strand it.
  - B(Cold) migration of a stopped VM moves its definition.
  - Disks on a datastore both CNAs share (a O(kvmfusion.compute.datastore#module:shared=true) datastore with the same UUID on both)
    stay where they are. Disks on a datastore the destination does not share are copied during a live
    migration (O(storage=copy)). The destination's datastore of the same name receives them. The source's
    images are deleted once the VM runs on the destination.
  - Every prerequisite is checked before anything moves, and each failure is one line.
    The VM's CPU model must run on the destination. The destination needs free memory and enough CPUs.
    It needs the VM's datastores, switches, port groups and raw device mappings.
    No disk may be independent-nonpersistent when the VM moves live.
  - libvirt refuses to migrate a VM with snapshots. Their metadata moves with the VM, and the destination gets
    the same snapshot tree and current snapshot.
  - A failed or aborted migration (O(timeout)) leaves the VM running on its source, with its snapshots.
    The partial copies of its disks on the destination are removed.
    If the destination dies mid-copy, they are removed when it boots again, by the cleanup the
    P(kvmfusion.compute.cna#role) role installs (each copy target is announced by a marker file first).
  - A VM that is already on the destination is not changed.
  - B(A VM under HA) (M(kvmfusion.compute.ha)) on the cluster of the CNA of O(uri), which the cluster manages, is
    moved by the cluster, not behind its back. The task runs C(crm_resource --move) to the destination's cluster node
    (the node named as the destination's host name), waits for the cluster to settle (at most O(timeout) seconds,
    600 when unset), reads where the VM runs, and then runs C(crm_resource --clear), so that no move constraint
    stays. The VM stays on the destination afterwards, held there by its resource stickiness.
    The result says RV(through_cluster=true) and the actions say C(moved by the cluster).
  - For a VM under HA, these are refused before any change, each in one line. A destination its C(forbidden_hosts)
    hold, or any other rule bans it from. A destination outside its C(preferred_hosts), if it has some, because the
    cluster would move it back; change them with M(kvmfusion.compute.ha) first. A disk copy (O(storage=copy), or
    a disk the destination does not share), because HA VMs live on shared datastores. A VM with snapshots, because
    libvirt refuses to migrate it and the cluster would restart it instead. A destination node that is offline or
    in standby, and a partition without quorum.
  - A stopped VM under HA is refused as well, because there is nothing to move. The cluster starts it on the node
    it picks. Set its C(preferred_hosts) to choose that node.
  - The cluster's migration uses its own settings (M(kvmfusion.compute.ha)'s C(migrate_timeout), the transport the
    P(kvmfusion.compute.cna#role) role set up). O(max_downtime), O(bandwidth), O(auto_converge), O(post_copy),
    O(parallel_connections), O(compression) and O(tls) are not used for it, and a warning says so.
  - With HA off (the cluster in maintenance mode), or for an unmanaged VM, the VM is moved directly.
    On a node of an HA cluster the P(kvmfusion.compute.cna#role) role formed whose pacemaker does not run, the task
    is refused, because whether the VM is under HA and where it runs cannot be told there.
  - The result reports the downtime, total time and bytes transferred, as QEMU measured them.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.connection.dest
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  name:
    description: The VM.
    type: str
    required: true
  mode:
    description:
      - V(live) for a running or paused VM, V(cold) for a stopped one. V(auto) picks by the VM's state.
      - A VM suspended to disk is refused, because its saved state is on the source's disk.
    type: str
    choices: [auto, live, cold]
    default: auto
  storage:
    description:
      - V(shared) refuses unless every disk is on a datastore both CNAs share.
      - V(copy) copies the disks on datastores the destination does not share (only during a live migration).
      - V(auto) copies what is not shared.
      - A disk that is a chain of images (snapshots, a linked clone) is not copied, because a copy would flatten it.
        Such a migration is refused.
    type: str
    choices: [auto, shared, copy]
    default: auto
  max_downtime:
    description:
      - The longest pause, in milliseconds, the guest may see at the switch-over. QEMU's default is 300.
      - Set before the migration starts; the memory copy goes on until what is left fits in it, or the migration
        is aborted by O(timeout). Use O(auto_converge) or O(post_copy) for guests that dirty memory fast.
    type: int
  bandwidth:
    description: Bandwidth limit of the migration stream, in MiB/s.
    type: int
  auto_converge:
    description: Slow the guest's vCPUs down when its memory does not converge.
    type: bool
    default: false
  post_copy:
    description:
      - Allow post-copy. After O(post_copy_after) memory rounds, the VM runs on the destination, and the pages it
        has not received yet are fetched on demand.
      - The guest is then split between the two hosts until the copy ends. A network failure then loses the VM.
    type: bool
    default: false
  post_copy_after:
    description: Memory copy rounds before the switch to post-copy (default 2).
    type: int
  parallel_connections:
    description: Use this many parallel connections for the migration stream.
    type: int
  compression:
    description:
      - Compress the migration stream. V(xbzrle) sends deltas of pages that changed; V(mt) is multithreaded compression.
      - V(zlib) and V(zstd) need O(parallel_connections) and a QEMU that has them.
    type: str
    choices: [none, xbzrle, mt, zlib, zstd]
    default: none
  timeout:
    description:
      - Abort a live migration that takes longer than this many seconds. The VM keeps running on its source.
      - For a VM under HA, how long to wait for the cluster to move it (600 when unset). The move constraint is
        cleared either way, and the task fails if the VM does not run on the destination by then.
    type: int
  tls:
    description:
      - Encrypt the migration stream with the CNAs' libvirt TLS certificates.
      - The default is what the P(kvmfusion.compute.cna#role) role set up (C(migration_transport) in the CNA's facts).
    type: bool
notes:
  - Run the task on the source CNA; the destination is reached from there, the way O(uri) reaches its host.
  - The cluster of the CNA is asked only when O(uri) reaches the host the task runs on (the default).
  - Security groups and port security need the destination's cna role hook. It refuses the VM's start there
    when a NIC's security group is unknown on that CNA, and the migration then fails with the VM on its source.
seealso:
  - module: kvmfusion.compute.cluster_cpu_info
  - module: kvmfusion.compute.ha
  - name: libvirt migration
    description: How libvirt migrates domains.
    link: https://libvirt.org/migration.html
'''

EXAMPLES = r'''
- name: Move web1, running, to cna2 with at most 100 ms of downtime
  kvmfusion.compute.vm_migration:
    name: web1
    dest_host: cna2
    max_downtime: 100
  register: moved

- name: Show what the guest saw
  ansible.builtin.debug:
    msg: "{{ moved.vm }} is on {{ moved.host }}; paused {{ moved.migration.downtime_ms | default('-') }} ms"

- name: Move db1 back, converging a busy guest, never longer than 10 minutes
  kvmfusion.compute.vm_migration:
    name: db1
    dest_host: "{{ inventory_hostname }}"
    auto_converge: true
    bandwidth: 1000
    timeout: 600
  delegate_to: cna2

- name: Move a stopped VM's definition
  kvmfusion.compute.vm_migration:
    name: old1
    dest_host: cna2
    mode: cold

- name: Move web1 back in the background
  kvmfusion.compute.vm_migration:
    name: web1
    dest_host: "{{ inventory_hostname }}"
  delegate_to: cna2
  async: 600
  poll: 0
  register: moving

- name: Follow it (vm_info on the source reports the migration job, with percent, until it ends)
  kvmfusion.compute.vm_info:
    name: web1
  delegate_to: cna2
  register: progress
  until: progress.vms == [] or progress.vms[0].job is none
  retries: 600
  delay: 2

- name: Collect the result
  ansible.builtin.async_status:
    jid: "{{ moving.ansible_job_id }}"
  delegate_to: cna2
  register: moved_back
  until: moved_back.finished | bool
  retries: 30
  delay: 1
'''

RETURN = r'''
vm:
  description: The VM.
  returned: success
  type: str
  sample: web1
host:
  description: The CNA the VM is on now (its host name).
  returned: success
  type: str
  sample: cna2
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
  sample: ["live-migrate to cna2 (shared storage)"]
through_cluster:
  description: Whether the VM is under HA and the cluster moved it (or would, in check mode, or has it there already).
  returned: success
  type: bool
  sample: false
migration:
  description: The migration that was made; null when nothing moved (already there, or check mode).
  returned: success
  type: dict
  contains:
    mode:
      description: V(live) or V(cold).
      type: str
      sample: live
    storage:
      description: V(shared) (the disks stayed) or V(copy) (they were copied).
      type: str
      sample: shared
    source:
      description: The CNA the VM left.
      type: str
      sample: cna1
    destination:
      description: The CNA the VM is on.
      type: str
      sample: cna2
    through_cluster:
      description: Whether the cluster moved the VM. Its figures are then null, except RV(migration.total_time_ms).
      type: bool
      sample: false
    downtime_ms:
      description: How long the guest was paused at the switch-over, as QEMU measured it; null for a cold migration.
      type: int
      sample: 25
    total_time_ms:
      description: Time the migration took.
      type: int
      sample: 790
    setup_time_ms:
      description: Time before the first byte moved.
      type: int
      sample: 1
    transferred_bytes:
      description: Bytes sent (memory and disks).
      type: int
      sample: 623738
    memory_bytes:
      description: Memory bytes sent.
      type: int
      sample: 623738
    disk_bytes:
      description: Disk bytes copied (with O(storage=copy)).
      type: int
      sample: 0
    memory_iterations:
      description: Rounds of memory copy.
      type: int
      sample: 2
    post_copy_used:
      description: Whether the migration switched to post-copy.
      type: bool
      sample: false
    snapshots:
      description: Snapshots whose metadata moved with the VM.
      type: list
      elements: str
      sample: [before-upgrade]
    options:
      description: The options used (max_downtime, bandwidth, auto_converge, post_copy, parallel_connections, compression,
        tls, unsafe).
      type: dict
      sample: {max_downtime: 100, bandwidth: null, auto_converge: false, post_copy: false, parallel_connections: null,
               compression: none, tls: false, unsafe: true}
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.migration import COMPRESSION, MODES, STORAGE, MigrationManager


def _run(m):
    mgr = MigrationManager(m.client, m.dest_client, check_mode=m.check_mode, run_command=m.run_command)
    return mgr.converge(m.params)


def main():
    argspec = dict(
        name=dict(type="str", required=True),
        mode=dict(type="str", choices=list(MODES), default="auto"),
        storage=dict(type="str", choices=list(STORAGE), default="auto"),
        max_downtime=dict(type="int"),
        bandwidth=dict(type="int"),
        auto_converge=dict(type="bool", default=False),
        post_copy=dict(type="bool", default=False),
        post_copy_after=dict(type="int"),
        parallel_connections=dict(type="int"),
        compression=dict(type="str", choices=list(COMPRESSION), default="none"),
        timeout=dict(type="int"),
        tls=dict(type="bool"),
    )
    m = KvmfModule(argspec, supports_check_mode=True, two_hosts=True,
                   required_one_of=[("dest_host", "dest_uri")])
    m.run(_run)


if __name__ == "__main__":
    main()
