# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Snapshot revert on the qcow2 chains (libvirt 9.0 cannot revert external snapshots).

A snapshot's data is the image it froze. Reverting gives every disk of the snapshot a new,
empty overlay on that image (the snapshot itself is never written), repoints the
definition, makes the snapshot current and, for a memory snapshot, restores the guest.
Newer snapshots are discarded, or kept with the current state saved as a snapshot of its
own (a branch).

libvirt >= 9.9 reverts external snapshots itself, and the code to hand it the reverts it does exactly as asked is
here, but off (``RevertManager.native_revert``): on libvirt 11.3 (tests/generations, the snapshot_revert target)
its revert made its new overlays mode 0644 and named them ``<active file>.<epoch>``, a name the collection neither
derives nor recognises, and the next revert that discards newer snapshots was then refused. The collection's own
engine reverts on every libvirt until libvirt's overlays can be taken over under the collection's names and modes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, images, names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    AFFECT_CONFIG,
    AFFECT_LIVE,
    CREATE_CURRENT,
    CREATE_REDEFINE,
    DEFINE_VALIDATE,
    DELETE_METADATA_ONLY,
    LIBVIRT_EXTERNAL_REVERT,
    LIST_DESCENDANTS,
    METADATA_ELEMENT,
    REVERT_PAUSED,
    REVERT_RUNNING,
    SAVE_IMAGE_XML_SECURE,
    SAVE_PAUSED,
    SAVE_RUNNING,
    SNAPSHOT_XML_SECURE,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import attached_disks, repoint_disk
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import refuse_under_ha
from ansible_collections.kvmfusion.compute.plugins.module_utils.snapshots import (
    SnapshotManager,
    all_snapshots,
    current_snapshot,
    layout,
    participating_disks,
    record_quiesced,
    snapshot_facts,
)


REVERT_NS = "https://kvmfusion.compute/xmlns/revert/1"
REVERT_KEY = "kvmfrevert"


def _unlink(path):
    if os.path.lexists(path):
        os.unlink(path)


def pending_deletes(client, vm):
    """Files an interrupted revert switched away from and had still to delete (recorded in the VM's metadata)."""
    root = xmlutil.parse(client.domain_xml(vm, inactive=True) or "<domain/>")
    return sorted(el.get("path") for el in root.findall("metadata/{%s}pending/{%s}file" % (REVERT_NS, REVERT_NS))
                  if el.get("path"))


