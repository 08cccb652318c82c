# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Images: what stands on an image, where a datastore's files are, and every file name the
collection derives (overlays, memory files, temporary copies, definition copies).

Disks, snapshots, reverts and clones ask this file; none of them walks chains or builds
file names itself.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import attached_disks


# ---------------------------------------------------------------------------- derived file names
def overlay_path(source, snap):
    stem, _ext = os.path.splitext(os.path.basename(source))
    return os.path.join(os.path.dirname(source), "%s.%s.qcow2" % (stem, snap))


def memory_path(vm_disk_dir, vm, snap):
    return os.path.join(vm_disk_dir, ".%s.%s.mem" % (vm, snap))


def convert_temp_path(path):
    """The copy a qcow2 conversion writes before it replaces ``path``."""
    return "%s.kvmf-convert" % path


def definition_copy_name(vm_dir, vm):
    """<dir>/.<vm>.kvmf-vm.xml: the VM's definition beside its system disk (dot entries are the platform's)."""
    return os.path.join(vm_dir, ".%s.kvmf-vm.xml" % vm)


def definition_copy_path(xml):
    """Hidden file beside the VM's first file disk: <dir>/.<vm>.kvmf-vm.xml (dot entries are the platform's)."""
    root = xmlutil.parse(xml)
    name = xmlutil.find_text(root, "name")
    for el in root.findall("devices/disk"):
        src = el.find("source")
        if el.get("device", "disk") == "disk" and src is not None and src.get("file"):
            return definition_copy_name(os.path.dirname(src.get("file")), name)
    return None


# ---------------------------------------------------------------------------- datastores and chains
def datastore_dir(client, pool, name, who):
    """The directory of a file-based (dir or nfs) datastore; ``who`` names what needs one in the error."""
    root = xmlutil.parse(client.call("read", "datastore '%s'" % name, pool.XMLDesc, 0))
    base = xmlutil.find_text(root, "target/path")
    if root.get("type") not in ("dir", "netfs") or not base:
        raise ValueError("datastore '%s' is not file based: %s need a dir or nfs datastore" % (name, who))
    return base


def refresh_pools(client):
    """Re-read every running datastore's volume list (changes no data)."""
    for pname in client.pool_names():
        pool = client.pool(pname)
        if pool is not None and pool.isActive():
            client.call("refresh", "datastore '%s'" % pname, pool.refresh, 0)


def volume_chain(client, path):
    """The backing chain below ``path`` as libvirt's volumes describe it: [{path, format}]."""
    chain, seen = [], set()
    while path and path not in seen and len(chain) < 64:
        seen.add(path)
        vol = client.volume_by_path(path)
        if vol is None:
            chain.append({"path": path, "format": None})
            break
        root = xmlutil.parse(client.call("read", "volume %s" % path, vol.XMLDesc, 0))
        chain.append({"path": path, "format": xmlutil.find_attr(root, "target/format", "type")})
        path = xmlutil.find_text(root, "backingStore/path")
    return chain[1:]


def users_of(client, path):
    """[(domain, target dev)] on this host whose persistent or live definition uses ``path``."""
    found = []
    for dname in client.domain_names():
        for inactive in (True, False):
            for el, src, _mode in attached_disks(client, dname, inactive=inactive):
                if src == path and (dname, xmlutil.find_attr(el, "target", "dev")) not in found:
                    found.append((dname, xmlutil.find_attr(el, "target", "dev")))
    return found


def dependants_of(client, paths, exclude_vm=None):
    """{path: [(vm, target)]} for the given image files that other VMs' disks stand on as backing files.

    A linked clone's overlay (or a VM sitting on a snapshot chain) reads through its backing files, so
    those must not be deleted or written. Chains are read from the qcow2 headers on this host.
    """
    wanted = set(p for p in paths if p)
    found = {}
    if not wanted:
        return found
    for dname in client.domain_names():
        if dname == exclude_vm:
            continue
        tops = set()
        for inactive in (True, False):
            for el, src, _mode in attached_disks(client, dname, inactive=inactive):
                if src and el.get("type", "file") == "file" and (src, xmlutil.find_attr(el, "target", "dev")) not in tops:
                    tops.add((src, xmlutil.find_attr(el, "target", "dev")))
        for src, target in sorted(tops):
            for f in fileops.backing_chain(src)[1:]:
                if f in wanted and (dname, target) not in found.setdefault(f, []):
                    found[f].append((dname, target))
    return found


def describe_dependants(found):
    return "; ".join("%s is the base of %s" % (f, ", ".join("%s (%s)" % u for u in users))
                     for f, users in sorted(found.items()))
