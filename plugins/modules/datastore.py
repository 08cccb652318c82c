#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: datastore
short_description: Manage a datastore (a libvirt storage pool) on a compute node
version_added: 0.1.0
description:
  - A datastore is where virtual disks live, for example a directory on local disk or on a path the host already
    mounts, an NFS export, an iSCSI LUN set, an LVM volume group, or the LUNs behind a SCSI or Fibre
    Channel adapter. On each compute node (CNA) it is a libvirt storage pool.
  - A datastore declared O(shared=true) gets the same UUID on every CNA it is defined on (derived from
    its name), so the same datastore is recognisably one object cluster-wide. Live migration and HA
    rely on shared datastores. Define it on every CNA that sees the storage.
  - O(state=present) defines, builds (creates the directory, mount point or volume group where needed),
    starts and autostarts the datastore. O(state=absent) stops and undefines it and deletes its
    contents only with O(purge=true). O(state=refreshed) re-reads sizes and volumes, which picks up a
    grown LUN or export.
  - The type, path and source of an existing datastore cannot be changed in place; a task asking for
    that fails and changes nothing. Adding O(devices) to a C(logical) datastore extends its volume group.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
  - kvmfusion.compute.attributes.idempotent
options:
  name:
    description:
      - Datastore name, the same on every CNA. Letters, digits and C(_), C(.), C(:), C(+), C(-); no C(/) or C(..).
    type: str
    required: true
  type:
    description:
      - V(dir) a directory (local disk, or a path the host already mounts such as a cluster file system).
      - V(nfs) an NFS export mounted by libvirt (kernel NFS client).
      - V(iscsi) an iSCSI target through the kernel initiator (open-iscsi); LUNs appear as block devices.
      - V(iscsi_direct) an iSCSI target through libiscsi inside libvirt and QEMU, no kernel initiator;
        needs the C(libvirt-daemon-driver-storage-iscsi-direct) package on the CNA.
      - V(logical) an LVM volume group on O(devices). For a volume group shared by several CNAs on a SAN
        LUN run C(lvmlockd) with C(sanlock) or C(dlm) on every CNA (C(use_lvmlockd = 1) in C(lvm.conf), a
        shared VG created with C(vgcreate --shared)) so only one host changes LVM metadata at a time.
      - V(scsi) the LUNs of a SCSI host adapter; V(fc) the LUNs of a Fibre Channel vHBA (O(wwnn), O(wwpn)).
      - Required unless O(state=absent).
    type: str
    choices: [dir, nfs, iscsi, iscsi_direct, logical, scsi, fc]
  state:
    description: What the datastore should be.
    type: str
    choices: [present, absent, refreshed]
    default: present
  shared:
    description:
      - The storage is visible to several CNAs. The datastore then gets a UUID derived from its name, the
        same on every CNA, and migration treats it as shared.
      - For V(dir) this is the caller's promise that the directory is the same storage on every CNA
        (NFS, a cluster file system); libvirt cannot check it.
    type: bool
    default: false
  path:
    description:
      - Directory of a V(dir) datastore (required), mount point of an V(nfs) one (default
        C(/var/lib/kvmfusion/datastores/<name>)), or where block devices appear for V(iscsi), V(scsi),
        V(fc) (default C(/dev/disk/by-path)). Not used by V(iscsi_direct); V(logical) uses C(/dev/<vg_name>).
    type: path
  server:
    description: NFS server host name or address (V(nfs)).
    type: str
  export:
    description: Exported path on the NFS server (V(nfs)).
    type: str
  mount_options:
    description: NFS mount options, for example C([vers=4.2, hard, noatime]) (V(nfs)).
    type: list
    elements: str
  portal:
    description: iSCSI portal C(host) or C(host:port), port 3260 by default (V(iscsi), V(iscsi_direct)).
    type: str
  iqn:
    description: iSCSI target IQN (V(iscsi), V(iscsi_direct)).
    type: str
  initiator_iqn:
    description: Initiator IQN to log in as; required by V(iscsi_direct).
    type: str
  chap_username:
    description: CHAP user name; the password is kept in a libvirt secret.
    type: str
  chap_password:
    description: CHAP password. Stored in a libvirt secret on the CNA, never logged.
    type: str
  devices:
    description:
      - Block devices of a V(logical) datastore's volume group. On creation the volume group is built on
        them unless it already exists; devices added later extend it (C(pvcreate) + C(vgextend)).
    type: list
    elements: path
  vg_name:
    description: Volume group name of a V(logical) datastore; defaults to O(name).
    type: str
  adapter:
    description: SCSI host adapter, for example C(host0) (V(scsi)).
    type: str
  wwnn:
    description: World wide node name of the Fibre Channel vHBA, 16 hex digits (V(fc)).
    type: str
  wwpn:
    description: World wide port name of the Fibre Channel vHBA, 16 hex digits (V(fc)).
    type: str
  parent:
    description: Parent SCSI host of the Fibre Channel vHBA (V(fc)).
    type: str
  autostart:
    description: Start the datastore when libvirtd starts.
    type: bool
    default: true
  purge:
    description:
      - With O(state=absent), delete every volume and the datastore's directory too. On a shared datastore
        this deletes data every CNA sees, so it is refused while a VM of this CNA uses a volume, an image
        elsewhere stands on one, a running VM anywhere holds a volume's lease, or the definition copy of a
        VM defined on another CNA lies in it. It runs on the CNA that has the files (a local O(uri)).
    type: bool
    default: false
  force:
    description:
      - For a V(logical) datastore whose O(devices) grow, allow wiping the new devices when they hold a file
        system, partition table or other signature. Without it such devices are refused before any change.
    type: bool
    default: false
