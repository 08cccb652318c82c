# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Plain libvirt client shared by modules, the inventory plugin and tests.

It must never import Ansible: the inventory plugin runs it on the controller
and unit tests replace the ``libvirt`` module object below with a fake.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import traceback

from ansible_collections.kvmfusion.compute.plugins.module_utils import xmlutil

try:
    import libvirt
except ImportError:
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None


DEFAULT_URI = "qemu:///system"

# Per object kind, the libvirt error code meaning "no such object". Names,
# not values, so they are resolved against whatever ``libvirt`` is loaded.
NOT_FOUND_CODES = {
    "domain": "VIR_ERR_NO_DOMAIN",
    "pool": "VIR_ERR_NO_STORAGE_POOL",
    "volume": "VIR_ERR_NO_STORAGE_VOL",
    "network": "VIR_ERR_NO_NETWORK",
    "secret": "VIR_ERR_NO_SECRET",
    "snapshot": "VIR_ERR_NO_DOMAIN_SNAPSHOT",
    "nwfilter": "VIR_ERR_NO_NWFILTER",
    "nodedev": "VIR_ERR_NO_NODE_DEVICE",
}

# libvirt accepts user:password@ in URIs; never echo a password in a message.
_URI_PASSWORD = re.compile(r"^([a-z0-9+.-]+://[^/@:]*):[^/@]*@", re.IGNORECASE)


def resolve_uri(uri=None):
    """The URI option if set, else $LIBVIRT_DEFAULT_URI if non-empty, else qemu:///system."""
    if uri:
        return uri
    return os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def is_local_uri(uri):
    """True when ``uri`` reaches the libvirt of the host this code runs on (no host part, or localhost)."""
    m = re.match(r"^[a-z0-9+]+://([^/?]*)/", uri or "")
    return bool(m) and m.group(1) in ("", "localhost")


def uri_for_host(host, like=None):
    """The URI of the same driver and transport as ``like`` (default qemu+ssh as root) on ``host``.

    A second connection (migration, HA) names a CNA by its inventory host name; it reaches that
    CNA the way the first connection reaches its own.
    """
    if not host or not re.match(r"^[A-Za-z0-9][A-Za-z0-9.:-]*$", host):
        raise ValueError("invalid host name %r" % (host,))
    m = re.match(r"^([a-z0-9]+)(\+([a-z0-9]+))?://(([^@/]*)@)?[^/?]*(/[^?]*)", resolve_uri(like))
    driver, transport, user, path = (m.group(1), m.group(3), m.group(5), m.group(6)) if m else ("qemu", None, None,
                                                                                                "/system")
    if not transport or transport == "unix":
        transport, user = "ssh", user or "root"
    return "%s+%s://%s%s%s" % (driver, transport, "%s@" % user if user else "", host, path or "/system")


