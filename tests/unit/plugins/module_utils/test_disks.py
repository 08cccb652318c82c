# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import xml.etree.ElementTree as ET
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import client as client_mod
from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, diskspec
from ansible_collections.kvmfusion.compute.plugins.module_utils import attachments, disks, images, power, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client

URI = "qemu:///system"
GIB = 1024 ** 3
DS_PATH = "/var/lib/kvmfusion/datastores/ds1"
ROOT = DS_PATH + "/vm1-root"
DATA1 = DS_PATH + "/data1"
LUN = "/dev/disk/by-id/wwn-0x6001405f1b2c3d4e"

# The libvirt calls that change something; check mode must make none of them.
MUTATORS = frozenset((
    "createXML", "createXMLFrom", "resize", "delete", "wipe", "upload",
    "attachDeviceFlags", "detachDeviceFlags", "updateDeviceFlags", "setBlockIoTune", "setMetadata", "blockResize",
    "defineXML", "defineXMLFlags", "undefine", "undefineFlags",
))


def opts(**kw):
    """Parameters the way the disk module hands them over (its argument_spec defaults)."""
    base = dict(name="data1", datastore="ds1", size=None, format=None, provisioning=None, vm=None, attached=True,
                bus="virtio", target=None, cache=None, io=None, discard=None, readonly=False, shareable=False,
                boot_order=None, mode="persistent", iotune=None, rdm=None)
    base.update(kw)
    return base


def rdm_opts(**kw):
    # The module maps its bus default (virtio) to None for a raw device mapping.
    base = dict(name="lun1", datastore=None, rdm=LUN, vm="vm1", bus=None)
    base.update(kw)
    return opts(**base)


