# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Clones of a template, a VM or a VM's snapshot: linked (one qcow2 overlay per disk on the source's
frozen image) or full (an independent copy of the allocated data), one or many per task.

What a linked clone stands on must never change. A template's disks are read-only already; a
snapshot's frozen images are protected by the snapshot module (no merge into them while clones
stand on them); a plain VM is moved onto a new overlay first (a disk-only snapshot whose metadata
is dropped), so its old images become the clones' frozen base and the VM writes elsewhere.

Every clone gets a new UUID and new MACs. Per-clone data reaches the guest through SMBIOS: the
system serial carries cloud-init's NoCloud seed ``ds=nocloud;h=<hostname>;i=<instance id>``, and
extra metadata is in OEM strings ``kvmfusion:<key>=<value>`` (read in the guest from
/sys/class/dmi/id/product_serial and ``dmidecode -t 11``). No seed ISO is built, so nothing extra
has to be installed on the CNA or cleaned up afterwards.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, images, names, portsec, snapshots, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    AFFECT_CONFIG,
    DEFINE_VALIDATE,
    METADATA_ELEMENT,
    UNDEFINE_NVRAM,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import META_NS, attached_disks, disk_source, repoint_disk
from ansible_collections.kvmfusion.compute.plugins.module_utils.domains import write_definition_copy
from ansible_collections.kvmfusion.compute.plugins.module_utils.hosts import refuse_in_maintenance
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import refuse_under_ha
from ansible_collections.kvmfusion.compute.plugins.module_utils.vmspec import CLONE_NS, VM_NS, is_template, kib, random_mac

CLONE_KEY = "kvmfclone"
EXT = {"qcow2": "qcow2", "raw": "raw"}
_META_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Clones started at the same time by one task (option parallel): libvirt serves a connection's calls concurrently,
# and QEMU's start-up is partly waiting (measured: bench/clone_start.py).
START_PARALLEL = 4
# Free memory a batch start leaves on the CNA beyond the clones' own (as a live migration's destination keeps).
START_MEMORY_MARGIN = 64 * 1024 * 1024
MEMINFO = "/proc/meminfo"


def available_memory(client):
    """Bytes this CNA can give new guests: the kernel's MemAvailable (free memory and the page cache it would drop);
    libvirt's free memory, which leaves the page cache out, where that cannot be read."""
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return client.call("read free memory of", "the host", client.conn.getFreeMemory)


def clone_names(names_list=None, count=None, pattern=None, start=1):
    """The clone names of a task: an explicit list, or ``count`` names from ``pattern`` ({index})."""
    if names_list:
        out = list(names_list)
    elif count is not None:
        if count < 1:
            raise ValueError("count must be at least 1, not %d" % count)
        if not pattern or "{index" not in pattern:
            raise ValueError("name_pattern must contain {index} (for example web-{index:02d})")
        try:
            out = [pattern.format(index=i) for i in range(start, start + count)]
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as e:
            raise ValueError("invalid name_pattern %r: %s" % (pattern, e))
    else:
        raise ValueError("give the clone names, or count and name_pattern")
    for n in out:
        names.validate_name(n, kind="VM")
    dup = sorted(set(n for n in out if out.count(n) > 1))
    if dup:
        raise ValueError("clone name(s) %s are given more than once" % ", ".join(dup))
    return out


def check_metadata(metadata):
    for k, v in (metadata or {}).items():
        if not _META_KEY.match(str(k)):
            raise ValueError("invalid metadata key %r: letters, digits, '_', '.', '-' only" % (k,))
        if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in str(v)):
            raise ValueError("metadata %s must not contain control characters" % k)


def clone_record(xml):
    """{source, snapshot, linked} of a VM made by this module, or None."""
    el = xmlutil.parse(xml).find("metadata/{%s}clone" % CLONE_NS)
    if el is None:
        return None
    return {"source": el.get("source"), "snapshot": el.get("snapshot") or None, "linked": el.get("linked") == "true",
            "complete": el.get("complete") != "false"}


