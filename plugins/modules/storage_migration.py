#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: storage_migration
short_description: Move a VM's disks to another datastore, live or stopped, changing provisioning and format
version_added: 0.5.0
description:
  - Moves one, several or all of VM O(vm)'s image disks to datastore O(datastore) on the same compute node (CNA).
  - On the way, the provisioning (V(thin), V(thick_lazy_zeroed), V(thick_eager_zeroed)) and the format
    (V(qcow2), V(raw)) can change.
  - The target image is made first, with the format and provisioning asked for.
  - B(A running VM) keeps running. A libvirt block copy mirrors each disk into its target. Guest writes go to
    both images synchronously while the bulk copy runs. Once the copy is in sync, the VM's definition points at
    the new image, and then the VM switches to it.
  - B(A stopped VM)'s disk is converted with C(qemu-img convert) under a temporary name. It is compared with the
    source, then takes its name.
  - Only allocated data moves. A thin disk with 10% data moves about 10% of its size.
  - Afterwards the VM's definition (and the copy beside its system disk) points at the new image. The old images
    are deleted.
  - The VM's metadata records the move. A M(kvmfusion.compute.vm) or M(kvmfusion.compute.disk) task that still
    declares the disk on its old datastore finds it where it went, and does not create it again.
  - Until the switch the source is the disk. Any failure (the target datastore full, O(timeout), the task killed)
    leaves the VM on it and removes the target. A partial target that a killed task left is replaced on the next run.
  - If the CNA itself dies mid-copy, the VM is defined on its source disk when the CNA comes back. The partial
    target is removed at that boot by the cleanup the P(kvmfusion.compute.cna#role) role installs.
  - A linked clone's disk becomes a full disk on the way (the template's data is copied into it); the template
    is not touched.
  - A disk with snapshot layers moves with them, or as one image (O(snapshot_layers)).
  - Refused, in one line and before any change, for an image that linked clones (or clones of a snapshot) stand on,
    naming the clones.
    Also refused for an independent-nonpersistent disk, a raw device mapping, and a datastore without the space.
  - Files are touched only on the CNA that has them. A remote O(uri) is refused.
  - The disks of a VM under HA (M(kvmfusion.compute.ha)) are not moved (refused before any change), because the cluster
    starts it from its definition copy, which names the images where they are. Take it out of HA first.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  vm:
    description: The VM.
    type: str
    required: true
  datastore:
    description: The datastore the disks go to (a dir or nfs datastore of this CNA).
    type: str
    required: true
  disks:
    description: The disks to move, by target (V(vda)) or by name (V(data.qcow2)). All image disks when not given.
    type: list
    elements: str
  provisioning:
    description: Provisioning of the moved disks. They keep theirs when not given.
    type: str
    choices: [thin, thick_lazy_zeroed, thick_eager_zeroed]
  format:
    description: Format of the moved disks. They keep theirs when not given.
    type: str
    choices: [qcow2, raw]
  bandwidth:
    description: Bandwidth limit of a live copy, in MiB/s.
    type: int
  timeout:
    description: Give up a live copy that is not in sync after this many seconds (the VM stays on its source).
    type: int
  snapshot_layers:
    description:
      - What a move does with a disk's snapshot layers (the qcow2 overlays its snapshots put on it).
      - V(keep) moves every image of the chain under its own name, each converted onto the copy of the image
        under it and compared with the original. A running VM's active layer is mirrored last (only its own
        data). The disk's own image takes O(format) and O(provisioning); the layers stay thin qcow2. The VM's
        snapshots are redefined pointing at the moved images, so they can still be reverted to.
      - V(flatten) makes each moved disk's chain one image at the target (what the VM sees now) and deletes the
        VM's snapshots and their memory files, since their images are gone. Every disk with layers must then move
        (refused otherwise, naming the disk).
      - Either way, if nothing has moved when the task fails, the snapshots are put back as they were.
    type: str
    choices: [keep, flatten]
    default: keep
seealso:
  - module: kvmfusion.compute.vm_migration
  - module: kvmfusion.compute.disk
'''

EXAMPLES = r'''
- name: Move db1's disks, running, to the fast datastore, as thick eager zeroed
  kvmfusion.compute.storage_migration:
    vm: db1
    datastore: fast-ssd
    provisioning: thick_eager_zeroed
  register: moved

- name: Move one disk of web1 back, as a thin qcow2, at most 200 MiB/s
  kvmfusion.compute.storage_migration:
    vm: web1
    disks: [vdb]
    datastore: local
    provisioning: thin
    format: qcow2
    bandwidth: 200

- name: Move web1's system disk too, with its snapshot layers (its snapshots follow)
  kvmfusion.compute.storage_migration:
    vm: web1
    disks: [vda]
    datastore: local

- name: Move all of web1's disks back, their snapshot layers flattened into one image each (its snapshots are deleted)
  kvmfusion.compute.storage_migration:
    vm: web1
    datastore: fast-ssd
    snapshot_layers: flatten
'''

RETURN = r'''
vm:
  description: The VM.
  returned: success
  type: str
  sample: db1
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
  sample: ["mirror vda to /var/lib/kvmfusion/datastores/fast-ssd/db1-system.qcow2 (qcow2 thick_eager_zeroed)"]
disks:
  description: Each disk asked for, where it came from, where it is, and what the move cost.
  returned: success
  type: list
  elements: dict
  sample:
    - target: vda
      from: {datastore: shared, name: db1-system.qcow2}
      to: {datastore: fast-ssd, name: db1-system.qcow2}
      path: /var/lib/kvmfusion/datastores/fast-ssd/db1-system.qcow2
      format: qcow2
      provisioning: thick_eager_zeroed
      moved: true
      mode: live
      copied_bytes: 33554432
      seconds: 1.4
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.storagemove import FORMATS, LAYERS, PROVISIONING, StorageMigrationManager


def main():
    argspec = dict(
        vm=dict(type="str", required=True),
        datastore=dict(type="str", required=True),
        disks=dict(type="list", elements="str"),
        provisioning=dict(type="str", choices=list(PROVISIONING)),
        format=dict(type="str", choices=list(FORMATS)),
        bandwidth=dict(type="int"),
        timeout=dict(type="int"),
        snapshot_layers=dict(type="str", choices=list(LAYERS), default="keep"),
    )
    m = KvmfModule(argspec, supports_check_mode=True)
    m.run(lambda m: m.manager(StorageMigrationManager).converge(m.params))


if __name__ == "__main__":
    main()