notes:
  - In the project's lab NFS, the kernel iSCSI initiator, LVM and SCSI/FC adapters are not available
    (no kernel NFS, device-mapper or HBAs inside the test machines); V(dir) (local and shared) and
    V(iscsi_direct) against a userspace target are tested there, the other types by their XML.
seealso:
  - module: kvmfusion.compute.datastore_info
  - module: kvmfusion.compute.disk
  - name: libvirt storage pool XML
    description: The pool definitions this module writes.
    link: https://libvirt.org/formatstorage.html
'''

EXAMPLES = r'''
- name: A local datastore on every CNA
  kvmfusion.compute.datastore:
    name: local
    type: dir
    path: /var/lib/kvmfusion/datastores/local

- name: The shared datastore (same UUID on every CNA)
  kvmfusion.compute.datastore:
    name: shared
    type: dir
    path: /var/lib/kvmfusion/shared
    shared: true

- name: An NFS datastore
  kvmfusion.compute.datastore:
    name: nas1
    type: nfs
    server: nas1.example.com
    export: /export/vms
    mount_options: [vers=4.2, hard]
    shared: true

- name: An iSCSI SAN through libiscsi with CHAP
  kvmfusion.compute.datastore:
    name: san1
    type: iscsi_direct
    portal: 192.0.2.10:3260
    iqn: iqn.2024-01.com.example:san1
    initiator_iqn: "iqn.2024-01.com.example:{{ inventory_hostname }}"
    chap_username: cna
    chap_password: "{{ vault_san1_chap }}"
    shared: true

- name: Pick up a grown LUN
  kvmfusion.compute.datastore:
    name: san1
    type: iscsi_direct
    portal: 192.0.2.10:3260
    iqn: iqn.2024-01.com.example:san1
    initiator_iqn: "iqn.2024-01.com.example:{{ inventory_hostname }}"
    shared: true
    state: refreshed

- name: Remove a datastore, keeping its files
  kvmfusion.compute.datastore:
    name: local
    state: absent
'''

RETURN = r'''
datastore:
  description: The datastore after the task (see M(kvmfusion.compute.datastore_info)); null when absent.
  returned: always
  type: dict
  sample:
    name: shared
    type: dir
    shared: true
    uuid: 0d3e6f9c-3c0f-5a57-9d3e-4f2d1b8a6c11
    path: /var/lib/kvmfusion/shared
    source: {}
    autostart: true
    state: running
    active: true
    capacity: 269490393088
    allocation: 23622320128
    available: 245868072960
    volumes: 3
actions:
  description: What the task did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [define, build, start, set autostart]
capacity_before:
  description: Capacity in bytes before a refresh (O(state=refreshed)).
  returned: when O(state=refreshed)
  type: int
  sample: 10737418240
capacity_after:
  description: Capacity in bytes after a refresh (O(state=refreshed)).
  returned: when O(state=refreshed)
  type: int
  sample: 21474836480
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.storage import TYPES, DatastoreManager

ARGSPEC = dict(
    name=dict(type="str", required=True),
    type=dict(type="str", choices=list(TYPES)),
    state=dict(type="str", choices=["present", "absent", "refreshed"], default="present"),
    shared=dict(type="bool", default=False),
    path=dict(type="path"),
    server=dict(type="str"),
    export=dict(type="str"),
    mount_options=dict(type="list", elements="str"),
    portal=dict(type="str"),
    iqn=dict(type="str"),
    initiator_iqn=dict(type="str"),
    chap_username=dict(type="str"),
    chap_password=dict(type="str", no_log=True),
    devices=dict(type="list", elements="path"),
    vg_name=dict(type="str"),
    adapter=dict(type="str"),
    wwnn=dict(type="str"),
    wwpn=dict(type="str"),
    parent=dict(type="str"),
    autostart=dict(type="bool", default=True),
    purge=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
)


def main():
    m = KvmfModule(ARGSPEC, supports_check_mode=True,
                   required_if=[("state", "present", ["type"]), ("state", "refreshed", ["type"])])
    m.run(lambda m: m.manager(DatastoreManager).converge(m.params))


if __name__ == "__main__":
    main()
