# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Virtual disks: volumes on datastores, their provisioning, and their attachment to VMs.

Volumes are addressed as datastore + volume name.  Provisioning work (reserving and
zeroing space, converting between types) touches the volume's file directly through
fileops, so it needs the module to run on the CNA whose datastore holds the file (a
local URI).  The attach code here is the one implementation: the vm module uses it too.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.actions import ActionRecorder

FORMATS = ("qcow2", "raw")
MODES = ("persistent", "independent_persistent", "independent_nonpersistent")
BUSES = ("virtio", "scsi", "sata")
CACHES = ("default", "none", "writethrough", "writeback", "directsync", "unsafe")
IOS = ("native", "threads", "io_uring")
DISCARDS = ("unmap", "ignore")
IOTUNE_KEYS = ("total_bytes_sec", "read_bytes_sec", "write_bytes_sec",
               "total_iops_sec", "read_iops_sec", "write_iops_sec")
TARGET_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd"}
META_NS = "https://kvmfusion.compute/xmlns/disks/1"
META_KEY = "kvmf"
# libvirt ABI constants (stable), so no libvirt import is needed here.
AFFECT_LIVE, AFFECT_CONFIG = 1, 2
VOL_RESIZE_ALLOCATE = 1
BLOCK_RESIZE_BYTES = 1
METADATA_ELEMENT = 2
XML_INACTIVE = 2
UNPLUG_WAIT = 10
_TARGET = re.compile(r"^(vd|sd|hd)[a-z]{1,2}$")


def is_local_uri(uri):
    """True when the URI reaches the libvirt of the host the module runs on."""
    m = re.match(r"^[a-z0-9+]+://([^/?]*)/", uri or "")
    return bool(m) and m.group(1) in ("", "localhost")


