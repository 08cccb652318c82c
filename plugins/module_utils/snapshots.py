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
import time
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import disks, fileops, names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.actions import ActionRecorder

SNAP_NS = "https://kvmfusion.compute/xmlns/snapshots/1"
SNAP_KEY = "kvmfsnap"
# libvirt ABI constants (stable)
CREATE_REDEFINE, CREATE_CURRENT = 1, 2
CREATE_DISK_ONLY, CREATE_QUIESCE, CREATE_ATOMIC, CREATE_LIVE = 16, 64, 128, 256
DELETE_METADATA_ONLY = 2
LIST_DESCENDANTS = 1
SAVE_RUNNING, SAVE_PAUSED = 2, 4
DEFINE_VALIDATE = 1
REVERT_RUNNING, REVERT_PAUSED = 1, 2
LIBVIRT_EXTERNAL_REVERT = 9009000  # libvirt 9.9.0 reverts external snapshots
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
        root = xmlutil.parse(client.call("read", "snapshot", snap.getXMLDesc, 0))
        if root.find("parent") is not None:
            continue
        for el in root.findall("domain/devices/disk"):
            t = xmlutil.find_attr(el, "target", "dev")
            if t and disks.disk_source(el):
                bases.setdefault(t, disks.disk_source(el))
    return bases


def own_base(bases, target, top):
    """The base of the disk ``target`` whose current image is ``top``: its entry in disk_bases(), unless the
    disk was replaced since the root snapshot (that base is not below ``top``), when ``top`` is its own base."""
    base = bases.get(target, top)
    if top and os.path.exists(top) and base not in fileops.backing_chain(top):
        return top
    return base