def _record_element(record, linked_targets, namespaced=True):
    tag = "{%s}clone" % CLONE_NS if namespaced else "clone"
    el = ET.Element(tag, source=record["source"], snapshot=record["snapshot"] or "",
                    linked="true" if record["linked"] else "false", disks=",".join(sorted(linked_targets)))
    if not record.get("complete", True):
        # defined before its disks took their names: a run killed in between is recognised and redone
        el.set("complete", "false")
    return el


def clone_xml(src_root, name, new_uuid, disk_map, linked_targets, hostname, metadata, record):
    """The clone's definition from the source's: new name, UUID, MACs, disk files and SMBIOS data."""
    src_macs = [xmlutil.find_attr(el, "mac", "address") for el in src_root.findall("devices/interface")]
    src_ports = portsec.ports_meta(src_root)
    root = xmlutil.strip_generated(src_root)
    root.attrib.pop("id", None)
    xmlutil.set_text(root, "name", name)
    uid = ET.Element("uuid")
    uid.text = new_uuid
    root.insert(1, uid)
    for bs_parent in list(root.iter()):
        for bs in bs_parent.findall("backingStore"):
            bs_parent.remove(bs)
    meta = root.find("metadata")
    modes = {}
    if meta is not None:
        for el in list(meta):
            if el.tag == "{%s}disks" % META_NS:
                for d in el:
                    modes[d.get("source")] = d.get("mode")
            if el.tag in ("{%s}vm" % VM_NS, "{%s}snapshots" % snapshots.SNAP_NS, "{%s}disks" % META_NS,
                          "{%s}clone" % CLONE_NS, "{%s}ports" % portsec.PORTS_NS):
                meta.remove(el)
    else:
        meta = ET.SubElement(root, "metadata")
    # A clone's NICs get new MACs; one in a security group stays in it, and one that learns its addresses from
    # DHCP keeps learning, under its new MAC (bound IPs belong to the source: a clone has none until it is given
    # its own).
    ports = {}
    for el, old in zip(root.findall("devices/interface"), src_macs):
        src = src_ports.get((old or "").lower(), {})
        if src.get("security_group") or src.get("learn"):
            mac = random_mac()
            el.insert(0, ET.Element("mac", address=mac))
            # a NIC that learns its addresses from DHCP keeps learning them (its own leases, none yet)
            ports[mac] = {"security_group": src.get("security_group"), "ips": [], "learn": src.get("learn"),
                          "learned": []}
    ports_el = portsec.ports_element(ports)
    if ports_el is not None:
        meta.append(ports_el)
    new_modes = {}
    for el in root.findall("devices/disk"):
        t = xmlutil.find_attr(el, "target", "dev")
        old = disk_source(el)
        if t not in disk_map:
            if old and modes.get(old) and modes[old] != "persistent":
                new_modes[old] = modes[old]
            continue
        repoint_disk(el, disk_map[t][0], disk_map[t][1])
        if modes.get(old) and modes[old] != "persistent":
            new_modes[disk_map[t][0]] = modes[old]
    if new_modes:
        dm = ET.SubElement(meta, "{%s}disks" % META_NS)
        for path in sorted(new_modes):
            ET.SubElement(dm, "{%s}disk" % META_NS, source=path, mode=new_modes[path])
    meta.append(_record_element(record, linked_targets))
    os_el = root.find("os")
    for sm in os_el.findall("smbios"):
        os_el.remove(sm)
    for nv in os_el.findall("nvram"):
        os_el.remove(nv)
    ET.SubElement(os_el, "smbios", mode="sysinfo")
    for si in root.findall("sysinfo"):
        root.remove(si)
    si = ET.SubElement(root, "sysinfo", type="smbios")
    system = ET.SubElement(si, "system")
    ET.SubElement(system, "entry", name="serial").text = "ds=nocloud;h=%s;i=%s" % (hostname, new_uuid)
    if metadata:
        oem = ET.SubElement(si, "oemStrings")
        for k in sorted(metadata):
            ET.SubElement(oem, "entry").text = "kvmfusion:%s=%s" % (k, metadata[k])
    return root


