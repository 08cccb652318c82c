#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: datastore_info
short_description: Report the datastores of a compute node
version_added: 0.1.0
description:
  - Lists the datastores (libvirt storage pools) of the CNA O(uri) points to, or one of them, with type,
    shared flag, capacity, allocation, available space, state, autostart and number of volumes.
  - Run it against every CNA (for example on the C(cna) group) to see the datastores per host.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options:
  name:
    description: Report only this datastore (an empty list when it does not exist).
    type: str
seealso:
  - module: kvmfusion.compute.datastore
'''

EXAMPLES = r'''
- name: Read every datastore of each CNA
  kvmfusion.compute.datastore_info:
  register: ds

- name: Show free space per datastore
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} {{ item.name }}: {{ item.available | human_readable }} free"
  loop: "{{ ds.datastores }}"

- name: Read one datastore of another CNA from the controller
  kvmfusion.compute.datastore_info:
    name: shared
    uri: qemu+ssh://root@cna2/system
  delegate_to: localhost
'''

RETURN = r'''
host:
  description: Host name of the CNA that answered.
  returned: always
  type: str
  sample: cna1
datastores:
  description: The datastores, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Datastore name.
      type: str
      sample: shared
    type:
      description: Datastore type (see M(kvmfusion.compute.datastore)); C(libvirt:<type>) for pools of other kinds.
      type: str
      sample: dir
    shared:
      description: Whether the datastore carries the cluster-wide UUID of a shared datastore.
      type: bool
      sample: true
    uuid:
      description: libvirt UUID of the pool.
      type: str
      sample: 0d3e6f9c-3c0f-5a57-9d3e-4f2d1b8a6c11
    path:
      description: Target path (directory, mount point, device directory); null for C(iscsi_direct).
      type: str
      sample: /var/lib/kvmfusion/shared
    source:
      description: Where the storage comes from (server and export, portal and IQN, devices, adapter).
      type: dict
      sample: {host: 192.0.2.10, port: 3260, iqn: "iqn.2024-01.com.example:san1"}
    autostart:
      description: Started with libvirtd.
      type: bool
      sample: true
    state:
      description: C(running), C(inactive), C(building), C(degraded) or C(inaccessible).
      type: str
      sample: running
    active:
      description: Whether the datastore is running.
      type: bool
      sample: true
    capacity:
      description: Size in bytes.
      type: int
      sample: 269490393088
    allocation:
      description: Bytes in use.
      type: int
      sample: 23622320128
    available:
      description: Bytes free.
      type: int
      sample: 245868072960
    volumes:
      description: Number of volumes (virtual disks and other files); null when not running.
      type: int
      sample: 3
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.storage import facts


def run(m):
    client = m.client
    if m.params["name"]:
        m.validate_name(m.params["name"], kind="datastore")
        pools = [p for p in [client.pool(m.params["name"])] if p is not None]
    else:
        pools = [client.pool(n) for n in client.pool_names()]
    host = client.call("read host name", None, client.conn.getHostname)
    found = sorted((facts(client, p) for p in pools if p is not None), key=lambda d: d["name"])
    m.exit(changed=False, host=host, datastores=found)


def main():
    m = KvmfModule(dict(name=dict(type="str")), supports_check_mode=True, readonly=True)
    m.run(run)


if __name__ == "__main__":
    main()
