# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The pure parts of clones: clone names, metadata checks, the clone's definition and its clone record."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import diskspec, vmspec
from ansible_collections.kvmfusion.compute.plugins.module_utils import clones, xmlutil

CLONE_NS = "https://kvmfusion.compute/xmlns/clone/1"
DISKS_NS = "https://kvmfusion.compute/xmlns/disks/1"
VM_NS = "https://kvmfusion.compute/xmlns/vm/1"
SNAP_NS = "https://kvmfusion.compute/xmlns/snapshots/1"
OTHER_NS = "https://example.com/xmlns/inventory/1"

SRC_UUID = "6c2f1b7e-3d4a-4f5e-9a8b-0c1d2e3f4a5b"
NEW_UUID = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
OLD_VDA = "/var/lib/kvmfusion/datastores/ds1/tpl-vda.raw"
OLD_VDB = "/var/lib/kvmfusion/datastores/ds1/tpl-vdb.qcow2"
OLD_VDC = "/var/lib/kvmfusion/datastores/ds1/tpl-vdc.qcow2"
NEW_VDA = "/var/lib/kvmfusion/datastores/ds2/web-01-vda.qcow2"
NEW_VDB = "/var/lib/kvmfusion/datastores/ds2/web-01-vdb.qcow2"
ISO = "/var/lib/kvmfusion/iso/seed.iso"

SOURCE_XML = """<domain type='kvm' id='7'>
  <name>tpl</name>
  <uuid>%(uuid)s</uuid>
  <title>Web template</title>
  <metadata>
    <kvmfvm:vm xmlns:kvmfvm="https://kvmfusion.compute/xmlns/vm/1" template="true"/>
    <kvmf:disks xmlns:kvmf="https://kvmfusion.compute/xmlns/disks/1">
      <kvmf:disk source="%(vdb)s" mode="independent_persistent"/>
    </kvmf:disks>
    <kvmfsnap:snapshots xmlns:kvmfsnap="https://kvmfusion.compute/xmlns/snapshots/1">
      <kvmfsnap:snapshot name="s1"/>
    </kvmfsnap:snapshots>
    <inv:host xmlns:inv="https://example.com/xmlns/inventory/1" rack="r12"/>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>Old Corp</entry>
      <entry name='serial'>ds=nocloud;h=tpl;i=%(uuid)s</entry>
    </system>
    <oemStrings>
      <entry>kvmfusion:stale=yes</entry>
    </oemStrings>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/tpl_VARS.fd</nvram>
    <smbios mode='host'/>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native' discard='unmap'/>
      <source file='%(vda)s' index='3'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%(vdb)s' index='2'/>
      <backingStore type='file' index='4'>
        <format type='qcow2'/>
        <source file='/var/lib/kvmfusion/datastores/ds1/base.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vdb' bus='virtio'/>
      <alias name='virtio-disk1'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='%(vdc)s'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='%(iso)s' index='1'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:11:22:33'/>
      <source network='default'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:44:55:66'/>
      <source bridge='br0'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'/>
</domain>
""" % {"uuid": SRC_UUID, "vda": OLD_VDA, "vdb": OLD_VDB, "vdc": OLD_VDC, "iso": ISO}

MINIMAL_XML = """<domain type='kvm'>
  <name>plain</name>
  <uuid>%s</uuid>
  <memory unit='KiB'>1048576</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/ds/plain-vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
""" % SRC_UUID

DISK_MAP = {"vda": (NEW_VDA, "qcow2"), "vdb": (NEW_VDB, "qcow2")}
METADATA = {"role": "web", "env": "prod", "a.b": "x=y"}
RECORD = {"source": "tpl", "snapshot": None, "linked": True}


class XmlClient(object):
    """Serves one domain's XML the way diskspec.attached_disks reads it."""

    def __init__(self, xml):
        self.xml = xml

    def domain_xml(self, name, inactive=True):
        assert name and inactive in (True, False)
        return self.xml


def make_clone(src_xml=SOURCE_XML, name="web-01", disk_map=None, linked_targets=("vda", "vdb"), hostname="web-01",
               metadata=None, record=None):
    root = clones.clone_xml(xmlutil.parse(src_xml), name, NEW_UUID, DISK_MAP if disk_map is None else disk_map,
                            list(linked_targets), hostname, METADATA if metadata is None else metadata,
                            RECORD if record is None else record)
    # what gets defined is the serialized text: every check reads it back from there
    text = xmlutil.tostring(root)
    return xmlutil.parse(text), text


def disk_by_target(root, target):
    found = [el for el in root.findall("devices/disk") if xmlutil.find_attr(el, "target", "dev") == target]
    assert len(found) == 1
    return found[0]


