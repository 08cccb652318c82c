# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A disk as the user declares it and as a domain's XML holds it: validation, the volume and
<disk> elements, and reading attachments back. Only ``attached_disks`` reads through the
client (the domain's XML); everything else is pure.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, names, xmlutil

FORMATS = ("qcow2", "raw")
PROVISIONING = fileops.PROVISIONING
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
_TARGET = re.compile(r"^(vd|sd|hd)[a-z]{1,2}$")


# ---------------------------------------------------------------------------- validation
def desired_state(p):
    """Validate the disk module's options; returns the managed view. ValueError on bad input."""
    d = {"name": names.validate_name(p["name"], kind="disk"), "rdm": None}
    if p.get("rdm"):
        d["rdm"] = _rdm_spec(p, d["name"])
        d["datastore"] = None
    else:
        if not p.get("datastore"):
            raise ValueError("disk '%s': datastore is required" % d["name"])
        d["datastore"] = names.validate_name(p["datastore"], kind="datastore")
    d["size"] = names.parse_size(p["size"], kind="disk size") if p.get("size") is not None else None
    if d["size"] == 0:
        raise ValueError("disk '%s': size must be greater than zero" % d["name"])
    for key, choices in (("format", FORMATS), ("provisioning", PROVISIONING)):
        if p.get(key) is not None and p[key] not in choices:
            raise ValueError("disk '%s': %s must be one of %s" % (d["name"], key, ", ".join(choices)))
        d[key] = p.get(key)
    d["vm"] = names.validate_name(p["vm"], kind="VM") if p.get("vm") else None
    d["attached"] = p.get("attached", True) if d["vm"] else None
    d["mode"] = p.get("mode") or "persistent"
    if d["mode"] not in MODES:
        raise ValueError("disk '%s': mode must be one of %s" % (d["name"], ", ".join(MODES)))
    _attachment_spec(p, d)
    d["iotune"] = _iotune(p.get("iotune") or {}, d["name"])
    if d["vm"] is None:
        for k in ("target", "cache", "io", "discard", "boot_order"):
            if p.get(k) is not None:
                raise ValueError("disk '%s': %s describes an attachment and needs vm" % (d["name"], k))
        if d["iotune"] or d["readonly"] or d["shareable"] or d["mode"] != "persistent":
            raise ValueError("disk '%s': mode, readonly, shareable and iotune describe an attachment and need vm" % d["name"])
    return d


def _rdm_spec(p, name):
    rdm = p["rdm"]
    if not isinstance(rdm, str) or not rdm.startswith("/dev/") or ".." in rdm.split("/"):
        raise ValueError("disk '%s': rdm must be a block device path under /dev, got %r" % (name, rdm))
    for k in ("size", "provisioning", "format"):
        if p.get(k) is not None:
            raise ValueError("disk '%s': a raw device mapping has no %s (the LUN is used as it is)" % (name, k))
    if not p.get("vm"):
        raise ValueError("disk '%s': a raw device mapping needs vm (it is a VM's view of a LUN)" % name)
    if p.get("mode") not in (None, "persistent"):
        raise ValueError("disk '%s': a raw device mapping is always persistent" % name)
    return rdm


def _attachment_spec(p, d):
    """bus, target, cache, io, discard, readonly, shareable and boot_order of ``d`` from the options."""
    d["bus"] = "scsi" if d["rdm"] else (p.get("bus") or "virtio")
    if d["bus"] not in BUSES:
        raise ValueError("disk '%s': bus must be one of %s" % (d["name"], ", ".join(BUSES)))
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


def _iotune(iotune, name):
    unknown = sorted(set(iotune) - set(IOTUNE_KEYS))
    if unknown:
        raise ValueError("disk '%s': unknown iotune keys %s (known: %s)" % (name, ", ".join(unknown), ", ".join(IOTUNE_KEYS)))
    clean = {}
    for k, v in iotune.items():
        if v is None:
            continue
        if isinstance(v, bool) or not str(v).isdigit():
            raise ValueError("disk '%s': iotune %s must be a whole number >= 0, got %r" % (name, k, v))
        if int(v):
            clean[k] = int(v)
    if (clean.get("total_bytes_sec") and (clean.get("read_bytes_sec") or clean.get("write_bytes_sec"))) or \
            (clean.get("total_iops_sec") and (clean.get("read_iops_sec") or clean.get("write_iops_sec"))):
        raise ValueError("disk '%s': iotune total_* cannot be combined with read_*/write_* of the same kind" % name)
    return clean


# ---------------------------------------------------------------------------- XML
def volume_xml(name, size, fmt, allocation=0):
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size)
    ET.SubElement(vol, "allocation", unit="bytes").text = str(allocation)
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type=fmt)
    if fmt == "qcow2":
        # compat 1.1: dirty bitmaps (incremental backup, storage migration) need it.
        ET.SubElement(target, "compat").text = "1.1"
    perms = ET.SubElement(target, "permissions")
    ET.SubElement(perms, "mode").text = "0600"
    return xmlutil.tostring(vol)