class RevertManager(Manager):
    """Returns one VM to one of its snapshots."""

    #: let libvirt >= 9.9 do the reverts it does exactly as asked (off: see the module docstring)
    native_revert = False

    def converge(self, params):
        """The snapshot_revert module."""
        p = params
        dom = self.client.domain(p["vm"])
        before_current = current_snapshot(self.client, dom, p["vm"]) if dom is not None else None
        changed, plan = self.revert(p["vm"], p["name"], p.get("discard_newer", True), p.get("state"),
                                    p.get("save_current_as"))
        tree = None
        if not self.check_mode:
            tree = snapshot_facts(self.client, self.client.domain(p["vm"]), p["vm"], self.local)
        return self.result({"current": before_current}, {"current": p["name"], "state": plan["state"]},
                           changed=changed, revert=plan if changed else None, snapshots=tree)

    @staticmethod
    def has_own_data(path):
        """Whether an overlay holds data written since it was created (exact for running VMs too)."""
        return fileops.qcow2_has_data(path)

    def revert(self, vm, name, discard_newer=True, state=None, save_current_as=None):
        """Return to snapshot ``name``: (changed, facts of the plan)."""
        if save_current_as is not None and discard_newer:
            raise ValueError("save_current_as keeps the current state on a branch, which needs discard_newer=false "
                             "(discard_newer=true discards it)")
        ctx = self._validate(vm, name, state, save_current_as)
        if ctx["at_snapshot"] and not ctx["changed_data"] and ctx["power"] == ctx["want"]:
            if self._finish_interrupted(ctx):
                return True, {"snapshot": name, "state": ctx["want"]}
            return False, {"snapshot": name, "state": ctx["want"]}
        refuse_under_ha(self._run_command, self.local, vm, "reverting to snapshot '%s'" % name)
        plan = self._plan(ctx, discard_newer, save_current_as)
        if not plan["descendants"] and plan["save_name"] is None and self._libvirt_reverts(ctx["mem_file"], ctx["want"]):
            # libvirt >= 9.9 reverts external snapshots itself: new overlays on the snapshot's images, the
            # current state discarded. Where that is exactly what was asked, libvirt does it and keeps its
            # own bookkeeping; branches with a saved state and discarding newer snapshots stay ours.
            self.act("revert to %s with libvirt's own external revert" % name, self._libvirt_revert, ctx["dom"],
                     ctx["snap"], ctx["mem_file"], ctx["want"])
            self.act("refresh datastores", images.refresh_pools, self.client)
            return True, {"snapshot": name, "state": ctx["want"], "saved_as": None, "discarded": [], "disks": None,
                          "engine": "libvirt"}
        self._execute(ctx, plan)
        lay = ctx["lay"]
        return True, {"snapshot": name, "state": ctx["want"], "saved_as": plan["save_name"],
                      "discarded": plan["descendants"], "disks": dict((t, plan["new_active"][t]) for t in sorted(lay)),
                      "engine": "kvmfusion"}

    # validate -----------------------------------------------------------------------------
    def _validate(self, vm, name, state, save_current_as):
        """Everything that can be refused, refused before any change; returns what the plan needs."""
        names.validate_name(vm, kind="VM")
        names.validate_name(name, kind="snapshot")
        if save_current_as is not None:
            names.validate_name(save_current_as, kind="snapshot")
        dom = self.client.domain(vm)
        if dom is None:
            raise ValueError("unknown VM '%s' on %s" % (vm, self.uri))
        snap = self.client.snapshot(vm, name)
        if snap is None:
            raise ValueError("unknown snapshot '%s' of VM '%s'" % (name, vm))
        if not self.local:
            raise ValueError("snapshot_revert works on the disk files: run it on the CNA (uri %s is remote)" % self.uri)
        _root, lay, mem_file = layout(self.client, snap)
        running = bool(self.client.call("read state of", "VM '%s'" % vm, dom.isActive))
        want = state or ("running" if mem_file else "stopped")
        if mem_file and want != "stopped" and not os.path.exists(mem_file):
            raise ValueError("snapshot '%s': its memory file %s is missing" % (name, mem_file))
        parts, rdm = participating_disks(self.client, vm, False)
        if rdm:
            raise ValueError("VM '%s' has raw device mapping(s) %s, whose LUN cannot be reverted: detach them first"
                             % (vm, ", ".join(rdm)))
        current = {}
        for el, src, mode in attached_disks(self.client, vm, inactive=True):
            current[xmlutil.find_attr(el, "target", "dev")] = (src, mode)
        taking = dict((t, b) for t, b, take in parts if take)
        self._check_disk_set(vm, name, lay, taking)
        if mem_file and want != "stopped":
            indep = sorted(t for t, (_s, mode) in current.items() if mode != "persistent")
            if indep:
                raise ValueError("snapshot '%s' has guest memory, but independent disk(s) %s cannot return to that "
                                 "moment: revert with state=stopped (disks only)" % (name, ", ".join(indep)))
        # Where the VM sits now.
        active = dict((t, current[t][0]) for t in lay)
        own_data = dict((t, self.has_own_data(a) if fileops.qcow2_backing(a) else True) for t, a in active.items())
        at_snapshot = current_snapshot(self.client, dom, vm) == name and \
            all(fileops.qcow2_backing(active[t]) == lay[t][1] for t in lay)
        return {"vm": vm, "name": name, "dom": dom, "snap": snap, "lay": lay, "mem_file": mem_file,
                "running": running, "want": want, "taking": taking, "active": active,
                "at_snapshot": at_snapshot, "changed_data": any(own_data.values()),
                "power": "stopped" if not running else self._run_state(dom)}

    @staticmethod
    def _check_disk_set(vm, name, lay, taking):
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

    # plan ---------------------------------------------------------------------------------
    def _plan(self, ctx, discard_newer, save_current_as):
        """What stays, what goes, and the new overlays; refuses what others stand on."""
        vm, name, snap, lay = ctx["vm"], ctx["name"], ctx["snap"], ctx["lay"]
        if save_current_as is not None and not discard_newer and self.client.snapshot(vm, save_current_as) is not None:
            raise ValueError("snapshot '%s' already exists: choose another save_current_as" % save_current_as)
        descendants = []
        if discard_newer:
            children = self.client.call("list children of", "snapshot '%s'" % name, snap.listAllChildren, LIST_DESCENDANTS)
            descendants = [c.getName() for c in children]
        save_name = None
        if not discard_newer and ctx["changed_data"]:
            save_name = save_current_as or "%s-before-revert-%s" % (name, time.strftime("%Y%m%d%H%M%S", time.gmtime()))
            if self.client.snapshot(vm, save_name) is not None:
                raise ValueError("snapshot '%s' already exists: choose another save_current_as" % save_name)
        needed, garbage = self._files_kept_and_dropped(ctx, descendants, save_name)
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
        deps = images.dependants_of(self.client, sorted(garbage | set(new_active.values())), exclude_vm=vm)
        if deps:
            raise ValueError("reverting VM '%s' to '%s' would remove or rewrite images that others stand on: %s"
                             % (vm, name, images.describe_dependants(deps)))
        return {"descendants": descendants, "save_name": save_name, "garbage": garbage, "new_active": new_active}

    def _files_kept_and_dropped(self, ctx, descendants, save_name):
        """(files a kept snapshot, the disks' bases or the saved state need; files nothing needs any more)."""
        vm, name, lay, active = ctx["vm"], ctx["name"], ctx["lay"], ctx["active"]
        kept = [s for s in all_snapshots(self.client, ctx["dom"], vm) if s not in descendants]
        needed, others = set(), set()
        for s in kept:
            _r, slay, _m = layout(self.client, self.client.snapshot(vm, s))
            for _t, (ov, fz, _f) in slay.items():
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
            _r, slay, smem = layout(self.client, self.client.snapshot(vm, s))
            for _t, (ov, fz, _f) in slay.items():
                garbage.add(ov)
                garbage.update(fileops.backing_chain(fz))
            if smem:
                garbage.add(smem)
        for b in ctx["taking"].values():
            needed.update(fileops.backing_chain(b))
        return needed, garbage - needed

    # act ----------------------------------------------------------------------------------
    def _execute(self, ctx, plan):
        """Create first, switch, then delete: the new overlays exist (under names only this collection makes)
        before anything is powered off or removed, so a failure at any step leaves the VM on files that exist,
        and a re-run converges."""
        vm, name, dom, snap, lay = ctx["vm"], ctx["name"], ctx["dom"], ctx["snap"], ctx["lay"]
        new_active, save_name, want, mem_file = plan["new_active"], plan["save_name"], ctx["want"], ctx["mem_file"]
        temps = dict((t, images.temp_path(new_active[t], "new")) for t in lay)
        try:
            for t in sorted(lay):
                self.act("new overlay %s on %s for %s" % (new_active[t], lay[t][1], t), self._overlay,
                         temps[t], lay[t][1], lay[t][2])
            if save_name:
                self.act("save the current state as snapshot %s" % save_name, self._save_current, vm, save_name)
            if ctx["running"]:
                self.act("power off (the current state is %s)" % ("saved" if save_name else "discarded"),
                         self.client.call, "power off", "VM '%s'" % vm, dom.destroy)
            for s in reversed(plan["descendants"]):
                self.act("discard snapshot %s" % s, self._drop_snapshot, dom, vm, s)
            garbage = sorted(f for f in plan["garbage"] if f not in new_active.values())
            if garbage:
                # Written down before the switch: a run killed after it finishes the deletes next time.
                self.act("note the files to delete after the switch", self._note_pending, dom, vm, garbage)
            self.act("point %s at the new overlay(s)" % ", ".join(sorted(lay)), self._switch, dom, vm, temps,
                     new_active)
        finally:
            if not self.check_mode:
                for tmp in temps.values():
                    if os.path.lexists(tmp):
                        os.unlink(tmp)
        self.act("make %s the current snapshot" % name, self._set_current, dom, snap)
        for f in garbage:
            self.act("delete %s" % f, _unlink, f)
        if garbage:
            self.act("clear the note", self._note_pending, dom, vm, [])
        if mem_file and want != "stopped":
            self.act("restore guest memory from %s (%s)" % (mem_file, want), self._restore, mem_file, new_active, want)
        elif want in ("running", "paused"):
            self.act("start", self._start, dom, want)
        self.act("refresh datastores", images.refresh_pools, self.client)

    def _note_pending(self, dom, vm, files):
        root = ET.Element("pending")
        for f in files:
            ET.SubElement(root, "file", path=f)
        running = bool(self.client.call("read state of", "VM '%s'" % vm, dom.isActive))
        self.client.call("record pending deletes of", "VM '%s'" % vm, dom.setMetadata, METADATA_ELEMENT,
                         xmlutil.tostring(root), REVERT_KEY, REVERT_NS, AFFECT_CONFIG | (AFFECT_LIVE if running else 0))

    def _finish_interrupted(self, ctx):
        """Delete what an interrupted revert left to delete, if nothing uses it now; True if there was any."""
        vm, dom = ctx["vm"], ctx["dom"]
        pending = pending_deletes(self.client, vm)
        if not pending:
            return False
        in_use = set()
        for _t, src in ctx["active"].items():
            in_use.update(fileops.backing_chain(src))
        for s in all_snapshots(self.client, dom, vm):
            _r, slay, smem = layout(self.client, self.client.snapshot(vm, s))
            for _t, (ov, fz, _f) in slay.items():
                in_use.add(ov)
                in_use.update(fileops.backing_chain(fz))
            in_use.add(smem)
        deps = images.dependants_of(self.client, pending, exclude_vm=vm)
        for f in pending:
            if f not in in_use and f not in deps:
                self.act("delete %s (left by an interrupted revert)" % f, _unlink, f)
        self.act("clear the note", self._note_pending, dom, vm, [])
        return True

    def _libvirt_reverts(self, mem_file, want):
        """Whether this host's libvirt reverts external snapshots itself (9.9.0 and later) the way asked."""
        if not self.native_revert:
            return False
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

    def _save_current(self, vm, save_name):
        sub = SnapshotManager(self.client, check_mode=False, run_command=self._run_command)
        sub.present(vm, save_name, description="state before a revert (kept by discard_newer=false)")

    def _drop_snapshot(self, dom, vm, s):
        """The snapshot's metadata only: its files go with the rest of the garbage, after the switch."""
        snap = self.client.snapshot(vm, s)
        self.client.call("discard snapshot '%s' of" % s, "VM '%s'" % vm, snap.delete, DELETE_METADATA_ONLY)
        record_quiesced(self.client, dom, s, None)

    def _overlay(self, tmp, backing, fmt):
        """A new, empty overlay at ``tmp`` (a name only this collection makes: a leftover is an earlier run's)."""
        if os.path.lexists(tmp):
            os.unlink(tmp)
        self.qemu_img(["create", "-q", "-f", "qcow2", "-o", "compat=1.1", "-F", fmt, "-b", backing, tmp])
        os.chmod(tmp, 0o600)

    def _switch(self, dom, vm, temps, new_active):
        """Each new overlay takes its name (replacing, in one step, an old file of that name that nothing needs),
        then the definition points at them."""
        for t in sorted(temps):
            os.replace(temps[t], new_active[t])
        self._repoint(dom, vm, new_active)

    def _repoint(self, dom, vm, new_active):
        root = xmlutil.parse(self.client.domain_xml(vm, inactive=True, secure=True))
        for el in root.findall("devices/disk"):
            t = xmlutil.find_attr(el, "target", "dev")
            if t not in new_active:
                continue
            repoint_disk(el, new_active[t], "qcow2")
        self.client.define_domain(xmlutil.tostring(root), DEFINE_VALIDATE)

    def _set_current(self, dom, snap):
        xml = self.client.call("read", "snapshot", snap.getXMLDesc, SNAPSHOT_XML_SECURE)
        self.client.call("make current", "snapshot '%s'" % snap.getName(), dom.snapshotCreateXML, xml,
                         CREATE_REDEFINE | CREATE_CURRENT)

    def _restore(self, mem_file, new_active, want):
        conn = self.client.conn
        # Read with secrets (SECURE): the domain restored from this XML keeps a VNC/SPICE password.
        root = xmlutil.parse(self.client.call("read the saved domain in", mem_file, conn.saveImageGetXMLDesc, mem_file,
                                              SAVE_IMAGE_XML_SECURE))
        for el in root.findall("devices/disk"):
            t = xmlutil.find_attr(el, "target", "dev")
            if t in new_active:
                repoint_disk(el, new_active[t], "qcow2")
        self.client.call("restore guest memory from", mem_file, conn.restoreFlags, mem_file, xmlutil.tostring(root),
                         SAVE_RUNNING if want == "running" else SAVE_PAUSED)

    def _start(self, dom, want):
        self.client.call("start", "VM '%s'" % dom.name(), dom.createWithFlags, 1 if want == "paused" else 0)