# ---------------------------------------------------------------------------- validation
def desired_state(p):
    """Validate the disk module's options; returns the managed view. ValueError on bad input."""
    d = {"name": names.validate_name(p["name"], kind="disk"), "rdm": None}
    if p.get("rdm"):
        rdm = p["rdm"]
        if not isinstance(rdm, str) or not rdm.startswith("/dev/") or ".." in rdm.split("/"):
            raise ValueError("disk '%s': rdm must be a block device path under /dev, got %r" % (d["name"], rdm))
        for k in ("size", "provisioning", "format"):
            if p.get(k) is not None:
                raise ValueError("disk '%s': a raw device mapping has no %s (the LUN is used as it is)" % (d["name"], k))
        if not p.get("vm"):
            raise ValueError("disk '%s': a raw device mapping needs vm (it is a VM's view of a LUN)" % d["name"])
        if p.get("mode") not in (None, "persistent"):
            raise ValueError("disk '%s': a raw device mapping is always persistent" % d["name"])
        d["rdm"] = rdm
        d["datastore"] = None
    else:
        if not p.get("datastore"):
            raise ValueError("disk '%s': datastore is required" % d["name"])
        d["datastore"] = names.validate_name(p["datastore"], kind="datastore")
    d["size"] = names.parse_size(p["size"], kind="disk size") if p.get("size") is not None else None
    if d["size"] == 0:
        raise ValueError("disk '%s': size must be greater than zero" % d["name"])
    d["format"] = p.get("format")
    d["provisioning"] = p.get("provisioning")
    d["vm"] = names.validate_name(p["vm"], kind="VM") if p.get("vm") else None
    d["attached"] = p.get("attached", True) if d["vm"] else None
    d["mode"] = p.get("mode") or "persistent"
    d["bus"] = "scsi" if d["rdm"] else (p.get("bus") or "virtio")
    if d["rdm"] and p.get("bus") not in (None, "scsi"):
        raise ValueError("disk '%s': a raw device mapping is a SCSI LUN: bus must be scsi" % d["name"])
    target = p.get("target")
    if target is not None and (not _TARGET.match(target) or not target.startswith(TARGET_PREFIX[d["bus"]])):
        raise ValueError("disk '%s': target %r does not fit bus %s (expected %sX)" % (d["name"], target, d["bus"],
                                                                                      TARGET_PREFIX[d["bus"]]))
    d["target"] = target
    for key, choices in (("cache", CACHES), ("io", IOS), ("discard", DISCARDS)):
        if p.get(key) is not None and p[key] not in choices:
            raise ValueError("disk '%s': %s must be one of %s" % (d["name"], key, ", ".join(choices)))
        d[key] = p.get(key)
    if d["rdm"]:
        # SCSI pass-through to a LUN: no host page cache in between.
        d["cache"] = d["cache"] or "none"
        d["io"] = d["io"] or ("native" if d["cache"] in ("none", "directsync") else "threads")
    if d["io"] == "native" and d["cache"] not in ("none", "directsync"):
        raise ValueError("disk '%s': io=native needs cache=none or cache=directsync (QEMU refuses it otherwise)" % d["name"])
    d["readonly"] = bool(p.get("readonly"))
    d["shareable"] = bool(p.get("shareable"))
    if d["readonly"] and d["mode"] == "independent_nonpersistent":
        raise ValueError("disk '%s': a read-only disk cannot be non-persistent" % d["name"])
    if p.get("boot_order") is not None and int(p["boot_order"]) < 1:
        raise ValueError("disk '%s': boot_order starts at 1" % d["name"])
    d["boot_order"] = p.get("boot_order")
    iotune = p.get("iotune") or {}
    unknown = sorted(set(iotune) - set(IOTUNE_KEYS))
    if unknown:
        raise ValueError("disk '%s': unknown iotune keys %s (known: %s)" % (d["name"], ", ".join(unknown), ", ".join(IOTUNE_KEYS)))
    clean = {}
    for k, v in iotune.items():
        if v is None:
            continue
        if isinstance(v, bool) or not str(v).isdigit():
            raise ValueError("disk '%s': iotune %s must be a whole number >= 0, got %r" % (d["name"], k, v))
        if int(v):
            clean[k] = int(v)
    if (clean.get("total_bytes_sec") and (clean.get("read_bytes_sec") or clean.get("write_bytes_sec"))) or \
            (clean.get("total_iops_sec") and (clean.get("read_iops_sec") or clean.get("write_iops_sec"))):
        raise ValueError("disk '%s': iotune total_* cannot be combined with read_*/write_* of the same kind" % d["name"])
    d["iotune"] = clean
    if d["vm"] is None:
        for k in ("target", "cache", "io", "discard", "boot_order"):
            if p.get(k) is not None:
                raise ValueError("disk '%s': %s describes an attachment and needs vm" % (d["name"], k))
        if clean or d["readonly"] or d["shareable"] or d["mode"] != "persistent":
            raise ValueError("disk '%s': mode, readonly, shareable and iotune describe an attachment and need vm" % d["name"])
    return d


# ---------------------------------------------------------------------------- volumes
def volume_xml(name, size, fmt):
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size)
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type=fmt)
    if fmt == "qcow2":
        # compat 1.1: dirty bitmaps (incremental backup, storage migration) need it.
        ET.SubElement(target, "compat").text = "1.1"
    perms = ET.SubElement(target, "permissions")
    ET.SubElement(perms, "mode").text = "0600"
    return xmlutil.tostring(vol)


def volume_facts(client, vol, local=True):
    """Managed view of an existing volume."""
    obj = "volume '%s'" % client.call("read name of", "volume", vol.name)
    root = xmlutil.parse(client.call("read", obj, vol.XMLDesc, 0))
    _vtype, capacity, allocation = client.call("read size of", obj, vol.info)
    path = client.call("read path of", obj, vol.path)
    fmt = xmlutil.find_attr(root, "target/format", "type") or "raw"
    backing = xmlutil.find_text(root, "backingStore/path")
    provisioning = None
    if local and os.path.isfile(path):
        try:
            provisioning = fileops.provisioning_of(path, capacity, fmt=fmt)
        except fileops.FileOpsError:
            provisioning = None
    if provisioning is None:
        provisioning = "thin" if allocation < capacity else "thick"
    return {"path": path, "format": fmt, "size": capacity, "allocation": allocation,
            "provisioning": provisioning, "backing": backing}


# ---------------------------------------------------------------------------- domain disks
def _meta_modes(root):
    """{source path: mode} from the domain's kvmfusion metadata."""
    modes = {}
    for el in root.findall("metadata/{%s}disks/{%s}disk" % (META_NS, META_NS)):
        modes[el.get("source")] = el.get("mode")
    return modes


