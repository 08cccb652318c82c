# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import xmlutil

# What a user asks for.
DESIRED = """<domain type='kvm'>
  <name>vm1</name>
  <memory unit='KiB'>1048576</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/srv/ds1/vm1/vm1.qcow2'>
        <seclabel model='dac' relabel='no'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='dvs0' portgroup='vlan10'/>
      <model type='virtio'/>
    </interface>
    <interface type='ethernet'>
      <target dev='vnet7' managed='no'/>
      <model type='virtio'/>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source>
      <alias name='ua-gpu0'/>
    </hostdev>
  </devices>
</domain>"""

# The same domain as libvirt 9.0 returns it for a running guest.
LIVE = """<domain type='kvm' id='7'>
  <name>vm1</name>
  <uuid>2f6c0ad2-5a6e-4b8e-9a3a-0c8bd1c3a001</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu>2</vcpu>
  <os>
    <type machine='q35' arch='x86_64'>hvm</type>
  </os>
  <devices>
    <disk device='disk' type='file'>
      <driver type='qcow2' name='qemu'/>
      <source file='/srv/ds1/vm1/vm1.qcow2'>
        <seclabel relabel='no' model='dac'/>
      </source>
      <target bus='virtio' dev='vda'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='dvs0' portgroup='vlan10'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <interface type='ethernet'>
      <mac address='52:54:00:11:22:33'/>
      <target dev='vnet7' managed='no'/>
      <model type='virtio'/>
      <alias name='net1'/>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source>
      <alias name='ua-gpu0'/>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </hostdev>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'>
    <label>libvirt-2f6c0ad2-5a6e-4b8e-9a3a-0c8bd1c3a001</label>
    <imagelabel>libvirt-2f6c0ad2-5a6e-4b8e-9a3a-0c8bd1c3a001</imagelabel>
  </seclabel>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+64055:+994</label>
    <imagelabel>+64055:+994</imagelabel>
  </seclabel>
</domain>"""


# ---------------------------------------------------------------- parse / tostring


