# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Images: what stands on an image, what a VM owns, where a datastore's files are, and every file
name the collection derives (overlays, memory files, temporary copies, definition copies).

Disks, snapshots, reverts and clones ask this file; none of them walks chains or builds file
names itself.

Derived names use ``~``, which object names can never contain (names.validate_name), and all but
overlays are hidden (a leading dot, which no object name can have): so no user's disk, VM or
snapshot name can ever produce one, and two objects never produce the same one.

What stands on an image is read from the images themselves: the qcow2 headers of every file in
every file-based datastore this host has, which on a shared datastore are the same files every
CNA sees (linked clones defined on, or migrated to, another CNA included), plus the VM
definitions of this host for images outside the datastores. Reading files needs the task on
the CNA (a local URI): callers refuse a remote URI first.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import SNAPSHOT_XML_SECURE
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import attached_disks, disk_source

SEP = "~"


# ---------------------------------------------------------------------------- derived file names
def overlay_path(base, snap):
    """<dir>/<base file name>~<snapshot>.qcow2: the overlay a snapshot puts on a disk whose own base is ``base``."""
    return os.path.join(os.path.dirname(base), "%s%s%s.qcow2" % (os.path.basename(base), SEP, snap))


def memory_path(vm_dir, vm, snap):
    """<dir>/.<vm>~<snapshot>.mem: a snapshot's saved guest memory."""
    return os.path.join(vm_dir, ".%s%s%s.mem" % (vm, SEP, snap))


def temp_path(path, purpose):
    """<dir>/.<file name>~<purpose>: where a new or converted ``path`` is written before it takes its name."""
    return os.path.join(os.path.dirname(path), ".%s%s%s" % (os.path.basename(path), SEP, purpose))


INCOMING = "incoming" + SEP


def incoming_marker(path, vm_uuid):
    """<dir>/.<file name>~incoming~<VM UUID>: an empty file announcing that ``path`` is being copied in by a
    migration of that VM (the cna role's boot-time cleanup removes a copy whose migration never finished)."""
    return temp_path(path, INCOMING + vm_uuid)


def definition_copy_name(vm_dir, vm):
    """<dir>/.<vm>~vm.xml: the VM's definition beside its system disk."""
    return os.path.join(vm_dir, ".%s%svm.xml" % (vm, SEP))


def definition_copies(directory):
    """Names of the VMs whose definition copy is in ``directory`` (VMs with their system disk there)."""
    out = []
    if directory and os.path.isdir(directory):
        for entry in sorted(os.listdir(directory)):
            if entry.startswith(".") and entry.endswith(SEP + "vm.xml"):
                out.append(entry[1:-len(SEP + "vm.xml")])
    return out


def remove_stale_temp(path, purpose):
    """Remove what a killed earlier run left at temp_path(path, purpose): the name is ours alone."""
    tmp = temp_path(path, purpose)
    if os.path.lexists(tmp):
        os.unlink(tmp)
    return tmp


def write_definition_copy(client, name, path):
    """The VM's definition beside its system disk, so any CNA that sees the datastore can re-create it."""
    # With secrets (SECURE): re-created from this copy, the VM keeps its console password. The copy is 0600.
    xml = client.domain_xml(name, inactive=True, secure=True)
    tmp = temp_path(path, "new")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(xml)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def definition_copy_path(xml):
    """Hidden file beside the VM's first file disk: <dir>/.<vm>.kvmf-vm.xml (dot entries are the platform's)."""
    root = xmlutil.parse(xml)
    name = xmlutil.find_text(root, "name")
    for el in root.findall("devices/disk"):
        src = el.find("source")
        if el.get("device", "disk") == "disk" and src is not None and src.get("file"):
            return definition_copy_name(os.path.dirname(src.get("file")), name)
    return None