def disk_source(el):
    src = el.find("source")
    if src is None:
        return None
    return src.get("file") or src.get("dev") or src.get("volume")


def attached_disks(client, dom_name, inactive=True):
    """[(element, source, mode)] of a domain's disks, from its persistent (or live) XML."""
    xml = client.domain_xml(dom_name, inactive=inactive)
    if xml is None:
        return []
    root = xmlutil.parse(xml)
    modes = _meta_modes(root)
    out = []
    for el in root.findall("devices/disk"):
        src = disk_source(el)
        mode = modes.get(src) or ("independent_nonpersistent" if el.find("transient") is not None else "persistent")
        out.append((el, src, mode))
    return out


def datastore_dir(client, pool, name, who):
    """The directory of a file-based (dir or nfs) datastore; ``who`` names what needs one in the error."""
    root = xmlutil.parse(client.call("read", "datastore '%s'" % name, pool.XMLDesc, 0))
    base = xmlutil.find_text(root, "target/path")
    if root.get("type") not in ("dir", "netfs") or not base:
        raise ValueError("datastore '%s' is not file based: %s need a dir or nfs datastore" % (name, who))
    return base


def repoint_disk(el, path, fmt):
    """Point a domain <disk> element at the image ``path`` of format ``fmt``; its old backing chain goes
    (libvirt reads the new one from the image header)."""
    for bs in el.findall("backingStore"):
        el.remove(bs)
    el.set("type", "file")
    src = el.find("source")
    if src is None:
        src = ET.SubElement(el, "source")
    for k in list(src.attrib):
        del src.attrib[k]
    src.set("file", path)
    drv = el.find("driver")
    if drv is None:
        drv = ET.SubElement(el, "driver", name="qemu")
    drv.set("type", fmt)


def users_of(client, path):
    """[(domain, target dev)] on this host whose persistent or live definition uses ``path``."""
    found = []
    for dname in client.domain_names():
        for inactive in (True, False):
            for el, src, _mode in attached_disks(client, dname, inactive=inactive):
                if src == path and (dname, xmlutil.find_attr(el, "target", "dev")) not in found:
                    found.append((dname, xmlutil.find_attr(el, "target", "dev")))
    return found


def attachment_view(el, mode):
    """The managed view of one domain disk element."""
    drv = el.find("driver")
    iot = {}
    if el.find("iotune") is not None:
        for k in IOTUNE_KEYS:
            v = xmlutil.find_text(el, "iotune/" + k)
            if v and int(v):
                iot[k] = int(v)
    boot = xmlutil.find_attr(el, "boot", "order")
    return {
        "target": xmlutil.find_attr(el, "target", "dev"),
        "bus": xmlutil.find_attr(el, "target", "bus"),
        "cache": drv.get("cache") if drv is not None else None,
        "io": drv.get("io") if drv is not None else None,
        "discard": drv.get("discard") if drv is not None else None,
        "readonly": el.find("readonly") is not None,
        "shareable": el.find("shareable") is not None,
        "boot_order": int(boot) if boot else None,
        "mode": mode,
        "iotune": iot,
    }


