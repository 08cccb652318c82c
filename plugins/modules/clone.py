#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: clone
short_description: Clone a template, a VM or a VM's snapshot, linked or full, one or many at once
version_added: 0.1.0
description:
  - "Makes new VMs from a source: a template, a VM (stopped or running), or a named snapshot of a VM
    (O(snapshot), which also takes the VM's configuration as it was then)."
  - "O(linked=true): each clone gets one qcow2 overlay per disk whose backing file is the source's frozen image.
    That takes constant time and a few hundred KiB per clone whatever the source's size. A template's disks are
    read-only already; a snapshot's images are frozen by the snapshot; a plain VM's disks are frozen by a disk-only
    snapshot C(clone-base-<first clone>) that stays visible in M(kvmfusion.compute.snapshot_info), so the VM
    writes to a new overlay from then on."
  - While linked clones stand on an image, deleting it is refused, naming the clones, by
    M(kvmfusion.compute.disk), M(kvmfusion.compute.vm) (O(kvmfusion.compute.vm#module:state=absent) with
    O(kvmfusion.compute.vm#module:delete_disks), and O(kvmfusion.compute.vm#module:template=false)),
    M(kvmfusion.compute.snapshot) (deleting a snapshot merges into its frozen image) and
    M(kvmfusion.compute.snapshot_revert).
  - "O(linked=false): a full, independent copy per disk, on O(datastore) with O(provisioning) and O(format); only
    allocated data of sparse sources is read and written. A running VM is copied from a temporary disk-only
    snapshot that is merged back afterwards."
  - "Each clone gets a new UUID and new MAC addresses. Per-clone data reaches the guest through SMBIOS (no seed ISO):
    the system serial is cloud-init's NoCloud seed C(ds=nocloud;h=<hostname>;i=<UUID>), and O(metadata) items are OEM
    strings C(kvmfusion:<key>=<value>). In the guest: C(/sys/class/dmi/id/product_serial), C(dmidecode -t 11)."
  - Idempotent by name. A VM that already exists as the same kind of clone of the same source is left alone (it is
    started with O(state=running)); any other VM of that name is a collision and fails before any change.
  - A batch makes the clones one after the other; a clone that fails is removed completely (its files and definition),
    the ones made before it stay, and a new run makes the rest.
  - A VM under HA (M(kvmfusion.compute.ha)) is not put on new overlays; linked clones of it, or a copy of it while
    it runs, are refused before any change (a full clone of it stopped works). Take it out of HA first.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  source:
    description: The template or VM to clone.
    type: str
    required: true
  snapshot:
    description: Clone the source as it was at this snapshot (disks and configuration).
    type: str
  name:
    description: One clone's name. One of O(name), O(names) or O(count) is needed.
    type: str
  names:
    description: Clone names, made in one task.
    type: list
    elements: str
  count:
    description: Make this many clones named by O(name_pattern).
    type: int
  name_pattern:
    description: With O(count), the clone names as a Python format string with C({index}), for example C(web-{index:02d}).
    type: str
  start_index:
    description: The first C({index}) of O(name_pattern).
    type: int
    default: 1
  linked:
    description: Linked clones (qcow2 overlays on the source's images) or full copies.
    type: bool
    default: true
  datastore:
    description:
      - Datastore (dir or nfs) for the clones' disks.
      - Defaults to the directory of each source disk.
    type: str
  provisioning:
    description:
      - Provisioning of full clones' disks (linked clones' overlays are always thin).
    type: str
    choices: [thin, thick_lazy_zeroed, thick_eager_zeroed]
    default: thin
  format:
    description:
      - Disk format of full clones. Defaults to each source disk's format. Linked clones are always qcow2.
    type: str
    choices: [qcow2, raw]
  state:
    description:
      - V(present) leaves new clones stopped; V(running) starts every clone of the task, O(parallel) at a time.
      - With V(running), the clones to start must fit in the memory the CNA has available (each the source's memory, plus a
        64 MiB margin for the batch); otherwise the task is refused in one line before any clone is made.
    type: str
    choices: [present, running]
    default: present
  parallel:
    description:
      - How many clones start at the same time with O(state=running). Every start is tried; the first failure is
        reported once all are done (the clones that started stay running, the others stay defined).
    type: int
    default: 4
  hostname:
    description: The guest host name in the NoCloud seed, a format string with C({name}).
    type: str
    default: "{name}"
  metadata:
    description:
      - Extra per-clone data for the guest, as SMBIOS OEM strings C(kvmfusion:<key>=<value>).
      - Values may contain C({name}).
    type: dict
notes:
  - Must run on the CNA that holds the source's disks (a local O(uri)).
  - A VM with a raw device mapping cannot be cloned. Disks that are not frozen (for example independent disks of a
    VM cloned from a snapshot) are copied in full even for linked clones.
seealso:
  - module: kvmfusion.compute.vm
  - module: kvmfusion.compute.snapshot
'''

EXAMPLES = r'''
- name: Twenty linked desktops from a template, started
  kvmfusion.compute.clone:
    source: win-desktop-template
    count: 20
    name_pattern: desk-{index:03d}
    state: running
    metadata:
      role: desktop
      owner: "pool-a-{name}"

- name: A full, thick copy of a VM on another datastore
  kvmfusion.compute.clone:
    source: db1
    name: db1-copy
    linked: false
    datastore: fast-ssd
    provisioning: thick_eager_zeroed

- name: Two clones of a VM as it was before an upgrade
  kvmfusion.compute.clone:
    source: db1
    snapshot: before-upgrade
    names: [db1-test-a, db1-test-b]
'''

RETURN = r'''
clones:
  description: Every clone of the task, made now or before.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: desk-001, created: true, linked: true, disks: {vda: /var/lib/kvmfusion/shared/desk-001-vda.qcow2}}
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample:
    - "desk-001: overlay /var/lib/kvmfusion/shared/desk-001-vda.qcow2 on /var/lib/kvmfusion/shared/win.qcow2"
    - "desk-001: define (new UUID and MACs)"
    - "desk-001: start"
    - refresh datastores
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils import diskspec
from ansible_collections.kvmfusion.compute.plugins.module_utils.clones import START_PARALLEL, CloneManager


def main():
    argspec = dict(
        source=dict(type="str", required=True),
        snapshot=dict(type="str"),
        name=dict(type="str"),
        names=dict(type="list", elements="str"),
        count=dict(type="int"),
        name_pattern=dict(type="str"),
        start_index=dict(type="int", default=1),
        linked=dict(type="bool", default=True),
        datastore=dict(type="str"),
        provisioning=dict(type="str", choices=list(diskspec.PROVISIONING), default="thin"),
        format=dict(type="str", choices=list(diskspec.FORMATS)),
        state=dict(type="str", choices=["present", "running"], default="present"),
        parallel=dict(type="int", default=START_PARALLEL),
        hostname=dict(type="str", default="{name}"),
        metadata=dict(type="dict"),
    )
    m = KvmfModule(argspec, supports_check_mode=True,
                   mutually_exclusive=[("name", "names", "count")],
                   required_one_of=[("name", "names", "count")],
                   required_together=[("count", "name_pattern")])
    m.run(lambda m: m.manager(CloneManager).converge(m.params))


if __name__ == "__main__":
    main()
