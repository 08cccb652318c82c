# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""VM snapshots: external qcow2 overlays per persistent disk, optionally guest memory.

libvirt 9.0 creates external snapshots and deletes them with a merge (any snapshot, live
or offline); it leaves the memory state file behind, which this module removes. Reverting
external snapshots is not in libvirt 9.0 (see the snapshot_revert module).
Independent, non-persistent (transient) disks never take part; a VM with a raw device
mapping cannot be snapshotted (the LUN has no overlay).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import disks, names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.actions import ActionRecorder

SNAP_NS = "https://kvmfusion.compute/xmlns/snapshots/1"
SNAP_KEY = "kvmfsnap"
# libvirt ABI constants (stable)
CREATE_DISK_ONLY, CREATE_QUIESCE, CREATE_ATOMIC, CREATE_LIVE = 16, 64, 128, 256
METADATA_ELEMENT = 2
AFFECT_LIVE, AFFECT_CONFIG = 1, 2


def overlay_path(source, snap):
    stem, _ext = os.path.splitext(os.path.basename(source))
    return os.path.join(os.path.dirname(source), "%s.%s.qcow2" % (stem, snap))


def memory_path(vm_disk_dir, vm, snap):
    return os.path.join(vm_disk_dir, ".%s.%s.mem" % (vm, snap))


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


def _base_of(el, src):
    """The bottom of a disk's backing chain (its original file): overlays are named after it."""
    base, node = src, el
    while True:
        bs = node.find("backingStore")
        if bs is None or bs.find("source") is None:
            return base
        base = bs.find("source").get("file") or base
        node = bs


def participating_disks(client, vm, running):
    """[(target, base file, take_part)]: persistent file disks take part; others are excluded."""
    out, rdm = [], []
    for el, src, mode in disks.attached_disks(client, vm, inactive=not running):
        target = xmlutil.find_attr(el, "target", "dev")
        if el.get("device") == "lun":
            rdm.append(target)
            continue
        if el.get("device", "disk") != "disk":
            continue
        take = el.get("type") == "file" and mode == "persistent" and el.find("transient") is None and \
            el.find("readonly") is None
        out.append((target, _base_of(el, src), take))
    return out, rdm


def snapshot_facts(client, dom, vm, local):
    records = _quiesced_record(client, vm)
    try:
        current = client.call("read current snapshot of", "VM '%s'" % vm, dom.snapshotCurrent, 0).getName()
    except Exception:  # pylint: disable=broad-except
        current = None
    out = []
    for snap in client.call("list snapshots of", "VM '%s'" % vm, dom.listAllSnapshots, 0):
        root = xmlutil.parse(client.call("read", "snapshot", snap.getXMLDesc, 0))
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


