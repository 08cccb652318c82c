# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Datastores: libvirt storage pools defined identically on every CNA that shares them.

A datastore spec is a plain dict (the module's options); ``desired_state`` turns it into
the managed view, ``pool_xml`` into libvirt XML, ``current_state`` reads the same view
back from a pool, so comparing the two dicts is the idempotence check and the diff.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import hashlib
import hmac
import os
import posixpath
import re
import uuid
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, images, names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import LibvirtClientError
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    POOL_BUILD_NO_OVERWRITE,
    POOL_STATE,
    SECRET_USAGE_ISCSI,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager

TYPES = ("dir", "nfs", "iscsi", "iscsi_direct", "logical", "scsi", "fc")
POOL_TYPE = {"dir": "dir", "nfs": "netfs", "iscsi": "iscsi", "iscsi_direct": "iscsi-direct",
             "logical": "logical", "scsi": "scsi", "fc": "scsi"}
DEFAULT_ROOT = "/var/lib/kvmfusion/datastores"
FS_NS = "http://libvirt.org/schemas/storagepool/fs/1.0"
# Shared datastores take their UUID from their name, so every CNA defines the same UUID
# without talking to the others, and the UUID tells a shared datastore from a local one.
SHARED_NAMESPACE = uuid.UUID("6b1f6f1e-7a55-4c8e-9d0c-6b76d3f5a001")
IMMUTABLE = ("type", "uuid", "path", "source")
_IQN = re.compile(r"^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[^\s<>&'\"]+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$")
_PORTAL = re.compile(r"^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]+)(:(\d{1,5}))?$")
_WWN = re.compile(r"^[0-9A-Fa-f]{16}$")
_ADAPTER = re.compile(r"^(scsi_)?host\d+$")
_MOUNT_OPT = re.compile(r"^[A-Za-z0-9_.,=:/@+-]+$")


def user_volumes(client, pool, obj):
    """Volume names of a running pool, without the platform's own dot-entries (virtlockd's lock space)."""
    return sorted(v for v in client.call("list volumes of", obj, pool.listVolumes) if not v.startswith("."))


def shared_uuid(name):
    return str(uuid.uuid5(SHARED_NAMESPACE, "datastore:" + name))


def _abs_path(value, what):
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("%s must be an absolute path, got %r" % (what, value))
    if ".." in value.split("/") or any(c in value for c in "<>&'\"\n\r\t"):
        raise ValueError("%s %r must not contain '..' or XML metacharacters" % (what, value))
    norm = posixpath.normpath(value)
    return norm


def _portal(value):
    m = _PORTAL.match(value or "")
    if not m:
        raise ValueError("invalid iSCSI portal %r: expected host or host:port" % (value,))
    host, port = m.group(1).strip("[]"), int(m.group(3) or 3260)
    if not 0 < port < 65536:
        raise ValueError("invalid iSCSI portal %r: port out of range" % (value,))
    return host, port


def _iqn(value, what):
    if not value or not _IQN.match(value):
        raise ValueError("invalid %s %r: expected an iqn./eui./naa. name" % (what, value))
    return value


def _need(spec, keys, dtype):
    missing = [k for k in keys if not spec.get(k)]
    if missing:
        raise ValueError("datastore type %s needs %s" % (dtype, ", ".join(missing)))


def _refuse(spec, keys, dtype):
    given = [k for k in keys if spec.get(k)]
    if given:
        raise ValueError("datastore type %s does not take %s" % (dtype, ", ".join(given)))


def _source_dir(spec, name, path, dtype):
    _need(spec, ["path"], dtype)
    return {}, _abs_path(path, "path")


def _source_nfs(spec, name, path, dtype):
    _need(spec, ["server", "export"], dtype)
    if not _PORTAL.match(spec["server"]):
        raise ValueError("invalid NFS server %r" % spec["server"])
    opts = list(spec.get("mount_options") or [])
    for o in opts:
        if not _MOUNT_OPT.match(o):
            raise ValueError("invalid NFS mount option %r" % (o,))
    source = {"host": spec["server"], "dir": _abs_path(spec["export"], "export"), "mount_options": opts}
    path = _abs_path(path or posixpath.join(DEFAULT_ROOT, name), "path")
    return source, path


def _source_iscsi(spec, name, path, dtype):
    need = ["portal", "iqn"] + (["initiator_iqn"] if dtype == "iscsi_direct" else [])
    _need(spec, need, dtype)
    host, port = _portal(spec["portal"])
    source = {"host": host, "port": port, "iqn": _iqn(spec["iqn"], "target IQN")}
    if spec.get("initiator_iqn"):
        source["initiator_iqn"] = _iqn(spec["initiator_iqn"], "initiator IQN")
    if spec.get("chap_username"):
        if not spec.get("chap_password"):
            raise ValueError("chap_username needs chap_password")
        source["chap_username"] = names.validate_name(spec["chap_username"], kind="CHAP user")
    if dtype == "iscsi":
        path = _abs_path(path or "/dev/disk/by-path", "path")
    elif path:
        raise ValueError("datastore type iscsi_direct has no target path (LUNs are reached by libiscsi)")
    return source, path


def _source_logical(spec, name, path, dtype):
    vg = names.validate_name(spec.get("vg_name") or name, kind="volume group")
    devices = [_abs_path(d, "device") for d in (spec.get("devices") or [])]
    source = {"vg_name": vg, "devices": sorted(set(devices))}
    expected = "/dev/" + vg
    if path and _abs_path(path, "path") != expected:
        raise ValueError("a logical datastore's path is %s (the volume group's directory)" % expected)
    path = expected
    return source, path


def _source_scsi(spec, name, path, dtype):
    _need(spec, ["adapter"], dtype)
    adapter = spec["adapter"]
    if not _ADAPTER.match(adapter):
        raise ValueError("invalid SCSI adapter %r: expected hostN or scsi_hostN" % adapter)
    source = {"adapter": adapter.replace("scsi_", "")}
    path = _abs_path(path or "/dev/disk/by-path", "path")
    return source, path


def _source_fc(spec, name, path, dtype):
    _need(spec, ["wwnn", "wwpn"], dtype)
    for k in ("wwnn", "wwpn"):
        if not _WWN.match(spec[k]):
            raise ValueError("invalid %s %r: expected 16 hex digits" % (k, spec[k]))
    source = {"wwnn": spec["wwnn"].lower(), "wwpn": spec["wwpn"].lower()}
    if spec.get("parent"):
        if not _ADAPTER.match(spec["parent"]):
            raise ValueError("invalid FC parent adapter %r" % spec["parent"])
        source["parent"] = spec["parent"]
    path = _abs_path(path or "/dev/disk/by-path", "path")
    return source, path


def desired_state(spec):
    """Validate module options and return the managed view of the datastore.

    Raises ValueError (one line) on bad input, before anything is changed.
    """
    name = names.validate_name(spec["name"], kind="datastore")
    dtype = spec["type"]
    if dtype not in TYPES:
        raise ValueError("unknown datastore type %r (choose from %s)" % (dtype, ", ".join(TYPES)))
    shared = bool(spec.get("shared"))
    src_keys = ("server", "export", "mount_options", "portal", "iqn", "initiator_iqn", "chap_username",
                "devices", "vg_name", "adapter", "wwnn", "wwpn", "parent")
    allowed = {
        "dir": (), "nfs": ("server", "export", "mount_options"),
        "iscsi": ("portal", "iqn", "initiator_iqn", "chap_username"),
        "iscsi_direct": ("portal", "iqn", "initiator_iqn", "chap_username"),
        "logical": ("devices", "vg_name"), "scsi": ("adapter",), "fc": ("wwnn", "wwpn", "parent"),
    }[dtype]
    _refuse(spec, [k for k in src_keys if k not in allowed], dtype)
    if spec.get("chap_password") and not spec.get("chap_username"):
        raise ValueError("chap_password needs chap_username")
    source, path = _SOURCES[dtype](spec, name, spec.get("path"), dtype)
    state = {
        "name": name,
        "type": dtype,
        "shared": shared,
        "uuid": shared_uuid(name) if shared else None,
        "path": path,
        "source": source,
        "autostart": bool(spec.get("autostart", True)),
    }
    return state


_SOURCES = {"dir": _source_dir, "nfs": _source_nfs, "iscsi": _source_iscsi, "iscsi_direct": _source_iscsi,
            "logical": _source_logical, "scsi": _source_scsi, "fc": _source_fc}


def secret_usage(name):
    """The libvirt secret usage id of a datastore's CHAP password."""
    return "kvmfusion-datastore-" + name


def pool_xml(state):
    """libvirt pool XML for the managed view (ElementTree, never templated)."""
    dtype = state["type"]
    pool = ET.Element("pool", type=POOL_TYPE[dtype])
    ET.SubElement(pool, "name").text = state["name"]
    if state["uuid"]:
        ET.SubElement(pool, "uuid").text = state["uuid"]
    src = state["source"]
    source = ET.SubElement(pool, "source")
    if dtype == "nfs":
        ET.SubElement(source, "host", name=src["host"])
        ET.SubElement(source, "dir", path=src["dir"])
        ET.SubElement(source, "format", type="nfs")
        if src["mount_options"]:
            opts = ET.SubElement(pool, "{%s}mount_opts" % FS_NS)
            for o in src["mount_options"]:
                ET.SubElement(opts, "{%s}option" % FS_NS, name=o)
    elif dtype in ("iscsi", "iscsi_direct"):
        ET.SubElement(source, "host", name=src["host"], port=str(src["port"]))
        ET.SubElement(source, "device", path=src["iqn"])
        if src.get("initiator_iqn"):
            ET.SubElement(ET.SubElement(source, "initiator"), "iqn", name=src["initiator_iqn"])
        if src.get("chap_username"):
            auth = ET.SubElement(source, "auth", type="chap", username=src["chap_username"])
            ET.SubElement(auth, "secret", usage=secret_usage(state["name"]))
    elif dtype == "logical":
        for d in src["devices"]:
            ET.SubElement(source, "device", path=d)
        ET.SubElement(source, "name").text = src["vg_name"]
        ET.SubElement(source, "format", type="lvm2")
    elif dtype == "scsi":
        ET.SubElement(source, "adapter", type="scsi_host", name=src["adapter"])
    elif dtype == "fc":
        attrs = {"type": "fc_host", "wwnn": src["wwnn"], "wwpn": src["wwpn"]}
        if src.get("parent"):
            attrs["parent"] = src["parent"]
        ET.SubElement(source, "adapter", attrs)
    if state["path"] and dtype != "iscsi_direct":
        target = ET.SubElement(pool, "target")
        ET.SubElement(target, "path").text = state["path"]
    if dtype == "nfs":
        ET.register_namespace("fs", FS_NS)
    return xmlutil.tostring(pool)


def parse_pool_xml(text, autostart):
    """The managed view of an existing pool (inverse of pool_xml)."""
    root = xmlutil.parse(text)
    ptype = root.get("type")
    name = xmlutil.find_text(root, "name")
    puuid = xmlutil.find_text(root, "uuid")
    shared = puuid == shared_uuid(name)
    path = xmlutil.find_text(root, "target/path")
    source = {}
    if ptype == "dir":
        dtype = "dir"
    elif ptype == "netfs":
        dtype = "nfs"
        opts = root.findall("{%s}mount_opts/{%s}option" % (FS_NS, FS_NS))
        source = {"host": xmlutil.find_attr(root, "source/host", "name"),
                  "dir": xmlutil.find_attr(root, "source/dir", "path"),
                  "mount_options": [o.get("name") for o in opts]}
    elif ptype in ("iscsi", "iscsi-direct"):
        dtype = "iscsi" if ptype == "iscsi" else "iscsi_direct"
        source = {"host": xmlutil.find_attr(root, "source/host", "name"),
                  "port": int(xmlutil.find_attr(root, "source/host", "port", "3260")),
                  "iqn": xmlutil.find_attr(root, "source/device", "path")}
        ini = xmlutil.find_attr(root, "source/initiator/iqn", "name")
        if ini:
            source["initiator_iqn"] = ini
        user = xmlutil.find_attr(root, "source/auth", "username")
        if user:
            source["chap_username"] = user
        if dtype == "iscsi_direct":
            path = None
    elif ptype == "logical":
        dtype = "logical"
        source = {"vg_name": xmlutil.find_text(root, "source/name") or name,
                  "devices": sorted(set(d.get("path") for d in root.findall("source/device")))}
    elif ptype == "scsi":
        adapter = root.find("source/adapter")
        if adapter is not None and adapter.get("type") == "fc_host":
            dtype = "fc"
            source = {"wwnn": (adapter.get("wwnn") or "").lower(), "wwpn": (adapter.get("wwpn") or "").lower()}
            if adapter.get("parent"):
                source["parent"] = adapter.get("parent")
        else:
            dtype = "scsi"
            source = {"adapter": adapter.get("name") if adapter is not None else None}
    else:
        dtype = "libvirt:" + str(ptype)
    return {
        "name": name,
        "type": dtype,
        "shared": shared,
        "uuid": puuid if shared else None,
        "path": path,
        "source": source,
        "autostart": bool(autostart),
    }


def _pool_state(client, pool, name):
    obj = "datastore '%s'" % name
    xml = client.call("read", obj, pool.XMLDesc, 0)
    autostart = client.call("read autostart of", obj, pool.autostart)
    return parse_pool_xml(xml, autostart), bool(client.call("read state of", obj, pool.isActive))


def _immutable_diff(current, desired):
    """Fields that differ but cannot be changed in place, with a readable before/after."""
    diffs = []
    for key in IMMUTABLE:
        cur, want = current.get(key), desired.get(key)
        if key == "source" and desired["type"] == "logical" and current["type"] == "logical":
            # Adding devices extends the volume group; anything else is a different datastore.
            if cur.get("vg_name") != want.get("vg_name") or not set(cur["devices"]) <= set(want["devices"]):
                diffs.append("source %s -> %s" % (cur, want))
            continue
        if cur != want:
            diffs.append("%s %s -> %s" % (key, cur, want))
    return diffs


def facts(client, pool):
    """What datastore_info reports about one pool."""
    name = client.call("read name of", "storage pool", pool.name)
    obj = "datastore '%s'" % name
    state, active = _pool_state(client, pool, name)
    info = client.call("read", obj, pool.info)
    result = dict(state)
    result.update({
        "state": POOL_STATE.get(info[0], str(info[0])),
        "active": active,
        "capacity": info[1],
        "allocation": info[2],
        "available": info[3],
        "volumes": len(user_volumes(client, pool, obj)) if active else None,
        "uuid": client.call("read UUID of", obj, pool.UUIDString),
    })
    return result


class DatastoreManager(Manager):
    """present / absent / refreshed for one datastore on the host ``client`` points to."""

    def converge(self, params):
        """The datastore module."""
        p = params
        extra = {}
        if p["state"] == "absent":
            changed, before, after = self.absent(p["name"], purge=p.get("purge"))
        elif p["state"] == "refreshed":
            changed, before, after, sizes = self.refreshed(p, p.get("chap_password"))
            extra.update(sizes or {})
        else:
            changed, before, after = self.present(p, p.get("chap_password"))
        pool = None if p["state"] == "absent" else self.client.pool(p["name"])
        info = facts(self.client, pool) if pool is not None else (after if self.check_mode else None)
        return self.result(before, after, changed=changed, datastore=info, **extra)

    def _obj(self, name):
        return "datastore '%s'" % name

    def present(self, spec, chap_password=None):
        desired = desired_state(spec)
        name = desired["name"]
        obj = self._obj(name)
        pool = self.client.pool(name)
        before = None
        if pool is None:
            if desired["uuid"]:
                other = self.client.pool_by_uuid(desired["uuid"])
                if other is not None:
                    raise ValueError("datastore '%s': its shared UUID %s is already used by datastore '%s' on %s"
                                     % (name, desired["uuid"], other.name(), self.client.uri))
            self._ensure_secret(desired, chap_password)
            xml = pool_xml(desired)
            self.act("define", self._define, xml, obj)
            if desired["type"] in ("dir", "nfs", "logical"):
                self.act("build", self._build, name, desired["type"])
            self.act("start", self._start, name)
            self.act("set autostart", self._autostart, name, desired["autostart"])
            return True, before, desired
        current, active = _pool_state(self.client, pool, name)
        before = current
        bad = _immutable_diff(current, desired)
        if bad:
            raise ValueError("datastore '%s' exists on %s with other immutable settings (%s): remove it "
                             "(state=absent) and define it again, or keep its settings"
                             % (name, self.client.uri, "; ".join(bad)))
        changed = self._ensure_secret(desired, chap_password)
        if desired["type"] == "logical":
            added = sorted(set(desired["source"]["devices"]) - set(current["source"]["devices"]))
            if added:
                self.need_local("extending a volume group with %s" % ", ".join(added))
                self._refuse_signatures(name, added, spec.get("force"))
                self.act("extend volume group with %s" % ", ".join(added), self._extend_vg, name, desired, added)
                changed = True
        if not active:
            self.act("start", self._start, name)
            changed = True
        if current["autostart"] != desired["autostart"]:
            self.act("set autostart", self._autostart, name, desired["autostart"])
            changed = True
        after = dict(current, autostart=desired["autostart"], source=desired["source"])
        return changed, before, after

    def absent(self, name, purge=False):
        names.validate_name(name, kind="datastore")
        obj = self._obj(name)
        pool = self.client.pool(name)
        if pool is None:
            return False, None, None
        current, active = _pool_state(self.client, pool, name)
        if purge:
            if not active:
                raise ValueError("datastore '%s' is not running: start it (state=present) before purging it, "
                                 "so its volumes can be listed and checked" % name)
            # libvirt lists what it saw when the pool started or was last refreshed; purge must
            # see what is there now (refresh changes no data, so check mode does it too).
            self.client.call("refresh", obj, pool.refresh, 0)
            self.need_local("purging a datastore (what uses its files is read from the files)")
            blockers = self._purge_blockers(pool, name)
            if blockers:
                raise ValueError("datastore '%s': purge refused, %s" % (name, "; ".join(blockers)))
            for v in user_volumes(self.client, pool, obj):
                self.act("delete volume %s" % v, self._delete_volume, name, v)
            hidden = [v for v in self.client.call("list volumes of", obj, pool.listVolumes) if v.startswith(".")]
            self.act("stop", self._stop, name)
            if hidden:
                # e.g. the cluster's virtlockd lock space on the shared datastore: never ours to delete.
                self.record("keep directory (holds %s)" % ", ".join(sorted(hidden)))
            else:
                self.act("delete directory", self._delete_pool, name)
        elif active:
            self.act("stop", self._stop, name)
        self.act("undefine", self._undefine, name)
        if current.get("source", {}).get("chap_username"):
            self.act("remove CHAP secret", self._remove_secret, name)
        return True, current, None

    def refreshed(self, spec, chap_password=None):
        changed, before, after = self.present(spec, chap_password)
        name = after["name"]
        if changed and self.check_mode:
            return changed, before, after, None
        pool = self.client.pool(name)
        obj = self._obj(name)
        cap_before = client_info(self.client, pool, obj)[1]
        # Refreshing re-reads sizes and volumes; it changes no configuration or data,
        # so it runs in check mode too and the prediction stays exact.
        self.client.call("refresh", obj, pool.refresh, 0)
        cap_after = client_info(self.client, pool, obj)[1]
        if cap_after != cap_before:
            self.record("capacity %d -> %d" % (cap_before, cap_after))
            changed = True
        return changed, before, after, {"capacity_before": cap_before, "capacity_after": cap_after}

    # actions (never called in check mode)

    def _define(self, xml, obj):
        self.client.call("define", obj, self.client.conn.storagePoolDefineXML, xml, 0)

    def _build(self, name, dtype):
        pool = self.client.pool(name)
        flags = POOL_BUILD_NO_OVERWRITE if dtype == "logical" else 0
        try:
            try:
                self.client.call("build", self._obj(name), pool.build, flags)
            except LibvirtClientError as e:
                # A shared datastore is defined on every CNA at once: another CNA may create the directory between
                # libvirt's look and its mkdir. The directory is there then, and a second build finds it.
                if dtype not in ("dir", "nfs") or "File exists" not in str(e):
                    raise
                self.client.call("build", self._obj(name), pool.build, flags)
        except Exception:
            self.client.call("undefine after failed build", self._obj(name), pool.undefine)
            raise

    def _start(self, name):
        pool = self.client.pool(name)
        root = xmlutil.parse(self.client.call("read", self._obj(name), pool.XMLDesc, 0))
        path = xmlutil.find_text(root, "target/path")
        if root.get("type") in ("dir", "netfs") and path and not os.path.isdir(path) and self.local:
            # The directory (or mount point) went away: make it again rather than fail to start.
            self.client.call("build", self._obj(name), pool.build, 0)
        self.client.call("start", self._obj(name), pool.create, 0)

    def _stop(self, name):
        self.client.call("stop", self._obj(name), self.client.pool(name).destroy)

    def _autostart(self, name, value):
        self.client.call("set autostart of", self._obj(name), self.client.pool(name).setAutostart, 1 if value else 0)

    def _undefine(self, name):
        self.client.call("undefine", self._obj(name), self.client.pool(name).undefine)

    def _delete_pool(self, name):
        self.client.call("delete contents of", self._obj(name), self.client.pool(name).delete, 0)

    def _delete_volume(self, name, vol):
        v = self.client.volume(name, vol)
        if v is not None:
            self.client.call("delete", "volume '%s' in datastore '%s'" % (vol, name), v.delete, 0)

    def _purge_blockers(self, pool, name):
        """Why the datastore's files cannot all be deleted, found from the files themselves and every VM
        definition of this host: a shared datastore's files are used from other CNAs too."""
        obj = self._obj(name)
        paths = set(v.path() for v in self.client.call("list volumes of", obj, pool.listAllVolumes, 0))
        blockers = []
        users = sorted(set(vm for vm, src, _t in images.vm_disks(self.client, files_only=False) if src in paths))
        if users:
            blockers.append("volumes in use by %s" % ", ".join(users))
        deps = images.dependants_of(self.client, sorted(paths))
        outside = sorted(set("%s (%s)" % u for found in deps.values() for u in found
                             if u[1] != "image" and u[0] not in users or u[1] == "image" and u[0] not in paths))
        if outside:
            blockers.append("images elsewhere stand on its volumes: %s" % ", ".join(outside))
        locked = sorted(p for p in paths if fileops.lease_held(p))
        if locked:
            blockers.append("open by a running VM on some CNA (lease held): %s" % ", ".join(locked))
        here = set(self.client.domain_names())
        elsewhere = sorted(vm for vm in images.definition_copies(self.dir_of(pool)) if vm not in here)
        if elsewhere:
            blockers.append("VMs defined on another CNA keep their definition here: %s" % ", ".join(elsewhere))
        return blockers

    def dir_of(self, pool):
        root = xmlutil.parse(self.client.call("read", "datastore", pool.XMLDesc, 0))
        return xmlutil.find_text(root, "target/path") if root.get("type") in ("dir", "netfs") else None

    def _refuse_signatures(self, name, devices, force):
        """A device that holds a file system, a partition table or another volume group keeps someone's data."""
        found = []
        for dev in devices:
            rc, out = self.probe(["blkid", "-p", "-o", "export", dev])
            if rc == 0:
                kind = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
                found.append("%s (%s)" % (dev, kind.get("TYPE") or kind.get("PTTYPE") or "a signature"))
            elif rc != 2:
                raise ValueError("datastore '%s': cannot read %s (blkid exit code %s)" % (name, dev, rc))
        if found and not force:
            raise ValueError("datastore '%s': %s hold data; set force=true to wipe them into the volume group"
                             % (name, ", ".join(found)))

    def _extend_vg(self, name, desired, added):
        for dev in added:
            # the devices were checked for signatures (or force was given) before any change
            self.run(["pvcreate", "-y", dev])
        self.run(["vgextend", desired["source"]["vg_name"]] + added)
        pool = self.client.pool(name)
        obj = self._obj(name)
        # The pool keeps its device list in its definition: redefine with the new list.
        self.client.call("redefine", obj, self.client.conn.storagePoolDefineXML, pool_xml(desired), 0)
        self.client.call("refresh", obj, pool.refresh, 0)

    def _ensure_secret(self, desired, password):
        """Create or update the CHAP secret; returns True if it changed.

        The secret is private (libvirt never hands its value back to a client); whether it holds the
        wanted password is told by a salted PBKDF2 hash recorded in its description.
        """
        user = desired["source"].get("chap_username")
        if not user:
            return False
        obj = "CHAP secret of datastore '%s'" % desired["name"]
        usage = secret_usage(desired["name"])
        secret = self.client.secret_by_usage(SECRET_USAGE_ISCSI, usage)
        if secret is not None:
            root = xmlutil.parse(self.client.call("read", obj, secret.XMLDesc, 0))
            private = root.get("private") == "yes"
            if private and chap_hash_matches(xmlutil.find_text(root, "description"), password):
                return False
            what = "set CHAP secret" if private else "replace the CHAP secret by a private one"
        else:
            what = "set CHAP secret"
        self.act(what, self._define_secret, desired["name"], usage, secret, password)
        return True

    def _define_secret(self, name, usage, old, password):
        obj = "CHAP secret of datastore '%s'" % name
        if old is not None:
            # private cannot be switched on in place: the secret is defined again (the pool names it by usage)
            self.client.call("remove", obj, old.undefine)
        sec = ET.Element("secret", ephemeral="no", private="yes")
        ET.SubElement(sec, "description").text = "CHAP password of datastore %s (%s)" % (name, chap_hash(password))
        ET.SubElement(ET.SubElement(sec, "usage", type="iscsi"), "target").text = usage
        secret = self.client.call("define", obj, self.client.conn.secretDefineXML, xmlutil.tostring(sec), 0)
        self.client.call("set", obj, secret.setValue, password.encode(), 0)

    def _remove_secret(self, name):
        secret = self.client.secret_by_usage(SECRET_USAGE_ISCSI, secret_usage(name))
        if secret is not None:
            self.client.call("remove", "CHAP secret of datastore '%s'" % name, secret.undefine)


_CHAP_HASH = re.compile(r"kvmfusion-chap:pbkdf2-sha256:(\d+):([0-9a-f]{32}):([0-9a-f]{64})")
_CHAP_ROUNDS = 200000


def chap_hash(password, salt=None, rounds=_CHAP_ROUNDS):
    """A salted PBKDF2-SHA256 record of a CHAP password, to tell later whether a private secret holds it."""
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return "kvmfusion-chap:pbkdf2-sha256:%d:%s:%s" % (rounds, binascii.hexlify(salt).decode(),
                                                      binascii.hexlify(digest).decode())


def chap_hash_matches(text, password):
    m = _CHAP_HASH.search(text or "")
    if not m:
        return False
    want = chap_hash(password, binascii.unhexlify(m.group(2)), int(m.group(1)))
    return hmac.compare_digest(want, m.group(0))


def client_info(client, pool, obj):
    return client.call("read size of", obj, pool.info)