class TestParse:
    def test_string(self):
        root = xmlutil.parse("<domain><name>vm1</name></domain>")
        assert root.tag == "domain" and root.find("name").text == "vm1"

    def test_bytes_with_declaration_and_non_ascii(self):
        text = "<?xml version='1.0' encoding='UTF-8'?><domain><description>Prüfstand</description></domain>"
        root = xmlutil.parse(text.encode("utf-8"))
        assert root.find("description").text == "Prüfstand"

    def test_string_with_declaration(self):
        assert xmlutil.parse("<?xml version='1.0' encoding='UTF-8'?>\n<pool/>").tag == "pool"

    @pytest.mark.parametrize("text", [
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><a>&lol2;</a>',
        '<?xml version="1.0"?>\n<!DOCTYPE domain SYSTEM "file:///etc/passwd"><domain/>',
        '<!doctype a><a/>',
        '<a><!ENTITY x "y"></a>',
    ])
    def test_refuses_declarations(self, text):
        with pytest.raises(ValueError, match="^refusing XML with a DOCTYPE or ENTITY declaration$"):
            xmlutil.parse(text)

    def test_refuses_declarations_in_bytes(self):
        with pytest.raises(ValueError, match="DOCTYPE"):
            xmlutil.parse(b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/shadow">]><a>&e;</a>')

    @pytest.mark.parametrize("text", ["<domain>", "", "not xml", "<a></b>", "<a>\n<b>\n</a>"])
    def test_invalid_xml(self, text):
        with pytest.raises(ValueError) as exc:
            xmlutil.parse(text)
        assert str(exc.value).startswith("invalid XML: ")
        assert "\n" not in str(exc.value)

    def test_invalid_utf8(self):
        with pytest.raises(ValueError, match="^invalid XML: not UTF-8"):
            xmlutil.parse(b"<a>\xff</a>")

    def test_not_a_string(self):
        with pytest.raises(ValueError, match="^invalid XML: expected a string, got NoneType$"):
            xmlutil.parse(None)


class TestTostring:
    def test_unicode_round_trip(self):
        root = xmlutil.parse("<domain type='kvm'><description>Prüfstand &amp; Co</description></domain>")
        text = xmlutil.tostring(root)
        assert isinstance(text, str)
        assert text == '<domain type="kvm"><description>Prüfstand &amp; Co</description></domain>'

    def test_pretty_indents_a_copy(self):
        root = xmlutil.parse("<domain><name>vm1</name><devices><disk/></devices></domain>")
        assert xmlutil.tostring(root, pretty=True) == (
            "<domain>\n  <name>vm1</name>\n  <devices>\n    <disk />\n  </devices>\n</domain>")
        assert xmlutil.tostring(root) == "<domain><name>vm1</name><devices><disk /></devices></domain>"

    def test_escapes_values_set_through_the_api(self):
        root = ET.Element("domain")
        xmlutil.set_text(root, "description", "<b>&'\"")
        xmlutil.set_attr(root, "metadata", "note", "a'b\"c<")
        assert xmlutil.parse(xmlutil.tostring(root)).find("description").text == "<b>&'\""
        assert xmlutil.parse(xmlutil.tostring(root)).find("metadata").get("note") == "a'b\"c<"


# ---------------------------------------------------------------- reading


class TestFind:
    root = xmlutil.parse("""<pool type='dir'>
      <name> ds1 </name>
      <uuid></uuid>
      <target><path>/srv/ds1</path><permissions><mode>0711</mode></permissions></target>
      <source><host name='nas1'/><host name='nas2' port='2049'/></source>
    </pool>""")

    def test_find_text(self):
        assert xmlutil.find_text(self.root, "target/path") == "/srv/ds1"
        assert xmlutil.find_text(self.root, "target/permissions/mode") == "0711"

    def test_find_text_is_stripped(self):
        assert xmlutil.find_text(self.root, "name") == "ds1"

    @pytest.mark.parametrize("path", ["uuid", "source", "missing", "target/missing"])
    def test_find_text_default_when_absent_or_empty(self, path):
        assert xmlutil.find_text(self.root, path) is None
        assert xmlutil.find_text(self.root, path, default="x") == "x"

    def test_find_attr(self):
        assert xmlutil.find_attr(self.root, None, "type") == "dir"
        assert xmlutil.find_attr(self.root, ".", "type") == "dir"
        assert xmlutil.find_attr(self.root, "source/host", "name") == "nas1"
        assert xmlutil.find_attr(self.root, "source/host[@name='nas2']", "port") == "2049"

    def test_find_attr_default(self):
        assert xmlutil.find_attr(self.root, "source/host", "port") is None
        assert xmlutil.find_attr(self.root, "source/host", "port", default="2049") == "2049"
        assert xmlutil.find_attr(self.root, "missing", "port", default=0) == 0


# ---------------------------------------------------------------- editing


class TestEnsure:
    def test_returns_existing_without_duplicating(self):
        root = xmlutil.parse("<domain><os><type>hvm</type></os></domain>")
        elem = xmlutil.ensure(root, "os/type")
        assert elem is root.find("os/type")
        assert len(root.findall("os")) == 1 and len(root.findall("os/type")) == 1

    def test_creates_missing_chain(self):
        root = ET.Element("domain")
        elem = xmlutil.ensure(root, "cpu/topology")
        assert elem.tag == "topology"
        assert root.find("cpu/topology") is elem

    def test_predicates_become_attributes(self):
        root = ET.Element("domain")
        elem = xmlutil.ensure(root, "devices/disk[@device='cdrom'][@type=\"file\"]/target")
        disk = root.find("devices/disk")
        assert disk.attrib == {"device": "cdrom", "type": "file"}
        assert disk.find("target") is elem

    def test_predicate_selects_matching_sibling_or_adds_one(self):
        root = xmlutil.parse("<network><portgroup name='a'/></network>")
        assert xmlutil.ensure(root, "portgroup[@name='a']") is root.find("portgroup")
        created = xmlutil.ensure(root, "portgroup[@name='b']/vlan/tag[@id='10']")
        assert [pg.get("name") for pg in root.findall("portgroup")] == ["a", "b"]
        assert created.attrib == {"id": "10"}

    def test_predicate_value_with_slashes(self):
        root = ET.Element("domain")
        xmlutil.ensure(root, "devices/disk/source[@file='/srv/ds1/vm1.qcow2']")
        assert root.find("devices/disk/source").get("file") == "/srv/ds1/vm1.qcow2"
        assert len(list(root.iter())) == 4

    def test_namespaced_tag(self):
        root = ET.Element("domain")
        ns = "{https://kvmfusion.example/xmlns/vm/1.0}"
        elem = xmlutil.ensure(root, "metadata/%sinstance/%sha" % (ns, ns))
        assert root.find("metadata/%sinstance/%sha" % (ns, ns)) is elem

    def test_dot_steps_are_ignored(self):
        root = ET.Element("domain")
        assert xmlutil.ensure(root, "./os") is root.find("os")

    @pytest.mark.parametrize("path", ["", "/os", "os//type", "os/*", "os/..", "disk[1]", "disk[@a=b]",
                                      "devices/disk[@device='cdrom'", "1os"])
    def test_unsupported_paths(self, path):
        root = ET.Element("domain")
        with pytest.raises(ValueError, match="^unsupported path step"):
            xmlutil.ensure(root, path)


class TestSetters:
    def test_set_text_creates_and_overwrites(self):
        root = ET.Element("domain")
        xmlutil.set_text(root, "memory", 1024)
        assert root.find("memory").text == "1024"
        xmlutil.set_text(root, "memory", "2048")
        assert [m.text for m in root.findall("memory")] == ["2048"]

    def test_set_text_none_clears(self):
        root = xmlutil.parse("<domain><description>old</description></domain>")
        xmlutil.set_text(root, "description", None)
        assert root.find("description").text is None

    def test_set_text_on_root(self):
        root = ET.Element("name")
        xmlutil.set_text(root, None, "vm1")
        assert root.text == "vm1"

    def test_set_attr_creates_path(self):
        root = ET.Element("domain")
        xmlutil.set_attr(root, "memory", "unit", "KiB")
        xmlutil.set_attr(root, None, "type", "kvm")
        assert root.find("memory").get("unit") == "KiB"
        assert root.get("type") == "kvm"

    def test_set_attr_converts_to_string(self):
        root = ET.Element("domain")
        xmlutil.set_attr(root, "cpu/topology", "cores", 4)
        assert root.find("cpu/topology").get("cores") == "4"

    def test_set_attr_none_removes(self):
        root = xmlutil.parse("<domain><cpu mode='host-model' check='partial'/></domain>")
        xmlutil.set_attr(root, "cpu", "check", None)
        assert root.find("cpu").attrib == {"mode": "host-model"}

    def test_set_attr_none_does_not_create(self):
        root = ET.Element("domain")
        assert xmlutil.set_attr(root, "cpu/topology", "cores", None) is None
        assert len(root) == 0


class TestRemove:
    def test_removes_all_matches_and_counts(self):
        root = xmlutil.parse(LIVE)
        assert xmlutil.remove(root, ".//alias") == 4
        assert root.findall(".//alias") == []

    def test_relative_path(self):
        root = xmlutil.parse(LIVE)
        assert xmlutil.remove(root, "devices/interface") == 2
        assert root.find("devices/interface") is None
        assert root.find("devices/disk") is not None

    def test_nothing_to_remove(self):
        root = xmlutil.parse(LIVE)
        before = xmlutil.tostring(root)
        assert xmlutil.remove(root, "devices/watchdog") == 0
        assert xmlutil.tostring(root) == before

    def test_root_itself_is_not_removed(self):
        root = xmlutil.parse("<domain/>")
        assert xmlutil.remove(root, ".") == 0


# ---------------------------------------------------------------- comparing


class TestStripGenerated:
    def test_live_domain_equals_desired_after_stripping(self):
        stripped = xmlutil.strip_generated(xmlutil.parse(LIVE))
        assert xmlutil.canonical(stripped) == xmlutil.canonical(xmlutil.strip_generated(xmlutil.parse(DESIRED)))

    def test_removes_generated_values(self):
        stripped = xmlutil.strip_generated(xmlutil.parse(LIVE))
        assert "id" not in stripped.attrib
        assert stripped.find("uuid") is None
        assert stripped.find("seclabel") is None
        assert stripped.findall("devices/*/address") == []
        assert stripped.findall("devices/interface/mac") == []
        assert stripped.find("devices/interface[@type='network']/target") is None
        assert [a.get("name") for a in stripped.iter("alias")] == ["ua-gpu0"]

    def test_keeps_user_configuration(self):
        stripped = xmlutil.strip_generated(xmlutil.parse(LIVE))
        # host PCI address of a passed-through device is what the user chose
        assert stripped.find("devices/hostdev/source/address").get("bus") == "0x03"
        # per-disk seclabel is configuration, not a generated label
        assert stripped.find("devices/disk/source/seclabel").get("relabel") == "no"
        # a tap device the user manages keeps its name even though it looks generated
        assert stripped.find("devices/interface[@type='ethernet']/target").get("dev") == "vnet7"
        assert stripped.find("name").text == "vm1"

    def test_user_named_target_is_kept(self):
        iface = xmlutil.parse("<interface type='bridge'><target dev='vm1-eth0'/><source bridge='br0'/></interface>")
        assert xmlutil.strip_generated(iface).find("target").get("dev") == "vm1-eth0"

    @pytest.mark.parametrize("dev", ["vnet0", "vnet12", "tap3", "macvtap0"])
    def test_generated_target_names(self, dev):
        iface = xmlutil.parse("<interface type='bridge'><target dev='%s'/></interface>" % dev)
        assert xmlutil.strip_generated(iface).find("target") is None

    def test_does_not_modify_input(self):
        root = xmlutil.parse(LIVE)
        before = xmlutil.tostring(root)
        xmlutil.strip_generated(root)
        assert xmlutil.tostring(root) == before

    def test_single_device(self):
        disk = xmlutil.parse("""<disk type='file' device='disk'>
          <source file='/srv/ds1/data.qcow2'/><target dev='vdb' bus='virtio'/>
          <alias name='virtio-disk1'/>
          <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
        </disk>""")
        stripped = xmlutil.strip_generated(disk)
        assert stripped.find("address") is None and stripped.find("alias") is None
        assert stripped.find("target").get("dev") == "vdb"

    def test_other_documents_keep_uuid_and_addresses(self):
        net = xmlutil.parse("""<network><name>dvs0</name><uuid>5f0e2c1a-0000-4000-8000-000000000001</uuid>
          <forward mode='hostdev'><address type='pci' domain='0x0000' bus='0x04' slot='0x10' function='0x1'/>
          </forward></network>""")
        stripped = xmlutil.strip_generated(net)
        assert stripped.find("uuid") is not None
        assert stripped.find("forward/address") is not None

    def test_extra_paths(self):
        stripped = xmlutil.strip_generated(xmlutil.parse(LIVE), extra=("devices/hostdev", "vcpu"))
        assert stripped.find("devices/hostdev") is None and stripped.find("vcpu") is None
        assert stripped.find("devices/disk") is not None


class TestCanonical:
    def test_whitespace_and_attribute_order_do_not_matter(self):
        a = xmlutil.parse("<disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk>")
        b = xmlutil.parse("<disk device='disk'  type='file'>\n  <target bus='virtio' dev='vda'/>\n</disk>\n")
        assert xmlutil.canonical(a) == xmlutil.canonical(b)
        assert hash(xmlutil.canonical(a)) == hash(xmlutil.canonical(b))

    def test_text_is_stripped(self):
        assert xmlutil.canonical(xmlutil.parse("<name> vm1\n</name>")) == ("name", (), "vm1", ())

    def test_structure(self):
        assert xmlutil.canonical(xmlutil.parse("<memory unit='KiB'>1024<x/></memory>")) == (
            "memory", (("unit", "KiB"),), "1024", (("x", (), None, ()),))

    def test_child_order_matters(self):
        a = xmlutil.parse("<os><boot dev='hd'/><boot dev='cdrom'/></os>")
        b = xmlutil.parse("<os><boot dev='cdrom'/><boot dev='hd'/></os>")
        assert xmlutil.canonical(a) != xmlutil.canonical(b)

    def test_comments_are_ignored(self):
        a = ET.Element("domain")
        ET.SubElement(a, "name").text = "vm1"
        b = xmlutil.parse("<domain><name>vm1</name></domain>")
        a.insert(0, ET.Comment("managed by ansible"))
        assert xmlutil.canonical(a) == xmlutil.canonical(b)


class TestEqual:
    def test_live_and_desired(self):
        assert xmlutil.equal(LIVE, DESIRED)
        assert xmlutil.equal(xmlutil.parse(LIVE), xmlutil.parse(DESIRED))

    def test_generated_values_count_when_not_ignored(self):
        assert not xmlutil.equal(LIVE, DESIRED, ignore_generated=False)
        assert xmlutil.equal(LIVE, LIVE, ignore_generated=False)

    def test_real_difference(self):
        assert not xmlutil.equal(LIVE, DESIRED.replace("1048576", "2097152"))
        assert not xmlutil.equal(LIVE, DESIRED.replace("portgroup='vlan10'", "portgroup='vlan20'"))
        assert not xmlutil.equal(LIVE, DESIRED.replace("relabel='no'", "relabel='yes'"))

    def test_invalid_input(self):
        with pytest.raises(ValueError, match="^invalid XML"):
            xmlutil.equal("<domain>", DESIRED)


class TestToDict:
    def test_rendering(self):
        root = xmlutil.parse("""<pool type='dir'>
          <name>ds1</name>
          <capacity unit='bytes'>107374182400</capacity>
          <source><host name='nas1'/><host name='nas2'/></source>
          <target><path>/srv/ds1</path></target>
          <features/>
        </pool>""")
        assert xmlutil.to_dict(root) == {"pool": {
            "@type": "dir",
            "name": "ds1",
            "capacity": {"@unit": "bytes", "#text": "107374182400"},
            "source": {"host": [{"@name": "nas1"}, {"@name": "nas2"}]},
            "target": {"path": "/srv/ds1"},
            "features": None,
        }}

    def test_three_repeats_stay_one_list(self):
        root = xmlutil.parse("<os><boot dev='hd'/><boot dev='cdrom'/><boot dev='network'/></os>")
        assert xmlutil.to_dict(root) == {"os": {"boot": [{"@dev": "hd"}, {"@dev": "cdrom"}, {"@dev": "network"}]}}

    def test_json_serialisable(self):
        import json
        data = xmlutil.to_dict(xmlutil.strip_generated(xmlutil.parse(LIVE)))
        assert json.loads(json.dumps(data)) == data