def participating_disks(client, vm, running):
    """[(target, base file, take_part)]: persistent file disks take part; others are excluded."""
    out, rdm = [], []
    bases = disk_bases(client, vm)
    for el, src, mode in disks.attached_disks(client, vm, inactive=not running):
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

    for el, src, _mode in disks.attached_disks(client, vm, inactive=True):
        if el.get("device", "disk") == "disk" and el.get("type", "file") == "file" and src:
            t = xmlutil.find_attr(el, "target", "dev")
            bases.setdefault(t, src)
            down_to_base(src, t)
    dom = client.domain(vm)
    for snap in client.call("list snapshots of", "VM '%s'" % vm, dom.listAllSnapshots, 0):
        root = xmlutil.parse(client.call("read", "snapshot", snap.getXMLDesc, 0))
        for d in root.findall("disks/disk"):
            if d.get("snapshot") == "external" and xmlutil.find_attr(d, "source", "file"):
                down_to_base(xmlutil.find_attr(d, "source", "file"), d.get("name"))
        mem = root.find("memory")
        if mem is not None and mem.get("snapshot") == "external" and mem.get("file"):
            mems.add(mem.get("file"))
    return files, mems


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

    def __init__(self, client, uri, check_mode=False, run_command=None):
        self.client = client
        self.run_command = run_command
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
        disks.refresh_pools(self.client)

    def absent(self, vm, name):
        names.validate_name(vm, kind="VM")
        names.validate_name(name, kind="snapshot")
        dom = self._dom(vm)
        snap = self.client.snapshot(vm, name)
        if snap is None:
            return False, None
        facts = [s for s in snapshot_facts(self.client, dom, vm, self.local) if s["name"] == name][0]
        if self.local:
            # The merge writes the snapshot's data into the image it froze: clones made from it stand on that.
            _r, lay, _m = self.layout(snap)
            deps = disks.dependants_of(self.client, [fz for _ov, fz, _f in lay.values()], exclude_vm=vm)
            if deps:
                raise ValueError("snapshot '%s' of VM '%s' cannot be deleted: %s; delete the clones first"
                                 % (name, vm, disks.describe_dependants(deps)))
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

    # revert -------------------------------------------------------------------------------
    def _qemu_img(self, args):
        return disks.qemu_img(self.run_command, args)

    @staticmethod
    def has_own_data(path):
        """Whether an overlay holds data written since it was created (exact for running VMs too)."""
        return fileops.qcow2_has_data(path)

    def layout(self, snap):
        """{target: (overlay made when the snapshot was taken, frozen image holding the snapshot's data)}."""
        root = xmlutil.parse(self.client.call("read", "snapshot", snap.getXMLDesc, 0))
        frozen = {}
        for el in root.findall("domain/devices/disk"):
            frozen[xmlutil.find_attr(el, "target", "dev")] = (disks.disk_source(el), xmlutil.find_attr(el, "driver", "type"))
        out = {}
        for d in root.findall("disks/disk"):
            if d.get("snapshot") == "external":
                t = d.get("name")
                out[t] = (xmlutil.find_attr(d, "source", "file"), frozen.get(t, (None, None))[0],
                          frozen.get(t, (None, None))[1] or "raw")
        mem = root.find("memory")
        mem_file = mem.get("file") if mem is not None and mem.get("snapshot") == "external" else None
        return root, out, mem_file

    def revert(self, vm, name, discard_newer=True, state=None, save_current_as=None):
        """Return to snapshot ``name``: (changed, facts of the plan)."""
        names.validate_name(vm, kind="VM")
        names.validate_name(name, kind="snapshot")
        if save_current_as is not None:
            names.validate_name(save_current_as, kind="snapshot")
        dom = self._dom(vm)
        snap = self.client.snapshot(vm, name)
        if snap is None:
            raise ValueError("unknown snapshot '%s' of VM '%s'" % (name, vm))
        if not self.local:
            raise ValueError("snapshot_revert works on the disk files: run it on the CNA (uri %s is remote)" % self.uri)
        _root, lay, mem_file = self.layout(snap)
        running = bool(self.client.call("read state of", "VM '%s'" % vm, dom.isActive))
        want = state or ("running" if mem_file else "stopped")
        if mem_file and want != "stopped" and not os.path.exists(mem_file):
            raise ValueError("snapshot '%s': its memory file %s is missing" % (name, mem_file))
        parts, rdm = participating_disks(self.client, vm, False)
        if rdm:
            raise ValueError("VM '%s' has raw device mapping(s) %s, whose LUN cannot be reverted: detach them first"
                             % (vm, ", ".join(rdm)))
        current = {}
        for el, src, mode in disks.attached_disks(self.client, vm, inactive=True):
            current[xmlutil.find_attr(el, "target", "dev")] = (src, mode)
        taking = dict((t, b) for t, b, take in parts if take)
        for t in sorted(lay):
            if t not in taking:
                raise ValueError("snapshot '%s' has disk %s, which VM '%s' no longer has as a persistent disk: the "
                                 "disk set cannot be reverted" % (name, t, vm))
            if not lay[t][1] or not os.path.exists(lay[t][1]):
                raise ValueError("snapshot '%s': the image of %s (%s) is missing" % (name, t, lay[t][1]))
        added = sorted(set(taking) - set(lay))
        if added:
            raise ValueError("VM '%s' has disk(s) %s that snapshot '%s' does not contain: detach them (or make them "
                             "independent) first" % (vm, ", ".join(added), name))
        if mem_file and want != "stopped":
            indep = sorted(t for t, (_s, mode) in current.items() if mode != "persistent")
            if indep:
                raise ValueError("snapshot '%s' has guest memory, but independent disk(s) %s cannot return to that "
                                 "moment: revert with state=stopped (disks only)" % (name, ", ".join(indep)))
        # Where the VM sits now.
        cur_name = current_snapshot(self.client, dom, vm)
        active = dict((t, current[t][0]) for t in lay)
        own_data = dict((t, self.has_own_data(a) if fileops.qcow2_backing(a) else True) for t, a in active.items())
        at_snapshot = cur_name == name and all(fileops.qcow2_backing(active[t]) == lay[t][1] for t in lay)
        changed_data = any(own_data.values())
        power = "stopped" if not running else self._run_state(dom)
        if at_snapshot and not changed_data and power == want:
            return False, {"snapshot": name, "state": want}
        if save_current_as is not None and not discard_newer and self.client.snapshot(vm, save_current_as) is not None:
            raise ValueError("snapshot '%s' already exists: choose another save_current_as" % save_current_as)
        # What stays, what goes.
        descendants = []
        if discard_newer:
            children = self.client.call("list children of", "snapshot '%s'" % name, snap.listAllChildren, LIST_DESCENDANTS)
            descendants = [c.getName() for c in children]
        save_name = None
        if not discard_newer and changed_data:
            save_name = save_current_as or "%s-before-revert-%s" % (name, time.strftime("%Y%m%d%H%M%S", time.gmtime()))
            if self.client.snapshot(vm, save_name) is not None:
                raise ValueError("snapshot '%s' already exists: choose another save_current_as" % save_name)
        kept = [s for s in self._all_snapshots(dom, vm) if s not in descendants]
        needed, others = set(), set()
        for s in kept:
            _r, slay, _m = self.layout(self.client.snapshot(vm, s))
            for t, (ov, fz, _f) in slay.items():
                needed.update(fileops.backing_chain(fz))
                if s != name:
                    others.add(ov)
        needed |= others
        if save_name:
            for t in lay:
                needed.update(fileops.backing_chain(active[t]))
        garbage = set()
        for t in lay:
            # With the current state saved, its files are needed by the new snapshot.
            if save_name is None:
                garbage.update(fileops.backing_chain(active[t]))
        for s in descendants:
            _r, slay, smem = self.layout(self.client.snapshot(vm, s))
            for t, (ov, fz, _f) in slay.items():
                garbage.add(ov)
                garbage.update(fileops.backing_chain(fz))
        for b in taking.values():
            needed.update(fileops.backing_chain(b))
        garbage -= needed
        new_active = {}
        for t in sorted(lay):
            ov, i = lay[t][0], 0
            stem = ov[:-len(".qcow2")] if ov.endswith(".qcow2") else ov
            # The snapshot's own overlay name when nothing else needs that file, else <overlay>~N.qcow2
            # ('~' is not allowed in snapshot names, so these never collide with a snapshot's overlay).
            while ov in needed or (i and os.path.exists(ov)):
                i += 1
                ov = "%s~%d.qcow2" % (stem, i)
            new_active[t] = ov
        deps = disks.dependants_of(self.client, sorted(garbage | set(new_active.values())), exclude_vm=vm)
        if deps:
            raise ValueError("reverting VM '%s' to '%s' would remove or rewrite images that others stand on: %s"
                             % (vm, name, disks.describe_dependants(deps)))
        # Act.
        if not descendants and save_name is None and self._libvirt_reverts(mem_file, want):
            # libvirt >= 9.9 reverts external snapshots itself: new overlays on the snapshot's images, the
            # current state discarded. Where that is exactly what was asked, libvirt does it and keeps its
            # own bookkeeping; branches with a saved state and discarding newer snapshots stay ours.
            self._act("revert to %s with libvirt's own external revert" % name, self._libvirt_revert, dom, snap,
                      mem_file, want)
            self._act("refresh datastores", self._refresh_pools)
            return True, {"snapshot": name, "state": want, "saved_as": None, "discarded": [], "disks": None,
                          "engine": "libvirt"}
        if save_name:
            self._act("save the current state as snapshot %s" % save_name, self._save_current, vm, save_name)
        if running:
            self._act("power off (the current state is %s)" % ("saved" if save_name else "discarded"),
                      self.client.call, "power off", "VM '%s'" % vm, dom.destroy)
        for s in reversed(descendants):
            self._act("discard snapshot %s" % s, self._drop_snapshot, dom, vm, s)
        for f in sorted(garbage):
            if f not in new_active.values():
                self._act("delete %s" % f, self._unlink, f)
        for t in sorted(lay):
            self._act("new overlay %s on %s for %s" % (new_active[t], lay[t][1], t), self._overlay,
                      new_active[t], lay[t][1], lay[t][2])
        self._act("point %s at the new overlay(s)" % ", ".join(sorted(lay)), self._repoint, dom, vm, new_active)
        self._act("make %s the current snapshot" % name, self._set_current, dom, snap)
        if mem_file and want != "stopped":
            self._act("restore guest memory from %s (%s)" % (mem_file, want), self._restore, mem_file, new_active, want)
        elif want in ("running", "paused"):
            self._act("start", self._start, dom, want)
        self._act("refresh datastores", self._refresh_pools)
        return True, {"snapshot": name, "state": want, "saved_as": save_name, "discarded": descendants,
                      "disks": dict((t, new_active[t]) for t in sorted(lay)), "engine": "kvmfusion"}

    def _libvirt_reverts(self, mem_file, want):
        """Whether this host's libvirt reverts external snapshots itself (9.9.0 and later) the way asked."""
        if mem_file and want == "stopped":
            return False  # libvirt would resume the saved memory; disks-only of a memory snapshot is ours
        try:
            version = self.client.call("read the version of", "libvirt", self.client.conn.getLibVersion)
        except Exception:  # pylint: disable=broad-except
            return False
        return isinstance(version, int) and version >= LIBVIRT_EXTERNAL_REVERT

    def _libvirt_revert(self, dom, snap, mem_file, want):
        flags = {"running": REVERT_RUNNING, "paused": REVERT_PAUSED}.get(want, 0)
        self.client.call("revert to snapshot '%s' of" % snap.getName(), "VM '%s'" % dom.name(), dom.revertToSnapshot,
                         snap, flags)
        if not mem_file and want == "stopped" and dom.isActive():
            self.client.call("power off", "VM '%s'" % dom.name(), dom.destroy)

    def _run_state(self, dom):
        st = self.client.call("read state of", "VM '%s'" % dom.name(), dom.state, 0)[0]
        return "paused" if st == 3 else "running"

    def _all_snapshots(self, dom, vm):
        return [s.getName() for s in self.client.call("list snapshots of", "VM '%s'" % vm, dom.listAllSnapshots, 0)]

    def _save_current(self, vm, save_name):
        sub = SnapshotManager(self.client, self.uri, check_mode=False, run_command=self.run_command)
        sub.present(vm, save_name, description="state before a revert (kept by discard_newer=false)")

    def _drop_snapshot(self, dom, vm, s):
        snap = self.client.snapshot(vm, s)
        _r, _lay, smem = self.layout(snap)
        self.client.call("discard snapshot '%s' of" % s, "VM '%s'" % vm, snap.delete, DELETE_METADATA_ONLY)
        if smem and os.path.exists(smem):
            os.unlink(smem)
        self._record(dom, s, None)

    @staticmethod
    def _unlink(path):
        if os.path.exists(path):
            os.unlink(path)

    def _overlay(self, path, backing, fmt):
        if os.path.exists(path):
            os.unlink(path)
        self._qemu_img(["create", "-q", "-f", "qcow2", "-o", "compat=1.1", "-F", fmt, "-b", backing, path])

    def _repoint(self, dom, vm, new_active):
        root = xmlutil.parse(self.client.domain_xml(vm, inactive=True, secure=True))
        for el in root.findall("devices/disk"):
            t = xmlutil.find_attr(el, "target", "dev")
            if t not in new_active:
                continue
            disks.repoint_disk(el, new_active[t], "qcow2")
        self.client.define_domain(xmlutil.tostring(root), DEFINE_VALIDATE)

    def _set_current(self, dom, snap):
        xml = self.client.call("read", "snapshot", snap.getXMLDesc, 0)
        self.client.call("make current", "snapshot '%s'" % snap.getName(), dom.snapshotCreateXML, xml,
                         CREATE_REDEFINE | CREATE_CURRENT)

    def _restore(self, mem_file, new_active, want):
        conn = self.client.conn
        root = xmlutil.parse(self.client.call("read the saved domain in", mem_file, conn.saveImageGetXMLDesc, mem_file, 0))
        for el in root.findall("devices/disk"):
            t = xmlutil.find_attr(el, "target", "dev")
            if t in new_active:
                disks.repoint_disk(el, new_active[t], "qcow2")
        self.client.call("restore guest memory from", mem_file, conn.restoreFlags, mem_file, xmlutil.tostring(root),
                         SAVE_RUNNING if want == "running" else SAVE_PAUSED)

    def _start(self, dom, want):
        self.client.call("start", "VM '%s'" % dom.name(), dom.createWithFlags, 1 if want == "paused" else 0)
