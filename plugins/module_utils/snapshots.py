# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""VM snapshots: external qcow2 overlays per persistent disk, optionally guest memory.

libvirt 9.0 creates external snapshots and deletes them with a merge (any snapshot, live
or offline); it leaves the memory state file behind, which this module removes. Reverting
external snapshots is not in libvirt 9.0: reverts.py does it on the qcow2 chains.
Independent, non-persistent (transient) disks never take part; a VM with a raw device
mapping cannot be snapshotted (the LUN has no overlay).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import images, names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    AFFECT_CONFIG,
    AFFECT_LIVE,
    CREATE_ATOMIC,
    CREATE_CURRENT,
    CREATE_DISK_ONLY,
    CREATE_LIVE,
    CREATE_QUIESCE,
    CREATE_REDEFINE,
    DELETE_METADATA_ONLY,
    METADATA_ELEMENT,
    SNAPSHOT_XML_SECURE,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import attached_disks, disk_source
from ansible_collections.kvmfusion.compute.plugins.module_utils.images import disk_bases, own_base
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import refuse_under_ha

SNAP_NS = "https://kvmfusion.compute/xmlns/snapshots/1"
SNAP_KEY = "kvmfsnap"


def snapshot_order(entries):
    """Snapshot (name, parent, xml) entries ordered parents first."""
    by_name = dict((e[0], e) for e in entries)
    out, seen = [], set()

    def visit(name):
        if name in seen or name not in by_name:
            return
        seen.add(name)
        visit(by_name[name][1])
        out.append(by_name[name])
    for name in sorted(by_name):
        visit(name)
    return out


def lift_snapshots(client, dom, vm, purpose="move the metadata of"):
    """The VM's snapshots as [(name, parent, xml, current)], parents first, their XML read with SECURE; their
    metadata is deleted (a migration or a move of their images redefines them with put_snapshots)."""
    obj = "VM '%s'" % vm
    snaps = client.call("list snapshots of", obj, dom.listAllSnapshots, 0)
    if not snaps:
        return []
    current = None
    try:
        current = client.call("read current snapshot of", obj, dom.snapshotCurrent, 0).getName()
    except Exception:  # pylint: disable=broad-except
        current = None
    entries = []
    for snap in snaps:
        xml = client.call("read", "snapshot of %s" % obj, snap.getXMLDesc, SNAPSHOT_XML_SECURE)
        entries.append((snap.getName(), xmlutil.find_text(xmlutil.parse(xml), "parent/name"), xml,
                        snap.getName() == current))
    ordered = snapshot_order(entries)
    for entry in reversed(ordered):
        snap = client.snapshot(vm, entry[0])
        client.call(purpose, "snapshot '%s' of %s" % (entry[0], obj), snap.delete, DELETE_METADATA_ONLY)
    return ordered


def put_snapshots(client, dom, vm, lifted, where=None):
    """Redefine lifted snapshots, parents first, the current one marked; every image path in them (their disks
    and the definition they keep) found in ``where`` ({old path: new path}) is replaced by where it went."""
    for name, _parent, xml, current in lifted:
        if where:
            root = xmlutil.parse(xml)
            for el in root.iter("source"):
                path = el.get("file")
                if path and os.path.normpath(path) in where:
                    el.set("file", where[os.path.normpath(path)])
            xml = xmlutil.tostring(root)
        client.call("redefine", "snapshot '%s' of VM '%s'" % (name, vm), dom.snapshotCreateXML, xml,
                    CREATE_REDEFINE | (CREATE_CURRENT if current else 0))


def _quiesced_record(client, vm):
    xml = client.domain_xml(vm, inactive=True)
    root = xmlutil.parse(xml)
    out = {}
    for el in root.findall("metadata/{%s}snapshots/{%s}snapshot" % (SNAP_NS, SNAP_NS)):
        out[el.get("name")] = el.get("quiesced") == "true"
    return out


def _record_xml(records):
    root = ET.Element("snapshots")
    for name in sorted(records):
        ET.SubElement(root, "snapshot", name=name, quiesced="true" if records[name] else "false")
    return xmlutil.tostring(root)