# --------------------------------------------------------------------------------------- clone_names

def test_clone_names_from_an_explicit_list():
    assert clones.clone_names(["web-01", "db-01"]) == ["web-01", "db-01"]
    result = clones.clone_names(("a", "b"))
    assert result == ["a", "b"] and isinstance(result, list)


def test_clone_names_from_count_and_pattern():
    assert clones.clone_names(count=3, pattern="web-{index:02d}") == ["web-01", "web-02", "web-03"]
    assert clones.clone_names(count=2, pattern="node{index}") == ["node1", "node2"]


def test_clone_names_from_a_start_index():
    assert clones.clone_names(count=3, pattern="web-{index:02d}", start=9) == ["web-09", "web-10", "web-11"]
    assert clones.clone_names(count=2, pattern="web-{index:03d}", start=0) == ["web-000", "web-001"]


@pytest.mark.parametrize("pattern", [None, "", "web", "web-{0}", "web-{idx:02d}", "web-{ index}"])
def test_clone_names_pattern_must_contain_index(pattern):
    with pytest.raises(ValueError, match=r"must contain \{index\}"):
        clones.clone_names(count=2, pattern=pattern)


@pytest.mark.parametrize("pattern", ["web-{index:q}", "web-{index:02s}", "web-{index", "web-{index}-{other}",
                                     "web-{index}-{0}", "web-{index!z}"])
def test_clone_names_with_a_bad_format_spec(pattern):
    with pytest.raises(ValueError) as err:
        clones.clone_names(count=2, pattern=pattern)
    assert "invalid name_pattern" in str(err.value)
    assert repr(pattern) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("pattern", ["web-{index.x}", "web-{index[0]}"])
def test_clone_names_with_a_bad_field_access_in_the_pattern(pattern):
    with pytest.raises(ValueError, match="invalid name_pattern"):
        clones.clone_names(count=2, pattern=pattern)


def test_clone_names_refuses_duplicates():
    with pytest.raises(ValueError) as err:
        clones.clone_names(["b", "a", "b", "a", "c"])
    assert str(err.value) == "clone name(s) a, b are given more than once"


@pytest.mark.parametrize("bad", ["a/b", "..", "-web", "web 01", "web<1>", "x" * 65])
def test_clone_names_refuses_invalid_names_in_a_list(bad):
    with pytest.raises(ValueError) as err:
        clones.clone_names(["ok-1", bad])
    assert "invalid VM name" in str(err.value)


def test_clone_names_refuses_invalid_names_from_a_pattern():
    with pytest.raises(ValueError, match="invalid VM name 'a/01'"):
        clones.clone_names(count=1, pattern="a/{index:02d}")
    with pytest.raises(ValueError, match="at most 64"):
        clones.clone_names(count=1, pattern="x" * 64 + "{index}")


@pytest.mark.parametrize("count", [0, -1])
def test_clone_names_count_must_be_at_least_one(count):
    with pytest.raises(ValueError, match="count must be at least 1, not %d" % count):
        clones.clone_names(count=count, pattern="web-{index}")


@pytest.mark.parametrize("kwargs", [{}, {"names_list": []}, {"pattern": "web-{index}"}, {"names_list": None, "count": None}])
def test_clone_names_needs_names_or_a_count(kwargs):
    with pytest.raises(ValueError, match="give the clone names, or count and name_pattern"):
        clones.clone_names(**kwargs)


# ------------------------------------------------------------------------------------ check_metadata

@pytest.mark.parametrize("metadata", [None, {}, {"role": "web", "env.name": "prod", "a-b_c": 1, "X9": "", "k" * 64: "v"}])
def test_check_metadata_accepts_good_metadata(metadata):
    assert clones.check_metadata(metadata) is None


@pytest.mark.parametrize("key", ["", "-role", ".role", "_role", "a b", "a=b", "a:b", "a/b", "k" * 65, "r\u00f4le"])
def test_check_metadata_refuses_bad_keys(key):
    with pytest.raises(ValueError) as err:
        clones.check_metadata({"fine": "x", key: "value"})
    assert "invalid metadata key %r" % key in str(err.value)


@pytest.mark.parametrize("value", ["a\nb", "tab\there", "nul\0", "\x1b[31m", "cr\r"])
def test_check_metadata_refuses_control_characters_in_values(value):
    with pytest.raises(ValueError, match="metadata role must not contain control characters"):
        clones.check_metadata({"role": value})


# ------------------------------------------------------------------------------------ clone_record

def test_clone_record_is_none_for_a_vm_without_one():
    assert clones.clone_record(MINIMAL_XML) is None
    assert clones.clone_record(SOURCE_XML) is None