def version_tuple(version):
    """Unpack libvirt's packed version int (major * 1000000 + minor * 1000 + micro)."""
    version = int(version)
    return (version // 1000000, (version // 1000) % 1000, version % 1000)


def _version_string(version):
    return "%d.%d.%d" % version_tuple(version)


def _one_line(text):
    return " ".join(str(text).split())


def _display_uri(uri):
    return _URI_PASSWORD.sub(r"\1:********@", uri) if uri else uri


class LibvirtClientError(Exception):
    """The one error raised by this client.

    ``str(e)`` is a single line naming the action, the object and the URI.
    """

    def __init__(self, action, obj=None, uri=None, code=None, detail=None):
        self.action = action
        self.obj = obj
        self.uri = uri
        self.code = code
        self.detail = _one_line(detail) if detail is not None else None
        where = _display_uri(uri) or "libvirt"
        if action == "connect":
            message = "cannot connect to %s" % where
        else:
            message = "failed to %s%s on %s" % (action, " %s" % obj if obj else "", where)
        if self.detail:
            message = "%s: %s" % (message, self.detail)
        super(LibvirtClientError, self).__init__(message)


def _error_detail(err):
    detail = None
    getter = getattr(err, "get_error_message", None)
    if getter is not None:
        detail = getter()
    return detail or str(err) or type(err).__name__


def _error_code(err):
    getter = getattr(err, "get_error_code", None)
    return getter() if getter is not None else None


def _silence(ctx, err):
    # libvirt prints every error to stderr by default; errors reach callers as exceptions.
    pass


class Client(object):
    """One libvirt connection, opened on first use.

    Lookups return None when the object does not exist and raise
    LibvirtClientError on any other failure.
    """

    def __init__(self, uri=None, readonly=False):
        self.uri = resolve_uri(uri)
        self.readonly = readonly
        self._conn = None

    def __enter__(self):
        return self

    @property
    def is_local(self):
        """Whether this client reaches the host the code runs on: file work is allowed only then."""
        return is_local_uri(self.uri)

    def __exit__(self, exc_type, exc_value, tb):
        self.close()
        return False

    @property
    def conn(self):
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self):
        if libvirt is None:
            raise LibvirtClientError(
                "connect", uri=self.uri,
                detail="the libvirt Python bindings (libvirt-python) are not installed")
        libvirt.registerErrorHandler(_silence, None)
        opener = libvirt.openReadOnly if self.readonly else libvirt.open
        try:
            conn = opener(self.uri)
        except libvirt.libvirtError as e:
            raise LibvirtClientError("connect", uri=self.uri, code=_error_code(e), detail=_error_detail(e)) from e
        if conn is None:
            raise LibvirtClientError("connect", uri=self.uri, detail="libvirt returned no connection")
        return conn

    def close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                # Closing is best effort: the result of the work is already decided.
                pass

    def call(self, action, obj, fn, *args, **kwargs):
        """Run ``fn``; a libvirtError becomes a LibvirtClientError naming action, obj and URI."""
        try:
            return fn(*args, **kwargs)
        except libvirt.libvirtError as e:
            raise LibvirtClientError(action, obj, self.uri, _error_code(e), _error_detail(e)) from e

    def lookup(self, kind, obj, fn, *args):
        """Run a lookup ``fn``; None when libvirt reports the not-found code of ``kind``."""
        missing = getattr(libvirt, NOT_FOUND_CODES[kind])
        try:
            return fn(*args)
        except libvirt.libvirtError as e:
            code = _error_code(e)
            if code == missing:
                return None
            raise LibvirtClientError("look up", obj, self.uri, code, _error_detail(e)) from e

    @staticmethod
    def is_stopped_or_gone(err):
        """Whether a LibvirtClientError says the domain stopped (or went) since it was read as running."""
        codes = [getattr(libvirt, c, None) for c in ("VIR_ERR_OPERATION_INVALID", "VIR_ERR_NO_DOMAIN")]
        return isinstance(err, LibvirtClientError) and err.code is not None and err.code in codes

    @staticmethod
    def is_missing(err, kind):
        """Whether a LibvirtClientError says the object of ``kind`` does not exist (any more)."""
        return isinstance(err, LibvirtClientError) and err.code is not None and \
            err.code == getattr(libvirt, NOT_FOUND_CODES[kind], None)

    # lookups

    def new_stream(self):
        """A blocking stream on this connection (volume download and upload)."""
        return self.call("open a stream", None, self.conn.newStream, 0)

    def domain(self, name):
        return self.lookup("domain", "domain '%s'" % name, self.conn.lookupByName, name)

    def domain_by_uuid(self, uuid):
        return self.lookup("domain", "domain with UUID %s" % uuid, self.conn.lookupByUUIDString, uuid)

    def pool(self, name):
        return self.lookup("pool", "storage pool '%s'" % name, self.conn.storagePoolLookupByName, name)

    def pool_by_uuid(self, uuid):
        return self.lookup("pool", "storage pool with UUID %s" % uuid,
                           self.conn.storagePoolLookupByUUIDString, uuid)

    def volume(self, pool_name, vol_name):
        pool = self.pool(pool_name)
        if pool is None:
            return None
        return self.lookup("volume", "volume '%s' in storage pool '%s'" % (vol_name, pool_name),
                           pool.storageVolLookupByName, vol_name)

    def volume_by_path(self, path):
        return self.lookup("volume", "volume '%s'" % path, self.conn.storageVolLookupByPath, path)

    def network(self, name):
        return self.lookup("network", "network '%s'" % name, self.conn.networkLookupByName, name)

    def secret_by_uuid(self, uuid):
        return self.lookup("secret", "secret %s" % uuid, self.conn.secretLookupByUUIDString, uuid)

    def secret_by_usage(self, usage_type, usage_id):
        return self.lookup("secret", "secret for usage '%s'" % usage_id,
                           self.conn.secretLookupByUsage, usage_type, usage_id)

    def snapshot(self, domain_name, snap_name):
        dom = self.domain(domain_name)
        if dom is None:
            return None
        return self.lookup("snapshot", "snapshot '%s' of domain '%s'" % (snap_name, domain_name),
                           dom.snapshotLookupByName, snap_name, 0)

    # listings

    def domain_names(self):
        """All domains, running and defined, sorted by name."""
        domains = self.call("list domains", None, self.conn.listAllDomains, 0)
        return sorted(dom.name() for dom in domains)

    def pool_names(self):
        pools = self.call("list storage pools", None, self.conn.listAllStoragePools, 0)
        return sorted(pool.name() for pool in pools)

    def network_names(self):
        networks = self.call("list networks", None, self.conn.listAllNetworks, 0)
        return sorted(net.name() for net in networks)

    # host

    def host_info(self):
        conn = self.conn
        action = "read host information"
        caps = xmlutil.parse(self.call(action, None, conn.getCapabilities))
        info = self.call(action, None, conn.getInfo)
        arch = xmlutil.find_text(caps, "host/cpu/arch") or info[0]
        return {
            "hostname": self.call(action, None, conn.getHostname),
            "uri": self.call(action, None, conn.getURI),
            "libvirt_version": _version_string(self.call(action, None, conn.getLibVersion)),
            "hypervisor": self.call(action, None, conn.getType),
            "hypervisor_version": _version_string(self.call(action, None, conn.getVersion)),
            "host_uuid": xmlutil.find_text(caps, "host/uuid"),
            "arch": arch,
            "cpus": info[2],
            "memory_bytes": _memory_bytes(caps, info),
            "domain_types": _domain_types(caps, arch),
        }

    def machine_types(self, arch, virttype="kvm"):
        """The machine types (and their aliases) this host's QEMU provides for ``arch`` ``virttype`` guests."""
        caps = xmlutil.parse(self.call("read host information", None, self.conn.getCapabilities))
        names = set()
        for arch_elem in _guest_arches(caps, arch):
            names.update((m.text or "").strip() for m in arch_elem.findall("machine"))
            for dom in arch_elem.findall("domain"):
                if dom.get("type") == virttype:
                    names.update((m.text or "").strip() for m in dom.findall("machine"))
        names.discard("")
        return names

    def domain_capabilities(self, virttype="kvm"):
        """The domain capabilities XML for ``virttype`` domains (CPU models, host-model CPU, devices)."""
        return self.call("read the %s domain capabilities of" % virttype, "the host", self.conn.getDomainCapabilities,
                         None, None, None, virttype, 0)

    def cpu_baseline(self, cpu_xmls, virttype="kvm"):
        """The CPU every one of ``cpu_xmls`` can run and this host's ``virttype`` hypervisor provides (migratable)."""
        return self.call("compute the CPU baseline on", "the host", self.conn.baselineHypervisorCPU,
                         None, None, None, virttype, list(cpu_xmls), libvirt.VIR_CONNECT_BASELINE_CPU_MIGRATABLE)

    def compare_cpu(self, cpu_xml, virttype="kvm"):
        """None when this host's hypervisor can provide ``cpu_xml``, else libvirt's one-line reason."""
        try:
            self.conn.compareHypervisorCPU(None, None, None, virttype, cpu_xml,
                                           libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
        except libvirt.libvirtError as e:
            return _error_detail(e)
        return None

    def try_start_paused(self, xml):
        """Start a transient domain paused and destroy it at once: None if it started, else libvirt's reason."""
        try:
            dom = self.conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED | libvirt.VIR_DOMAIN_START_AUTODESTROY)
        except libvirt.libvirtError as e:
            return _error_detail(e)
        self.call("destroy", "probe domain", dom.destroy)
        return None

    # domains

    def define_domain(self, xml, flags=0):
        name = _xml_name(xml)
        obj = "domain '%s'" % name if name else "domain"
        return self.call("define", obj, self.conn.defineXMLFlags, xml, flags)

    def undefine_domain(self, name, flags=0):
        """Undefine a domain; False when it did not exist."""
        dom = self.domain(name)
        if dom is None:
            return False
        self.call("undefine", "domain '%s'" % name, dom.undefineFlags, flags)
        return True

    def domain_xml(self, name, inactive=False, secure=False):
        dom = self.domain(name)
        if dom is None:
            return None
        flags = 0
        if inactive:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        if secure:
            flags |= libvirt.VIR_DOMAIN_XML_SECURE
        return self.call("read the XML of", "domain '%s'" % name, dom.XMLDesc, flags)