def choose_target(existing, bus):
    prefix = TARGET_PREFIX[bus]
    used = set(t for t in existing if t)
    for i in range(26 * 27):
        suffix = chr(97 + i) if i < 26 else chr(96 + i // 26) + chr(97 + i % 26)
        if prefix + suffix not in used:
            return prefix + suffix
    raise ValueError("no free %s target left" % bus)


def disk_element(d, path, fmt, target):
    """The domain <disk> for an attachment (ElementTree; the one builder used by disk and vm)."""
    if d["rdm"]:
        el = ET.Element("disk", type="block", device="lun")
        ET.SubElement(el, "driver", name="qemu", type="raw", cache=d["cache"], io=d["io"])
        ET.SubElement(el, "source", dev=d["rdm"])
    else:
        el = ET.Element("disk", type="file", device="disk")
        drv = {"name": "qemu", "type": fmt}
        for k in ("cache", "io", "discard"):
            if d.get(k):
                drv[k] = d[k]
        ET.SubElement(el, "driver", drv)
        ET.SubElement(el, "source", file=path)
    ET.SubElement(el, "target", dev=target, bus=d["bus"])
    if d["iotune"]:
        iot = ET.SubElement(el, "iotune")
        for k in IOTUNE_KEYS:
            if k in d["iotune"]:
                ET.SubElement(iot, k).text = str(d["iotune"][k])
    if d["boot_order"]:
        ET.SubElement(el, "boot", order=str(d["boot_order"]))
    if d["readonly"]:
        ET.SubElement(el, "readonly")
    if d["shareable"]:
        ET.SubElement(el, "shareable")
    if d["mode"] == "independent_nonpersistent":
        ET.SubElement(el, "transient")
    return el


def _metadata_element(modes, namespaced=True):
    """The disk-mode record; setMetadata wants it bare (libvirt adds the namespace), a definition namespaced."""
    def tag(t):
        return "{%s}%s" % (META_NS, t) if namespaced else t
    root = ET.Element(tag("disks"))
    for src in sorted(modes):
        if modes[src] != "persistent":
            ET.SubElement(root, tag("disk"), source=src, mode=modes[src])
    ET.register_namespace(META_KEY, META_NS)
    return root


class DiskManager(ActionRecorder):
    """Converges one disk: its volume (size, provisioning) and its attachment to a VM."""

    def __init__(self, client, uri, check_mode=False, run_command=None, progress=None):
        self.client = client
        self.uri = uri
        self.local = is_local_uri(uri)
        self.check_mode = check_mode
        self.run_command = run_command
        self.progress = progress
        self.actions = []
        self.reboot_required = False
        self.stats = {"zeroed_bytes": 0, "zero_seconds": 0.0}
        self.warnings = []

    # helpers ------------------------------------------------------------
    def _zero(self, path, size=None):
        t0 = time.time()
        written = fileops.zero_unwritten(path, size, progress=self.progress)
        self.stats["zeroed_bytes"] += written
        self.stats["zero_seconds"] += time.time() - t0

    def _need_local(self, what):
        if not self.local:
            raise ValueError("%s works on the volume's file: run the task on the CNA that holds the datastore "
                             "(uri %s is remote)" % (what, self.uri))

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
        prov = d["provisioning"] or (cur["provisioning"] if cur and cur["provisioning"] != "thick" else "thin")
        if cur is None:
            if d["size"] is None:
                raise ValueError("disk '%s' does not exist in datastore '%s': size is needed to create it"
                                 % (d["name"], d["datastore"]))
            if prov != "thin":
                self._need_local("creating a %s disk" % prov)
            after = {"datastore": d["datastore"], "name": d["name"], "format": fmt, "size": d["size"],
                     "provisioning": prov}
            self._act("create %s %s disk of %d bytes" % (prov, fmt, d["size"]), self._create, pool, d, fmt, prov)
            return None, after
        before = {"datastore": d["datastore"], "name": d["name"], "format": cur["format"], "size": cur["size"],
                  "provisioning": cur["provisioning"]}
        after = dict(before)
        if d["format"] and d["format"] != cur["format"]:
            raise ValueError("disk '%s' is %s; changing the format to %s is not supported (clone or migrate it "
                             "to a new disk)" % (d["name"], cur["format"], d["format"]))
        users = users_of(self.client, cur["path"])
        running = [u for u, _t in users if self._is_running(u)]
        if d["size"] is not None and d["size"] != cur["size"]:
            if d["size"] < cur["size"]:
                raise ValueError("disk '%s' is %d bytes; shrinking it to %d bytes is refused (it would destroy "
                                 "data at the end of the disk)" % (d["name"], cur["size"], d["size"]))
            after["size"] = d["size"]
            if running:
                self._grow_online(d, cur, prov, running[0])
            else:
                self._act("grow offline from %d to %d bytes" % (cur["size"], d["size"]),
                          self._grow_offline, d, cur, prov)
        if d["provisioning"] and d["provisioning"] != cur["provisioning"] and \
                not (cur["provisioning"] == "thick" and d["provisioning"] != "thin"):
            self._need_local("converting provisioning")
            if running:
                raise ValueError("disk '%s' is in use by running VM %s: converting %s -> %s is done offline, stop "
                                 "the VM first" % (d["name"], running[0], cur["provisioning"], d["provisioning"]))
            if cur.get("backing"):
                raise ValueError("disk '%s' is a differencing disk (backing file %s): converting its provisioning is "
                                 "not supported" % (d["name"], cur["backing"]))
            after["provisioning"] = d["provisioning"]
            self._act("convert %s -> %s" % (cur["provisioning"], d["provisioning"]),
                      self._convert, d, cur, d["provisioning"])
        return before, after

    def _is_running(self, name):
        dom = self.client.domain(name)
        return dom is not None and bool(self.client.call("read state of", "VM '%s'" % name, dom.isActive))

    def _refresh(self, pool, name):
        self.client.call("refresh", "datastore '%s'" % name, pool.refresh, 0)

    def _create(self, pool, d, fmt, prov):
        obj = "disk '%s' in datastore '%s'" % (d["name"], d["datastore"])
        path = None
        try:
            if fmt == "qcow2" and prov != "thin":
                path = self._pool_path(pool, d)
                self._qemu_img(["create", "-q", "-f", "qcow2", "-o", "compat=1.1,preallocation=falloc",
                                path, str(d["size"])])
                os.chmod(path, 0o600)
                self._refresh(pool, d["datastore"])
            else:
                vol = self.client.call("create", obj, pool.createXML, volume_xml(d["name"], d["size"], fmt), 0)
                path = self.client.call("read path of", obj, vol.path)
                if prov != "thin":
                    fileops.reserve(path, d["size"])
            if prov == "thick_eager_zeroed":
                # A qcow2 file is longer than its virtual size (metadata): zero the whole file.
                self._zero(path, d["size"] if fmt == "raw" else None)
            if self.local:
                fileops.set_intent(path, prov)
            self._refresh(pool, d["datastore"])
        except Exception:
            # A partial volume is removed: the task failed, nothing is left half made.
            self._remove_partial(pool, d, path)
            raise

    def _remove_partial(self, pool, d, path):
        try:
            vol = self.client.volume(d["datastore"], d["name"])
            if vol is not None:
                vol.delete(0)
            elif path and os.path.exists(path):
                os.unlink(path)
            self._refresh(pool, d["datastore"])
        except Exception:  # pylint: disable=broad-except
            pass

    def _pool_path(self, pool, d):
        return os.path.join(datastore_dir(self.client, pool, d["datastore"], "thick qcow2 disks"), d["name"])

    def _qemu_img(self, args):
        qemu_img(self.run_command, args)

    def _grow_offline(self, d, cur, prov):
        pool = self._pool(d["datastore"])
        vol = self.client.volume(d["datastore"], d["name"])
        path = cur["path"]
        if prov == "thin":
            self.client.call("grow", "disk '%s'" % d["name"], vol.resize, d["size"], 0)
        elif prov == "thick":
            # Read remotely as thick (lazy or eager unknown): let libvirt reserve the new space (raw only).
            if cur["format"] != "raw":
                raise ValueError("disk '%s' is a thick qcow2 disk read from a remote URI: grow it with the task "
                                 "running on its CNA" % d["name"])
            self.client.call("grow", "disk '%s'" % d["name"], vol.resize, d["size"], VOL_RESIZE_ALLOCATE)
        else:
            self._need_local("growing a %s disk" % prov)
            if cur["format"] == "raw":
                fileops.reserve(path, d["size"])
            else:
                # libvirt only preallocates raw volumes; qemu-img gives the new qcow2 clusters their space.
                self._qemu_img(["resize", "-q", "--preallocation=falloc", "-f", "qcow2", path, str(d["size"])])
            if prov == "thick_eager_zeroed":
                self._zero(path)
        self._refresh(pool, d["datastore"])

    def _grow_online(self, d, cur, prov, vm):
        if cur["format"] == "qcow2" and prov != "thin":
            raise ValueError("disk '%s' is a %s qcow2 disk of running VM %s: QEMU grows qcow2 images thin, so growing "
                             "it online would not keep the new space %s; stop the VM (or use raw)" %
                             (d["name"], prov, vm, "reserved" if prov == "thick_lazy_zeroed" else "zeroed"))
        target = [t for u, t in users_of(self.client, cur["path"]) if u == vm][0]
        self.actions.append("grow online (VM %s, %s) from %d to %d bytes" % (vm, target, cur["size"], d["size"]))
        if self.check_mode:
            return
        if cur["format"] == "raw" and prov != "thin":
            # Prepare the new region before QEMU exposes it: the guest cannot write there yet.
            self._need_local("growing a %s disk" % prov)
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
            tmp = "%s.kvmf-convert" % path
            opts = "compat=1.1" + ("" if new == "thin" else ",preallocation=falloc")
            try:
                self._qemu_img(["convert", "-q", "-f", "qcow2", "-O", "qcow2", "-o", opts, path, tmp])
                if new == "thick_eager_zeroed":
                    self._zero(tmp)
                st = os.stat(path)
                os.chmod(tmp, st.st_mode & 0o7777)
                os.chown(tmp, st.st_uid, st.st_gid)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
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
            return None
        cur = volume_facts(self.client, vol, self.local)
        before = {"datastore": d["datastore"], "name": d["name"], "format": cur["format"], "size": cur["size"],
                  "provisioning": cur["provisioning"]}
        users = users_of(self.client, cur["path"])
        if users and not force:
            raise ValueError("disk '%s' is attached to %s: detach it first or set force=true (detaches, then deletes)"
                             % (d["name"], ", ".join("%s (%s)" % u for u in users)))
        deps = dependants_of(self.client, [cur["path"]]) if self.local else {}
        if deps:
            # Even force does not break linked clones: their data is only complete with this image.
            raise ValueError("disk '%s' cannot be deleted: %s; delete those first"
                             % (d["name"], describe_dependants(deps)))
        for vm, target in users:
            self.detach(vm, cur["path"], target)
        self._act("delete", self._delete, pool, d)
        return before

    def _delete(self, pool, d):
        vol = self.client.volume(d["datastore"], d["name"])
        self.client.call("delete", "disk '%s' in datastore '%s'" % (d["name"], d["datastore"]), vol.delete, 0)
        self._refresh(pool, d["datastore"])

    # attachment -------------------------------------------------------
    def precheck_attachment(self, d, path):
        """Everything about the attachment that can be refused, checked before the volume is touched."""
        self._domain(d["vm"])
        if not d["attached"] or not d["target"]:
            return
        for el, src, _mode in attached_disks(self.client, d["vm"], inactive=True):
            tgt = xmlutil.find_attr(el, "target", "dev")
            if src == path and tgt != d["target"]:
                raise ValueError("disk '%s' is attached to VM %s as %s; moving it to %s needs a detach first"
                                 % (d["name"], d["vm"], tgt, d["target"]))
            if tgt == d["target"] and src != path:
                raise ValueError("VM %s already has a disk at %s (%s)" % (d["vm"], d["target"], src))

    def ensure_attached(self, d, path, fmt):
        """Attach or update the disk on d['vm']. Returns (before, after) attachment views."""
        dom = self._domain(d["vm"])
        running = bool(self.client.call("read state of", "VM '%s'" % d["vm"], dom.isActive))
        disks = attached_disks(self.client, d["vm"], inactive=True)
        mine = [(el, mode) for el, src, mode in disks if src == path]
        desired_target = d["target"]
        if mine:
            el, mode = mine[0]
            before = attachment_view(el, mode)
            if desired_target and desired_target != before["target"]:
                raise ValueError("disk '%s' is attached to VM %s as %s; moving it to %s needs a detach first"
                                 % (d["name"], d["vm"], before["target"], desired_target))
            if d["bus"] != before["bus"]:
                raise ValueError("disk '%s' is attached to VM %s on bus %s; moving it to bus %s needs a detach first "
                                 "(its device name changes)" % (d["name"], d["vm"], before["bus"], d["bus"]))
            want = self._wanted_view(d, before["target"], before)
            if want == before:
                return before, before
            self._update_attachment(d, dom, running, path, fmt, before, want)
            return before, want
        target = desired_target or choose_target([xmlutil.find_attr(e, "target", "dev") for e, _s, _m in disks],
                                                 d["bus"])
        if any(xmlutil.find_attr(e, "target", "dev") == target for e, _s, _m in disks):
            raise ValueError("VM %s already has a disk at %s" % (d["vm"], target))
        want = self._wanted_view(d, target)
        el = disk_element(d, path, fmt, target)
        live = running and d["mode"] != "independent_nonpersistent"
        self._act("attach as %s%s" % (target, " (live and persistent)" if live else " (persistent config)"),
                  self._attach, dom, el, live, path, d["mode"])
        if running and not live:
            self.reboot_required = True
        return None, want

    def _wanted_view(self, d, target, before=None):
        """Options the user left out (None) keep what the attached disk has."""
        keep = before or {}
        return {"target": target, "bus": d["bus"], "cache": d["cache"] or keep.get("cache"),
                "io": d["io"] or keep.get("io"), "discard": d["discard"] or keep.get("discard"),
                "readonly": d["readonly"], "shareable": d["shareable"],
                "boot_order": d["boot_order"] or keep.get("boot_order"), "mode": d["mode"], "iotune": d["iotune"]}

    def _attach(self, dom, el, live, path, mode):
        flags = AFFECT_CONFIG | (AFFECT_LIVE if live else 0)
        self.client.call("attach disk to", "VM '%s'" % dom.name(), dom.attachDeviceFlags, xmlutil.tostring(el), flags)
        self._set_mode(dom, path, mode, live)

    def _set_mode(self, dom, path, mode, live):
        root = xmlutil.parse(self.client.domain_xml(dom.name(), inactive=True))
        modes = _meta_modes(root)
        if modes.get(path, "persistent") == mode:
            return
        modes[path] = mode
        flags = AFFECT_CONFIG | (AFFECT_LIVE if live else 0)
        self.client.call("record disk modes of", "VM '%s'" % dom.name(), dom.setMetadata, METADATA_ELEMENT,
                         xmlutil.tostring(_metadata_element(modes, namespaced=False)), META_KEY, META_NS, flags)

    def _update_attachment(self, d, dom, running, path, fmt, before, want):
        changed_keys = sorted(k for k in want if want[k] != before[k])
        # persistent <-> independent_persistent is bookkeeping for snapshots (metadata), QoS applies live;
        # anything else changes the device, which QEMU cannot do live: persistent config + reboot.
        meta_mode = "mode" in changed_keys and "independent_nonpersistent" not in (before["mode"], want["mode"])
        device_keys = [k for k in changed_keys if k != "iotune" and not (k == "mode" and meta_mode)]
        target = before["target"]
        if device_keys:
            merged = dict(d, cache=want["cache"], io=want["io"], discard=want["discard"], boot_order=want["boot_order"])
            self._act("update %s in the persistent config" % ", ".join(changed_keys), self._redefine_disk,
                      dom, path, disk_element(merged, path, fmt, target), want["mode"])
            if running:
                self.reboot_required = True
                if "iotune" in changed_keys:
                    self._act("set QoS live", self._set_iotune, dom, target, want["iotune"], True, False)
                if meta_mode:
                    self._act("set mode %s live" % want["mode"], self._set_mode, dom, path, want["mode"], True)
            return
        if "iotune" in changed_keys:
            self._act("set QoS%s" % (" live and persistent" if running else ""), self._set_iotune, dom, target,
                      want["iotune"], running, True)
        if meta_mode:
            self._act("set mode %s" % want["mode"], self._set_mode, dom, path, want["mode"], running)

    def _set_iotune(self, dom, target, iotune, live, config):
        params = dict((k, int(iotune.get(k, 0))) for k in IOTUNE_KEYS)
        obj = "VM '%s' disk %s" % (dom.name(), target)
        # libvirt takes LIVE and CONFIG for block I/O tuning one at a time.
        for flag, wanted in ((AFFECT_LIVE, live), (AFFECT_CONFIG, config)):
            if wanted:
                self.client.call("set QoS of", obj, dom.setBlockIoTune, target, params, flag)

    def _redefine_disk(self, dom, path, new_el, mode):
        root = xmlutil.parse(self.client.domain_xml(dom.name(), inactive=True))
        devices = root.find("devices")
        for i, el in enumerate(list(devices)):
            if el.tag == "disk" and disk_source(el) == path:
                addr = el.find("address")
                if addr is not None:
                    new_el.append(addr)
                devices.remove(el)
                devices.insert(i, new_el)
                break
        modes = _meta_modes(root)
        modes[path] = mode
        meta = root.find("metadata")
        if meta is None:
            meta = ET.SubElement(root, "metadata")
        for old in meta.findall("{%s}disks" % META_NS):
            meta.remove(old)
        meta.append(_metadata_element(modes))
        self.client.define_domain(xmlutil.tostring(root))

    def detach(self, vm, path, target=None):
        dom = self._domain(vm)
        running = bool(self.client.call("read state of", "VM '%s'" % vm, dom.isActive))
        found = [(el, mode) for el, src, mode in attached_disks(self.client, vm, inactive=True) if src == path]
        live_found = [el for el, src, _m in attached_disks(self.client, vm, inactive=False) if src == path] if running else []
        if not found:
            if live_found:
                # Detached from the definition already; the running guest has not let go of it yet.
                self._pending_unplug(vm, path)
            return None
        el, mode = found[0]
        before = attachment_view(el, mode)
        self._act("detach %s from VM %s" % (before["target"], vm), self._detach, dom, el, True, bool(live_found), path)
        if live_found and not self.check_mode and not self._wait_unplugged(vm, path, UNPLUG_WAIT):
            self._pending_unplug(vm, path)
        return before

    def _wait_unplugged(self, vm, path, seconds):
        """Live unplug needs the guest's consent (ACPI); give it a moment."""
        deadline = time.time() + seconds
        while True:
            if not [1 for _el, src, _m in attached_disks(self.client, vm, inactive=False) if src == path]:
                return True
            if time.time() >= deadline:
                return False
            time.sleep(0.5)

    def _pending_unplug(self, vm, path):
        self.reboot_required = True
        self.warnings.append("VM %s has not released %s yet (its guest did not acknowledge the unplug); it is gone "
                             "from the VM's definition and disappears at the VM's next power off" % (vm, path))

    def _detach(self, dom, el, config, live, path):
        flags = (AFFECT_CONFIG if config else 0) | (AFFECT_LIVE if live else 0)
        self.client.call("detach disk from", "VM '%s'" % dom.name(), dom.detachDeviceFlags, xmlutil.tostring(el), flags)
        if config:
            self._set_mode(dom, path, "persistent", live)


def _backing_chain(client, path, local):
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
        for el, src, mode in attached_disks(client, dname, inactive=True):
            view = attachment_view(el, mode)
            users.setdefault(src, []).append(dict(view, vm=dname, device=el.get("device")))
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
            f = volume_facts(client, vol, local)
            attached = users.get(f["path"], [])
            if vm and not attached:
                continue
            seen.add(f["path"])
            out.append({"datastore": pname, "name": vname, "path": f["path"], "format": f["format"],
                        "provisioning": f["provisioning"], "size": f["size"], "allocation": f["allocation"],
                        "backing_chain": _backing_chain(client, f["path"], local), "attached": attached,
                        "rdm": False})
    if vm and not name and not datastore:
        # Disks of the VM outside any datastore (raw device mappings, foreign files).
        for src, views in sorted(users.items(), key=lambda kv: str(kv[0])):
            if src in seen:
                continue
            lun = any(v["device"] == "lun" for v in views)
            out.append({"datastore": None, "name": None, "path": src, "format": None, "provisioning": None,
                        "size": None, "allocation": None, "backing_chain": [], "attached": views, "rdm": lun})
    return out


def qemu_img(run_command, args):
    """Run qemu-img through the module's run_command; a failure is one ValueError line. Returns stdout."""
    if run_command is None:
        raise ValueError("qemu-img is needed on the CNA")
    rc, out, err = run_command(["qemu-img"] + args)
    if rc != 0:
        raise ValueError("qemu-img %s failed: %s" % (args[0], " ".join((err or out).split())))
    return out


def refresh_pools(client):
    """Re-read every running datastore's volume list (changes no data)."""
    for pname in client.pool_names():
        pool = client.pool(pname)
        if pool is not None and pool.isActive():
            client.call("refresh", "datastore '%s'" % pname, pool.refresh, 0)


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
