# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Storage migration: a VM's disks to another datastore, live or stopped, changing provisioning and format on the way.

Seed 000/003 steps, on libvirt: the target image is made first (its format and provisioning as asked); a
running VM's disk is mirrored into it by a libvirt block copy (writes go to both, the bulk copy runs,
dirty blocks are copied again) and, once the mirror is in sync, the VM is switched to it (pivot); a stopped
VM's disk is converted with ``qemu-img convert`` into a temporary name, compared, and renamed. Only
allocated data moves. Then the definition points at the new image, the VM's metadata records the move (so
the disk the user declared on the old datastore is still recognised), and the old images go.

Until the switch the source is the disk: any failure (target full, timeout, a kill) leaves the VM on it and
removes the target. Files are touched on this CNA only (a remote ``uri`` is refused).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, images, names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    AFFECT_LIVE,
    METADATA_ELEMENT,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import (
    META_KEY,
    META_NS,
    MOVES_KEY,
    MOVES_NS,
    attached_disks,
    follow,
    meta_modes,
    metadata_element,
    moves_of,
    moves_xml,
    repoint_disk,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.domains import write_definition_copy
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import refuse_under_ha, state_of
from ansible_collections.kvmfusion.compute.plugins.module_utils.snapshots import lift_snapshots, put_snapshots, record_quiesced

PROVISIONING = fileops.PROVISIONING
FORMATS = ("qcow2", "raw")
#: virDomainBlockCopyFlags / virDomainBlockJobAbortFlags
BLOCK_COPY_SHALLOW, BLOCK_COPY_REUSE_EXT, BLOCK_COPY_TRANSIENT_JOB, BLOCK_COPY_SYNCHRONOUS_WRITES = 1, 2, 4, 8
BLOCK_JOB_ABORT_PIVOT = 2
#: qemu-img preallocation per provisioning
PREALLOCATION = {"thin": "off", "thick_lazy_zeroed": "falloc", "thick_eager_zeroed": "full"}
POLL = 0.1
#: what a move does with a disk's snapshot layers
LAYERS = ("keep", "flatten")
#: bytes a live copy keeps in flight (libvirt's VIR_DOMAIN_BLOCK_COPY_BUF_SIZE)
BUF_SIZE = 64 * 1024 * 1024


def desired_state(p):
    d = {"vm": names.validate_name(p["vm"], kind="VM"),
         "datastore": names.validate_name(p["datastore"], kind="datastore")}
    for key, choices in (("provisioning", PROVISIONING), ("format", FORMATS)):
        if p.get(key) is not None and p[key] not in choices:
            raise ValueError("%s must be one of %s, got %r" % (key, ", ".join(choices), p[key]))
        d[key] = p.get(key)
    for key, lo, hi in (("bandwidth", 1, 1 << 20), ("timeout", 1, 86400)):
        value = p.get(key)
        if value is not None and not lo <= int(value) <= hi:
            raise ValueError("%s must be between %d and %d, got %s" % (key, lo, hi, value))
        d[key] = int(value) if value is not None else None
    d["disks"] = list(p.get("disks") or [])
    layers = p.get("snapshot_layers") or "keep"
    if layers not in LAYERS:
        raise ValueError("snapshot_layers must be one of %s, got %r" % (", ".join(LAYERS), layers))
    d["layers"] = layers
    return d


class StorageMigrationManager(Manager):
    """storage_migration: the VM's disks on the wanted datastore, format and provisioning."""

    def converge(self, params):
        d = desired_state(params)
        vm = d["vm"]
        obj = "VM '%s'" % vm
        self.need_local("moving %s's disks" % vm)
        dom = self.client.domain(vm)
        if dom is None:
            raise ValueError("unknown %s on %s" % (obj, self.uri))
        state = state_of(self.client, dom, vm)
        if state == "suspended":
            raise ValueError("%s is suspended to disk: resume or stop it first" % obj)
        live = state in ("running", "paused")
        dest_pool, dest_dir = self._datastore(d["datastore"])
        plans = self.plan(dom, vm, d, live, dest_dir)
        before = dict((p["target"], p["before"]) for p in plans)
        after = dict((p["target"], p["after"]) for p in plans)
        todo = [p for p in plans if p["before"] != p["after"]]
        if todo:
            refuse_under_ha(self._run_command, self.local, vm, "moving its disks")
        for p in todo:
            if len(p["chain"]) > 1:
                how = ", %d layers %s" % (len(p["chain"]), "kept" if p["keep"] else "flattened")
            else:
                how = ""
            self.record("%s %s to %s (%s %s%s)" % ("mirror" if live else "copy", p["target"], p["dest"], p["format"],
                                                   p["provisioning"], how))
        snap_names = sorted(s.getName() for s in self.client.call("list snapshots of", obj, dom.listAllSnapshots, 0))
        flatten = d["layers"] == "flatten" and any(len(p["chain"]) > 1 for p in todo)
        if todo and snap_names:
            if flatten:
                self.record("delete snapshots %s (a moved disk's layers become one image)" % ", ".join(snap_names))
            else:
                self.record("redefine snapshots %s with the moved images" % ", ".join(snap_names))
        if self.check_mode or not todo:
            return self.result(before, after, vm=vm, disks=[self._report(p, None) for p in plans])
        # the snapshots' metadata leaves while their images move; it comes back pointing where they went
        lifted = lift_snapshots(self.client, dom, vm, "delete the metadata of") if snap_names else []
        moved, where = [], {}
        try:
            for p in todo:
                stats = self._move_one(dom, vm, p, live, d)
                moved.append((p, stats))
                if not live:
                    self._record_move(dom, vm, p, live)
                self._remove_old(p)
                if p["keep"]:
                    where.update(zip(p["chain"], p["dest_chain"]))
                    for layer in p["dest_chain"]:
                        self._mark(layer, p["provisioning"] if layer == p["dest"] else "thin")
                elif len(p["chain"]) == 1:
                    where[p["base"]] = p["dest"]
        except Exception:
            if lifted and (not flatten or not moved):
                # what moved is recorded: the snapshots come back, pointing where their images are
                put_snapshots(self.client, dom, vm, lifted, where)
            elif lifted:
                self.warn("the snapshots of %s were deleted (disks already moved flattened): %s"
                          % (obj, ", ".join(e[0] for e in lifted)))
            raise
        if lifted and flatten:
            self._forget_snapshots(dom, vm, lifted)
        elif lifted:
            put_snapshots(self.client, dom, vm, lifted, where)
        self._refresh(dest_pool, d["datastore"])
        for name in set(p["from"][0] for p, _s in moved):
            pool = self.client.pool(name)
            if pool is not None:
                self._refresh(pool, name)
        done = dict((q["target"], s) for q, s in moved)
        report = [self._report(p, done.get(p["target"])) for p in plans]
        return self.result(before, after, vm=vm, disks=report)

    # planning ------------------------------------------------------------------------------
    def _datastore(self, name):
        pool = self.client.pool(name)
        if pool is None:
            raise ValueError("unknown datastore '%s' on %s" % (name, self.uri))
        if not self.client.call("read state of", "datastore '%s'" % name, pool.isActive):
            raise ValueError("datastore '%s' on %s is not running" % (name, self.uri))
        return pool, images.datastore_dir(self.client, pool, name, "moved disks")

    def _datastore_of(self, path):
        for pname in self.client.pool_names():
            pool = self.client.pool(pname)
            if pool is None or not self.client.call("read state of", "datastore '%s'" % pname, pool.isActive):
                continue
            try:
                base = images.datastore_dir(self.client, pool, pname, "moved disks")
            except ValueError:
                continue
            if os.path.normpath(base) == os.path.dirname(os.path.normpath(path)):
                return pname
        return None

    def plan(self, dom, vm, d, live, dest_dir):
        obj = "VM '%s'" % vm
        chains = dict((xmlutil.find_attr(el, "target", "dev"), (el, src, mode, chain))
                      for el, src, mode, chain in images.own_chains(self.client, vm, inactive=not live))
        wanted = d["disks"] or [t for t, (el, src, mode, chain) in sorted(chains.items())
                                if el.get("device", "disk") == "disk" and el.get("type", "file") == "file"]
        snaps = [s.getName() for s in self.client.call("list snapshots of", obj, dom.listAllSnapshots, 0)]
        plans = []
        planned = 0
        for want in wanted:
            target = want if want in chains else next((t for t, c in chains.items()
                                                       if c[3] and os.path.basename(c[3][-1]) == want), None)
            if target is None:
                raise ValueError("%s has no disk %s (give a target such as vda, or the disk's name)" % (obj, want))
            el, src, mode, chain = chains[target]
            if el.get("type", "file") != "file" or el.get("device", "disk") != "disk":
                raise ValueError("%s: disk %s is not an image file on a datastore (a raw device mapping or a "
                                 "datastore volume stays where it is)" % (obj, target))
            base = chain[-1]
            cur_ds = self._datastore_of(base)
            if cur_ds is None:
                raise ValueError("%s: disk %s (%s) is on no running datastore of %s" % (obj, target, base, self.uri))
            size = fileops.qcow2_virtual_size(src) if fileops.is_qcow2(src) else os.path.getsize(src)
            # the disk's format is its own image's (a snapshot layer on it is qcow2 whatever the disk is)
            cur_fmt = "qcow2" if fileops.is_qcow2(base) else "raw"
            cur_prov = fileops.measure_provisioning(base, size, fmt=cur_fmt)["provisioning"]
            cur_prov = cur_prov if cur_prov in PROVISIONING else "thick_lazy_zeroed"
            fmt = d["format"] or cur_fmt
            prov = d["provisioning"] or cur_prov
            dest = os.path.join(dest_dir, os.path.basename(base))
            before = {"datastore": cur_ds, "name": os.path.basename(base), "format": cur_fmt,
                      "provisioning": cur_prov}
            after = {"datastore": d["datastore"], "name": os.path.basename(base), "format": fmt, "provisioning": prov}
            if before != after and os.path.normpath(dest) == os.path.normpath(base):
                raise ValueError("%s: disk %s is on datastore %s already: converting it there is the disk "
                                 "module's work (provisioning), or move it to another datastore" % (obj, target, cur_ds))
            if before != after:
                # a disk already where it is asked to be is not refused for what a move would need
                if mode == "independent_nonpersistent":
                    raise ValueError("%s: disk %s is independent-nonpersistent: what the guest wrote to it would be "
                                     "lost; change its mode first" % (obj, target))
                # nothing may stand on any image of the chain (a linked clone of a snapshot stands on a layer)
                stand = images.dependants_of(self.client, list(chain), exclude_vm=vm)
                if stand:
                    raise ValueError("%s: disk %s cannot move: %s" % (obj, target, images.describe_dependants(stand)))
                keep = d["layers"] == "keep" and len(chain) > 1
                # the disk's own image as asked, and (kept) the layers on it as they are: all must fit
                need = size if prov != "thin" else fileops.allocated_bytes(base)
                if keep:
                    need += sum(fileops.allocated_bytes(layer) for layer in chain[:-1])
                for layer in (chain if keep else [base]):
                    self._check_target(obj, target, os.path.join(dest_dir, os.path.basename(layer)))
                planned += need  # every disk of the task lands on the same datastore
                self._check_space(obj, target, dest_dir, planned, d["datastore"])
            keep = d["layers"] == "keep" and len(chain) > 1
            # kept layers: each image of the chain moves under its own name; the disk's own image (the base)
            # takes the format and provisioning asked for, the layers on it stay thin qcow2
            dest_chain = [os.path.join(dest_dir, os.path.basename(layer)) for layer in chain] if keep else [dest]
            plans.append({"target": target, "source": src, "chain": chain, "base": base, "dest": dest,
                          "keep": keep, "dest_chain": dest_chain, "dest_top": dest_chain[0],
                          "top_format": "qcow2" if keep else fmt,
                          "size": size, "format": fmt, "provisioning": prov, "from": (cur_ds, before["name"]),
                          "to": (d["datastore"], after["name"]), "before": before, "after": after, "el": el})
        moving = set(p["target"] for p in plans if p["before"] != p["after"])
        if d["layers"] == "flatten" and any(len(chains[t][3]) > 1 for t in moving):
            # the snapshots go: a disk keeping its layers would keep images no snapshot accounts for (and that
            # deleting the VM with its disks could not tell from a linked clone's base)
            stay = sorted(t for t, c in chains.items() if len(c[3]) > 1 and t not in moving)
            if stay:
                raise ValueError("%s: flattening deletes the snapshots (%s), but disk %s keeps their layers and does "
                                 "not move: move it too, or keep the layers" % (obj, ", ".join(snaps), ", ".join(stay)))
        return plans

    @staticmethod
    def _check_target(obj, target, dest):
        """The destination file must not exist (but a partial copy this module left is replaced)."""
        # only a target this module marked partial (a killed run's) is ever replaced
        if os.path.lexists(dest):
            if fileops.get_intent(dest) != "partial":
                raise ValueError("%s: disk %s cannot move to %s: a file of that name is there already" % (
                    obj, target, dest))

    @staticmethod
    def _check_space(obj, target, dest_dir, need, ds):
        st = os.statvfs(dest_dir)
        free = st.f_bavail * st.f_frsize
        if need > free:
            raise ValueError("%s: disk %s needs %d MiB on datastore %s, which has %d MiB free" % (
                obj, target, need >> 20, ds, free >> 20))

    # moving --------------------------------------------------------------------------------
    def _make_target(self, path, size, fmt, prov, backing=None):
        """The empty target image (on ``backing`` for a kept layer), 0600, marked partial until the move completes."""
        if os.path.lexists(path):
            os.unlink(path)
        opts = ["preallocation=%s" % PREALLOCATION[prov]]
        if fmt == "qcow2":
            opts.append("compat=1.1")
        on = ["-b", backing, "-F", "qcow2" if fileops.is_qcow2(backing) else "raw"] if backing else []
        self.qemu_img(["create", "-q", "-f", fmt, "-o", ",".join(opts)] + on + [path, str(size)])
        os.chmod(path, 0o600)
        self._mark(path, "partial")

    @staticmethod
    def _mark(path, value):
        try:
            os.setxattr(path, fileops.INTENT_XATTR, value.encode("ascii"))
        except OSError:
            pass

    def _move_one(self, dom, vm, p, live, d):
        start = time.time()
        made = []
        try:
            if p["keep"]:
                # the layers under the one the VM writes, base first, each on the copy of its parent
                lower = list(zip(p["chain"], p["dest_chain"]))[1 if live else 0:]
                parent = None
                for old, new in reversed(lower):
                    self._copy_layer(old, new, parent, p)
                    made.append(new)
                    parent = new
            if live:
                stats = self._mirror(dom, vm, p, d)
            elif p["keep"]:
                stats = {"copied_bytes": sum(fileops.allocated_bytes(x) for x in p["dest_chain"]), "mode": "cold"}
            else:
                stats = self._convert(vm, p)
        except Exception:
            for path in made:
                if os.path.lexists(path):
                    os.unlink(path)
            raise
        stats["seconds"] = round(time.time() - start, 3)
        return stats

    def _mirror(self, dom, vm, p, d):
        obj = "VM '%s'" % vm
        if self.client.call("read the block jobs of", obj, dom.blockJobInfo, p["target"], 0):
            # a copy a killed run started goes on without it: cancel it (the VM stays on its disk) and start over
            self.client.call("cancel the earlier block copy of", obj, dom.blockJobAbort, p["target"], 0)
            for _i in range(300):
                if not self.client.call("read the block jobs of", obj, dom.blockJobInfo, p["target"], 0):
                    break
                time.sleep(POLL)
        top = p["dest_top"]
        if p["keep"]:
            # the layer the VM writes, on the copies of the layers under it: only its own data is mirrored
            self._make_target(top, p["size"], "qcow2", "thin", backing=p["dest_chain"][1])
        else:
            self._make_target(top, p["size"], p["format"], p["provisioning"])
        disk = ET.Element("disk", type="file")
        ET.SubElement(disk, "driver", type=p["top_format"])
        ET.SubElement(disk, "source", file=top)
        dest_xml = xmlutil.tostring(disk)
        # QEMU's mirror moves BUF_SIZE in flight (its default, 16 MiB, ran at 0.78x qemu-img convert on a disk
        # read and written past the page cache here; 64 MiB ran at about its speed: bench/storage_migration.py)
        params = {"buf-size": BUF_SIZE}
        if d["bandwidth"]:
            params["bandwidth"] = d["bandwidth"] * 1024 * 1024
        started = False
        try:
            self.client.call("start the block copy of", "disk %s of %s" % (p["target"], obj), dom.blockCopy,
                             p["target"], dest_xml, params,
                             BLOCK_COPY_REUSE_EXT | BLOCK_COPY_TRANSIENT_JOB | BLOCK_COPY_SYNCHRONOUS_WRITES
                             | (BLOCK_COPY_SHALLOW if p["keep"] else 0))
            started = True
            deadline = time.time() + d["timeout"] if d["timeout"] else None
            info = {}
            while True:
                info = self.client.call("read the block copy of", obj, dom.blockJobInfo, p["target"], 0) or {}
                if not info:
                    raise ValueError("the block copy of disk %s of %s ended before it was in sync" % (p["target"], obj))
                if info.get("end") and info.get("cur") == info.get("end") and self._ready(vm, p["target"]):
                    break
                if deadline and time.time() > deadline:
                    raise ValueError("the copy of disk %s of %s did not finish within the %d s timeout"
                                     % (p["target"], obj, d["timeout"]))
                time.sleep(POLL)
            # In sync, and every guest write from now on lands on both images (synchronous writes): the
            # persistent definition points at the copy before the switch, so a host dying at any moment boots
            # the VM from an image holding every write (before this, from the source; the copy is partial).
            done = self._define_move(vm, p)
            try:
                self.client.call("switch to the copy of", "disk %s of %s" % (p["target"], obj), dom.blockJobAbort,
                                 p["target"], BLOCK_JOB_ABORT_PIVOT)
                for _i in range(600):
                    if not self.client.call("read the block copy of", obj, dom.blockJobInfo, p["target"], 0):
                        break
                    time.sleep(POLL)
                if self._active_file(vm, p["target"]) != top:
                    raise ValueError("disk %s of %s is not on %s after the switch" % (p["target"], obj, top))
            except Exception:
                if self._active_file(vm, p["target"]) != top:
                    self.client.define_domain(done["before"])  # the VM stays on its source: so does its definition
                raise
            self._moved(dom, vm, p, True, done)
        except Exception:
            if started and self._active_file(vm, p["target"]) != top:
                try:
                    self.client.call("cancel the block copy of", obj, dom.blockJobAbort, p["target"], 0)
                except Exception:  # pylint: disable=broad-except
                    pass
            if self._active_file(vm, p["target"]) != top and os.path.lexists(top):
                os.unlink(top)
            raise
        self._mark(top, "partial" if p["keep"] else p["provisioning"])
        return {"copied_bytes": info.get("end"), "mode": "live"}

    def _ready(self, vm, target):
        for el in xmlutil.parse(self.client.domain_xml(vm)).findall("devices/disk"):
            if xmlutil.find_attr(el, "target", "dev") == target:
                mirror = el.find("mirror")
                return mirror is not None and mirror.get("ready") == "yes"
        return False

    def _active_file(self, vm, target):
        for el, src, _m in attached_disks(self.client, vm, inactive=False):
            if xmlutil.find_attr(el, "target", "dev") == target:
                return src
        return None

    def _copy_layer(self, src, dest, parent, p, mark="partial"):
        """``src`` converted to a temporary name beside ``dest`` (on the copy ``parent`` of the image under it
        for a kept layer; else with the format and provisioning asked for), compared with ``src`` before the
        source goes, written out, marked ``mark`` and renamed. A kept layer stays marked partial until the
        whole disk has moved."""
        tmp = images.temp_path(dest, "move")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        try:
            if parent is None:
                fmt, prov = p["format"], p["provisioning"]
                opts = ["preallocation=%s" % PREALLOCATION[prov]] if prov != "thin" else []
                backing = []
            else:
                fmt, opts = "qcow2", []
                # only what differs from the parent's copy is written: the layer's own data
                backing = ["-B", parent, "-F", "qcow2" if fileops.is_qcow2(parent) else "raw"]
            if fmt == "qcow2":
                opts.append("compat=1.1")
            self.qemu_img(["convert", "-q", "-O", fmt] + backing + (["-o", ",".join(opts)] if opts else []) + [src, tmp])
            os.chmod(tmp, 0o600)
            self.qemu_img(["compare", "-q", src, tmp])
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._mark(tmp, mark)
            if os.path.lexists(dest):
                os.unlink(dest)  # a partial copy an interrupted move left (checked in the plan)
            os.rename(tmp, dest)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def _convert(self, vm, p):
        """A stopped VM's disk (its whole chain, read through, when flattened) as one image at the target."""
        self._copy_layer(p["source"], p["dest"], None, p, mark=p["provisioning"])
        return {"copied_bytes": fileops.allocated_bytes(p["dest"]), "mode": "cold"}

    def _record_move(self, dom, vm, p, live):
        """The persistent definition points at the new image; the metadata says where the declared disk went."""
        done = self._define_move(vm, p)
        self._moved(dom, vm, p, live, done)

    def _define_move(self, vm, p):
        """The persistent definition repointed at the new image, with its moves and modes; returns what
        _moved needs, and the definition as it was (to put back if the switch fails)."""
        # read with secrets (SECURE): the redefinition keeps a console password
        xml = self.client.domain_xml(vm, inactive=True, secure=True)
        root = xmlutil.parse(xml)
        for el in root.findall("devices/disk"):
            if xmlutil.find_attr(el, "target", "dev") == p["target"]:
                repoint_disk(el, p["dest_top"], p["top_format"])
        # the disk's mode (independent, ...) is recorded by its image path: it follows the image
        modes = meta_modes(root)
        old_paths = set(p["chain"]) | set([p["source"]])
        moved_modes = dict((p["dest"] if src in old_paths else src, mode) for src, mode in modes.items())
        meta = root.find("metadata")
        if moved_modes != modes:
            for old in meta.findall("{%s}disks" % META_NS):
                meta.remove(old)
            meta.append(metadata_element(moved_modes))
        moves = moves_of(root)
        moves[p["from"]] = p["to"]
        # a chain of moves collapses (the declared disk maps straight to where it is now); a disk back where it
        # was declared needs no entry
        moves = dict((k, follow(moves, *k)) for k in moves)
        moves = dict((k, v) for k, v in moves.items() if k != v)
        meta = root.find("metadata")
        if meta is None:
            meta = ET.SubElement(root, "metadata")
        for old in meta.findall("{%s}moves" % MOVES_NS):
            meta.remove(old)
        new = ET.SubElement(meta, "{%s}moves" % MOVES_NS)
        for child in xmlutil.parse(moves_xml(moves)):
            ET.SubElement(new, "{%s}disk" % MOVES_NS, dict(child.attrib))
        ET.register_namespace(MOVES_KEY, MOVES_NS)
        self.client.define_domain(xmlutil.tostring(root))
        return {"before": xml, "moves": moves, "modes": moved_modes if moved_modes != modes else None}

    def _moved(self, dom, vm, p, live, done):
        """After the switch: the running VM's metadata and the definition copy follow the disk."""
        if live and done["modes"] is not None:
            self.client.call("record the mode of", "VM '%s'" % vm, dom.setMetadata, METADATA_ELEMENT,
                             xmlutil.tostring(metadata_element(done["modes"], namespaced=False)), META_KEY, META_NS,
                             AFFECT_LIVE)
        if live:
            self.client.call("record the move of", "VM '%s'" % vm, dom.setMetadata, METADATA_ELEMENT,
                             moves_xml(done["moves"]), MOVES_KEY, MOVES_NS, AFFECT_LIVE)
        # the copy beside the system disk: where it was before (the definition points at the new image now)
        old_copy = images.definition_copy_name(os.path.dirname(p["base"]), vm)
        copy = images.definition_copy_path(self.client.domain_xml(vm, inactive=True))
        if copy:
            write_definition_copy(self.client, vm, copy)
        if old_copy and old_copy != copy and os.path.lexists(old_copy):
            os.unlink(old_copy)  # the system disk moved: its definition copy moved with it

    # snapshots of a flattened disk ---------------------------------------------------------
    def _forget_snapshots(self, dom, vm, lifted):
        """After the flattening move: the deleted snapshots' memory files and quiesce records go too."""
        for name, _parent, xml, _current in lifted:
            mem = xmlutil.find_attr(xmlutil.parse(xml), "memory", "file")
            if mem and os.path.lexists(mem):
                os.unlink(mem)
            record_quiesced(self.client, dom, name, None)

    def _remove_old(self, p):
        """The images the disk left: its own chain (never a base others stand on: refused in the plan)."""
        for path in p["chain"]:
            if os.path.normpath(path) in [os.path.normpath(x) for x in p["dest_chain"]]:
                continue
            vol = self.client.volume_by_path(path)
            if vol is not None:
                self.client.call("delete", "the old image %s" % path, vol.delete, 0)
            elif os.path.lexists(path):
                os.unlink(path)

    def _refresh(self, pool, name):
        self.client.call("refresh", "datastore '%s'" % name, pool.refresh, 0)

    @staticmethod
    def _report(p, stats):
        out = {"target": p["target"], "from": {"datastore": p["from"][0], "name": p["from"][1]},
               "to": {"datastore": p["to"][0], "name": p["to"][1]}, "path": p["dest"],
               "format": p["format"], "provisioning": p["provisioning"], "moved": stats is not None}
        if stats:
            out.update(stats)
        return out