class CloneManager(Manager):
    """Makes the clones of one source that do not exist yet."""

    def __init__(self, client, check_mode=False, run_command=None, journal=None):
        super(CloneManager, self).__init__(client, check_mode=check_mode, run_command=run_command, journal=journal)
        self.made = []

    def converge(self, params):
        """The clone module."""
        p = params
        if p.get("name"):
            wanted = clone_names([p["name"]])
        else:
            wanted = clone_names(p.get("names"), p.get("count"), p.get("name_pattern"), p.get("start_index", 1))
        if (p.get("state") or "present") == "running":
            # nothing new starts on a CNA in maintenance (before any clone is made)
            for n in wanted:
                dom = self.client.domain(n)
                if dom is None or not self.client.call("read state of", "VM '%s'" % n, dom.isActive):
                    refuse_in_maintenance(self.client, "clone '%s' cannot start" % n)
                    break
        changed, facts = self.clone(p["source"], wanted, snapshot=p.get("snapshot"), linked=p.get("linked", True),
                                    datastore=p.get("datastore"), provisioning=p.get("provisioning") or "thin",
                                    fmt=p.get("format"), state=p.get("state") or "present", hostname=p.get("hostname"),
                                    metadata=p.get("metadata"), parallel=p.get("parallel", START_PARALLEL))
        return self.result({"clones": sorted(f["name"] for f in facts if not f["created"])},
                           {"clones": sorted(f["name"] for f in facts)}, changed=changed, clones=facts)

    def _datastore_dir(self, name):
        pool = self.client.pool(name)
        if pool is None:
            raise ValueError("unknown datastore '%s' on %s" % (name, self.uri))
        path = images.datastore_dir(self.client, pool, name, "clones")
        if not self.client.call("read state of", "datastore '%s'" % name, pool.isActive):
            raise ValueError("datastore '%s' on %s is not running" % (name, self.uri))
        return path

    def clone(self, source, clones, snapshot=None, linked=True, datastore=None, provisioning="thin", fmt=None,
              state="present", hostname=None, metadata=None, parallel=None):
        """Make the clones that do not exist yet (and start them with ``state`` running, ``parallel`` at a time).
        Returns (changed, [per-clone facts])."""
        if parallel is None:
            parallel = START_PARALLEL
        if int(parallel) < 1:
            raise ValueError("parallel must be at least 1, not %s" % parallel)
        src = self._validate(source, clones, snapshot, linked, hostname, metadata)
        todo = src["todo"]
        freeze = self._plan_freeze(source, src, linked, todo)
        targets = self._plan_targets(todo, src["images"], linked, fmt, self._datastore_dir(datastore) if datastore else None,
                                     src["redo_files"])
        starts = self._plan_starts(src, clones, todo) if state == "running" else []
        changed = bool(todo) or bool(starts)
        self._make_all(source, src, freeze, targets, linked, provisioning, hostname, metadata, snapshot)
        if starts:
            for n in starts:
                self.record("%s: start" % n)
            if not self.check_mode:
                self._start_all(starts, parallel)
        facts = []
        for n in clones:
            if n in targets:
                dl = dict((t, v[0]) for t, v in sorted(targets[n].items()))
            else:
                dl = dict((xmlutil.find_attr(el, "target", "dev"), s)
                          for el, s, _m in attached_disks(self.client, n, inactive=True)
                          if el.get("device", "disk") == "disk" and s)
            facts.append({"name": n, "created": n in todo, "linked": bool(linked), "disks": dl})
        return changed, facts

    # validate -----------------------------------------------------------------------------
    def _validate(self, source, clones, snapshot, linked, hostname, metadata):
        """Refuse before any change; returns the source's root XML, images and the clones still to make."""
        names.validate_name(source, kind="VM")
        if snapshot:
            names.validate_name(snapshot, kind="snapshot")
        check_metadata(metadata)
        self._check_patterns(hostname, metadata)
        if not self.local:
            raise ValueError("clone works on the disk files: run it on the CNA (uri %s is remote)" % self.uri)
        if source in clones:
            raise ValueError("a clone cannot be named like its source '%s'" % source)
        src_dom = self.client.domain(source)
        if src_dom is None:
            raise ValueError("unknown source VM '%s' on %s" % (source, self.uri))
        # With secrets (SECURE): clones of a template with a console password get that password.
        src_xml = self.client.domain_xml(source, inactive=True, secure=True)
        template = is_template(src_xml)
        src_root = xmlutil.parse(src_xml)
        self._check_source_disks(source, src_root)
        snap = None
        if snapshot:
            snap = self.client.snapshot(source, snapshot)
            if snap is None:
                raise ValueError("unknown snapshot '%s' of VM '%s'" % (snapshot, source))
        todo, incomplete = self._clones_to_make(source, clones, snapshot, linked)
        # The images to clone, per target: (path, format, frozen?).
        if snap is not None:
            sroot, lay, _mem = snapshots.layout(self.client, snap)
            base_root = sroot.find("domain")
            imgs = self._images(base_root, frozen_targets=set(lay))
        else:
            base_root = src_root
            imgs = self._images(src_root, frozen_targets=None if template else set())
        running = bool(self.client.call("read state of", "VM '%s'" % source, src_dom.isActive))
        return {"todo": todo, "base_root": base_root, "images": imgs, "template": template, "snap": snap,
                "running": running, "incomplete": incomplete,
                "redo_files": set(f for n in incomplete for f in self._incomplete_files(n))}

    @staticmethod
    def _check_source_disks(source, src_root):
        rdm = [xmlutil.find_attr(el, "target", "dev") for el in src_root.findall("devices/disk") if el.get("device") == "lun"]
        if rdm:
            raise ValueError("VM '%s' has raw device mapping(s) %s, which cannot be cloned" % (source, ", ".join(rdm)))
        shared = [xmlutil.find_attr(el, "target", "dev") for el in src_root.findall("devices/disk")
                  if el.get("device", "disk") == "disk" and el.get("type", "file") != "file"
                  and el.find("readonly") is None and el.find("shareable") is None]
        if shared:
            raise ValueError("VM '%s' has writable disk(s) %s that are not files (block or network devices): clones "
                             "would share them; detach them or make them read-only or shareable first"
                             % (source, ", ".join(shared)))

    def _clones_to_make(self, source, clones, snapshot, linked):
        """The clones that do not exist yet; an existing VM of a clone's name must be that same clone."""
        todo, incomplete = [], []
        for n in clones:
            xml = self.client.domain_xml(n, inactive=True)
            if xml is None:
                todo.append(n)
                continue
            rec = clone_record(xml)
            if rec is None or rec["source"] != source or rec["snapshot"] != snapshot or rec["linked"] != bool(linked):
                raise ValueError("VM '%s' already exists and is not a %s clone of %s%s: choose another name"
                                 % (n, "linked" if linked else "full", source,
                                    " snapshot %s" % snapshot if snapshot else ""))
            if not rec["complete"]:
                # An earlier run was killed while making it: it is made again.
                todo.append(n)
                incomplete.append(n)
        return todo, incomplete

    # plan ---------------------------------------------------------------------------------
    def _plan_freeze(self, source, src, linked, todo):
        """The snapshot that freezes a plain VM's images (for linked clones, or to copy a running VM), or None."""
        if src["snap"] is not None or src["template"] or not todo or not (linked or src["running"]):
            return None
        refuse_under_ha(self._run_command, self.local, source, "putting it on new overlays for %s (a stopped VM "
                        "can be fully cloned)" % ("linked clones" if linked else "a copy while it runs"))
        parts, _rdm = snapshots.participating_disks(self.client, source, src["running"])
        if not any(take for _t, _b, take in parts):
            raise ValueError("VM '%s' has no persistent disk to clone" % source)
        freeze = "clone-base-%s" % todo[0]
        if len(freeze) > 64 or self.client.snapshot(source, freeze) is not None:
            freeze = "clone-base-%d" % int(time.time())
        for t, _b, take in parts:
            if take:
                src["images"][t] = (src["images"][t][0], src["images"][t][1], True)
        return freeze

    @staticmethod
    def _plan_targets(todo, imgs, linked, fmt, ddir, redo_files=()):
        """{clone: {target: (file, format, linked?)}}; an existing file is refused (but those of an incomplete
        clone that is made again)."""
        targets = {}
        for n in todo:
            dmap = {}
            for t, (path, ifmt, frozen) in sorted(imgs.items()):
                use_link = linked and frozen
                ofmt = "qcow2" if use_link else (fmt or ifmt)
                dest = os.path.join(ddir or os.path.dirname(path), "%s-%s.%s" % (n, t, EXT[ofmt]))
                if os.path.lexists(dest) and dest not in redo_files:
                    raise ValueError("clone '%s': %s already exists" % (n, dest))
                dmap[t] = (dest, ofmt, use_link)
            targets[n] = dmap
        return targets

    # act ----------------------------------------------------------------------------------
    def _make_all(self, source, src, freeze, targets, linked, provisioning, hostname, metadata, snapshot):
        """Freeze a plain VM's images, then make each clone completely or not at all."""
        imgs = src["images"]
        if freeze:
            self.act("freeze the disks of %s (snapshot %s%s)" % (source, freeze, ", kept as the clones' base" if linked
                                                                 else ", merged back afterwards"),
                     self._freeze, source, freeze, imgs)
        try:
            for n in src["todo"]:
                if n in src["incomplete"]:
                    self.act("%s: remove what a killed earlier run left of it" % n, self._discard_incomplete, n)
                for t, (dest, ofmt, use_link) in sorted(targets[n].items()):
                    # Recorded here, done by _make_clone (which removes all of a clone's files if any step fails).
                    self.record("%s: overlay %s on %s" % (n, dest, imgs[t][0]) if use_link else
                                "%s: copy %s (%s) to %s as %s %s" % (n, t, imgs[t][0], dest, provisioning, ofmt))
                rec = {"source": source, "snapshot": snapshot, "linked": bool(linked)}
                self.act("%s: define (new UUID and MACs)" % n, self._make_clone, src["base_root"], n, imgs, targets[n],
                         provisioning, hostname, metadata, rec)
                self.made.append(n)
        finally:
            if freeze and not linked:
                self.act("merge snapshot %s back into %s" % (freeze, source), self._unfreeze, source, freeze)
            if src["todo"]:
                self.act("refresh datastores", images.refresh_pools, self.client)

    @staticmethod
    def _check_patterns(hostname, metadata):
        """Patterns are formatted with {name} only; a bad one fails here, before any change."""
        try:
            hn = (hostname or "{name}").format(name="x")
            for v in (metadata or {}).values():
                str(v).format(name="x")
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as e:
            raise ValueError("invalid hostname or metadata pattern (only {name} is known): %s" % e)
        if not re.match(r"^[^;\s]+$", hn) or len(hn) > 253:
            raise ValueError("invalid hostname %r: no ';' or white space (it goes into the NoCloud seed)" % hostname)

    def _images(self, root, frozen_targets):
        """{target: [path, format, frozen]} of the file disks; ``frozen_targets`` None means all are frozen."""
        out = {}
        for el in root.findall("devices/disk"):
            if el.get("device", "disk") != "disk" or el.get("type", "file") != "file":
                continue
            path = disk_source(el)
            if not path:
                continue
            t = xmlutil.find_attr(el, "target", "dev")
            frozen = frozen_targets is None or t in frozen_targets
            out[t] = (path, xmlutil.find_attr(el, "driver", "type") or ("qcow2" if fileops.is_qcow2(path) else "raw"), frozen)
        return out

    def _freeze(self, source, freeze, images):
        mgr = snapshots.SnapshotManager(self.client, run_command=self._run_command)
        mgr.present(source, freeze, description="frozen base of clones")
        _r, lay, _m = snapshots.layout(self.client, self.client.snapshot(source, freeze))
        for t, (_ov, fz, ffmt) in lay.items():
            images[t] = (fz, ffmt, True)

    def _unfreeze(self, source, freeze):
        mgr = snapshots.SnapshotManager(self.client, run_command=self._run_command)
        try:
            mgr.absent(source, freeze)
        except Exception as e:  # pylint: disable=broad-except
            self.warn("snapshot %s of %s could not be merged back (%s); the clones are complete, "
                      "delete it later with kvmfusion.compute.snapshot" % (freeze, source, e))

    def _make_disk(self, imgs, t, dest, ofmt, use_link, provisioning):
        """Write one clone disk to ``dest`` (a temporary name; removed again if a step fails)."""
        path, ifmt, _frozen = imgs[t]
        try:
            if use_link:
                self.qemu_img(["create", "-q", "-f", "qcow2", "-o", "compat=1.1", "-F", ifmt, "-b", path, dest])
                fileops.set_intent(dest, "thin")
            else:
                opts = ["-o", "compat=1.1"] if ofmt == "qcow2" else []
                if ofmt == "qcow2" and provisioning != "thin":
                    opts = ["-o", "compat=1.1,preallocation=falloc"]
                # Unallocated and zero source ranges are skipped: only allocated data is copied.
                self.qemu_img(["convert", "-q", "-U", "-f", ifmt, "-O", ofmt] + opts + [path, dest])
                if ofmt == "raw" and provisioning != "thin":
                    fileops.reserve(dest, os.stat(dest).st_size)
                if provisioning == "thick_eager_zeroed":
                    fileops.zero_unwritten(dest)
                fileops.set_intent(dest, provisioning)
            os.chmod(dest, 0o600)
        except Exception:
            if os.path.exists(dest):
                os.unlink(dest)
            raise

    def _make_clone(self, base_root, name, imgs, dmap, provisioning, hostname, metadata, rec):
        """Disks written under temporary names, the VM defined as incomplete, the disks given their names, the VM
        marked complete: a failure removes what was made; a run killed at any point leaves either temporary files
        (removed by the next run) or an incomplete clone (redone by the next run), never a half-made disk under a
        clone's name."""
        temps = dict((t, images.temp_path(dest, "new")) for t, (dest, _f, _l) in dmap.items())
        linked = []
        try:
            for t, (dest, ofmt, use_link) in sorted(dmap.items()):
                if os.path.lexists(temps[t]):
                    os.unlink(temps[t])  # an earlier, killed run's: the name is ours alone
                self._make_disk(imgs, t, temps[t], ofmt, use_link, provisioning)
            self._define(base_root, name, str(uuid.uuid4()), dmap, hostname, metadata, dict(rec, complete=False))
            for t, (dest, _f, _l) in sorted(dmap.items()):
                os.link(temps[t], dest)  # never over an existing file
                linked.append(dest)
                os.unlink(temps[t])
            self._mark_complete(name, rec, dmap)
        except Exception:
            # Partial targets are removed: the source stays as it was, nothing half made is left.
            if self.client.domain(name) is not None:
                self.client.undefine_domain(name, UNDEFINE_NVRAM)
            for f in list(temps.values()) + linked:
                if os.path.lexists(f):
                    os.unlink(f)
            raise

    def _mark_complete(self, name, rec, dmap):
        dom = self.client.domain(name)
        linked_targets = [t for t, (_d, _f, use_link) in dmap.items() if use_link]
        self.client.call("record the clone", "VM '%s'" % name, dom.setMetadata, METADATA_ELEMENT,
                         xmlutil.tostring(_record_element(rec, linked_targets, namespaced=False)), CLONE_KEY, CLONE_NS,
                         AFFECT_CONFIG)
        first = sorted(dmap.items())[0][1][0] if dmap else None
        if first:
            write_definition_copy(self.client, name, images.definition_copy_name(os.path.dirname(first), name))

    def _discard_incomplete(self, name):
        """Remove a clone an earlier run was killed while making: its definition and the files it names that
        nothing else uses (they are this collection's: the clone never became complete)."""
        files = self._incomplete_files(name)
        self.client.undefine_domain(name, UNDEFINE_NVRAM)
        for f in files:
            for leftover in (f, images.temp_path(f, "new")):
                if os.path.lexists(leftover) and not images.users_of(self.client, leftover):
                    os.unlink(leftover)

    def _incomplete_files(self, name):
        return [src for el, src, _m in attached_disks(self.client, name, inactive=True)
                if el.get("device", "disk") == "disk" and el.get("type", "file") == "file" and src]

    def _define(self, base_root, name, new_uuid, dmap, hostname, metadata, rec):
        hn = (hostname or "{name}").format(name=name)
        meta = dict((k, str(v).format(name=name)) for k, v in (metadata or {}).items())
        disk_map = dict((t, (dest, ofmt)) for t, (dest, ofmt, _l) in dmap.items())
        linked_targets = [t for t, (_d, _f, use_link) in dmap.items() if use_link]
        root = clone_xml(base_root, name, new_uuid, disk_map, linked_targets, hn, meta, rec)
        self.client.define_domain(xmlutil.tostring(root), DEFINE_VALIDATE)

    def _start(self, name):
        dom = self.client.domain(name)
        self.client.call("start", "VM '%s'" % name, dom.create)

    def _plan_starts(self, src, clones, todo):
        """The clones to start, in order; refused in one line, before any change, when they would not fit in the
        CNA's free memory (each needs the source's memory, and the margin every start on a CNA keeps)."""
        starts = []
        for n in clones:
            if n in todo:
                starts.append(n)
                continue
            dom = self.client.domain(n)
            if not self.client.call("read state of", "VM '%s'" % n, dom.isActive):
                starts.append(n)
        if starts:
            mem = kib(src["base_root"].find("currentMemory") if src["base_root"].find("currentMemory") is not None
                      else src["base_root"].find("memory")) * 1024
            need = mem * len(starts) + START_MEMORY_MARGIN
            free = available_memory(self.client)
            if need > free:
                raise ValueError("starting %d clone(s) of %d MiB each needs %d MiB; %s has %d MiB available: start fewer "
                                 "(state present), or free memory first" % (len(starts), mem >> 20, need >> 20,
                                                                            self.uri, free >> 20))
        return starts

    def _start_all(self, names_to_start, parallel):
        """Start the clones, ``parallel`` at a time (libvirt serves a connection's calls concurrently); every one is
        tried, and the failures are reported together once all are done (those started stay running, the others
        defined)."""
        pending, errors, lock = list(names_to_start), {}, threading.Lock()

        def worker():
            while True:
                with lock:
                    if not pending:
                        return
                    n = pending.pop(0)
                try:
                    self._start(n)
                except Exception as e:
                    with lock:
                        errors[n] = e

        threads = [threading.Thread(target=worker) for dummy in range(max(1, min(int(parallel), len(pending))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            failed = [n for n in names_to_start if n in errors]
            raise ValueError("%d of %d clone(s) did not start (%s; the others run): %s: %s"
                             % (len(failed), len(names_to_start), ", ".join(failed), failed[0],
                                str(errors[failed[0]]).splitlines()[0] if str(errors[failed[0]]) else
                                type(errors[failed[0]]).__name__))