def record_quiesced(client, dom, name, quiesced):
    """Record in the VM's metadata whether snapshot ``name`` is quiesced; None forgets the snapshot."""
    records = _quiesced_record(client, dom.name())
    if quiesced is None:
        records.pop(name, None)
    else:
        records[name] = quiesced
    running = bool(client.call("read state of", "VM '%s'" % dom.name(), dom.isActive))
    flags = AFFECT_CONFIG | (AFFECT_LIVE if running else 0)
    client.call("record snapshots of", "VM '%s'" % dom.name(), dom.setMetadata, METADATA_ELEMENT,
                _record_xml(records), SNAP_KEY, SNAP_NS, flags)


def participating_disks(client, vm, running):
    """[(target, base file, take_part)]: persistent file disks take part; others are excluded."""
    out, rdm = [], []
    bases = disk_bases(client, vm)
    for el, src, mode in attached_disks(client, vm, inactive=not running):
        target = xmlutil.find_attr(el, "target", "dev")
        if el.get("device") == "lun":
            rdm.append(target)
            continue
        if el.get("device", "disk") != "disk":
            continue
        take = el.get("type") == "file" and mode == "persistent" and el.find("transient") is None and \
            el.find("readonly") is None
        out.append((target, own_base(bases, target, src), take))
    return out, rdm


def current_snapshot(client, dom, vm):
    """The name of the VM's current snapshot, or None."""
    try:
        return client.call("read current snapshot of", "VM '%s'" % vm, dom.snapshotCurrent, 0).getName()
    except Exception:  # pylint: disable=broad-except
        return None


def snapshot_facts(client, dom, vm, local):
    records = _quiesced_record(client, vm)
    current = current_snapshot(client, dom, vm)
    out = []
    for snap in client.call("list snapshots of", "VM '%s'" % vm, dom.listAllSnapshots, 0):
        root = xmlutil.parse(client.call("read", "snapshot", snap.getXMLDesc, SNAPSHOT_XML_SECURE))
        name = xmlutil.find_text(root, "name")
        mem = root.find("memory")
        mem_file = mem.get("file") if mem is not None and mem.get("snapshot") == "external" else None
        snap_disks, size = [], 0
        for d in root.findall("disks/disk"):
            if d.get("snapshot") != "external":
                continue
            f = xmlutil.find_attr(d, "source", "file")
            snap_disks.append({"target": d.get("name"), "overlay": f})
            if local and f and os.path.exists(f):
                size += os.stat(f).st_blocks * 512
        if local and mem_file and os.path.exists(mem_file):
            size += os.stat(mem_file).st_blocks * 512
        out.append({
            "name": name,
            "parent": xmlutil.find_text(root, "parent/name"),
            "description": xmlutil.find_text(root, "description"),
            "creation_time": int(xmlutil.find_text(root, "creationTime") or 0),
            "vm_state": xmlutil.find_text(root, "state"),
            "memory": mem_file is not None,
            "memory_file": mem_file,
            "quiesced": records.get(name, False),
            "disks": snap_disks,
            "size_on_disk": size if local else None,
            "current": name == current,
        })
    return sorted(out, key=lambda s: (s["creation_time"], s["name"]))


def layout(client, snap):
    """(snapshot XML root, {target: (overlay made when the snapshot was taken, frozen image holding the snapshot's
    data, its format)}, memory file or None)."""
    root = xmlutil.parse(client.call("read", "snapshot", snap.getXMLDesc, SNAPSHOT_XML_SECURE))
    frozen = {}
    for el in root.findall("domain/devices/disk"):
        frozen[xmlutil.find_attr(el, "target", "dev")] = (disk_source(el), xmlutil.find_attr(el, "driver", "type"))
    out = {}
    for d in root.findall("disks/disk"):
        if d.get("snapshot") == "external":
            t = d.get("name")
            out[t] = (xmlutil.find_attr(d, "source", "file"), frozen.get(t, (None, None))[0],
                      frozen.get(t, (None, None))[1] or "raw")
    mem = root.find("memory")
    mem_file = mem.get("file") if mem is not None and mem.get("snapshot") == "external" else None
    return root, out, mem_file


def all_snapshots(client, dom, vm):
    """The names of the VM's snapshots."""
    return [s.getName() for s in client.call("list snapshots of", "VM '%s'" % vm, dom.listAllSnapshots, 0)]