class SnapshotManager(ActionRecorder):

    def __init__(self, client, uri, check_mode=False):
        self.client = client
        self.uri = uri
        self.local = disks.is_local_uri(uri)
        self.check_mode = check_mode
        self.actions = []
        self.warnings = []
        self.quiesced = None

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
        for _t, src in taking:
            ov = overlay_path(src, name)
            if self.local and os.path.exists(ov):
                raise ValueError("snapshot '%s': %s already exists" % (name, ov))
        snap = ET.Element("domainsnapshot")
        ET.SubElement(snap, "name").text = name
        if description:
            ET.SubElement(snap, "description").text = description
        mem_file = None
        if memory:
            mem_file = memory_path(os.path.dirname(taking[0][1]), vm, name)
            ET.SubElement(snap, "memory", snapshot="external", file=mem_file)
        else:
            ET.SubElement(snap, "memory", snapshot="no")
        dl = ET.SubElement(snap, "disks")
        for target, src, take in parts:
            if take:
                d = ET.SubElement(dl, "disk", name=target, snapshot="external")
                ET.SubElement(d, "driver", type="qcow2")
                ET.SubElement(d, "source", file=overlay_path(src, name))
            else:
                ET.SubElement(dl, "disk", name=target, snapshot="no")
        flags = CREATE_ATOMIC | (CREATE_LIVE if memory else CREATE_DISK_ONLY)
        what = "create snapshot %s of %s%s" % (name, ", ".join(t for t, _s in taking), " with memory" if memory else "")
        xml = xmlutil.tostring(snap)
        if quiesce == "false" or not running:
            if quiesce != "false" and not running:
                self.warnings.append("VM '%s' is not running: its file systems are already at rest (no quiesce needed)" % vm)
            self.quiesced = False
            self._act(what, self._create, dom, xml, flags, name, False)
        elif quiesce == "true":
            self.quiesced = True
            self._act(what + " (quiesced)", self._create, dom, xml, flags | CREATE_QUIESCE, name, True)
        else:
            self._act(what + " (quiesced if the guest agent answers)", self._create_best_effort, dom, xml, flags, name)
        return True, None

    def _create(self, dom, xml, flags, name, quiesced):
        vm = dom.name()
        self.client.call("create snapshot '%s' of" % name, "VM '%s'" % vm, dom.snapshotCreateXML, xml, flags)
        self._record(dom, name, quiesced)
        self._refresh_pools()

    def _create_best_effort(self, dom, xml, flags, name):
        try:
            self._create(dom, xml, flags | CREATE_QUIESCE, name, True)
            self.quiesced = True
        except Exception as e:  # pylint: disable=broad-except
            self.warnings.append("snapshot '%s' of VM '%s' is NOT quiesced: %s" % (name, dom.name(), str(e)))
            self.quiesced = False
            self._create(dom, xml, flags, name, False)

    def _record(self, dom, name, quiesced):
        records = _quiesced_record(self.client, dom.name())
        if quiesced is None:
            records.pop(name, None)
        else:
            records[name] = quiesced
        running = bool(dom.isActive())
        flags = AFFECT_CONFIG | (AFFECT_LIVE if running else 0)
        self.client.call("record snapshots of", "VM '%s'" % dom.name(), dom.setMetadata, METADATA_ELEMENT,
                         _record_xml(records), SNAP_KEY, SNAP_NS, flags)

    def _refresh_pools(self):
        for pname in self.client.pool_names():
            pool = self.client.pool(pname)
            if pool is not None and pool.isActive():
                self.client.call("refresh", "datastore '%s'" % pname, pool.refresh, 0)

    def absent(self, vm, name):
        names.validate_name(vm, kind="VM")
        names.validate_name(name, kind="snapshot")
        dom = self._dom(vm)
        snap = self.client.snapshot(vm, name)
        if snap is None:
            return False, None
        facts = [s for s in snapshot_facts(self.client, dom, vm, self.local) if s["name"] == name][0]
        self._act("delete snapshot %s (merge %s)" % (name, ", ".join(d["target"] for d in facts["disks"]) or "no disks"),
                  self._delete, dom, snap, name, facts)
        return True, facts

    def _delete(self, dom, snap, name, facts):
        # libvirt merges the overlays so no data of this or any other snapshot is lost.
        try:
            self.client.call("delete snapshot '%s' of" % name, "VM '%s'" % dom.name(), snap.delete, 0)
        except Exception as e:  # pylint: disable=broad-except
            if "Lockspace resource" in str(e) and "is locked" in str(e):
                # libvirt 9.0 with virtlockd leases: after a live merge into a disk's base, the base's lease
                # is not released, so the next live merge into it is refused before anything changes.
                raise ValueError("snapshot '%s' of VM '%s' cannot be merged while the VM runs: an earlier live "
                                 "merge left the base disk's lease held (libvirt 9.0 with virtlockd); nothing was "
                                 "changed. Delete it with the VM stopped, or after its next power cycle" % (name, dom.name()))
            raise
        if facts["memory_file"] and os.path.exists(facts["memory_file"]):
            os.unlink(facts["memory_file"])
        self._record(dom, name, None)
        self._refresh_pools()