_MEMORY_UNITS = {"b": 1, "bytes": 1, "kib": 1024, "k": 1024, "mib": 1024 ** 2, "m": 1024 ** 2,
                 "gib": 1024 ** 3, "g": 1024 ** 3}


def _memory_bytes(caps, info):
    # The NUMA cells give the exact size; getInfo() rounds down to MiB.
    total = 0
    for mem in caps.findall("host/topology/cells/cell/memory"):
        factor = _MEMORY_UNITS.get((mem.get("unit") or "KiB").lower())
        if factor is None or not (mem.text or "").strip().isdigit():
            total = 0
            break
        total += int(mem.text) * factor
    return total or int(info[1]) * 1024 ** 2


def _guest_arches(caps, arch):
    """The capabilities' <guest><arch> elements of ``arch``."""
    for guest in caps.findall("guest"):
        arch_elem = guest.find("arch")
        if arch_elem is not None and arch_elem.get("name") == arch:
            yield arch_elem


def _domain_types(caps, arch):
    types = []
    for arch_elem in _guest_arches(caps, arch):
        for dom in arch_elem.findall("domain"):
            kind = dom.get("type")
            if kind and kind not in types:
                types.append(kind)
    if "kvm" in types:
        types.remove("kvm")
        types.insert(0, "kvm")
    return types


def _xml_name(xml):
    try:
        return xmlutil.find_text(xmlutil.parse(xml), "name")
    except ValueError:
        return None
