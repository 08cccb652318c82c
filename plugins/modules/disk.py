#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: disk
short_description: Manage a virtual disk, its provisioning and its attachment to a VM
version_added: 0.1.0
description:
  - A virtual disk is a volume on a datastore, addressed as O(datastore) + O(name). One task converges its
    size, provisioning type and attachment (bus, cache, QoS, mode) together.
  - "Provisioning, as on FusionCompute and vSphere: V(thin) reserves nothing; V(thick_lazy_zeroed) reserves
    all space without zeroing it (fallocate); V(thick_eager_zeroed) reserves all space and writes zeroes
    over it, so the guest never waits for first-write zeroing. The type of an existing disk can be
    converted (offline) in place: raw disks step by step without copying (every step keeps the content),
    qcow2 disks through a converted copy that replaces the original only when complete."
  - Disks only grow. Growing honours the type (thin adds nothing, lazy reserves the new space, eager
    zeroes it) and happens online through libvirt when the disk belongs to a running VM.
  - "Modes: V(persistent) (the default); V(independent_persistent) is never part of VM snapshots;
    V(independent_nonpersistent) discards all writes when the VM powers off (QEMU writes into a throw-away
    overlay, libvirt's C(<transient/>))."
  - A raw device mapping (O(rdm)) hands a whole host block device (a SAN LUN) to the VM as a SCSI LUN with
    SCSI command pass-through. It is not a file, so snapshots, clones, storage migration, live migration and
    expansion through this collection are refused for it.
  - Provisioning work reads and writes the volume's file, so create thick disks, convert and grow them with
    the task running on the CNA that holds the datastore (the default O(uri)).
  - A change of a VM's disks refreshes its definition copy beside its system disk. On a VM under HA
    (M(kvmfusion.compute.ha)) attaching, detaching or changing an attachment is refused before any change, its
    volume not made, because the cluster runs the VM from that copy; take it out of HA first.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  name:
    description: Volume name in the datastore, for example C(web1-data.qcow2). No C(/), C(..) or XML metacharacters.
    type: str
    required: true
  datastore:
    description: Datastore holding the volume. Required unless O(rdm) is set.
    type: str
  state:
    description:
      - V(present) creates or converges the disk (and its attachment when O(vm) is set).
      - V(absent) deletes the volume; refused while a VM uses it unless O(force=true). For an O(rdm) disk it
        removes the mapping from O(vm).
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - Virtual size with a unit, V(20GiB), V(512MiB), V(1TiB) (binary; V(G) = V(GiB) as in qemu-img), decimal
        V(20GB), or a number of bytes. Required to create a disk; a larger size grows an existing one;
        a smaller one is refused.
    type: raw
  format:
    description: Image format of a new disk. qcow2 images are always created with compat 1.1. Immutable.
    type: str
    choices: [qcow2, raw]
  provisioning:
    description: Provisioning type; a different type on an existing disk converts it (the disk's VM must be stopped).
    type: str
    choices: [thin, thick_lazy_zeroed, thick_eager_zeroed]
  vm:
    description: Name of the VM (on the same CNA) to attach the disk to, or detach it from with O(attached=false).
    type: str
  attached:
    description: With O(vm), whether the disk should be attached to it.
    type: bool
    default: true
  bus:
    description: Disk bus. A raw device mapping is always V(scsi).
    type: str
    choices: [virtio, scsi, sata]
    default: virtio
  target:
    description: Device name in the VM (V(vdb), V(sdc)); the first free one of the bus when omitted.
    type: str
  cache:
    description: Host cache mode.
    type: str
    choices: [default, none, writethrough, writeback, directsync, unsafe]
  io:
    description: I/O mode; V(native) needs O(cache=none) or O(cache=directsync).
    type: str
    choices: [native, threads, io_uring]
  discard:
    description: Pass guest discard/TRIM down to the image (V(unmap)) or drop it (V(ignore)).
    type: str
    choices: [unmap, ignore]
  readonly:
    description: Attach read-only.
    type: bool
    default: false
  shareable:
    description: Allow several VMs to use the disk at once (for clustered guest file systems); disables locking of it.
    type: bool
    default: false
  boot_order:
    description: Boot priority of the disk in the VM (1 first).
    type: int
  mode:
    description: Disk mode (see the description).
    type: str
    choices: [persistent, independent_persistent, independent_nonpersistent]
    default: persistent
  iotune:
    description:
      - Disk QoS limits, applied live when the VM runs. A V(0) or missing key means no limit.
        V(total_*) cannot be combined with V(read_*)/V(write_*) of the same kind.
    type: dict
    suboptions:
      total_bytes_sec:
        description: Total throughput limit in bytes per second.
        type: int
      read_bytes_sec:
        description: Read throughput limit in bytes per second.
        type: int
      write_bytes_sec:
        description: Write throughput limit in bytes per second.
        type: int
      total_iops_sec:
        description: Total I/O operations per second.
        type: int
      read_iops_sec:
        description: Read I/O operations per second.
        type: int
      write_iops_sec:
        description: Write I/O operations per second.
        type: int
  rdm:
    description: Host block device (C(/dev/...), typically C(/dev/disk/by-id/...) of a SAN LUN) to map raw into O(vm).
    type: str
  force:
    description: With O(state=absent), detach the disk from every VM on this CNA first, then delete it.
    type: bool
    default: false
notes:
  - A disk with a backing file (a linked clone's differencing disk) cannot change provisioning, and neither can a
    disk that snapshot layers or linked clones stand on; with them the conversion is refused in one line, so in a
    play convert before snapshotting or cloning (or after deleting the snapshots).
  - A disk is its chain. After a snapshot or a revert the VM writes to a layer on the declared disk; the disk is
    still recognised by its declared name, M(kvmfusion.compute.disk_info) reports the layer as its C(active) file,
    and growing the disk grows that layer.
  - Growing a thick qcow2 disk while its VM runs is refused (QEMU grows qcow2 images thin); grow it offline or use raw.
  - Changes to an attached disk that QEMU cannot apply live (bus, cache, mode to or from non-persistent ...)
    go to the persistent configuration and the result says RV(reboot_required=true).
seealso:
  - module: kvmfusion.compute.disk_info
  - module: kvmfusion.compute.datastore
'''

EXAMPLES = r'''
- name: A thin raw data disk attached to web1
  kvmfusion.compute.disk:
    datastore: shared
    name: web1-data.raw
    format: raw
    size: 20GiB
    vm: web1

- name: Convert it to eager-zeroed thick (web1 stopped)
  kvmfusion.compute.disk:
    datastore: shared
    name: web1-data.raw
    provisioning: thick_eager_zeroed

- name: Grow it while web1 runs, with an I/O limit
  kvmfusion.compute.disk:
    datastore: shared
    name: web1-data.raw
    size: 40GiB
    vm: web1
    iotune:
      total_iops_sec: 2000
      total_bytes_sec: 104857600

- name: A scratch disk whose writes vanish at power-off
  kvmfusion.compute.disk:
    datastore: local
    name: web1-scratch.qcow2
    size: 10GiB
    vm: web1
    mode: independent_nonpersistent

- name: Map a SAN LUN raw into a database VM
  kvmfusion.compute.disk:
    name: db1-lun0
    rdm: /dev/disk/by-id/wwn-0x600a0b800026d63a
    vm: db1

- name: Detach a disk but keep it
  kvmfusion.compute.disk:
    datastore: shared
    name: web1-data.raw
    vm: web1
    attached: false

- name: Delete a disk even if attached
  kvmfusion.compute.disk:
    datastore: shared
    name: old.qcow2
    state: absent
    force: true
'''

RETURN = r'''
disk:
  description: The disk after the task (see M(kvmfusion.compute.disk_info)); null when deleted.
  returned: always
  type: dict
  sample:
    datastore: shared
    name: web1-data.qcow2
    path: /var/lib/kvmfusion/shared/web1-data.qcow2
    format: qcow2
    provisioning: thick_eager_zeroed
    size: 21474836480
    allocation: 21478375424
    backing_chain: []
    attached: [{vm: web1, target: vdb, bus: virtio, mode: persistent, iotune: {}}]
    rdm: false
actions:
  description: What the task did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create thin qcow2 disk of 21474836480 bytes", "attach as vdb (live and persistent)"]
reboot_required:
  description: Some change went to the VM's persistent configuration only and takes effect at its next power cycle.
  returned: always
  type: bool
  sample: false
zeroed_bytes:
  description: Bytes of zeroes written to make space eager-zeroed.
  returned: always
  type: int
  sample: 21474836480
zero_seconds:
  description: Seconds spent writing zeroes.
  returned: always
  type: float
  sample: 9.8
zero_throughput:
  description: Bytes per second written while zeroing (0 when nothing was zeroed).
  returned: always
  type: int
  sample: 2191309824
'''


from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils import diskspec
from ansible_collections.kvmfusion.compute.plugins.module_utils.disks import DiskManager

IOTUNE_SPEC = dict((k, dict(type="int")) for k in diskspec.IOTUNE_KEYS)

ARGSPEC = dict(
    name=dict(type="str", required=True),
    datastore=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    size=dict(type="raw"),
    format=dict(type="str", choices=list(diskspec.FORMATS)),
    provisioning=dict(type="str", choices=list(diskspec.PROVISIONING)),
    vm=dict(type="str"),
    attached=dict(type="bool", default=True),
    bus=dict(type="str", choices=list(diskspec.BUSES), default="virtio"),
    target=dict(type="str"),
    cache=dict(type="str", choices=list(diskspec.CACHES)),
    io=dict(type="str", choices=list(diskspec.IOS)),
    discard=dict(type="str", choices=list(diskspec.DISCARDS)),
    readonly=dict(type="bool", default=False),
    shareable=dict(type="bool", default=False),
    boot_order=dict(type="int"),
    mode=dict(type="str", choices=list(diskspec.MODES), default="persistent"),
    iotune=dict(type="dict", options=IOTUNE_SPEC),
    rdm=dict(type="str"),
    force=dict(type="bool", default=False),
)


def main():
    m = KvmfModule(ARGSPEC, supports_check_mode=True,
                   mutually_exclusive=[("rdm", "datastore"), ("rdm", "size"), ("rdm", "provisioning"), ("rdm", "format")],
                   required_one_of=[("datastore", "rdm")])
    m.run(lambda m: m.manager(DiskManager).converge(m.params))


if __name__ == "__main__":
    main()