def test_clone_record_reads_the_record():
    xml = ("<domain><name>c</name><metadata><kc:clone xmlns:kc='%s' source='tpl' snapshot='s1' linked='true' disks='vda'/>"
           "</metadata></domain>" % CLONE_NS)
    assert clones.clone_record(xml) == {"source": "tpl", "snapshot": "s1", "linked": True, "complete": True}
    full = xml.replace("snapshot='s1'", "snapshot=''").replace("linked='true'", "linked='false'")
    assert clones.clone_record(full) == {"source": "tpl", "snapshot": None, "linked": False, "complete": True}


def test_clone_record_ignores_a_clone_element_in_another_namespace():
    xml = "<domain><metadata><x:clone xmlns:x='%s' source='tpl' linked='true'/></metadata></domain>" % OTHER_NS
    assert clones.clone_record(xml) is None


# ------------------------------------------------------------------------------------ clone_xml

def test_clone_xml_sets_the_new_name_and_uuid():
    root = make_clone()[0]
    assert root.tag == "domain"
    assert root.get("id") is None
    assert [el.text for el in root.findall("name")] == ["web-01"]
    assert [el.text for el in root.findall("uuid")] == [NEW_UUID]
    assert xmlutil.find_text(root, "title") == "Web template"


def test_clone_xml_leaves_the_source_tree_alone():
    src = xmlutil.parse(SOURCE_XML)
    before = xmlutil.canonical(src)
    clones.clone_xml(src, "web-01", NEW_UUID, DISK_MAP, ["vda", "vdb"], "web-01", METADATA, RECORD)
    assert xmlutil.canonical(src) == before


def test_clone_xml_drops_macs_but_keeps_the_interfaces():
    root = make_clone()[0]
    assert root.findall(".//mac") == []
    assert [el.get("type") for el in root.findall("devices/interface")] == ["network", "bridge"]
    assert xmlutil.find_attr(root, "devices/interface/source", "network") == "default"


def test_clone_xml_drops_the_template_marker_and_the_snapshot_record():
    root, text = make_clone()
    assert vmspec.is_template(SOURCE_XML)
    assert not vmspec.is_template(text)
    assert root.find("metadata/{%s}vm" % VM_NS) is None
    assert root.find("metadata/{%s}snapshots" % SNAP_NS) is None
    # metadata of other applications stays
    assert xmlutil.find_attr(root, "metadata/{%s}host" % OTHER_NS, "rack") == "r12"


def test_clone_xml_points_the_mapped_disks_to_the_new_files():
    root = make_clone()[0]
    vda, vdb = disk_by_target(root, "vda"), disk_by_target(root, "vdb")
    assert vda.get("type") == "file"
    assert vda.find("source").attrib == {"file": NEW_VDA}
    assert vdb.find("source").attrib == {"file": NEW_VDB}
    # the format follows the map (raw became qcow2), the other driver settings stay
    assert vda.find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "none", "io": "native",
                                         "discard": "unmap"}
    assert xmlutil.find_attr(vdb, "driver", "type") == "qcow2"
    assert xmlutil.find_attr(vda, "boot", "order") == "1"
    assert root.find("devices/disk/alias") is None and root.find("devices/disk/address") is None


def test_clone_xml_leaves_unmapped_disks_alone():
    root = make_clone()[0]
    vdc, cdrom = disk_by_target(root, "vdc"), disk_by_target(root, "sda")
    assert vdc.find("source").attrib == {"file": OLD_VDC}
    assert vdc.find("driver") is None
    assert xmlutil.find_attr(cdrom, "source", "file") == ISO
    assert cdrom.find("readonly") is not None


def test_clone_xml_adds_a_driver_where_the_source_had_none():
    root = make_clone(disk_map={"vdc": ("/ds2/web-01-vdc.raw", "raw")})[0]
    vdc = disk_by_target(root, "vdc")
    assert vdc.find("source").attrib == {"file": "/ds2/web-01-vdc.raw"}
    assert vdc.find("driver").attrib == {"name": "qemu", "type": "raw"}


def test_clone_xml_removes_every_backing_store():
    root, text = make_clone()
    assert list(root.iter("backingStore")) == []
    assert "base.qcow2" not in text


def test_clone_xml_carries_the_independent_mode_over_to_the_new_path():
    root, text = make_clone()
    records = root.findall("metadata/{%s}disks" % DISKS_NS)
    assert len(records) == 1
    assert [d.attrib for d in records[0]] == [{"source": NEW_VDB, "mode": "independent_persistent"}]
    assert OLD_VDB not in text
    modes = dict((xmlutil.find_attr(el, "target", "dev"), mode)
                 for el, _src, mode in diskspec.attached_disks(XmlClient(text), "web-01"))
    assert modes == {"vda": "persistent", "vdb": "independent_persistent", "vdc": "persistent", "sda": "persistent"}


