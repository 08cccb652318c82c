# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Virtual disks: volumes on datastores, their provisioning, and their attachment to VMs.

Volumes are addressed as datastore + volume name.  Provisioning work (reserving and
zeroing space, converting between types) touches the volume's file directly through
fileops, so it needs the task to run on the CNA whose datastore holds the file (a
local URI).  ``DiskManager.ensure`` is the one implementation of "this disk, attached so":
the disk module converges one disk with it, the vm module each of a VM's disks.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat
import time

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, images, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import BLOCK_RESIZE_BYTES, VOL_RESIZE_ALLOCATE
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import (
    attachment_view,
    choose_target,
    desired_state,
    follow,
    moves_of,
    volume_source,
    volume_xml,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.attachments import Attachments
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import LibvirtClientError
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def volume_facts(client, vol, local=True):
    """Managed view of an existing volume."""
    obj = "volume '%s'" % client.call("read name of", "volume", vol.name)
    root = xmlutil.parse(client.call("read", obj, vol.XMLDesc, 0))
    _vtype, capacity, allocation = client.call("read size of", obj, vol.info)
    path = client.call("read path of", obj, vol.path)
    fmt = xmlutil.find_attr(root, "target/format", "type") or "raw"
    backing = xmlutil.find_text(root, "backingStore/path")
    measured = None
    if local and os.path.isfile(path):
        try:
            measured = fileops.measure_provisioning(path, capacity, fmt=fmt)
        except fileops.FileOpsError:
            measured = None
    if measured is None or measured["provisioning"] == "thick":
        # read remotely (or a block volume): libvirt's allocation tells thin from thick, no more
        measured = {"provisioning": "thin" if allocation < capacity else "thick", "measured": None,
                    "source": "allocation"}
    return {"path": path, "format": fmt, "size": capacity, "allocation": allocation,
            "provisioning": measured["provisioning"], "provisioning_measured": measured["measured"],
            "provisioning_source": measured["source"], "backing": backing}


class DiskManager(Attachments, Manager):
    """Converges one disk: its volume (size, provisioning) and its attachment to a VM."""

    REPORTS_REBOOT = True

    def __init__(self, client, check_mode=False, run_command=None, journal=None, progress=None):
        super(DiskManager, self).__init__(client, check_mode=check_mode, run_command=run_command, journal=journal)
        self.progress = progress
        self.stats = {"zeroed_bytes": 0, "zero_seconds": 0.0}
        self._pending = set()  # paths whose live unplug the guest has not acknowledged
        self.created = []  # volumes this task made (a failing vm task removes them with the new VM)

    # the disk module ----------------------------------------------------------------------
    def converge(self, params):
        """The disk module: one disk (volume and attachment) as declared, or absent."""
        p = dict(params)
        if p.get("rdm") and p.get("bus") == "virtio":
            p["bus"] = None  # the module's bus default does not apply to a LUN
        d = desired_state(p)
        absent = p.get("state") == "absent"
        if d["rdm"]:
            before, after = self._converge_rdm(d, absent)
        elif absent:
            vol_before, deleted = self.delete_volume(d, force=p.get("force"))
            before = {"volume": vol_before, "attachment": None}
            after = {"volume": None if deleted else vol_before, "attachment": None}
        else:
            vol_before, vol_after, att_before, att_after = self.ensure(d)[:4]
            before = {"volume": vol_before, "attachment": att_before}
            after = {"volume": vol_after, "attachment": att_after}
        info = None
        if not self.check_mode and (d["rdm"] or not absent):
            info = self._facts(d)
        if d["vm"] and self.actions and not self.check_mode and self.local:
            self._refresh_definition_copy(d["vm"])
        stats = self.stats
        throughput = int(stats["zeroed_bytes"] / stats["zero_seconds"]) if stats["zero_seconds"] > 0 else 0
        return self.result(before, after, disk=info, zeroed_bytes=stats["zeroed_bytes"],
                           zero_seconds=round(stats["zero_seconds"], 3), zero_throughput=throughput)

    def _refresh_definition_copy(self, vm):
        """After a change of its disks, the copy beside the VM's system disk says what libvirt now holds (every CNA
        sees it; migration and HA use it). Only a copy that exists (the vm module's) is refreshed: a VM defined
        outside the collection gets none, which would later read as a VM defined on another CNA."""
        if self.client.domain(vm) is None:
            return
        copy = images.definition_copy_path(self.client.domain_xml(vm, inactive=True))
        if copy and os.path.exists(copy):
            images.write_definition_copy(self.client, vm, copy)

    def _converge_rdm(self, d, absent):
        self._check_rdm_device(d)
        att_before = att_after = None
        if absent or not d["attached"]:
            att_before = self.detach(d["vm"], d["rdm"])
        else:
            att_before, att_after = self.ensure_attached(d, d["rdm"], "raw")
        return {"volume": None, "attachment": att_before}, {"volume": None, "attachment": att_after}

    def _check_rdm_device(self, d):
        self.need_local("a raw device mapping")
        try:
            st = os.stat(d["rdm"])
        except OSError as e:
            raise ValueError("disk '%s': rdm %s: %s" % (d["name"], d["rdm"], e.strerror))
        if not stat.S_ISBLK(st.st_mode):
            raise ValueError("disk '%s': rdm %s is not a block device (raw device mapping passes a whole LUN, not a "
                             "file)" % (d["name"], d["rdm"]))

    def _facts(self, d):
        if d["rdm"]:
            found = [x for x in inventory(self.client, self.local, vm=d["vm"]) if x["path"] == d["rdm"]]
        else:
            found = inventory(self.client, self.local, datastore=d["datastore"], name=d["name"])
        return found[0] if found else None

    def ensure(self, d, planned_targets=None):
        """Converge one declared file disk: its volume, then (with ``vm``) its attachment.

        Everything about the attachment that can be refused is checked before the volume is touched.
        ``planned_targets`` (a list) says the VM is defined by this same check-mode run and does not
        exist yet: the target the real run will choose is predicted and appended to it.
        Returns (volume before, volume after, attachment before, attachment after, path).
        """
        if d["vm"]:
            d = self.follow_moves(d)
        pool, _vol, cur = self.volume_state(d)
        path = self.attach_path(pool, d, cur)
        if d["vm"] and planned_targets is None:
            self.precheck_attachment(d, path)
        vol_before, vol_after = self.ensure_volume(d)
        if path is None and not self.check_mode:
            # A new volume of a block datastore: its device path is known once libvirt made it.
            path = self.attach_path(pool, d, self.volume_state(d)[2])
        att_before = att_after = None
        if d["vm"] and planned_targets is not None:
            target = d["target"] or choose_target(planned_targets, d["bus"])
            planned_targets.append(target)
            self.record("attach as %s (persistent config)" % target)
            att_after = self._wanted_view(d, target)
        elif d["vm"]:
            fmt = cur["format"] if cur else vol_after["format"]
            if d["attached"]:
                att_before, att_after = self.ensure_attached(d, path, fmt)
            else:
                att_before = self.detach(d["vm"], path)
        return vol_before, vol_after, att_before, att_after, path

    def follow_moves(self, d):
        """The declared disk where storage_migration moved it: the VM's metadata maps the declared datastore and
        name to where the disk is now. The declared identity stays the user's; only a missing original follows."""
        if self.client.domain(d["vm"]) is None:
            return d
        moves = moves_of(xmlutil.parse(self.client.domain_xml(d["vm"], inactive=True)))
        key = (d["datastore"], d["name"])
        if key not in moves:
            return d
        pool = self.client.pool(d["datastore"])
        if pool is not None and self.client.call("read state of", "datastore '%s'" % d["datastore"], pool.isActive) \
                and self._volume(pool, d) is not None:
            return d  # a disk of that name is there (again): it is the one declared
        ds, name = follow(moves, *key)
        return dict(d, datastore=ds, name=name)

    # helpers ------------------------------------------------------------
    def _zero(self, path, size=None):
        t0 = time.time()
        written = fileops.zero_unwritten(path, size, progress=self.progress)
        self.stats["zeroed_bytes"] += written
        self.stats["zero_seconds"] += time.time() - t0

    def _pool(self, name):
        pool = self.client.pool(name)
        if pool is None:
            raise ValueError("unknown datastore '%s' on %s" % (name, self.uri))
        if not self.client.call("read state of", "datastore '%s'" % name, pool.isActive):
            raise ValueError("datastore '%s' on %s is not running" % (name, self.uri))
        return pool

    def _domain(self, name):
        dom = self.client.domain(name)
        if dom is None:
            raise ValueError("unknown VM '%s' on %s" % (name, self.uri))
        return dom

    # volume -----------------------------------------------------------
    def _volume(self, pool, d):
        vol = self.client.volume(d["datastore"], d["name"])
        if vol is None:
            # libvirt lists what it saw at the last refresh: on a shared datastore another CNA may have
            # created the volume since. Refreshing changes no data, so check mode does it too.
            self._refresh(pool, d["datastore"])
            vol = self.client.volume(d["datastore"], d["name"])
        return vol

    def volume_state(self, d):
        pool = self._pool(d["datastore"])
        vol = self._volume(pool, d)
        return pool, vol, (volume_facts(self.client, vol, self.local) if vol is not None else None)

    def ensure_volume(self, d):
        """Create, grow or convert the volume. Returns (before, after) managed views."""
        pool, vol, cur = self.volume_state(d)
        fmt = d["format"] or (cur["format"] if cur else "qcow2")
        # An existing disk keeps its type when none is declared; "thick" is a disk read remotely (lazy or eager
        # cannot be told from libvirt's allocation), and growing it must reserve the new space too.
        prov = d["provisioning"] or (cur["provisioning"] if cur else "thin")
        if cur is None:
            if d["size"] is None:
                raise ValueError("disk '%s' does not exist in datastore '%s': size is needed to create it"
                                 % (d["name"], d["datastore"]))
            file_based = self._pool_type(pool, d["datastore"]) in ("dir", "netfs")
            if prov != "thin":
                self.need_local("creating a %s disk" % prov)
            if prov == "thick_eager_zeroed" and not file_based:
                raise ValueError("disk '%s': thick_eager_zeroed disks are made on file datastores (dir, nfs); block "
                                 "datastore '%s' allocates a volume thick (thick_lazy_zeroed) or thin"
                                 % (d["name"], d["datastore"]))
            after = {"datastore": d["datastore"], "name": d["name"], "format": fmt, "size": d["size"],
                     "provisioning": prov}
            self.act("create %s %s disk of %d bytes" % (prov, fmt, d["size"]), self._create, pool, d, fmt, prov)
            return None, after
        before = {"datastore": d["datastore"], "name": d["name"], "format": cur["format"], "size": cur["size"],
                  "provisioning": cur["provisioning"]}
        after = dict(before)
        if d["format"] and d["format"] != cur["format"]:
            raise ValueError("disk '%s' is %s; changing the format to %s is not supported (clone or migrate it "
                             "to a new disk)" % (d["name"], cur["format"], d["format"]))
        users = images.users_of(self.client, cur["path"], self.local)
        running = [u for u, _t in users if self._is_running(u)]
        # The disk is its chain: with snapshot or revert layers on it, its size is what the layer the VM writes
        # shows, and that layer is what grows.
        top = self._top(users, cur["path"])
        if top != cur["path"]:
            cur = dict(cur, size=self._capacity(top), top=top)
            before["size"] = after["size"] = cur["size"]
        if d["size"] is not None and d["size"] != cur["size"]:
            if d["size"] < cur["size"]:
                raise ValueError("disk '%s' is %d bytes; shrinking it to %d bytes is refused (it would destroy "
                                 "data at the end of the disk)" % (d["name"], cur["size"], d["size"]))
            if cur.get("top") and prov != "thin":
                raise ValueError("disk '%s' has snapshot layers (%s): it grows in its top layer, which is thin, so a %s "
                                 "disk cannot grow before its snapshots are deleted" % (d["name"], cur["top"], prov))
            after["size"] = d["size"]
            # refused before any change, check mode included
            if prov not in ("thin", "thick"):
                self.need_local("growing a %s disk" % prov)
            if prov == "thick" and cur["format"] != "raw":
                raise ValueError("disk '%s' is a thick qcow2 disk read from a remote URI: grow it with the task "
                                 "running on its CNA" % d["name"])
            if running:
                self._grow_online(d, cur, prov, running[0])
            else:
                self.act("grow offline from %d to %d bytes" % (cur["size"], d["size"]),
                         self._grow_offline, d, cur, prov)
        if cur["provisioning"] == "thick" and d["provisioning"] in ("thick_lazy_zeroed", "thick_eager_zeroed"):
            # read through a remote URI from libvirt's allocation only: lazy or eager cannot be told from there
            self.need_local("checking whether a thick disk is %s" % d["provisioning"])
        if d["provisioning"] and d["provisioning"] != cur["provisioning"] and \
                not (cur["provisioning"] == "thick" and d["provisioning"] != "thin"):
            self.need_local("converting provisioning")
            if running:
                raise ValueError("disk '%s' is in use by running VM %s: converting %s -> %s is done offline, stop "
                                 "the VM first" % (d["name"], running[0], cur["provisioning"], d["provisioning"]))
            if cur.get("backing"):
                raise ValueError("disk '%s' is a differencing disk (backing file %s): converting its provisioning is "
                                 "not supported" % (d["name"], cur["backing"]))
            deps = images.dependants_of(self.client, [cur["path"]])
            if deps:
                # Snapshot layers or linked clones read through it (perhaps in a VM running on another CNA).
                raise ValueError("disk '%s' cannot be converted while images stand on it: %s"
                                 % (d["name"], images.describe_dependants(deps)))
            after["provisioning"] = d["provisioning"]
            self.act("convert %s -> %s" % (cur["provisioning"], d["provisioning"]),
                     self._convert, d, cur, d["provisioning"])
        return before, after

    def _top(self, users, path):
        """The file the first VM that has disk ``path`` writes (``path`` itself without snapshot layers)."""
        for vm, _target in users:
            mine = self._mine(vm, path)
            if mine:
                return mine[0][1]
        return path

    def _capacity(self, path):
        vol = self.client.volume_by_path(path)
        if vol is not None:
            return self.client.call("read size of", "volume %s" % path, vol.info)[1]
        size = fileops.qcow2_virtual_size(path) if self.local else None
        if size is None:
            raise ValueError("cannot read the size of %s on %s" % (path, self.uri))
        return size

    def _is_running(self, name):
        dom = self.client.domain(name)
        return dom is not None and bool(self.client.call("read state of", "VM '%s'" % name, dom.isActive))

    def _refresh(self, pool, name):
        self.client.call("refresh", "datastore '%s'" % name, pool.refresh, 0)

    def _create(self, pool, d, fmt, prov):
        if self.local and self._pool_type(pool, d["datastore"]) in ("dir", "netfs"):
            self._create_file(pool, d, fmt, prov)
            self.created.append(self.pool_path(pool, d))
        else:
            vol = self._create_volume(pool, d, fmt, prov)
            self.created.append(self.client.call("read path of", "disk '%s'" % d["name"], vol.path))
        self._refresh(pool, d["datastore"])

    def _create_file(self, pool, d, fmt, prov):
        """Made complete under a hidden name, then linked to its own (never over an existing file): a failed or
        killed run leaves no half-made disk under the user's name, only its temp, which the next run removes."""
        path = self.pool_path(pool, d)
        tmp = images.remove_stale_temp(path, "new")
        try:
            if fmt == "qcow2":
                opts = "compat=1.1" + ("" if prov == "thin" else ",preallocation=falloc")
                self.qemu_img(["create", "-q", "-f", "qcow2", "-o", opts, tmp, str(d["size"])])
                os.chmod(tmp, 0o600)
            else:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.ftruncate(fd, d["size"])
                finally:
                    os.close(fd)
                if prov != "thin":
                    fileops.reserve(tmp, d["size"])
            if prov == "thick_eager_zeroed":
                # A qcow2 file is longer than its virtual size (metadata): zero the whole file.
                self._zero(tmp, d["size"] if fmt == "raw" else None)
            fileops.set_intent(tmp, prov)
            _fsync(tmp)
            os.link(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def _create_volume(self, pool, d, fmt, prov):
        """Made by libvirt in one call: a block datastore's volume (LVM), or a thin disk through a remote URI."""
        obj = "disk '%s' in datastore '%s'" % (d["name"], d["datastore"])
        xml = volume_xml(d["name"], d["size"], fmt, allocation=d["size"] if prov != "thin" else 0)
        return self.client.call("create", obj, pool.createXML, xml, 0)

    def pool_path(self, pool, d):
        return os.path.join(images.datastore_dir(self.client, pool, d["datastore"], "thick qcow2 disks"), d["name"])

    def _pool_type(self, pool, name):
        return xmlutil.parse(self.client.call("read", "datastore '%s'" % name, pool.XMLDesc, 0)).get("type")

    def attach_path(self, pool, d, cur):
        """How a VM's definition names the disk: its file, its host device, or ``<datastore>/<volume>`` for a
        datastore whose volumes have no host device (iscsi_direct). None for a block datastore's volume that
        does not exist yet (its device appears when it is made)."""
        ptype = self._pool_type(pool, d["datastore"])
        if ptype in ("dir", "netfs"):
            return cur["path"] if cur else self.pool_path(pool, d)
        if ptype == "iscsi-direct":
            return volume_source(d["datastore"], d["name"])
        return cur["path"] if cur else None

    def _grow_offline(self, d, cur, prov):
        pool = self._pool(d["datastore"])
        vol = self.client.volume(d["datastore"], d["name"])
        path = cur["path"]
        if cur.get("top"):
            # a snapshot layer on the disk: it is what the VM sees, so it is what grows (thin, as layers are)
            top = self.client.volume_by_path(cur["top"])
            self.client.call("grow", "disk '%s' (its layer %s)" % (d["name"], cur["top"]), top.resize, d["size"], 0)
        elif prov == "thin":
            self.client.call("grow", "disk '%s'" % d["name"], vol.resize, d["size"], 0)
        elif prov == "thick":
            # Read remotely as thick (lazy or eager unknown): let libvirt reserve the new space (raw only).
            self.client.call("grow", "disk '%s'" % d["name"], vol.resize, d["size"], VOL_RESIZE_ALLOCATE)
        else:
            if cur["format"] == "raw":
                fileops.reserve(path, d["size"])
            else:
                # libvirt only preallocates raw volumes; qemu-img gives the new qcow2 clusters their space.
                self.qemu_img(["resize", "-q", "--preallocation=falloc", "-f", "qcow2", path, str(d["size"])])
            if prov == "thick_eager_zeroed":
                self._zero(path)
        self._refresh(pool, d["datastore"])

    def _grow_online(self, d, cur, prov, vm):
        if prov == "thick":
            raise ValueError("disk '%s' of running VM %s is thick, read through a remote URI: growing it online "
                             "reserves the new space in its file, so run the task on its CNA" % (d["name"], vm))
        if cur["format"] == "qcow2" and prov != "thin":
            raise ValueError("disk '%s' is a %s qcow2 disk of running VM %s: QEMU grows qcow2 images thin, so growing "
                             "it online would not keep the new space %s; stop the VM (or use raw)" %
                             (d["name"], prov, vm, "reserved" if prov == "thick_lazy_zeroed" else "zeroed"))
        target = [t for u, t in images.users_of(self.client, cur["path"], self.local) if u == vm][0]
        self.record("grow online (VM %s, %s) from %d to %d bytes" % (vm, target, cur["size"], d["size"]))
        if self.check_mode:
            return
        if cur["format"] == "raw" and prov != "thin":
            # Prepare the new region before QEMU exposes it: the guest cannot write there yet.
            fileops.reserve(cur["path"], d["size"])
            if prov == "thick_eager_zeroed":
                self._zero(cur["path"], d["size"])
        dom = self._domain(vm)
        self.client.call("grow online", "disk '%s' of VM '%s'" % (d["name"], vm), dom.blockResize, target,
                         d["size"], BLOCK_RESIZE_BYTES)
        self._refresh(self._pool(d["datastore"]), d["datastore"])

    def _convert(self, d, cur, new):
        path = cur["path"]
        pool = self._pool(d["datastore"])
        if cur["format"] == "raw":
            # In place and content-preserving at every step: punching only releases ranges that read as
            # zeroes, reserving only allocates, zeroing only writes where reads already return zeroes.
            if new == "thin":
                fileops.punch_zeroes(path)
            elif new == "thick_lazy_zeroed":
                if cur["provisioning"] == "thick_eager_zeroed":
                    fileops.punch_zeroes(path)
                fileops.reserve(path, cur["size"])
            else:
                fileops.reserve(path, cur["size"])
                self._zero(path, cur["size"])
        else:
            # qcow2: copy into a new image of the wanted kind, then swap. The source stays authoritative
            # until the rename; a failure removes the partial copy.
            tmp = images.remove_stale_temp(path, "convert")
            opts = "compat=1.1" + ("" if new == "thin" else ",preallocation=falloc")
            try:
                self.qemu_img(["convert", "-q", "-f", "qcow2", "-O", "qcow2", "-o", opts, path, tmp])
                if new == "thick_eager_zeroed":
                    self._zero(tmp)
                st = os.stat(path)
                os.chmod(tmp, st.st_mode & 0o7777)
                os.chown(tmp, st.st_uid, st.st_gid)
                fileops.set_intent(tmp, new)
                _fsync(tmp)
                os.rename(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        fileops.set_intent(path, new)
        self._refresh(pool, d["datastore"])

    def delete_volume(self, d, force=False):
        pool = self._pool(d["datastore"])
        vol = self._volume(pool, d)
        if vol is None:
            return None, False
        self.need_local("deleting a disk (what stands on it is read from the image files)")
        cur = volume_facts(self.client, vol, self.local)
        before = {"datastore": d["datastore"], "name": d["name"], "format": cur["format"], "size": cur["size"],
                  "provisioning": cur["provisioning"]}
        users = images.users_of(self.client, cur["path"])
        if users and not force:
            raise ValueError("disk '%s' is attached to %s: detach it first or set force=true (detaches, then deletes)"
                             % (d["name"], ", ".join("%s (%s)" % u for u in users)))
        deps = images.dependants_of(self.client, [cur["path"]])
        if deps:
            # Even force does not break linked clones: their data is only complete with this image.
            raise ValueError("disk '%s' cannot be deleted: %s; delete those first"
                             % (d["name"], images.describe_dependants(deps)))
        if fileops.lease_held(cur["path"]) and not users:
            raise ValueError("disk '%s' is open read-write by a running VM on another CNA (its lease on %s is held): "
                             "detach it there first" % (d["name"], cur["path"]))
        pending = [vm for vm, target in users if self.detach(vm, cur["path"], target) is not None
                   and cur["path"] in self._pending]
        if pending:
            # The guest still has the device: deleting the file under it would lose its last writes.
            self.warn("disk '%s' is detached from %s's definition but still in use by the running guest: it is "
                      "deleted by a run after the guest releases it (at the latest after its next power off)"
                      % (d["name"], ", ".join(pending)))
            return before, False
        self.act("delete", self._delete, pool, d)
        return before, True

    def _delete(self, pool, d):
        vol = self.client.volume(d["datastore"], d["name"])
        self.client.call("delete", "disk '%s' in datastore '%s'" % (d["name"], d["datastore"]), vol.delete, 0)
        self._refresh(pool, d["datastore"])


def inventory(client, local, datastore=None, name=None, vm=None, refresh=False):
    """What disk_info reports: every volume (or a filtered set) with its attachments.

    With ``refresh`` each datastore's volume list is re-read first (a shared datastore's volumes may
    have been created or deleted by another CNA); that changes no data.
    """
    users = {}
    dom_names = client.domain_names()
    for dname in dom_names:
        if vm and dname != vm:
            continue
        for el, src, mode, chain in images.own_chains(client, dname, local=local):
            # The declared disk is the bottom of the VM's own chain; ``active`` is the layer the VM writes now.
            entry = dict(attachment_view(el, mode), vm=dname, device=el.get("device"), active=src,
                         declared=chain[-1] if chain else src)
            for f in chain or [src]:
                users.setdefault(f, []).append(entry)
    if vm and vm not in dom_names:
        raise ValueError("unknown VM '%s' on %s" % (vm, client.uri))
    out = []
    seen = set()
    pools = [datastore] if datastore else client.pool_names()
    for pname in pools:
        pool = client.pool(pname)
        if pool is None:
            raise ValueError("unknown datastore '%s' on %s" % (pname, client.uri))
        if not client.call("read state of", "datastore '%s'" % pname, pool.isActive):
            continue
        if refresh:
            client.call("refresh", "datastore '%s'" % pname, pool.refresh, 0)
        for vname in sorted(client.call("list volumes of", "datastore '%s'" % pname, pool.listVolumes)):
            if vname.startswith(".") or (name and vname != name):
                continue
            vol = client.volume(pname, vname)
            if vol is None:
                continue
            try:
                f = volume_facts(client, vol, local)
            except LibvirtClientError as e:
                if not client.is_missing(e, "volume"):
                    raise
                # gone since libvirt last listed the datastore (deleted by another CNA sharing it): the list
                # is read again for the next task, and this one is not reported
                client.call("refresh", "datastore '%s'" % pname, pool.refresh, 0)
                continue
            # a datastore volume attached by name (iscsi_direct) is found by <datastore>/<volume>
            attached = users.get(f["path"], []) or users.get(volume_source(pname, vname), [])
            layer_of = sorted(set(a["declared"] for a in attached if a["declared"] != f["path"])) or [None]
            seen.add(f["path"])
            if vm and (not attached or layer_of[0]):
                continue  # a VM's disks are its declared disks, each with the file it writes now
            out.append({"datastore": pname, "name": vname, "path": f["path"], "format": f["format"],
                        "provisioning": f["provisioning"], "provisioning_measured": f["provisioning_measured"],
                        "provisioning_source": f["provisioning_source"], "size": f["size"], "allocation": f["allocation"],
                        "backing_chain": images.volume_chain(client, f["path"]), "attached": attached,
                        "active": attached[0]["active"] if attached else None, "layer_of": layer_of[0],
                        "rdm": False})
    if vm and not name and not datastore:
        # Disks of the VM outside any datastore (raw device mappings, foreign files).
        for src, views in sorted(users.items(), key=lambda kv: str(kv[0])):
            if src in seen:
                continue
            if any(v["declared"] != src for v in views):
                continue  # a layer of a declared disk, reported with it
            lun = any(v["device"] == "lun" for v in views)
            out.append({"datastore": None, "name": None, "path": src, "format": None, "provisioning": None,
                        "provisioning_measured": None, "provisioning_source": None,
                        "size": None, "allocation": None, "backing_chain": [], "attached": views,
                        "active": views[0]["active"], "layer_of": None, "rdm": lun})
    return out