# ---------------------------------------------------------------------------- what a VM owns
def disk_bases(client, vm):
    """{target: the VM's own image under all its snapshot layers}.

    That is the image the root snapshot froze (every snapshot descends from a root, and a merge
    writes into, never replaces, it); without snapshots it is the disk's current source. For a
    linked clone it is the clone's own overlay, never the template below it.
    """
    dom = client.domain(vm)
    bases = {}
    if dom is None:
        return bases
    for snap in client.call("list snapshots of", "VM '%s'" % vm, dom.listAllSnapshots, 0):
        root = xmlutil.parse(client.call("read", "snapshot", snap.getXMLDesc, SNAPSHOT_XML_SECURE))
        if root.find("parent") is not None:
            continue
        for el in root.findall("domain/devices/disk"):
            t = xmlutil.find_attr(el, "target", "dev")
            if t and disk_source(el):
                bases.setdefault(t, disk_source(el))
    return bases


def own_base(bases, target, top):
    """The base of the disk ``target`` whose current image is ``top``: its entry in disk_bases(), unless the
    disk was replaced since the root snapshot (that base is not below ``top``), when ``top`` is its own base."""
    base = bases.get(target, top)
    if top and os.path.exists(top) and base not in fileops.backing_chain(top):
        return top
    return base


def owned_files(client, vm):
    """Every image and memory file that the VM's disks and snapshots own, down to and including each
    disk's own base: what deleting the VM with its disks removes."""
    bases = disk_bases(client, vm)
    files, mems = set(), set()

    def down_to_base(top, t):
        base = own_base(bases, t, top)
        for f in fileops.backing_chain(top):
            files.add(f)
            if f == base:
                break

    for el, src, _mode in attached_disks(client, vm, inactive=True):
        if el.get("device", "disk") == "disk" and el.get("type", "file") == "file" and src:
            t = xmlutil.find_attr(el, "target", "dev")
            bases.setdefault(t, src)
            down_to_base(src, t)
    dom = client.domain(vm)
    for snap in client.call("list snapshots of", "VM '%s'" % vm, dom.listAllSnapshots, 0):
        root = xmlutil.parse(client.call("read", "snapshot", snap.getXMLDesc, SNAPSHOT_XML_SECURE))
        for d in root.findall("disks/disk"):
            if d.get("snapshot") == "external" and xmlutil.find_attr(d, "source", "file"):
                down_to_base(xmlutil.find_attr(d, "source", "file"), d.get("name"))
        mem = root.find("memory")
        if mem is not None and mem.get("snapshot") == "external" and mem.get("file"):
            mems.add(mem.get("file"))
    return files, mems


# ---------------------------------------------------------------------------- datastores and chains
def datastore_dir(client, pool, name, who):
    """The directory of a file-based (dir or nfs) datastore; ``who`` names what needs one in the error."""
    root = xmlutil.parse(client.call("read", "datastore '%s'" % name, pool.XMLDesc, 0))
    base = xmlutil.find_text(root, "target/path")
    if root.get("type") not in ("dir", "netfs") or not base:
        raise ValueError("datastore '%s' is not file based: %s need a dir or nfs datastore" % (name, who))
    return base


def datastore_dirs(client):
    """The directories of this host's running file-based (dir, nfs) datastores."""
    out = []
    for pname in client.pool_names():
        pool = client.pool(pname)
        if pool is None or not client.call("read state of", "datastore '%s'" % pname, pool.isActive):
            continue
        root = xmlutil.parse(client.call("read", "datastore '%s'" % pname, pool.XMLDesc, 0))
        path = xmlutil.find_text(root, "target/path")
        if root.get("type") in ("dir", "netfs") and path:
            out.append(path)
    return out


def images_standing_on(dirs):
    """{backing file: [qcow2 images in ``dirs`` whose header names it]}, read from the files' headers."""
    children = {}
    for d in sorted(set(dirs)):
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)  # one order on every run and every CNA
        except OSError:
            continue
        for e in entries:
            try:
                if not e.is_file(follow_symlinks=False) or e.stat().st_size < 512:
                    continue
                backing = fileops.qcow2_backing(e.path)
            except (OSError, fileops.FileOpsError):
                continue
            if backing:
                children.setdefault(backing, []).append(e.path)
    return children


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


def disk_chain(el, local=True):
    """A domain disk's images from its active file down: read from the qcow2 headers when the files are here,
    else from the <backingStore> elements libvirt put in the XML."""
    src = disk_source(el)
    if not src:
        return []
    if local and el.get("type", "file") == "file" and os.path.exists(src):
        return fileops.backing_chain(src)
    chain, bs = [src], el.find("backingStore")
    while bs is not None and bs.find("source") is not None:
        nxt = bs.find("source").get("file") or bs.find("source").get("dev")
        if not nxt or nxt in chain:
            break
        chain.append(nxt)
        bs = bs.find("backingStore")
    return chain