def _snapshot_xml(name, description, mem_file, parts):
    """The domainsnapshot XML: an external overlay per taking disk, the others left out, memory or not."""
    snap = ET.Element("domainsnapshot")
    ET.SubElement(snap, "name").text = name
    if description:
        ET.SubElement(snap, "description").text = description
    if mem_file:
        ET.SubElement(snap, "memory", snapshot="external", file=mem_file)
    else:
        ET.SubElement(snap, "memory", snapshot="no")
    dl = ET.SubElement(snap, "disks")
    for target, src, take in parts:
        if take:
            d = ET.SubElement(dl, "disk", name=target, snapshot="external")
            ET.SubElement(d, "driver", type="qcow2")
            ET.SubElement(d, "source", file=images.overlay_path(src, name))
        else:
            ET.SubElement(dl, "disk", name=target, snapshot="no")
    return xmlutil.tostring(snap)


class SnapshotManager(Manager):
    """Takes and deletes one snapshot of one VM."""

    def __init__(self, client, check_mode=False, run_command=None, journal=None):
        super(SnapshotManager, self).__init__(client, check_mode=check_mode, run_command=run_command, journal=journal)
        self.quiesced = None

    def converge(self, params):
        """The snapshot module: snapshot ``name`` of ``vm`` present (taken) or absent (merged away)."""
        p = params
        if p["state"] == "absent":
            changed, before = self.absent(p["vm"], p["name"])
            after = None
        else:
            changed, before = self.present(p["vm"], p["name"], p.get("description"), p.get("memory"),
                                           p.get("quiesce") or "false")
            after = {"name": p["name"], "memory": p.get("memory")} if changed else before
        info = None
        if p["state"] == "present" and not self.check_mode:
            dom = self.client.domain(p["vm"])
            found = [s for s in snapshot_facts(self.client, dom, p["vm"], self.local) if s["name"] == p["name"]]
            info = found[0] if found else None
        return self.result(before, after, changed=changed, snapshot=info,
                           quiesced=self.quiesced if changed and p["state"] == "present" else None)

    def _dom(self, vm):
        dom = self.client.domain(vm)
        if dom is None:
            raise ValueError("unknown VM '%s' on %s" % (vm, self.uri))
        return dom

    def present(self, vm, name, description=None, memory=False, quiesce="false"):
        names.validate_name(vm, kind="VM")
        names.validate_name(name, kind="snapshot")
        dom = self._dom(vm)
        running = bool(self.client.call("read state of", "VM '%s'" % vm, dom.isActive))
        existing = self.client.snapshot(vm, name)
        if existing is not None:
            facts = [s for s in snapshot_facts(self.client, dom, vm, self.local) if s["name"] == name][0]
            if facts["memory"] != bool(memory):
                raise ValueError("snapshot '%s' of VM '%s' exists with memory=%s; snapshots are immutable: delete it "
                                 "or use another name" % (name, vm, facts["memory"]))
            return False, facts
        refuse_under_ha(self._run_command, self.local, vm, "taking snapshot '%s'" % name)
        if memory and quiesce != "false":
            raise ValueError("snapshot '%s': quiesce applies to disk-only snapshots (a memory snapshot is already "
                             "consistent)" % name)
        if memory and not running:
            raise ValueError("snapshot '%s': VM '%s' is not running, so there is no memory to save" % (name, vm))
        parts, rdm = participating_disks(self.client, vm, running)
        if rdm:
            raise ValueError("VM '%s' has raw device mapping(s) %s, which cannot be snapshotted" % (vm, ", ".join(rdm)))
        taking = [(t, s) for t, s, take in parts if take]
        if not taking:
            raise ValueError("VM '%s' has no persistent disk to snapshot" % vm)
        self.need_local("taking a snapshot (it creates overlay and memory files)")
        mem_file = images.memory_path(os.path.dirname(taking[0][1]), vm, name) if memory else None
        new_files = [images.overlay_path(src, name) for _t, src in taking] + ([mem_file] if mem_file else [])
        for f in new_files:
            if os.path.lexists(f):
                raise ValueError("snapshot '%s': %s already exists" % (name, f))
        xml = _snapshot_xml(name, description, mem_file, parts)
        flags = CREATE_ATOMIC | (CREATE_LIVE if memory else CREATE_DISK_ONLY)
        what = "create snapshot %s of %s%s" % (name, ", ".join(t for t, _s in taking), " with memory" if memory else "")
        if quiesce == "false" or not running:
            if quiesce != "false" and not running:
                self.warn("VM '%s' is not running: its file systems are already at rest (no quiesce needed)" % vm)
            self.quiesced = False
            self.act(what, self._create, dom, xml, flags, name, False, new_files)
        elif quiesce == "true":
            self.quiesced = True
            self.act(what + " (quiesced)", self._create, dom, xml, flags | CREATE_QUIESCE, name, True, new_files)
        else:
            self.act(what + " (quiesced if the guest agent answers)", self._create_best_effort, dom, xml, flags, name,
                     new_files)
        return True, None

    def _create(self, dom, xml, flags, name, quiesced, new_files):
        vm = dom.name()
        self.client.call("create snapshot '%s' of" % name, "VM '%s'" % vm, dom.snapshotCreateXML, xml, flags)
        # libvirt creates the overlays and the memory file with its own mode: they hold guest data.
        for f in new_files:
            if os.path.exists(f):
                os.chmod(f, 0o600)
        self._record(dom, name, quiesced)
        self._refresh_pools()

    def _create_best_effort(self, dom, xml, flags, name, new_files):
        try:
            self._create(dom, xml, flags | CREATE_QUIESCE, name, True, new_files)
            self.quiesced = True
        except Exception as e:  # pylint: disable=broad-except
            self.warn("snapshot '%s' of VM '%s' is NOT quiesced: %s" % (name, dom.name(), str(e)))
            self.quiesced = False
            self._create(dom, xml, flags, name, False, new_files)

    def _record(self, dom, name, quiesced):
        record_quiesced(self.client, dom, name, quiesced)

    def _refresh_pools(self):
        images.refresh_pools(self.client)

    def absent(self, vm, name):
        names.validate_name(vm, kind="VM")
        names.validate_name(name, kind="snapshot")
        dom = self._dom(vm)
        snap = self.client.snapshot(vm, name)
        if snap is None:
            return False, None
        refuse_under_ha(self._run_command, self.local, vm, "deleting snapshot '%s'" % name)
        self.need_local("deleting a snapshot (it merges images and removes files)")
        facts = [s for s in snapshot_facts(self.client, dom, vm, self.local) if s["name"] == name][0]
        # The merge writes the snapshot's data into the image it froze: clones made from it stand on that.
        _r, lay, _m = layout(self.client, snap)
        deps = images.dependants_of(self.client, [fz for _ov, fz, _f in lay.values()], exclude_vm=vm)
        if deps:
            raise ValueError("snapshot '%s' of VM '%s' cannot be deleted: %s; delete the clones first"
                             % (name, vm, images.describe_dependants(deps)))
        self.act("delete snapshot %s (merge %s)" % (name, ", ".join(d["target"] for d in facts["disks"]) or "no disks"),
                 self._delete, dom, snap, name, facts)
        return True, facts

    def _delete(self, dom, snap, name, facts):
        # libvirt merges the overlays so no data of this or any other snapshot is lost.
        try:
            self.client.call("delete snapshot '%s' of" % name, "VM '%s'" % dom.name(), snap.delete, 0)
        except Exception as e:  # pylint: disable=broad-except
            if "Lockspace resource" in str(e) and "is locked" in str(e):
                # libvirt with virtlockd leases (9.0 and 11.3 alike): after a live merge into a disk's base, the
                # base's lease is not released, so the next live merge into it is refused before anything changes.
                raise ValueError("snapshot '%s' of VM '%s' cannot be merged while the VM runs: an earlier live "
                                 "merge left the base disk's lease held (libvirt with virtlockd); nothing was "
                                 "changed. Delete it with the VM stopped, or after its next power cycle" % (name, dom.name()))
            raise
        if facts["memory_file"] and os.path.exists(facts["memory_file"]):
            os.unlink(facts["memory_file"])
        self._record(dom, name, None)
        self._refresh_pools()
