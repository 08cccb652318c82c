# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Installed by kvmfusion.compute.cna as /etc/libvirt/hooks/kvmfusion/incoming_cleanup.py and run once at
# boot by kvmfusion-incoming-cleanup.service, after libvirtd.
#
# A migration that copies a VM's disks (kvmfusion.compute.vm_migration, storage copy) first puts an empty
# marker beside each copy target on this host: <dir>/.<file name>~incoming~<VM UUID> (images.incoming_marker;
# the leading dot and the "~" make it a name no VM, disk or snapshot can have). The migration removes its
# markers when it ends. A marker still here at boot means this host died while the copy ran: the file it
# announces is a partial copy (the source kept the VM and its disks), unless a VM of this host uses it
# (the migration had finished) or another image of the datastore stands on it. Partial copies go; the
# markers go.
#
# A storage migration (kvmfusion.compute.storage_migration) on this host marks its target image "partial"
# (extended attribute user.kvmfusion.provisioning) until the VM runs on it, and converts a stopped VM's
# disk into <dir>/.<file name>~move before renaming it. Such files, when no VM of this host uses them and
# no image stands on them, are what a move this host died in left: they go too. Nothing else is touched.
"""Remove the partial disk copies of migrations and storage moves this host died in the middle of."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys
import xml.etree.ElementTree as ET

SEP = "~"
INCOMING = SEP + "incoming" + SEP
MOVE_TEMP = SEP + "move"
INTENT_XATTR = "user.kvmfusion.provisioning"


def left_by_a_move(directory, name):
    """Whether a datastore file is the partial target of a storage move: a temporary conversion, or an
    image still marked partial."""
    if name.startswith(".") and name.endswith(MOVE_TEMP):
        return True
    try:
        return os.getxattr(os.path.join(directory, name), INTENT_XATTR) == b"partial"
    except OSError:
        return False


def parse_marker(name):
    """(file name, VM UUID) of an incoming-copy marker's name, or None for any other name."""
    if not name.startswith(".") or INCOMING not in name:
        return None
    base, uuid = name[1:].rsplit(INCOMING, 1)
    if not base or not uuid or "/" in base:
        return None
    return base, uuid


def _sources(xml):
    """Every file a domain definition names (disks and their backing chains)."""
    root = ET.fromstring(xml)
    out = set()
    for disk in root.iter("disk"):
        for el in disk.iter("source"):
            path = el.get("file") or el.get("dev")
            if path:
                out.add(os.path.normpath(path))
    return out


def used_files(conn):
    """The files any VM defined or running on this host uses (live and persistent definitions)."""
    used = set()
    for dom in conn.listAllDomains(0):
        used.update(_sources(dom.XMLDesc(0)))
        if dom.isPersistent():
            used.update(_sources(dom.XMLDesc(2)))  # VIR_DOMAIN_XML_INACTIVE
    return used


def backing_files(pool):
    """The images other images of this datastore stand on (read from the datastore's own volumes)."""
    out = set()
    for vol in pool.listAllVolumes(0):
        try:
            root = ET.fromstring(vol.XMLDesc(0))
        except Exception:  # pylint: disable=broad-except
            continue
        for el in root.iter("backingStore"):
            path = el.findtext("path")
            if path:
                out.add(os.path.normpath(path))
    return out


def clean(conn, log):
    """Returns the partial copies removed."""
    removed = []
    used = used_files(conn)
    for pool in conn.listAllStoragePools(2):  # VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE
        root = ET.fromstring(pool.XMLDesc(0))
        if root.get("type") not in ("dir", "fs", "netfs"):
            continue
        directory = root.findtext("target/path")
        pool.refresh(0)
        volumes = pool.listAllVolumes(0)
        markers = [(v, parse_marker(v.name())) for v in volumes]
        markers = [(v, m) for v, m in markers if m is not None]
        moves = [v for v in volumes if parse_marker(v.name()) is None and left_by_a_move(directory, v.name())]
        if not markers and not moves:
            continue
        standing = backing_files(pool)
        for vol in moves:
            path = os.path.normpath(os.path.join(directory, vol.name()))
            if path in used or path in standing:
                log("%s: kept (marked partial, but %s)" % (path, "a VM uses it" if path in used else "an image stands on it"))
                continue
            vol.delete(0)
            removed.append(path)
            log("%s: removed (the partial target of a storage move this host died in)" % path)
        for marker, (base, uuid) in markers:
            path = os.path.normpath(os.path.join(directory, base))
            try:
                arrived = conn.lookupByUUIDString(uuid) is not None
            # libvirtError: no such domain
            except Exception:  # pylint: disable=broad-except
                arrived = False
            if arrived or path in used or path in standing:
                log("%s: kept (%s)" % (path, "its VM runs here" if arrived or path in used else "an image stands on it"))
            else:
                try:
                    vol = pool.storageVolLookupByName(base)
                # the copy never started
                except Exception:  # pylint: disable=broad-except
                    vol = None
                if vol is not None:
                    vol.delete(0)
                    removed.append(path)
                    log("%s: removed (the partial copy of a migration this host died in)" % path)
            marker.delete(0)
    return removed


def main():
    import libvirt  # pylint: disable=import-outside-toplevel
    # a domain that is not here is an answer, not an error to print
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("qemu:///system")
    try:
        clean(conn, lambda line: print(line, flush=True))
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