def own_chains(client, vm, inactive=True, local=True):
    """[(element, active file, mode, chain)] of a VM's disks, each chain from the active file down to the disk's
    own base: the layers snapshots and reverts put on a declared disk, and that disk. Below the base (a template
    under a linked clone) nothing is the VM's."""
    bases = disk_bases(client, vm) if client.domain(vm) is not None else {}
    out = []
    for el, src, mode in attached_disks(client, vm, inactive=inactive):
        chain = disk_chain(el, local)
        if chain:
            base = own_base(bases, xmlutil.find_attr(el, "target", "dev"), src) if local else bases.get(
                xmlutil.find_attr(el, "target", "dev"), src)
            chain = chain[:chain.index(base) + 1] if base in chain else chain[:1]
        out.append((el, src, mode, chain))
    return out


def users_of(client, path, local=True):
    """[(domain, target dev)] on this host whose persistent or live definition has the disk ``path``: as its
    active file, or under the snapshot and revert layers on it (not as the base of a linked clone)."""
    found = []
    for dname in client.domain_names():
        for inactive in (True, False):
            for el, _src, _mode, chain in own_chains(client, dname, inactive=inactive, local=local):
                if path in chain and (dname, xmlutil.find_attr(el, "target", "dev")) not in found:
                    found.append((dname, xmlutil.find_attr(el, "target", "dev")))
    return found


def dependants_of(client, paths, exclude_vm=None):
    """{path: [(who, what)]} for the given image files that other images or VMs stand on.

    A linked clone's overlay (or a VM sitting on a snapshot chain) reads through its backing files, so
    those must not be deleted or written. Found datastore-wide from the images' own headers (every CNA
    sees the same files of a shared datastore), and from this host's VM definitions for images outside
    the datastores. Everything ``exclude_vm`` owns (its disks, snapshot layers) is not counted.
    Entries are (VM, target) for a VM of this host, or (image path, "image") for an image no VM of
    this host uses (a clone defined on another CNA, or one not defined at all).
    """
    wanted = set(p for p in paths if p)
    found = {}
    if not wanted:
        return found
    excluded = owned_files(client, exclude_vm)[0] if exclude_vm and client.domain(exclude_vm) is not None else set()
    children = images_standing_on(datastore_dirs(client) + [os.path.dirname(p) for p in wanted])
    # (vm, target, the disk's chain below its top) of this host's VMs
    vm_chains = [(dname, target, fileops.backing_chain(src)) for dname, src, target in vm_disks(client, exclude_vm)]
    for p in sorted(wanted):
        above = _above(p, children) - excluded
        entries = []
        for dname, target, chain in vm_chains:
            # A VM stands on ``p`` when its chain passes through it (its top above ``p``), wherever the files are.
            if p in chain[1:] and chain[0] not in excluded and (dname, target) not in entries:
                entries.append((dname, target))
        used = set(f for _d, _t, chain in vm_chains for f in chain if p in chain[1:])
        # Images on ``p`` that no VM of this host uses: clones defined on, or moved to, another CNA.
        entries.extend((img, "image") for img in sorted(above - used))
        if entries:
            found[p] = sorted(entries)
    return found


def _above(path, children):
    """Every image standing on ``path``, directly or through other images."""
    seen, stack = set(), [path]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def vm_disks(client, exclude_vm=None, files_only=True):
    """[(vm, source, target)] of this host's VMs (persistent and live definitions): file disks, or all."""
    out = []
    for dname in client.domain_names():
        if dname == exclude_vm:
            continue
        for inactive in (True, False):
            for el, src, _mode in attached_disks(client, dname, inactive=inactive):
                entry = (dname, src, xmlutil.find_attr(el, "target", "dev"))
                if src and (el.get("type", "file") == "file" or not files_only) and entry not in out:
                    out.append(entry)
    return out


def describe_dependants(found):
    return "; ".join("%s is the base of %s" % (f, ", ".join("%s (%s)" % u for u in users))
                     for f, users in sorted(found.items()))