def test_clone_xml_writes_no_disk_modes_when_all_disks_are_persistent():
    root = make_clone(src_xml=MINIMAL_XML, disk_map={"vda": ("/ds/c-vda.qcow2", "qcow2")}, linked_targets=["vda"])[0]
    assert root.find("metadata/{%s}disks" % DISKS_NS) is None


def test_clone_xml_writes_a_clone_record_readable_by_clone_record():
    root, text = make_clone()
    records = root.findall("metadata/{%s}clone" % CLONE_NS)
    assert len(records) == 1
    assert records[0].get("disks") == "vda,vdb"
    assert clones.clone_record(text) == {"source": "tpl", "snapshot": None, "linked": True, "complete": True}


def test_clone_xml_records_a_full_clone_of_a_snapshot():
    record = {"source": "tpl", "snapshot": "before-upgrade", "linked": False}
    root, text = make_clone(linked_targets=[], record=record)
    assert clones.clone_record(text) == dict(record, complete=True)
    assert xmlutil.find_attr(root, "metadata/{%s}clone" % CLONE_NS, "disks") == ""


def test_clone_xml_of_a_clone_keeps_one_clone_record():
    first_text = make_clone()[1]
    record = {"source": "web-01", "snapshot": None, "linked": True}
    root, text = make_clone(src_xml=first_text, name="web-02", disk_map={"vda": ("/ds2/web-02-vda.qcow2", "qcow2")},
                            linked_targets=["vda"], hostname="web-02", record=record)
    assert len(root.findall("metadata/{%s}clone" % CLONE_NS)) == 1
    assert clones.clone_record(text) == dict(record, complete=True)


def test_clone_xml_adds_metadata_to_a_source_without_it():
    record = {"source": "plain", "snapshot": None, "linked": True}
    root, text = make_clone(src_xml=MINIMAL_XML, disk_map={"vda": ("/ds/c-vda.qcow2", "qcow2")}, linked_targets=["vda"],
                            record=record)
    assert len(root.findall("metadata")) == 1
    assert clones.clone_record(text) == dict(record, complete=True)


def test_clone_xml_makes_the_os_read_smbios_from_sysinfo_and_drops_nvram():
    root = make_clone()[0]
    os_el = root.find("os")
    assert [el.attrib for el in os_el.findall("smbios")] == [{"mode": "sysinfo"}]
    assert os_el.find("nvram") is None
    assert xmlutil.find_text(os_el, "loader") == "/usr/share/OVMF/OVMF_CODE_4M.fd"
    assert xmlutil.find_attr(os_el, "boot", "dev") == "hd"


def test_clone_xml_replaces_the_sysinfo_with_the_clone_seed():
    root, text = make_clone(hostname="web-01.example.com")
    sysinfo = root.findall("sysinfo")
    assert len(sysinfo) == 1
    assert sysinfo[0].get("type") == "smbios"
    entries = sysinfo[0].findall("system/entry")
    assert [(el.get("name"), el.text) for el in entries] == [("serial", "ds=nocloud;h=web-01.example.com;i=%s" % NEW_UUID)]
    assert "Old Corp" not in text and "stale" not in text


def test_clone_xml_writes_metadata_as_oem_strings_sorted_by_key():
    root = make_clone()[0]
    assert [el.text for el in root.findall("sysinfo/oemStrings/entry")] == [
        "kvmfusion:a.b=x=y", "kvmfusion:env=prod", "kvmfusion:role=web"]


def test_clone_xml_without_metadata_has_no_oem_strings():
    root = clones.clone_xml(xmlutil.parse(SOURCE_XML), "web-01", NEW_UUID, DISK_MAP, ["vda"], "web-01", {}, RECORD)
    assert root.find("sysinfo/oemStrings") is None
    assert xmlutil.find_text(root, "sysinfo/system/entry[@name='serial']") == "ds=nocloud;h=web-01;i=%s" % NEW_UUID


def test_clone_xml_escapes_metadata_values():
    root, text = make_clone(metadata={"note": "a<b & 'c'"})
    assert "a<b" not in text
    assert [el.text for el in root.findall("sysinfo/oemStrings/entry")] == ["kvmfusion:note=a<b & 'c'"]


def test_clone_xml_result_is_an_element_tree():
    root = clones.clone_xml(xmlutil.parse(MINIMAL_XML), "c", NEW_UUID, {"vda": ("/ds/c-vda.qcow2", "qcow2")}, ["vda"],
                            "c", None, {"source": "plain", "snapshot": None, "linked": True})
    assert isinstance(root, ET.Element)
    assert xmlutil.find_text(root, "name") == "c"