def one_line_error(params, *fragments):
    with pytest.raises(ValueError) as err:
        diskspec.desired_state(params)
    msg = str(err.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg
    return msg


# ---------------------------------------------------------------- a CNA as libvirt shows it

def volume_desc(name, path, capacity, allocation, fmt):
    return """<volume type='file'>
  <name>%(name)s</name>
  <key>%(path)s</key>
  <capacity unit='bytes'>%(capacity)d</capacity>
  <allocation unit='bytes'>%(allocation)d</allocation>
  <physical unit='bytes'>%(allocation)d</physical>
  <target>
    <path>%(path)s</path>
    <format type='%(fmt)s'/>
    <permissions>
      <mode>0600</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
    <compat>1.1</compat>
  </target>
</volume>""" % dict(name=name, path=path, capacity=capacity, allocation=allocation, fmt=fmt)


def disk_xml(path, target, driver="", extra=""):
    return """    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'%s/>
      <source file='%s'/>
      <target dev='%s' bus='virtio'/>%s
      <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
    </disk>
""" % (driver, path, target, extra)


def domain_desc(name, extra_disks="", metadata=""):
    return """<domain type='kvm'>
  <name>%s</name>
  <uuid>6f1c3a52-0d1e-4b7a-9c55-2b1f0e9d8a71</uuid>
  <metadata>%s</metadata>
  <memory unit='KiB'>2097152</memory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
%s    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>""" % (name, metadata, ROOT, extra_disks)


class Host(object):
    """Pools with volumes and domains, wired onto the fake virConnect the Client opens."""

    def __init__(self, fake):
        self.fake = fake
        self.pools = {}
        self.volumes = {}
        self.domains = {}
        conn = fake.conn
        conn.storagePoolLookupByName.side_effect = self._pool
        conn.lookupByName.side_effect = self._domain
        conn.listAllDomains.side_effect = lambda flags: [self.domains[n] for n in sorted(self.domains)]
        conn.listAllStoragePools.side_effect = lambda flags: [self.pools[n] for n in sorted(self.pools)]
        conn.storageVolLookupByPath.side_effect = self._volume_by_path

    def _missing(self, code, what):
        return self.fake.libvirtError("%s not found" % what, code)

    def _pool(self, name):
        if name not in self.pools:
            raise self._missing(49, "Storage pool")
        return self.pools[name]

    def _domain(self, name):
        if name not in self.domains:
            raise self._missing(42, "Domain")
        return self.domains[name]

    def _volume(self, pool, name):
        if (pool, name) not in self.volumes:
            raise self._missing(50, "Storage volume")
        return self.volumes[(pool, name)]

    def _volume_by_path(self, path):
        for vol in self.volumes.values():
            if vol.path() == path:
                return vol
        raise self._missing(50, "Storage volume")

    def add_pool(self, name="ds1", active=True):
        pool = mock.MagicMock(name="virStoragePool %s" % name)
        pool.name.return_value = name
        pool.isActive.return_value = 1 if active else 0
        pool.storageVolLookupByName.side_effect = lambda vname: self._volume(name, vname)
        pool.listVolumes.side_effect = lambda: sorted(v for p, v in self.volumes if p == name)
        pool.XMLDesc.return_value = ("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>"
                                     % (name, DS_PATH))
        self.pools[name] = pool
        return pool

    def add_volume(self, name="data1", pool="ds1", capacity=20 * GIB, allocation=196608, fmt="qcow2"):
        path = "%s/%s" % (DS_PATH, name)
        vol = mock.MagicMock(name="virStorageVol %s" % name)
        vol.name.return_value = name
        vol.path.return_value = path
        vol.info.return_value = [0, capacity, allocation]
        vol.XMLDesc.return_value = volume_desc(name, path, capacity, allocation, fmt)
        self.volumes[(pool, name)] = vol
        return vol

    def add_domain(self, name="vm1", running=True, extra_disks="", metadata=""):
        dom = mock.MagicMock(name="virDomain %s" % name)
        dom.name.return_value = name
        dom.isActive.return_value = 1 if running else 0
        dom.XMLDesc.return_value = domain_desc(name, extra_disks, metadata)
        self.domains[name] = dom
        return dom

    def mutating_calls(self):
        mocks = [self.fake.conn] + list(self.pools.values()) + list(self.volumes.values()) + list(self.domains.values())
        return [c for m in mocks for c in m.mock_calls if c[0].split(".")[-1] in MUTATORS]


@pytest.fixture
def host(fake_libvirt):
    return Host(fake_libvirt)


def manager(check_mode=True):
    return disks.DiskManager(Client(URI), check_mode=check_mode)


# ---------------------------------------------------------------- desired_state

class TestDesiredStateAccepted:
    def test_defaults_of_a_volume_without_vm(self):
        d = diskspec.desired_state({"name": "data1", "datastore": "ds1", "size": "20GiB"})
        assert d["size"] == 20 * GIB
        assert d["bus"] == "virtio"
        assert d["mode"] == "persistent"
        assert d["vm"] is None and d["attached"] is None
        assert d["rdm"] is None and d["datastore"] == "ds1"
        assert d["iotune"] == {} and d["readonly"] is False and d["shareable"] is False

    def test_attached_defaults_to_true_with_a_vm(self):
        d = diskspec.desired_state({"name": "data1", "datastore": "ds1", "vm": "vm1"})
        assert d["attached"] is True
        assert d["vm"] == "vm1"
        assert d["size"] is None

    def test_attached_false_is_kept(self):
        assert diskspec.desired_state(opts(vm="vm1", attached=False))["attached"] is False

    def test_module_defaults_without_vm_are_accepted(self):
        # The module always sends bus=virtio, mode=persistent, readonly/shareable=False: not attachment options.
        d = diskspec.desired_state(opts(size=GIB))
        assert d["size"] == GIB and d["attached"] is None

    @pytest.mark.parametrize("size, expected", [("20GiB", 20 * GIB), ("20G", 20 * GIB), ("1.5GiB", 3 * GIB // 2),
                                                ("10GB", 10 * 1000 ** 3), (4096, 4096)])
    def test_size_parsing(self, size, expected):
        assert diskspec.desired_state(opts(size=size))["size"] == expected

    def test_rdm_defaults(self):
        d = diskspec.desired_state(rdm_opts())
        assert d["rdm"] == LUN and d["datastore"] is None
        assert (d["bus"], d["cache"], d["io"]) == ("scsi", "none", "native")
        assert d["size"] is None and d["format"] is None and d["provisioning"] is None

    def test_rdm_keeps_an_explicit_cache_and_io(self):
        d = diskspec.desired_state(rdm_opts(bus="scsi", cache="directsync", io="threads", target="sdc"))
        assert (d["bus"], d["cache"], d["io"], d["target"]) == ("scsi", "directsync", "threads", "sdc")

    def test_attachment_options(self):
        d = diskspec.desired_state(opts(vm="vm1", bus="sata", target="sdb", cache="none", io="native", discard="unmap",
                                        readonly=True, shareable=True, boot_order=2, mode="independent_persistent"))
        assert (d["bus"], d["target"], d["cache"], d["io"], d["discard"]) == ("sata", "sdb", "none", "native", "unmap")
        assert (d["readonly"], d["shareable"], d["boot_order"], d["mode"]) == (True, True, 2, "independent_persistent")

    def test_two_letter_target(self):
        assert diskspec.desired_state(opts(vm="vm1", target="vdab"))["target"] == "vdab"

    def test_iotune_drops_unset_and_zero_values(self):
        iotune = dict((k, None) for k in diskspec.IOTUNE_KEYS)
        iotune.update(read_bytes_sec=104857600, write_bytes_sec=0, total_iops_sec="500")
        d = diskspec.desired_state(opts(vm="vm1", iotune=iotune))
        assert d["iotune"] == {"read_bytes_sec": 104857600, "total_iops_sec": 500}

    def test_total_of_one_kind_combines_with_read_write_of_the_other(self):
        d = diskspec.desired_state(opts(vm="vm1", iotune={"total_bytes_sec": 1000, "read_iops_sec": 10}))
        assert d["iotune"] == {"total_bytes_sec": 1000, "read_iops_sec": 10}


@pytest.mark.parametrize("params, fragments", [
    (opts(name="a/b"), ("disk name", "'a/b'", "'/'")),
    (opts(name=".."), ("disk name", "'..'")),
    (opts(name="data..1"), ("disk name", "'data..1'", "'..'")),
    (opts(name="a<b"), ("disk name", "'a<b'", "'<'")),
    (opts(datastore="ds/1"), ("datastore name", "'ds/1'")),
    (opts(vm="vm<1>"), ("VM name", "'vm<1>'")),
], ids=["slash", "dotdot", "embedded-dotdot", "lt", "datastore", "vm"])
def test_bad_names_are_one_clear_line(params, fragments):
    one_line_error(params, *fragments)


@pytest.mark.parametrize("params, fragment", [
    (opts(datastore=None), "datastore is required"),
    (opts(size=0), "size must be greater than zero"),
    (opts(size="0GiB"), "size must be greater than zero"),
    (rdm_opts(rdm="/tmp/lun"), "rdm must be a block device path under /dev"),
    (rdm_opts(rdm="sdb"), "rdm must be a block device path under /dev"),
    (rdm_opts(rdm="/dev/../etc/shadow"), "rdm must be a block device path under /dev"),
    (rdm_opts(size="10GiB"), "a raw device mapping has no size"),
    (rdm_opts(format="raw"), "a raw device mapping has no format"),
    (rdm_opts(provisioning="thin"), "a raw device mapping has no provisioning"),
    (rdm_opts(vm=None), "a raw device mapping needs vm"),
    (rdm_opts(mode="independent_nonpersistent"), "a raw device mapping is always persistent"),
    (rdm_opts(bus="virtio"), "bus must be scsi"),
    (rdm_opts(bus="sata"), "bus must be scsi"),
    (opts(vm="vm1", target="sdb"), "target 'sdb' does not fit bus virtio (expected vdX)"),
    (opts(vm="vm1", bus="scsi", target="vdb"), "target 'vdb' does not fit bus scsi (expected sdX)"),
    (opts(vm="vm1", target="vdabc"), "does not fit bus virtio"),
    (opts(vm="vm1", target="vd1"), "does not fit bus virtio"),
    (opts(vm="vm1", cache="fast"), "cache must be one of"),
    (opts(vm="vm1", io="aio"), "io must be one of"),
    (opts(vm="vm1", discard="trim"), "discard must be one of"),
    (opts(vm="vm1", io="native"), "io=native needs cache=none"),
    (opts(vm="vm1", io="native", cache="writeback"), "io=native needs cache=none"),
    (rdm_opts(cache="writeback", io="native"), "io=native needs cache=none"),
    (opts(vm="vm1", readonly=True, mode="independent_nonpersistent"), "read-only disk cannot be non-persistent"),
    (opts(vm="vm1", boot_order=0), "boot_order starts at 1"),
    (opts(vm="vm1", iotune={"total_bytes_sec": 1, "max_bytes_sec": 2}), "unknown iotune keys max_bytes_sec"),
    (opts(vm="vm1", iotune={"read_iops_sec": -1}), "iotune read_iops_sec must be a whole number >= 0, got -1"),
    (opts(vm="vm1", iotune={"read_iops_sec": 1.5}), "iotune read_iops_sec must be a whole number"),
    (opts(vm="vm1", iotune={"read_iops_sec": "fast"}), "iotune read_iops_sec must be a whole number"),
    (opts(vm="vm1", iotune={"read_iops_sec": True}), "iotune read_iops_sec must be a whole number"),
    (opts(vm="vm1", iotune={"total_bytes_sec": 10, "read_bytes_sec": 5}), "total_* cannot be combined"),
    (opts(vm="vm1", iotune={"total_bytes_sec": 10, "write_bytes_sec": 5}), "total_* cannot be combined"),
    (opts(vm="vm1", iotune={"total_iops_sec": 10, "write_iops_sec": 5}), "total_* cannot be combined"),
    (opts(target="vdb"), "target describes an attachment and needs vm"),
    (opts(cache="none"), "cache describes an attachment and needs vm"),
    (opts(io="threads"), "io describes an attachment and needs vm"),
    (opts(discard="unmap"), "discard describes an attachment and needs vm"),
    (opts(boot_order=1), "boot_order describes an attachment and needs vm"),
    (opts(readonly=True), "describe an attachment and need vm"),
    (opts(shareable=True), "describe an attachment and need vm"),
    (opts(mode="independent_persistent"), "describe an attachment and need vm"),
    (opts(iotune={"total_iops_sec": 100}), "describe an attachment and need vm"),
])
def test_bad_input_is_one_line_naming_the_disk(params, fragment):
    one_line_error(params, "disk '%s'" % params["name"], fragment)


# ---------------------------------------------------------------- is_local_uri

@pytest.mark.parametrize("uri, local", [
    ("qemu:///system", True),
    ("qemu:///session", True),
    ("qemu+ssh://root@cna2/system", False),
    ("qemu://localhost/system", True),
    ("test:///default", True),
    ("qemu+unix:///system?socket=/run/libvirt/libvirt-sock", True),
    ("qemu+tcp://cna2.example.com/system", False),
    ("", False),
    (None, False),
])
def test_is_local_uri(uri, local):
    assert client_mod.is_local_uri(uri) is local


# ---------------------------------------------------------------- volume_xml

@pytest.mark.parametrize("fmt, compat", [("qcow2", "1.1"), ("raw", None)])
def test_volume_xml(fmt, compat):
    root = ET.fromstring(diskspec.volume_xml("data1", 20 * GIB, fmt))
    assert root.tag == "volume"
    assert root.findtext("name") == "data1"
    assert root.find("capacity").get("unit") == "bytes"
    assert int(root.findtext("capacity")) == 20 * GIB
    assert root.find("allocation").get("unit") == "bytes"
    assert int(root.findtext("allocation")) == 0
    assert root.find("target/format").get("type") == fmt
    assert root.findtext("target/compat") == compat
    assert root.findtext("target/permissions/mode") == "0600"


# ---------------------------------------------------------------- disk_element <-> attachment_view

ROUND_TRIP = [
    ("plain", opts(vm="vm1"), "qcow2", "vdb"),
    ("cache-io-discard", opts(vm="vm1", cache="none", io="native", discard="unmap"), "qcow2", "vdb"),
    ("writeback-threads", opts(vm="vm1", cache="writeback", io="threads", discard="ignore"), "raw", "vdc"),
    ("readonly", opts(vm="vm1", readonly=True), "qcow2", "vdb"),
    ("shareable", opts(vm="vm1", shareable=True, cache="none"), "raw", "vdb"),
    ("boot-order", opts(vm="vm1", boot_order=2), "qcow2", "vdb"),
    ("iotune-total", opts(vm="vm1", iotune={"total_bytes_sec": 104857600, "total_iops_sec": 500}), "qcow2", "vdb"),
    ("iotune-read-write", opts(vm="vm1", iotune={"read_bytes_sec": 5, "write_bytes_sec": 6, "read_iops_sec": 7,
                                                 "write_iops_sec": 8}), "qcow2", "vdb"),
    ("independent-persistent", opts(vm="vm1", mode="independent_persistent"), "qcow2", "vdb"),
    ("independent-nonpersistent", opts(vm="vm1", mode="independent_nonpersistent"), "qcow2", "vdb"),
    ("scsi", opts(vm="vm1", bus="scsi", target="sdb"), "qcow2", "sdb"),
    ("sata-two-letters", opts(vm="vm1", bus="sata"), "qcow2", "sdab"),
    ("rdm", rdm_opts(), "raw", "sda"),
]


@pytest.mark.parametrize("params, fmt, target", [r[1:] for r in ROUND_TRIP], ids=[r[0] for r in ROUND_TRIP])
def test_disk_element_reads_back_as_the_wanted_view(host, params, fmt, target):
    d = diskspec.desired_state(params)
    path = d["rdm"] or DATA1
    el = diskspec.disk_element(d, path, fmt, target)
    # The way libvirt hands it back: inside the domain, its mode recorded in the metadata.
    metadata = xmlutil.tostring(diskspec.metadata_element({path: d["mode"], ROOT: "persistent"}))
    host.add_domain(extra_disks=xmlutil.tostring(el), metadata=metadata)
    mgr = manager()
    found = [(e, mode) for e, src, mode in diskspec.attached_disks(mgr.client, "vm1") if src == path]
    assert len(found) == 1
    assert diskspec.attachment_view(found[0][0], found[0][1]) == mgr._wanted_view(d, target)


def test_disk_element_of_a_file_disk():
    d = diskspec.desired_state(opts(vm="vm1", cache="none", io="native", boot_order=3, readonly=True,
                                    iotune={"write_iops_sec": 100}))
    el = ET.fromstring(xmlutil.tostring(diskspec.disk_element(d, DATA1, "qcow2", "vdc")))
    assert (el.tag, el.get("type"), el.get("device")) == ("disk", "file", "disk")
    assert el.find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "none", "io": "native"}
    assert el.find("source").attrib == {"file": DATA1}
    assert el.find("target").attrib == {"dev": "vdc", "bus": "virtio"}
    assert el.findtext("iotune/write_iops_sec") == "100"
    assert el.find("boot").get("order") == "3"
    assert el.find("readonly") is not None and el.find("transient") is None


def test_disk_element_of_a_nonpersistent_disk_is_transient():
    d = diskspec.desired_state(opts(vm="vm1", mode="independent_nonpersistent"))
    el = diskspec.disk_element(d, DATA1, "qcow2", "vdb")
    assert el.find("transient") is not None
    # Without a metadata record the <transient/> alone says non-persistent.
    assert diskspec.attachment_view(el, "independent_nonpersistent")["mode"] == "independent_nonpersistent"


def test_disk_element_of_a_raw_device_mapping():
    d = diskspec.desired_state(rdm_opts())
    el = ET.fromstring(xmlutil.tostring(diskspec.disk_element(d, LUN, "raw", "sda")))
    assert (el.get("type"), el.get("device")) == ("block", "lun")
    assert el.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none", "io": "native"}
    assert el.find("source").attrib == {"dev": LUN}
    assert el.find("target").attrib == {"dev": "sda", "bus": "scsi"}


def test_attached_disks_reads_transient_without_metadata(host):
    host.add_domain(extra_disks=disk_xml(DATA1, "vdb", extra="\n      <transient/>"))
    modes = dict((src, mode) for el, src, mode in diskspec.attached_disks(Client(URI), "vm1"))
    assert modes == {ROOT: "persistent", DATA1: "independent_nonpersistent"}


# ---------------------------------------------------------------- choose_target

def letters(n):
    return ["vd" + chr(97 + i) for i in range(n)]


@pytest.mark.parametrize("existing, bus, expected", [
    ([], "virtio", "vda"),
    (["vda", "vdb"], "virtio", "vdc"),
    (["vda", None, "vdc"], "virtio", "vdb"),
    (["vda", "sda"], "virtio", "vdb"),
    (letters(26), "virtio", "vdaa"),
    (letters(26) + ["vdaa", "vdab"], "virtio", "vdac"),
    (letters(26) + ["vd" + "a" + chr(97 + i) for i in range(26)], "virtio", "vdba"),
    (["vda"], "scsi", "sda"),
    (["vda", "sda"], "sata", "sdb"),
    (["sda", "sdb"], "scsi", "sdc"),
])
def test_choose_target(existing, bus, expected):
    assert diskspec.choose_target(existing, bus) == expected


def test_choose_target_when_every_name_is_taken():
    used = letters(26) + ["vd" + chr(97 + i) + chr(97 + j) for i in range(26) for j in range(26)]
    with pytest.raises(ValueError, match="no free virtio target left"):
        diskspec.choose_target(used, "virtio")


# ---------------------------------------------------------------- metadata

MODES = {"/srv/a": "independent_persistent", "/srv/b": "persistent", "/srv/c": "independent_nonpersistent"}


def test_metadata_element_bare_for_set_metadata():
    root = ET.fromstring(xmlutil.tostring(diskspec.metadata_element(MODES, namespaced=False)))
    assert root.tag == "disks"
    assert [(e.tag, e.get("source"), e.get("mode")) for e in root] == [
        ("disk", "/srv/a", "independent_persistent"), ("disk", "/srv/c", "independent_nonpersistent")]


def test_metadata_element_namespaced_for_a_definition():
    text = xmlutil.tostring(diskspec.metadata_element(MODES, namespaced=True))
    assert 'xmlns:kvmf="%s"' % diskspec.META_NS in text
    root = ET.fromstring(text)
    assert root.tag == "{%s}disks" % diskspec.META_NS
    assert [(e.tag, e.get("source")) for e in root] == [("{%s}disk" % diskspec.META_NS, "/srv/a"),
                                                        ("{%s}disk" % diskspec.META_NS, "/srv/c")]


def test_metadata_of_only_persistent_disks_is_empty():
    assert len(diskspec.metadata_element({"/srv/b": "persistent"})) == 0


@pytest.mark.parametrize("namespaced", [True, False])
def test_meta_modes_reads_the_record_back(namespaced):
    if namespaced:
        record = xmlutil.tostring(diskspec.metadata_element(MODES))
    else:
        # setMetadata gets the bare element; libvirt stores it under the key prefix and namespace it was given.
        bare = xmlutil.tostring(diskspec.metadata_element(MODES, namespaced=False))
        record = bare.replace("<disks>", '<kvmf:disks xmlns:kvmf="%s">' % diskspec.META_NS) \
            .replace("<disk ", "<kvmf:disk ").replace("</disks>", "</kvmf:disks>")
    other = '<libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0"/>'
    root = xmlutil.parse(domain_desc("vm1", metadata=other + record))
    assert diskspec.meta_modes(root) == {"/srv/a": "independent_persistent", "/srv/c": "independent_nonpersistent"}


def test_meta_modes_without_record():
    assert diskspec.meta_modes(xmlutil.parse(domain_desc("vm1"))) == {}


# ---------------------------------------------------------------- DiskManager: volumes

class TestEnsureVolume:
    def test_missing_volume_is_only_planned_in_check_mode(self, host):
        host.add_pool()
        mgr = manager()
        before, after = mgr.ensure_volume(diskspec.desired_state(opts(size="20GiB")))
        assert before is None
        assert after == {"datastore": "ds1", "name": "data1", "format": "qcow2", "size": 20 * GIB,
                         "provisioning": "thin"}
        assert len(mgr.actions) == 1
        assert mgr.actions[0].startswith("create ")
        assert mgr.actions[0] == "create thin qcow2 disk of %d bytes" % (20 * GIB)
        assert host.mutating_calls() == []
        # Before deciding the volume is missing the datastore is re-read once (that changes no data).
        host.pools["ds1"].refresh.assert_called_once_with(0)

    def test_volume_made_by_another_cna_is_found_after_a_refresh(self, host):
        pool = host.add_pool()
        pool.refresh.side_effect = lambda flags: host.add_volume(capacity=20 * GIB)
        mgr = manager()
        before, after = mgr.ensure_volume(diskspec.desired_state(opts(size="20GiB")))
        assert before == after and before["size"] == 20 * GIB
        assert mgr.actions == []
        pool.refresh.assert_called_once_with(0)
        assert host.mutating_calls() == []

    def test_existing_volume_needs_no_refresh(self, host):
        pool = host.add_pool()
        host.add_volume()
        manager().ensure_volume(diskspec.desired_state(opts()))
        pool.refresh.assert_not_called()

    def test_existing_volume_of_the_same_size_is_unchanged(self, host):
        host.add_pool()
        host.add_volume(capacity=20 * GIB)
        mgr = manager()
        before, after = mgr.ensure_volume(diskspec.desired_state(opts(size="20GiB", format="qcow2")))
        assert before == after == {"datastore": "ds1", "name": "data1", "format": "qcow2", "size": 20 * GIB,
                                   "provisioning": "thin"}
        assert mgr.actions == []
        assert host.mutating_calls() == []

    def test_growing_a_detached_thin_volume_is_only_planned_in_check_mode(self, host):
        host.add_pool()
        host.add_volume(capacity=20 * GIB)
        mgr = manager()
        before, after = mgr.ensure_volume(diskspec.desired_state(opts(size="30GiB")))
        assert (before["size"], after["size"]) == (20 * GIB, 30 * GIB)
        assert mgr.actions == ["grow offline from %d to %d bytes" % (20 * GIB, 30 * GIB)]
        assert host.mutating_calls() == []

    def test_shrink_is_refused(self, host):
        host.add_pool()
        host.add_volume(capacity=20 * GIB)
        mgr = manager()
        with pytest.raises(ValueError) as err:
            mgr.ensure_volume(diskspec.desired_state(opts(size="10GiB")))
        assert "disk 'data1' is %d bytes; shrinking it to %d bytes is refused" % (20 * GIB, 10 * GIB) in str(err.value)
        assert mgr.actions == [] and host.mutating_calls() == []

    def test_format_change_is_refused(self, host):
        host.add_pool()
        host.add_volume(fmt="qcow2")
        with pytest.raises(ValueError) as err:
            manager().ensure_volume(diskspec.desired_state(opts(format="raw")))
        assert "disk 'data1' is qcow2; changing the format to raw is not supported" in str(err.value)
        assert host.mutating_calls() == []

    def test_size_is_needed_for_a_new_disk(self, host):
        host.add_pool()
        with pytest.raises(ValueError) as err:
            manager().ensure_volume(diskspec.desired_state(opts()))
        assert str(err.value) == "disk 'data1' does not exist in datastore 'ds1': size is needed to create it"

    def test_unknown_datastore(self, host):
        host.add_pool("ds1")
        with pytest.raises(ValueError) as err:
            manager().ensure_volume(diskspec.desired_state(opts(datastore="ds9", size="1GiB")))
        assert str(err.value) == "unknown datastore 'ds9' on %s" % URI

    def test_inactive_datastore(self, host):
        pool = host.add_pool(active=False)
        pool.storageVolLookupByName.side_effect = host.fake.libvirtError(
            "Requested operation is not valid: storage pool 'ds1' is not active", 55)
        with pytest.raises(ValueError) as err:
            manager().ensure_volume(diskspec.desired_state(opts(size="1GiB")))
        assert str(err.value) == "datastore 'ds1' on %s is not running" % URI
        pool.storageVolLookupByName.assert_not_called()


class TestDeleteVolume:
    def test_attached_disk_needs_force(self, host):
        host.add_pool()
        host.add_volume()
        host.add_domain("vm0", running=False)
        host.add_domain("vm1", extra_disks=disk_xml(DATA1, "vdb"))
        mgr = manager()
        with pytest.raises(ValueError) as err:
            mgr.delete_volume(diskspec.desired_state(opts()))
        msg = str(err.value)
        assert "\n" not in msg
        assert "disk 'data1' is attached to vm1 (vdb)" in msg
        assert "vm0" not in msg and "force=true" in msg
        assert mgr.actions == [] and host.mutating_calls() == []

    def test_missing_volume_is_nothing_to_delete(self, host):
        pool = host.add_pool()
        mgr = manager()
        assert mgr.delete_volume(diskspec.desired_state(opts())) == (None, False)
        assert mgr.actions == []
        pool.refresh.assert_called_once_with(0)

    def test_volume_made_by_another_cna_is_deleted_after_a_refresh(self, host):
        pool = host.add_pool()
        pool.refresh.side_effect = lambda flags: host.add_volume(fmt="raw")
        mgr = manager()
        before, deleted = mgr.delete_volume(diskspec.desired_state(opts()))
        assert before == {"datastore": "ds1", "name": "data1", "format": "raw", "size": 20 * GIB, "provisioning": "thin"}
        assert deleted is True
        assert mgr.actions == ["delete"]
        assert host.mutating_calls() == []


# ---------------------------------------------------------------- DiskManager: attachment

ATTACHED = disk_xml(DATA1, "vdb", driver=" cache='none' io='native' discard='unmap'",
                    extra="\n      <iotune>\n        <total_iops_sec>500</total_iops_sec>\n      </iotune>")
ATTACHED_OPTS = dict(vm="vm1", target="vdb", cache="none", io="native", discard="unmap",
                     iotune={"total_iops_sec": 500})


def attached_opts(**kw):
    base = dict(ATTACHED_OPTS)
    base.update(kw)
    return opts(**base)


class TestEnsureAttached:
    def test_identical_attachment_changes_nothing(self, host):
        host.add_domain(extra_disks=ATTACHED)
        mgr = manager()
        d = diskspec.desired_state(attached_opts())
        before, after = mgr.ensure_attached(d, DATA1, "qcow2")
        assert before == after == mgr._wanted_view(d, "vdb")
        assert mgr.actions == [] and mgr.reboot_required is False
        assert host.mutating_calls() == []

    def test_identical_attachment_without_a_target_changes_nothing(self, host):
        host.add_domain(extra_disks=ATTACHED)
        mgr = manager()
        before, after = mgr.ensure_attached(diskspec.desired_state(attached_opts(target=None)), DATA1, "qcow2")
        assert before == after and before["target"] == "vdb"
        assert mgr.actions == []

    @pytest.mark.parametrize("running, action", [(True, "set QoS live and persistent"), (False, "set QoS")])
    def test_changed_iotune_is_applied_without_reboot(self, host, running, action):
        host.add_domain(running=running, extra_disks=ATTACHED)
        mgr = manager()
        before, after = mgr.ensure_attached(diskspec.desired_state(attached_opts(iotune={"total_iops_sec": 1000})),
                                            DATA1, "qcow2")
        assert before["iotune"] == {"total_iops_sec": 500}
        assert after["iotune"] == {"total_iops_sec": 1000}
        assert mgr.actions == [action]
        assert mgr.reboot_required is False
        assert host.mutating_calls() == []

    def test_changed_cache_goes_to_the_persistent_config_and_needs_a_reboot(self, host):
        host.add_domain(extra_disks=disk_xml(DATA1, "vdb", driver=" cache='writeback' discard='unmap'"))
        mgr = manager()
        before, after = mgr.ensure_attached(diskspec.desired_state(opts(vm="vm1", cache="none", discard="unmap")),
                                            DATA1, "qcow2")
        assert (before["cache"], after["cache"]) == ("writeback", "none")
        assert mgr.actions == ["update cache in the persistent config"]
        assert mgr.reboot_required is True
        assert host.mutating_calls() == []

    def test_changed_cache_of_a_stopped_vm_needs_no_reboot(self, host):
        host.add_domain(running=False, extra_disks=disk_xml(DATA1, "vdb", driver=" cache='writeback'"))
        mgr = manager()
        mgr.ensure_attached(diskspec.desired_state(opts(vm="vm1", cache="none")), DATA1, "qcow2")
        assert mgr.actions == ["update cache in the persistent config"]
        assert mgr.reboot_required is False

    def test_nonpersistent_disk_on_a_running_vm_waits_for_a_reboot(self, host):
        host.add_domain(running=True)
        mgr = manager()
        d = diskspec.desired_state(opts(vm="vm1", mode="independent_nonpersistent"))
        before, after = mgr.ensure_attached(d, DATA1, "qcow2")
        assert before is None
        assert after == mgr._wanted_view(d, "vdb")
        assert len(mgr.actions) == 1 and "persistent config" in mgr.actions[0]
        assert "live" not in mgr.actions[0]
        assert mgr.reboot_required is True
        assert host.mutating_calls() == []

    def test_new_attachment_gets_the_first_free_target(self, host):
        host.add_domain(running=True, extra_disks=disk_xml(DS_PATH + "/other", "vdb"))
        mgr = manager()
        before, after = mgr.ensure_attached(diskspec.desired_state(opts(vm="vm1")), DATA1, "qcow2")
        assert before is None and after["target"] == "vdc"
        assert mgr.actions == ["attach as vdc (live and persistent)"]
        assert mgr.reboot_required is False
        assert host.mutating_calls() == []

    @pytest.mark.parametrize("running, flags, action", [
        (True, constants.AFFECT_CONFIG | constants.AFFECT_LIVE, "attach as vdb (live and persistent)"),
        (False, constants.AFFECT_CONFIG, "attach as vdb (persistent config)"),
    ], ids=["running", "stopped"])
    def test_attach_calls_libvirt(self, host, running, flags, action):
        dom = host.add_domain(running=running)
        mgr = manager(check_mode=False)
        mgr.ensure_attached(diskspec.desired_state(opts(vm="vm1", cache="none")), DATA1, "qcow2")
        assert flags == (3 if running else 2)
        dom.attachDeviceFlags.assert_called_once()
        xml, passed_flags = dom.attachDeviceFlags.call_args[0]
        assert passed_flags == flags
        el = xmlutil.parse(xml)
        assert el.tag == "disk" and el.get("type") == "file"
        assert el.find("source").get("file") == DATA1
        assert el.find("target").attrib == {"dev": "vdb", "bus": "virtio"}
        assert el.find("driver").get("type") == "qcow2"
        assert mgr.actions == [action]
        assert mgr.reboot_required is False
        # A persistent disk needs no mode record; attaching is the one change.
        dom.setMetadata.assert_not_called()
        assert [c[0] for c in host.mutating_calls()] == ["attachDeviceFlags"]


class TestPrecheckAttachment:
    def test_unknown_vm(self, host):
        with pytest.raises(ValueError) as err:
            manager().precheck_attachment(diskspec.desired_state(opts(vm="vm9", target="vdb")), DATA1)
        assert str(err.value) == "unknown VM 'vm9' on %s" % URI

    def test_target_used_by_another_disk(self, host):
        host.add_domain()
        with pytest.raises(ValueError) as err:
            manager().precheck_attachment(diskspec.desired_state(opts(vm="vm1", target="vda")), DATA1)
        assert str(err.value) == "VM vm1 already has a disk at vda (%s)" % ROOT

    def test_attached_with_another_target(self, host):
        host.add_domain(extra_disks=disk_xml(DATA1, "vdb"))
        with pytest.raises(ValueError) as err:
            manager().precheck_attachment(diskspec.desired_state(opts(vm="vm1", target="vdc")), DATA1)
        assert str(err.value) == "disk 'data1' is attached to VM vm1 as vdb; moving it to vdc needs a detach first"

    def test_free_target_passes(self, host):
        host.add_domain(extra_disks=disk_xml(DATA1, "vdb"))
        mgr = manager()
        assert mgr.precheck_attachment(diskspec.desired_state(opts(vm="vm1", target="vdb")), DATA1) is None
        assert mgr.precheck_attachment(diskspec.desired_state(opts(vm="vm1", target="vdc")), DS_PATH + "/new") is None
        assert mgr.actions == [] and host.mutating_calls() == []


def test_rdm_io_default_follows_the_cache_mode():
    assert diskspec.desired_state(rdm_opts())["io"] == "native"
    relaxed = diskspec.desired_state(rdm_opts(cache="writeback"))
    assert relaxed["cache"] == "writeback" and relaxed["io"] == "threads"


# ---------------------------------------------------------------- data safety

def test_a_disk_the_guest_has_not_released_is_not_deleted(host, monkeypatch):
    """force=true detaches; if the running guest does not acknowledge the unplug, deleting the file under it would
    lose its last writes: the delete waits for a later run."""
    monkeypatch.setattr(attachments, "UNPLUG_WAIT", 0)
    host.add_pool()
    vol = host.add_volume()
    dom = host.add_domain("vm1", running=True, extra_disks=disk_xml(DATA1, "vdb"))
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    before, deleted = mgr.delete_volume(diskspec.desired_state(opts()), force=True)
    assert before["name"] == "data1" and deleted is False
    assert dom.detachDeviceFlags.called and not vol.delete.called
    assert mgr.reboot_required is True
    assert any("still in use by the running guest" in w for w in mgr.warnings)


def test_converting_a_disk_images_stand_on_is_refused(host, monkeypatch):
    host.add_pool()
    host.add_volume(capacity=GIB, allocation=GIB // 4)
    monkeypatch.setattr(images, "dependants_of", lambda client, paths, exclude_vm=None: {DATA1: [("web-01", "vda")]})
    mgr = disks.DiskManager(Client(URI), check_mode=True)
    with pytest.raises(ValueError) as err:
        mgr.ensure_volume(diskspec.desired_state(opts(provisioning="thick_eager_zeroed")))
    assert "cannot be converted while images stand on it" in str(err.value) and "web-01 (vda)" in str(err.value)
    assert mgr.actions == [] and host.mutating_calls() == []


def block_pool(host):
    """Datastore ds1 on an LVM volume group: libvirt makes its volumes and names their devices."""
    pool = host.add_pool()
    pool.XMLDesc.return_value = "<pool type='logical'><name>ds1</name><target><path>/dev/vg1</path></target></pool>"

    def create(xml, flags):
        vol = host.add_volume(capacity=GIB, allocation=0, fmt="raw")
        vol.path.return_value = "/dev/vg1/data1"
        return vol
    pool.createXML.side_effect = create
    return pool


def test_a_new_disk_on_a_block_datastore_is_made_by_libvirt_and_attached_as_a_block_device(host):
    pool = block_pool(host)
    dom = host.add_domain("vm1", running=False)
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    out = mgr.ensure(diskspec.desired_state(opts(size=GIB, format="raw", vm="vm1")))
    assert out[4] == "/dev/vg1/data1"
    created = xmlutil.parse(pool.createXML.call_args[0][0])
    assert xmlutil.find_text(created, "allocation") == "0" and xmlutil.find_text(created, "capacity") == str(GIB)
    attached = xmlutil.parse(dom.attachDeviceFlags.call_args[0][0])
    assert attached.get("type") == "block" and xmlutil.find_attr(attached, "source", "dev") == "/dev/vg1/data1"


def test_eager_zeroing_on_a_block_datastore_is_refused_before_any_change(host):
    pool = host.add_pool()
    pool.XMLDesc.return_value = "<pool type='logical'><name>ds1</name><target><path>/dev/vg1</path></target></pool>"
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    with pytest.raises(ValueError) as err:
        mgr.ensure_volume(diskspec.desired_state(opts(size=GIB, format="raw", provisioning="thick_eager_zeroed")))
    assert "thick_eager_zeroed disks are made on file datastores" in str(err.value)
    assert not pool.createXML.called and mgr.actions == []


def test_an_iscsi_direct_volume_is_attached_by_datastore_and_volume_name(host):
    pool = host.add_pool()
    pool.XMLDesc.return_value = "<pool type='iscsi-direct'><name>ds1</name></pool>"
    vol = host.add_volume(capacity=GIB, allocation=GIB, fmt="raw")
    vol.path.return_value = "ip-10.77.0.4:3260-iscsi-iqn.2026-11.lab:t1-lun-1"
    dom = host.add_domain("vm1", running=False)
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    assert mgr.ensure(diskspec.desired_state(opts(vm="vm1")))[4] == "ds1/data1"
    el = xmlutil.parse(dom.attachDeviceFlags.call_args[0][0])
    assert el.get("type") == "volume"
    assert (xmlutil.find_attr(el, "source", "pool"), xmlutil.find_attr(el, "source", "volume")) == ("ds1", "data1")
    assert diskspec.disk_source(el) == "ds1/data1"


# ---------------------------------------------------------------- a disk is its chain
OVERLAY = DATA1 + "~s1.qcow2"
ON_OVERLAY = """    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <backingStore type='file'><format type='qcow2'/><source file='%s'/></backingStore>
      <target dev='vdb' bus='virtio'/>
    </disk>
""" % (OVERLAY, DATA1)


def on_a_snapshot(host, running=False):
    """vm1 has disk data1 with snapshot s1 taken: it writes into data1~s1.qcow2, whose backing file is data1."""
    host.add_pool()
    base = host.add_volume(capacity=GIB, allocation=GIB // 4)
    top = host.add_volume("data1~s1.qcow2", capacity=GIB, allocation=196608)
    dom = host.add_domain("vm1", running=running, extra_disks=ON_OVERLAY)
    snap = mock.MagicMock(name="snapshot s1")
    snap.getXMLDesc.return_value = ("<domainsnapshot><name>s1</name><domain><devices>"
                                    "<disk type='file' device='disk'><source file='%s'/><target dev='vdb'/></disk>"
                                    "</devices></domain></domainsnapshot>" % DATA1)
    dom.listAllSnapshots.return_value = [snap]
    return base, top, dom


def test_a_declared_disk_with_a_snapshot_on_it_is_the_same_disk(host):
    """Re-applying the disk (or the VM that declares it) after a snapshot: the VM sits on the snapshot's overlay,
    whose chain reaches the declared image: nothing to attach, nothing changed."""
    _base, _top, dom = on_a_snapshot(host)
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    out = mgr.ensure(diskspec.desired_state(opts(vm="vm1", size=GIB)))
    assert out[2] == out[3] and out[3]["target"] == "vdb"
    assert mgr.actions == [] and host.mutating_calls() == []
    assert images.users_of(Client(URI), DATA1) == [("vm1", "vdb")]


def test_a_declared_disk_with_a_snapshot_grows_in_its_top_layer(host):
    base, top, dom = on_a_snapshot(host)
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    before, after = mgr.ensure_volume(diskspec.desired_state(opts(size=2 * GIB)))
    assert before["size"] == GIB and after["size"] == 2 * GIB
    top.resize.assert_called_once_with(2 * GIB, 0)
    assert not base.resize.called  # the base under the overlay keeps its size; the chain grows


def test_a_changed_attachment_of_a_disk_on_a_snapshot_keeps_the_layer(host):
    _base, _top, dom = on_a_snapshot(host)
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    mgr.ensure(diskspec.desired_state(opts(vm="vm1", size=GIB, cache="none")))
    assert mgr.actions == ["update cache in the persistent config"]
    defined = xmlutil.parse(host.fake.conn.defineXMLFlags.call_args[0][0] if host.fake.conn.defineXMLFlags.called
                            else host.fake.conn.defineXML.call_args[0][0])
    vdb = [el for el in defined.findall("devices/disk") if xmlutil.find_attr(el, "target", "dev") == "vdb"][0]
    # still on the overlay (repointing it at the base would drop what was written since the snapshot)
    assert xmlutil.find_attr(vdb, "source", "file") == OVERLAY
    assert xmlutil.find_attr(vdb, "driver", "type") == "qcow2" and xmlutil.find_attr(vdb, "driver", "cache") == "none"


def test_disk_info_names_the_declared_disk_beside_its_active_layer(host):
    on_a_snapshot(host)
    found = disks.inventory(Client(URI), True, datastore="ds1")
    by_name = dict((d["name"], d) for d in found)
    assert by_name["data1"]["active"] == OVERLAY and by_name["data1"]["layer_of"] is None
    assert by_name["data1"]["attached"][0]["declared"] == DATA1
    assert by_name["data1~s1.qcow2"]["layer_of"] == DATA1
    # a VM's disks are its declared disks, with the file each writes now
    mine = disks.inventory(Client(URI), True, vm="vm1")
    assert [(d["path"], d["active"]) for d in mine if d["name"] == "data1"] == [(DATA1, OVERLAY)]
    assert not [d for d in mine if d["layer_of"]]


@pytest.mark.parametrize("boots, refused", [(["hd"], False), (["cdrom", "hd"], True)])
def test_a_disk_boot_order_replaces_libvirts_default_boot_list(host, boots, refused):
    """libvirt writes <boot dev='hd'/> into a definition without one and then refuses any device boot order
    beside it (the vm module's own EXAMPLES hit this): the default gives way, a list the user chose does not."""
    host.add_pool()
    host.add_volume()
    dom = host.add_domain("vm1", running=False)
    xml = dom.XMLDesc.return_value.replace(
        "</type>\n  </os>", "</type>\n%s  </os>" % "".join("    <boot dev='%s'/>\n" % b for b in boots))
    xml = xml.replace("      <boot order='1'/>\n", "")
    assert "<boot dev=" in xml
    dom.XMLDesc.return_value = xml
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    if refused:
        with pytest.raises(ValueError) as err:
            mgr.ensure(diskspec.desired_state(opts(vm="vm1", boot_order=1)))
        assert "boots by the device list cdrom, hd" in str(err.value)
        assert not dom.attachDeviceFlags.called
        return
    mgr.ensure(diskspec.desired_state(opts(vm="vm1", boot_order=1)))
    assert mgr.actions == ["attach as vdb (persistent config)"]
    # one definition: the disk with its boot order in, the default list out (libvirt would write it again if
    # the default were dropped in a definition of its own)
    defined = host.fake.conn.defineXMLFlags.call_args[0][0]
    assert "<boot dev=" not in defined and "<boot order=\"1\"" in defined and DATA1 in defined
    assert not dom.attachDeviceFlags.called


def test_a_target_still_held_by_an_unacknowledged_unplug_is_not_reused(host):
    """The guest has not let go of vdb (detached from the definition only): a new disk gets vdc, not vdb, or the
    live attach would be refused ('target vdb duplicated')."""
    host.add_pool()
    host.add_volume()
    host.add_volume("data2", capacity=GIB)
    dom = host.add_domain("vm1", running=True)
    inactive = dom.XMLDesc.return_value
    live = domain_desc("vm1", disk_xml(DATA1, "vdb"))
    dom.XMLDesc.side_effect = lambda flags=0: inactive if flags & constants.XML_INACTIVE else live
    mgr = disks.DiskManager(Client(URI), check_mode=True)
    mgr.ensure(diskspec.desired_state(opts(name="data2", vm="vm1")))
    assert mgr.actions == ["attach as vdc (live and persistent)"]


def test_a_volume_another_cna_deleted_is_left_out_and_its_datastore_reread(host):
    """On a shared datastore, another CNA deletes a disk: this CNA's libvirt still lists it until the datastore is
    refreshed, and reading it says it is gone. Listing disks (and every vm task, which reports its disks) goes on."""
    pool = host.add_pool()
    host.add_volume("kept")
    gone = host.add_volume("gone")
    gone.XMLDesc.side_effect = host.fake.libvirtError("Storage volume not found: no storage vol with matching path",
                                                      host.fake.VIR_ERR_NO_STORAGE_VOL)
    found = disks.inventory(Client(URI), True, datastore="ds1")
    assert [d["name"] for d in found] == ["kept"]
    pool.refresh.assert_called_once_with(0)
    gone.XMLDesc.side_effect = host.fake.libvirtError("I/O error", 38)
    with pytest.raises(Exception) as err:
        disks.inventory(Client(URI), True, datastore="ds1")
    assert "I/O error" in str(err.value)


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_disk_attached_by_the_disk_module_reaches_the_vms_definition_copy(host, monkeypatch, check_mode):
    # the HA cluster starts a VM from the copy beside its system disk: a disk missing there is missing after a failover
    pool = block_pool(host)
    host.add_domain("vm1", running=False)
    written = []
    monkeypatch.setattr(images, "write_definition_copy", lambda client, vm, path: written.append((vm, path)))
    copy = images.definition_copy_name(DS_PATH, "vm1")
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: p == copy or real_exists(p))  # the vm module made the copy
    res = disks.DiskManager(Client(URI), check_mode=check_mode).converge(opts(size=GIB, format="raw", vm="vm1"))
    assert res.changed
    assert written == ([] if check_mode else [("vm1", copy)])


def test_a_vm_without_a_definition_copy_gets_none_from_the_disk_module(host, monkeypatch):
    # a VM defined outside the collection: a copy made for it would later read as a VM defined on another CNA
    block_pool(host)
    host.add_domain("vm1", running=False)
    written = []
    monkeypatch.setattr(images, "write_definition_copy", lambda client, vm, path: written.append((vm, path)))
    assert disks.DiskManager(Client(URI), check_mode=False).converge(opts(size=GIB, format="raw", vm="vm1")).changed
    assert written == []


def test_a_new_disk_for_a_vm_under_ha_is_refused_before_its_volume_is_made(host, monkeypatch):
    # the cluster runs it from its definition copy, as a transient domain after its first start by the cluster
    pool = host.add_pool()
    pool.XMLDesc.return_value = "<pool type='logical'><name>ds1</name><target><path>/dev/vg1</path></target></pool>"
    dom = host.add_domain("vm1", running=True)
    monkeypatch.setattr(power, "ha_resource", lambda run, local, name: "kvmfusion-vm-" + name)
    with pytest.raises(ValueError) as err:
        disks.DiskManager(Client(URI), check_mode=False).converge(opts(size=GIB, format="raw", vm="vm1"))
    assert "VM 'vm1' is under HA (cluster resource kvmfusion-vm-vm1): attaching a disk is refused" in str(err.value)
    assert "\n" not in str(err.value)
    assert not pool.createXML.called and not dom.attachDeviceFlags.called


@pytest.mark.parametrize("kw, what", [
    (dict(size=2 * GIB, cache="none"), "changing the attachment of disk vdb"),
    (dict(size=2 * GIB, attached=False), "detaching disk vdb"),
])
def test_an_attachment_change_on_a_vm_under_ha_is_refused_before_the_volume_grows(host, monkeypatch, kw, what):
    base, top, dom = on_a_snapshot(host)
    monkeypatch.setattr(power, "ha_resource", lambda run, local, name: "kvmfusion-vm-" + name)
    with pytest.raises(ValueError) as err:
        disks.DiskManager(Client(URI), check_mode=False).ensure(diskspec.desired_state(opts(vm="vm1", **kw)))
    assert "VM 'vm1' is under HA (cluster resource kvmfusion-vm-vm1): %s is refused" % what in str(err.value)
    assert not top.resize.called and not base.resize.called
    assert not host.fake.conn.defineXML.called and not host.fake.conn.defineXMLFlags.called
    # the same disk, as attached, grows: its chain and attachment stay what the cluster's copy says
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    mgr.ensure(diskspec.desired_state(opts(vm="vm1", size=2 * GIB)))
    assert mgr.actions and all("attach" not in a for a in mgr.actions)
    top.resize.assert_called_once_with(2 * GIB, 0)