def meta_modes(root):
    """{source path: mode} from the domain's kvmfusion metadata."""
    modes = {}
    for el in root.findall("metadata/{%s}disks/{%s}disk" % (META_NS, META_NS)):
        modes[el.get("source")] = el.get("mode")
    return modes


def disk_source(el):
    """What identifies a domain disk's image: its file or device path, or ``<pool>/<volume>`` for a disk that
    names a datastore volume (type='volume', as for LUNs that libvirt reaches without a host device)."""
    src = el.find("source")
    if src is None:
        return None
    if el.get("type") == "volume" and src.get("pool") and src.get("volume"):
        return volume_source(src.get("pool"), src.get("volume"))
    return src.get("file") or src.get("dev") or src.get("volume")


def volume_source(pool, volume):
    """The identity of a type='volume' disk (pool and volume names cannot contain '/')."""
    return "%s/%s" % (pool, volume)


def source_kind(path):
    """How a domain disk reaches the image ``path``: a file, a host block device, or a datastore volume."""
    if path.startswith("/dev/"):
        return "block"
    if path.startswith("/"):
        return "file"
    return "volume"


def attached_disks(client, dom_name, inactive=True):
    """[(element, source, mode)] of a domain's disks, from its persistent (or live) XML."""
    xml = client.domain_xml(dom_name, inactive=inactive)
    if xml is None:
        return []
    root = xmlutil.parse(xml)
    modes = meta_modes(root)
    out = []
    for el in root.findall("devices/disk"):
        src = disk_source(el)
        mode = modes.get(src) or ("independent_nonpersistent" if el.find("transient") is not None else "persistent")
        out.append((el, src, mode))
    return out


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
        kind = source_kind(path)
        el = ET.Element("disk", type=kind, device="disk")
        drv = {"name": "qemu", "type": fmt}
        for k in ("cache", "io", "discard"):
            if d.get(k):
                drv[k] = d[k]
        ET.SubElement(el, "driver", drv)
        if kind == "volume":
            pool, volume = path.split("/", 1)
            ET.SubElement(el, "source", pool=pool, volume=volume)
        else:
            ET.SubElement(el, "source", {"file" if kind == "file" else "dev": path})
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


def metadata_element(modes, namespaced=True):
    """The disk-mode record; setMetadata wants it bare (libvirt adds the namespace), a definition namespaced."""
    def tag(t):
        return "{%s}%s" % (META_NS, t) if namespaced else t
    root = ET.Element(tag("disks"))
    for src in sorted(modes):
        if modes[src] != "persistent":
            ET.SubElement(root, tag("disk"), source=src, mode=modes[src])
    ET.register_namespace(META_KEY, META_NS)
    return root


# ---------------------------------------------------------------------------- disks that moved
#: A VM's metadata records where storage_migration moved a disk the user declared: the declared
#: (datastore, name) stays the disk's identity (the vm and disk modules follow it).
MOVES_NS = "https://kvmfusion.compute/xmlns/moves/1"
MOVES_KEY = "kvmfmoves"


def moves_of(root):
    """{(old datastore, old name): (new datastore, new name)} the VM's metadata records."""
    out = {}
    for el in root.findall("metadata/{%s}moves/{%s}disk" % (MOVES_NS, MOVES_NS)):
        out[(el.get("from_datastore"), el.get("from_name"))] = (el.get("to_datastore"), el.get("to_name"))
    return out


def follow(moves, datastore, name):
    """Where the disk declared as (datastore, name) is now, following recorded moves (ds1 -> ds2 -> ds3)."""
    seen = set()
    key = (datastore, name)
    while key in moves and key not in seen:
        seen.add(key)
        key = moves[key]
    return key


def moves_xml(moves):
    root = ET.Element("moves")
    for (fds, fname), (tds, tname) in sorted(moves.items()):
        ET.SubElement(root, "disk", from_datastore=fds, from_name=fname, to_datastore=tds, to_name=tname)
    return xmlutil.tostring(root)
