# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import re
import xml.etree.ElementTree as ET
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, images, power, vmspec
from ansible_collections.kvmfusion.compute.plugins.module_utils import domains, portsec, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client, LibvirtClientError

URI = "qemu:///system"
KIB = 1024
MIB = 1024 ** 2
GIB = 1024 ** 3
AGENT = "org.qemu.guest_agent.0"
VM_TAG = "{%s}vm" % vmspec.VM_NS
DS_PATH = "/var/lib/kvmfusion/datastores/ds1"

# The virDomain calls that change something; check mode must make none of them.
DOM_MUTATORS = (
    "create", "resume", "suspend", "managedSave", "managedSaveRemove", "shutdownFlags", "destroy", "reboot", "reset",
    "pMWakeup", "setVcpusFlags", "setMemoryFlags", "setSchedulerParametersFlags", "setMemoryParameters",
    "attachDeviceFlags", "detachDeviceFlags", "updateDeviceFlags", "undefineFlags", "setMetadata",
)
CONN_MUTATORS = ("defineXML", "defineXMLFlags", "createXML")


def params(**kw):
    base = dict(name="vm1")
    base.update(kw)
    return base


def spec(**kw):
    return vmspec.desired_state(params(**kw))


def rejected(p, *fragments):
    with pytest.raises(ValueError) as err:
        vmspec.desired_state(p)
    msg = str(err.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg
    return msg


def parsed(d, hypervisor="kvm", existing=None):
    return xmlutil.parse(vmspec.build_xml(d, hypervisor, existing))


def as_libvirt_would(xml):
    """What libvirt hands back after defining ``xml``: generated values added, machine aliases expanded."""
    root = xmlutil.parse(xml)
    ET.SubElement(root, "uuid").text = "6f1c3a52-0d1e-4b7a-9c55-2b1f0e9d8a71"
    typ = root.find("os/type")
    typ.set("machine", {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}.get(typ.get("machine"), typ.get("machine")))
    devices = root.find("devices")
    ET.SubElement(devices, "emulator").text = "/usr/bin/qemu-system-x86_64"
    ET.SubElement(devices, "controller", type="pci", index="0", model="pci-root")
    for slot, el in enumerate(devices.findall("interface"), start=3):
        if el.find("mac") is None:
            ET.SubElement(el, "mac", address="52:54:00:00:00:%02x" % slot)
        ET.SubElement(el, "address", type="pci", domain="0x0000", bus="0x00", slot="0x%02x" % slot, function="0x0")
    for g in devices.findall("graphics"):
        g.set("port", "-1")
    return xmlutil.tostring(root)


def fake_dom(state=5, saved=0, active=None, xml=None, live_xml=None):
    """A virDomain as the client sees it: state() -> [state, reason], XMLDesc(flags)."""
    dom = mock.MagicMock(name="virDomain")
    dom.name.return_value = "vm1"
    dom.state.return_value = [state, 1]
    dom.hasManagedSaveImage.return_value = saved
    dom.isActive.return_value = (1 if state in (1, 2, 3, 4, 7) else 0) if active is None else active
    if xml is not None:
        dom.XMLDesc.side_effect = lambda flags=0: xml if flags & constants.XML_INACTIVE else (live_xml or xml)
    return dom


def assert_untouched(fake_libvirt, dom):
    for name in DOM_MUTATORS:
        assert not getattr(dom, name).called, "check mode called virDomain.%s" % name
    for name in CONN_MUTATORS:
        assert not getattr(fake_libvirt.conn, name).called, "check mode called virConnect.%s" % name


# ---------------------------------------------------------------- desired_state: accepted

def test_only_what_the_user_set_is_managed():
    assert vmspec.desired_state(dict(name="vm1")) == {"name": "vm1"}
    assert vmspec.desired_state(dict(name="vm1", vcpus=None, memory=None, qos=None, nics=None)) == {"name": "vm1"}


@pytest.mark.parametrize("options, expected", [
    (dict(vcpus=2), dict(vcpus=2, max_vcpus=2)),
    (dict(vcpus="3"), dict(vcpus=3, max_vcpus=3)),
    (dict(vcpus=2, max_vcpus=8), dict(vcpus=2, max_vcpus=8)),
    (dict(vcpus=4, max_vcpus=4), dict(vcpus=4, max_vcpus=4)),
    (dict(max_vcpus=8), dict(max_vcpus=8)),
])
def test_vcpus_default_max_to_vcpus(options, expected):
    expected["name"] = "vm1"
    assert spec(**options) == expected


@pytest.mark.parametrize("options, memory, max_memory", [
    (dict(memory="2GiB"), 2 * GIB, 2 * GIB),
    (dict(memory="1G"), GIB, GIB),
    (dict(memory="512M", max_memory="4G"), 512 * MIB, 4 * GIB),
    (dict(memory=MIB), MIB, MIB),
    (dict(memory="1.5GiB"), 1536 * MIB, 1536 * MIB),
    (dict(memory="1GiB", max_memory="1GiB"), GIB, GIB),
])
def test_memory_sizes_take_units_and_default_max_memory(options, memory, max_memory):
    d = spec(**options)
    assert (d["memory"], d["max_memory"]) == (memory, max_memory)


NO_SEC = {"security_group": None, "bound_ips": []}


def test_nics_get_defaults_and_lowercase_macs():
    d = spec(nics=[dict(network="default"),
                   dict(bridge="br0", mac="52:54:00:AB:CD:EF", model="e1000"),
                   dict(network="lan", portgroup="vlan10", model="rtl8139", mac=None)])
    assert d["nics"] == [
        dict(network="default", bridge=None, model="virtio", portgroup=None, mac=None, **NO_SEC),
        dict(network=None, bridge="br0", model="e1000", portgroup=None, mac="52:54:00:ab:cd:ef", **NO_SEC),
        dict(network="lan", bridge=None, model="rtl8139", portgroup="vlan10", mac=None, **NO_SEC),
    ]


def test_empty_nic_list_is_managed():
    assert spec(nics=[])["nics"] == []


@pytest.mark.parametrize("qos, expected", [
    (dict(cpu_shares=2), dict(cpu_shares=2)),
    (dict(cpu_shares=262144), dict(cpu_shares=262144)),
    (dict(cpu_limit=1, cpu_reservation=100), dict(cpu_limit=1, cpu_reservation=100)),
    (dict(cpu_limit=100, cpu_reservation=1), dict(cpu_limit=100, cpu_reservation=1)),
    (dict(cpu_shares="512"), dict(cpu_shares=512)),
    (dict(memory_limit="3GiB", memory_soft_limit="1G"), dict(memory_limit=3 * GIB, memory_soft_limit=GIB)),
    (dict(memory_reservation="locked"), dict(memory_reservation="locked")),
    (dict(memory_reservation="none"), dict(memory_reservation="none")),
    (dict(cpu_shares=None, memory_limit=None), {}),
    ({}, {}),
])
def test_qos_ranges_accepted(qos, expected):
    assert spec(qos=qos)["qos"] == expected


def test_qos_memory_limit_may_equal_max_memory():
    d = spec(memory="1GiB", max_memory="2GiB", qos=dict(memory_limit="2GiB"))
    assert d["qos"]["memory_limit"] == d["max_memory"] == 2 * GIB


def test_qos_omitted_is_not_managed():
    assert "qos" not in spec(vcpus=1)


def test_other_accepted_options():
    d = spec(description="web server", firmware="uefi", graphics="spice", machine="pc-q35-7.2", cpu_model="Skylake-Client",
             cpu_features={"vmx": "require", "hle": "disable"}, kernel="/boot/vmlinuz", initrd="/boot/initrd.img",
             cmdline="console=ttyS0", boot_devices=["network", "hd"], disks=[dict(name="root")],
             guest_agent=0, template=1)
    assert d == dict(name="vm1", description="web server", firmware="uefi", graphics="spice", machine="pc-q35-7.2",
                     cpu_model="Skylake-Client", cpu_features={"vmx": "require", "hle": "disable"}, kernel="/boot/vmlinuz",
                     initrd="/boot/initrd.img", cmdline="console=ttyS0", boot_devices=["network", "hd"],
                     guest_agent=False, template=True)


# ---------------------------------------------------------------- desired_state: rejected

NIC = dict(network="default")


@pytest.mark.parametrize("options, fragment", [
    (dict(vcpus=0), "vcpus must be at least 1"),
    (dict(vcpus=-2), "vcpus must be at least 1"),
    (dict(vcpus=4, max_vcpus=2), "vcpus 4 is above max_vcpus 2"),
    (dict(memory="2GiB", max_memory="1GiB"), "memory 2147483648 is above max_memory 1073741824"),
    (dict(max_memory="1GiB"), "max_memory needs memory"),
    (dict(firmware="coreboot"), "firmware must be one of bios, uefi"),
    (dict(graphics="rdp"), "graphics must be one of none, vnc, spice"),
    (dict(machine="pc q35"), "invalid machine type 'pc q35'"),
    (dict(machine="pc'/><x"), "invalid machine type"),
    (dict(machine=""), "invalid machine type ''"),
    (dict(cpu_model="Skylake Client"), "invalid cpu_model 'Skylake Client'"),
    (dict(cpu_model="<model>"), "invalid cpu_model"),
    (dict(cpu_features={"vmx": "maybe"}), "cpu_features vmx=maybe is not a feature name with policy"),
    (dict(cpu_features={"bad feature": "require"}), "cpu_features bad feature=require"),
    (dict(kernel="boot/vmlinuz"), "kernel must be an absolute path"),
    (dict(kernel="/boot/../etc/shadow"), "kernel must be an absolute path"),
    (dict(kernel="/boot/vmlinuz", initrd="initrd.img"), "initrd must be an absolute path"),
    (dict(cmdline="console=ttyS0"), "cmdline needs kernel"),
    (dict(boot_devices=["floppy"]), "boot_devices entries are hd, cdrom or network, got 'floppy'"),
    (dict(boot_devices=["hd"], disks=[dict(name="data"), dict(name="root", boot_order=1)]),
     "boot_devices and a disk's boot_order cannot be combined"),
    (dict(nics=[dict(network="default", bridge="br0")]), "nic 0 needs exactly one of dvs, network or bridge"),
    (dict(nics=[NIC, dict(model="virtio")]), "nic 1 needs exactly one of dvs, network or bridge"),
    (dict(nics=[None]), "nic 0 needs exactly one of dvs, network or bridge"),
    (dict(nics=[dict(dvs="dvs1")]), "nic 0 on dvs dvs1 needs its portgroup"),
    (dict(nics=[dict(dvs="dvs1", portgroup="web", network="default")]), "nic 0 has dvs and also network or bridge"),
    (dict(nics=[dict(bridge="br0", mac="52:54:00:zz:00:01")]), "nic 0 mac '52:54:00:zz:00:01' is not a unicast MAC"),
    (dict(nics=[dict(bridge="br0", mac="52:54:00:00:01")]), "is not a unicast MAC"),
    (dict(nics=[dict(bridge="br0", mac="52-54-00-00-00-01")]), "is not a unicast MAC"),
    (dict(nics=[dict(bridge="br0", mac="01:00:5e:00:00:01")]), "nic 0 mac '01:00:5e:00:00:01' is not a unicast MAC"),
    (dict(nics=[dict(bridge="br0", mac="FF:FF:FF:FF:FF:FF")]), "is not a unicast MAC"),
    (dict(nics=[dict(network="default", mac="52:54:00:AA:BB:CC"), dict(bridge="br0", mac="52:54:00:aa:bb:cc")]),
     "duplicate NIC MAC 52:54:00:aa:bb:cc"),
    (dict(nics=[dict(network="default", model="ne2k_pci")]), "nic 0 model must be one of virtio, e1000, rtl8139"),
    (dict(qos=dict(cpu_shares=1)), "qos cpu_shares must be between 2 and 262144"),
    (dict(qos=dict(cpu_shares=262145)), "qos cpu_shares must be between 2 and 262144"),
    (dict(qos=dict(cpu_limit=0)), "qos cpu_limit must be between 1 and 100"),
    (dict(qos=dict(cpu_limit=101)), "qos cpu_limit must be between 1 and 100"),
    (dict(qos=dict(cpu_reservation=0)), "qos cpu_reservation must be between 1 and 100"),
    (dict(qos=dict(cpu_reservation=150)), "qos cpu_reservation must be between 1 and 100"),
    (dict(qos=dict(memory_reservation="half")), "qos memory_reservation is none or locked"),
    (dict(memory="1GiB", max_memory="2GiB", qos=dict(memory_limit="2047MiB")),
     "qos memory_limit is below max_memory (QEMU would be killed)"),
    (dict(description="a\x00b"), "description contains NUL"),
])
def test_bad_input_is_one_line_naming_the_vm(options, fragment):
    msg = rejected(params(**options), fragment)
    assert msg.startswith("VM 'vm1'")


@pytest.mark.parametrize("name, fragment", [
    ("a/b", "must not contain '/'"),
    ("a<b", "must not contain '<'"),
    ("..", "must not contain '..'"),
    ("", "must not be empty"),
])
def test_bad_names_are_one_line_naming_the_value(name, fragment):
    msg = rejected(dict(name=name), fragment)
    assert "VM name %r" % name in msg


@pytest.mark.parametrize("options, fragment", [
    (dict(memory=MIB - 1), "memory must be at least 1MiB"),
    (dict(memory="512KiB"), "memory must be at least 1MiB, got '512KiB'"),
    (dict(memory="1GiB", max_memory="512K"), "max_memory must be at least 1MiB"),
    (dict(qos=dict(memory_limit="64K")), "qos memory_limit must be at least 1MiB"),
    (dict(memory="1 XB"), "unknown unit 'XB'"),
])
def test_bad_sizes_are_one_line(options, fragment):
    rejected(params(**options), fragment)


def test_bad_sizes_name_the_vm():
    rejected(params(memory="512KiB"), "VM 'vm1'")


def test_max_vcpus_alone_must_be_at_least_one():
    rejected(params(max_vcpus=0), "VM 'vm1'", "max_vcpus")


# ---------------------------------------------------------------- effective_shares

@pytest.mark.parametrize("qos, shares", [
    ({}, None),
    (dict(cpu_limit=50), None),
    (dict(cpu_shares=2), 2),
    (dict(cpu_shares=512), 512),
    # reservation only: 1024 + ~102 per percent (the vm module documents "102 per percent")
    (dict(cpu_reservation=1), 1024 + 102),
    (dict(cpu_reservation=2), 1024 + 204),
    (dict(cpu_reservation=50), 1024 + 50 * 1024 // 10),
    (dict(cpu_reservation=100), 1024 + 10240),
    # both: the larger of the weight and the reservation's floor
    (dict(cpu_shares=512, cpu_reservation=10), 2048),
    (dict(cpu_shares=8192, cpu_reservation=10), 8192),
    (dict(cpu_shares=2048, cpu_reservation=10), 2048),
])
def test_effective_shares(qos, shares):
    assert vmspec.effective_shares(qos) == shares


def test_effective_shares_grows_with_the_reservation():
    values = [vmspec.effective_shares(dict(cpu_reservation=pct)) for pct in range(1, 101)]
    assert values == sorted(set(values))
    assert all(abs(v - (1024 + 102 * pct)) <= pct for pct, v in enumerate(values, start=1))


# ---------------------------------------------------------------- build_xml: a new VM

FULL = dict(description="web", vcpus=2, max_vcpus=4, memory="1GiB", max_memory="2GiB", kernel="/boot/vmlinuz",
            initrd="/boot/initrd.img", cmdline="console=ttyS0 root=/dev/vda",
            nics=[dict(network="lan", portgroup="vlan10"), dict(bridge="br0", mac="52:54:00:12:34:56", model="e1000")],
            qos=dict(cpu_shares=2048, cpu_limit=50, memory_limit="3GiB", memory_soft_limit="1GiB",
                     memory_reservation="locked"))


def test_new_vm_xml_carries_every_setting():
    root = parsed(spec(**FULL), "kvm")
    assert root.tag == "domain" and root.get("type") == "kvm"
    assert xmlutil.find_text(root, "name") == "vm1"
    assert xmlutil.find_text(root, "description") == "web"
    vcpu = root.find("vcpu")
    assert (vcpu.text, vcpu.get("current"), vcpu.get("placement")) == ("4", "2", "static")
    assert root.find("memory").attrib == {"unit": "KiB"} and root.find("memory").text == str(2 * GIB // KIB)
    assert root.find("currentMemory").get("unit") == "KiB" and root.find("currentMemory").text == str(GIB // KIB)
    typ = root.find("os/type")
    assert (typ.text, typ.get("arch"), typ.get("machine")) == ("hvm", "x86_64", "pc")
    assert xmlutil.find_text(root, "os/kernel") == "/boot/vmlinuz"
    assert xmlutil.find_text(root, "os/initrd") == "/boot/initrd.img"
    assert xmlutil.find_text(root, "os/cmdline") == "console=ttyS0 root=/dev/vda"
    assert root.find("os").get("firmware") is None
    assert root.find("features/acpi") is not None and root.find("features/apic") is not None
    cpu = root.find("cpu")
    assert cpu.get("mode") == "host-model" and cpu.find("model") is None
    # QoS
    assert xmlutil.find_text(root, "cputune/shares") == "2048"
    assert xmlutil.find_text(root, "cputune/period") == "100000"
    assert xmlutil.find_text(root, "cputune/quota") == "50000"
    hard, soft = root.find("memtune/hard_limit"), root.find("memtune/soft_limit")
    assert (hard.get("unit"), hard.text) == ("KiB", str(3 * GIB // KIB))
    assert (soft.get("unit"), soft.text) == ("KiB", str(GIB // KIB))
    assert root.find("memoryBacking/locked") is not None
    # devices
    channels = root.findall("devices/channel")
    assert [(c.get("type"), xmlutil.find_attr(c, "target", "type"), xmlutil.find_attr(c, "target", "name"))
            for c in channels] == [("unix", "virtio", AGENT)]
    graphics = root.findall("devices/graphics")
    assert len(graphics) == 1 and graphics[0].get("type") == "vnc" and graphics[0].get("listen") == "127.0.0.1"
    assert xmlutil.find_attr(graphics[0], "listen", "address") == "127.0.0.1"
    assert xmlutil.find_attr(root, "devices/video/model", "type") == "vga"
    nic0, nic1 = root.findall("devices/interface")
    assert nic0.get("type") == "network"
    assert nic0.find("source").attrib == {"network": "lan", "portgroup": "vlan10"}
    assert nic0.find("mac") is None
    assert xmlutil.find_attr(nic0, "model", "type") == "virtio"
    assert nic1.get("type") == "bridge"
    assert nic1.find("source").attrib == {"bridge": "br0"}
    assert xmlutil.find_attr(nic1, "mac", "address") == "52:54:00:12:34:56"
    assert xmlutil.find_attr(nic1, "model", "type") == "e1000"
    assert root.find("devices/controller[@type='scsi']").get("model") == "virtio-scsi"
    assert root.find("devices/serial") is not None and root.find("devices/console") is not None
    assert xmlutil.find_text(root, "devices/rng/backend") == "/dev/urandom"
    assert root.find("metadata") is None


def test_new_vm_defaults():
    root = parsed(spec(), "kvm")
    vcpu = root.find("vcpu")
    assert (vcpu.text, vcpu.get("current")) == ("1", None)
    assert root.find("memory").text == root.find("currentMemory").text == str(512 * 1024)
    assert xmlutil.find_attr(root, "os/type", "machine") == "pc"
    assert root.find("os/kernel") is None and root.find("os/boot") is None
    assert root.find("cputune") is None and root.find("memtune") is None and root.find("memoryBacking") is None
    assert root.find("devices/interface") is None
    assert xmlutil.find_attr(root, "devices/graphics", "type") == "vnc"
    assert root.find("devices/channel/target").get("name") == AGENT


def test_vcpus_equal_to_max_has_no_current():
    assert parsed(spec(vcpus=4)).find("vcpu").attrib == {"placement": "static"}


def test_qemu_gets_no_cpu_element_unless_a_model_is_given():
    root = parsed(spec(vcpus=1), "qemu")
    assert root.get("type") == "qemu"
    assert root.find("cpu") is None
    cpu = parsed(spec(cpu_model="Skylake-Client"), "qemu").find("cpu")
    assert (cpu.get("mode"), cpu.get("match"), xmlutil.find_text(cpu, "model")) == ("custom", "exact", "Skylake-Client")


@pytest.mark.parametrize("hypervisor", ["kvm", "qemu"])
def test_named_cpu_model_is_a_custom_model(hypervisor):
    cpu = parsed(spec(cpu_model="EPYC-Rome"), hypervisor).find("cpu")
    assert cpu.get("mode") == "custom"
    assert xmlutil.find_text(cpu, "model") == "EPYC-Rome"
    assert xmlutil.find_attr(cpu, "model", "fallback") == "forbid"


@pytest.mark.parametrize("mode, check", [("host-model", "partial"), ("host-passthrough", "none")])
def test_host_cpu_modes(mode, check):
    cpu = parsed(spec(cpu_model=mode)).find("cpu")
    assert (cpu.get("mode"), cpu.get("check")) == (mode, check)
    assert cpu.find("model") is None


def test_cpu_features_are_sorted_with_their_policies():
    cpu = parsed(spec(cpu_features={"vmx": "require", "hle": "disable", "avx": "optional"})).find("cpu")
    assert cpu.get("mode") == "host-model"
    assert [(f.get("name"), f.get("policy")) for f in cpu.findall("feature")] == [
        ("avx", "optional"), ("hle", "disable"), ("vmx", "require")]


def test_cpu_features_under_tcg_get_a_base_model():
    cpu = parsed(spec(cpu_features={"sse4.2": "require"}), "qemu").find("cpu")
    assert cpu.get("mode") == "custom"
    assert xmlutil.find_text(cpu, "model") == "qemu64"
    assert [(f.get("name"), f.get("policy")) for f in cpu.findall("feature")] == [("sse4.2", "require")]


def test_guest_agent_channel_can_be_left_out():
    root = parsed(spec(guest_agent=False))
    assert [c for c in root.findall("devices/channel") if xmlutil.find_attr(c, "target", "name") == AGENT] == []
    assert len(parsed(spec(guest_agent=True)).findall("devices/channel")) == 1


def test_graphics_none_has_no_display_and_spice_a_virtio_video():
    root = parsed(spec(graphics="none"))
    assert root.find("devices/graphics") is None and root.find("devices/video") is None
    root = parsed(spec(graphics="spice"))
    assert xmlutil.find_attr(root, "devices/graphics", "type") == "spice"
    assert xmlutil.find_attr(root, "devices/video/model", "type") == "virtio"


def test_uefi_and_boot_devices():
    os_el = parsed(spec(firmware="uefi", boot_devices=["cdrom", "hd"])).find("os")
    assert os_el.get("firmware") == "efi"
    assert [b.get("dev") for b in os_el.findall("boot")] == ["cdrom", "hd"]


def test_qos_reservation_becomes_shares_without_quota():
    root = parsed(spec(qos=dict(cpu_reservation=10)))
    assert xmlutil.find_text(root, "cputune/shares") == "2048"
    assert root.find("cputune/quota") is None and root.find("cputune/period") is None


def test_template_metadata():
    xml = vmspec.build_xml(spec(template=True), "kvm")
    root = xmlutil.parse(xml)
    meta = root.find("metadata/" + VM_TAG)
    assert meta is not None and meta.get("template") == "true"
    assert "xmlns:%s=\"%s\"" % (vmspec.VM_KEY, vmspec.VM_NS) in xml
    assert vmspec.is_template(xml)
    xml = vmspec.build_xml(spec(template=False), "kvm")
    assert xmlutil.parse(xml).find("metadata/" + VM_TAG) is None
    assert not vmspec.is_template(xml)


def test_a_dvs_nic_is_a_network_nic_in_its_port_group():
    d = spec(nics=[dict(dvs="dvs-prod", portgroup="web")])
    assert d["nics"] == [dict(network="dvs-prod", bridge=None, portgroup="web", model="virtio", mac=None, **NO_SEC)]
    src = parsed(d).find("devices/interface/source")
    assert src.attrib == {"network": "dvs-prod", "portgroup": "web"}


def test_port_security_of_a_nic_is_recorded_by_mac_and_reads_back():
    d = spec(nics=[dict(dvs="dvs-prod", portgroup="web", security_group="web", bound_ips=["192.0.2.7", "2001:db8::7"]),
                   dict(dvs="dvs-prod", portgroup="web", mac="52:54:00:00:00:aa")])
    root = parsed(d)
    mac = root.find("devices/interface/mac").get("address")  # chosen by the module: the record is keyed by it
    assert re.match(r"^52:54:00(:[0-9a-f]{2}){3}$", mac)
    assert portsec.ports_meta(root) == {mac: {"security_group": "web", "ips": ["192.0.2.7", "2001:db8::7"]}}
    view = vmspec.managed_view(xmlutil.tostring(root), d)
    assert view["nics"][0]["security_group"] == "web" and view["nics"][0]["bound_ips"] == ["192.0.2.7", "2001:db8::7"]
    assert view["nics"][1]["security_group"] is None
    # re-applied to the defined VM: nothing changes (the MAC the module chose is kept)
    again = vmspec.build_xml(d, "kvm", xmlutil.tostring(root))
    assert portsec.ports_meta(xmlutil.parse(again)) == portsec.ports_meta(root)
    assert vmspec.managed_view(again, d) == view


def test_leaving_the_security_group_removes_the_record():
    d = spec(nics=[dict(dvs="dvs-prod", portgroup="web", security_group="web")])
    xml = xmlutil.tostring(parsed(d))
    out = xmlutil.parse(vmspec.build_xml(spec(nics=[dict(dvs="dvs-prod", portgroup="web")]), "kvm", xml))
    assert portsec.ports_meta(out) == {} and out.find("metadata") is None


@pytest.mark.parametrize("nic, fragment", [
    (dict(network="default", security_group="web"), "apply to a NIC on a DVS port group"),
    (dict(dvs="d", portgroup="p", bound_ips=["10.0.0.300"]), "'10.0.0.300' is not an IP address"),
    (dict(dvs="d", portgroup="p", bound_ips=["224.0.0.1"]), "cannot be a NIC's own address"),
    (dict(dvs="d", portgroup="p", security_group="bad name"), "security group name must be"),
])
def test_bad_port_security_of_a_nic_is_one_line(nic, fragment):
    with pytest.raises(ValueError) as err:
        spec(nics=[nic])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_nic_element_without_mac_or_portgroup():
    el = vmspec.nic_element(dict(network="default", bridge=None, portgroup=None, model="virtio", mac=None))
    assert el.find("mac") is None and el.find("source").attrib == {"network": "default"}


# ---------------------------------------------------------------- managed_view(build_xml(d)) == d

ROUNDTRIP = [
    ("minimal", "kvm", dict()),
    ("full", "kvm", FULL),
    ("nics-without-mac", "kvm", dict(nics=[dict(network="default"), dict(bridge="br0"), dict(network="lan", portgroup="pg")])),
    ("nics-mixed-mac", "kvm", dict(nics=[dict(network="default", mac="52:54:00:AA:00:01"), dict(bridge="br0")])),
    ("no-nics", "kvm", dict(nics=[])),
    ("machine-pc", "kvm", dict(machine="pc")),
    ("machine-q35", "kvm", dict(machine="q35", firmware="uefi")),
    ("machine-versioned", "kvm", dict(machine="pc-q35-7.2")),
    ("bios", "kvm", dict(firmware="bios", boot_devices=["network", "hd"])),
    ("qos-reservation", "kvm", dict(qos=dict(cpu_reservation=30))),
    ("qos-reservation-wins", "kvm", dict(qos=dict(cpu_shares=512, cpu_reservation=30, cpu_limit=80))),
    ("qos-shares-win", "kvm", dict(qos=dict(cpu_shares=100000, cpu_reservation=30))),
    ("qos-memory", "kvm", dict(memory="1GiB", qos=dict(memory_limit="2GiB", memory_reservation="none"))),
    ("qos-empty", "kvm", dict(qos={})),
    ("cpu-custom", "kvm", dict(cpu_model="Skylake-Client", cpu_features={"vmx": "require", "hle": "disable"})),
    ("cpu-passthrough", "kvm", dict(cpu_model="host-passthrough")),
    ("cpu-features-only", "qemu", dict(cpu_features={"sse4.2": "require"})),
    ("tcg-model", "qemu", dict(cpu_model="qemu64", vcpus=2)),
    ("display", "kvm", dict(graphics="none", guest_agent=False, description="no display")),
    ("spice", "kvm", dict(graphics="spice", guest_agent=True)),
    ("kernel", "kvm", dict(kernel="/boot/vmlinuz", initrd="/boot/initrd", cmdline="console=ttyS0")),
    ("template", "kvm", dict(template=True, vcpus=1, max_vcpus=2)),
    ("not-template", "kvm", dict(template=False)),
]


@pytest.mark.parametrize("hypervisor, options", [r[1:] for r in ROUNDTRIP], ids=[r[0] for r in ROUNDTRIP])
def test_managed_view_reads_back_the_spec(hypervisor, options):
    d = spec(**copy.deepcopy(options))
    xml = vmspec.build_xml(d, hypervisor)
    assert vmspec.managed_view(xml, d) == d
    # and still after libvirt added its generated values (MACs, PCI addresses, expanded machine type)
    assert vmspec.managed_view(as_libvirt_would(xml), d) == d


def test_managed_view_reads_the_hypervisor_when_named():
    d = spec(vcpus=1)
    d["hypervisor"] = "qemu"
    assert vmspec.managed_view(vmspec.build_xml(d, "qemu"), d) == d
    assert vmspec.managed_view(vmspec.build_xml(d, "kvm"), d)["hypervisor"] == "kvm"


def test_nic_without_mac_reads_back_without_the_mac_libvirt_gave_it():
    d = spec(nics=[dict(network="default"), dict(bridge="br0", mac="52:54:00:00:00:99")])
    xml = as_libvirt_would(vmspec.build_xml(d, "kvm"))
    assert [xmlutil.find_attr(el, "mac", "address") for el in xmlutil.parse(xml).findall("devices/interface")] == [
        "52:54:00:00:00:03", "52:54:00:00:00:99"]
    assert [n["mac"] for n in vmspec.managed_view(xml, d)["nics"]] == [None, "52:54:00:00:00:99"]


def test_extra_nics_read_back_with_their_macs():
    two = spec(nics=[dict(network="default"), dict(bridge="br0")])
    one = spec(nics=[dict(network="default")])
    view = vmspec.managed_view(as_libvirt_would(vmspec.build_xml(two, "kvm")), one)
    assert [n["mac"] for n in view["nics"]] == [None, "52:54:00:00:00:04"]
    assert view != one


@pytest.mark.parametrize("alias, expanded", [("pc", "pc-i440fx-7.2"), ("q35", "pc-q35-7.2")])
def test_machine_alias_matches_the_expanded_machine_type(alias, expanded):
    d = spec(machine=alias)
    root = parsed(d)
    root.find("os/type").set("machine", expanded)
    assert vmspec.managed_view(xmlutil.tostring(root), d) == d
    # another family is a difference
    root.find("os/type").set("machine", "pc-q35-7.2" if alias == "pc" else "pc-i440fx-7.2")
    assert vmspec.managed_view(xmlutil.tostring(root), d)["machine"] != alias


def test_managed_view_sees_changes():
    d = spec(vcpus=2, memory="1GiB", graphics="vnc", nics=[dict(network="default")], qos=dict(cpu_reservation=10))
    xml = vmspec.build_xml(d, "kvm")
    other = spec(vcpus=3, memory="2GiB", graphics="spice", nics=[dict(bridge="br0")], qos=dict(cpu_reservation=20))
    view = vmspec.managed_view(xml, other)
    assert view["vcpus"] == 2 and view["max_vcpus"] == 2
    assert view["memory"] == view["max_memory"] == GIB
    assert view["graphics"] == "vnc"
    assert view["nics"][0]["network"] == "default"
    # a weight that is not this reservation's floor reads back as plain shares
    assert view["qos"] == dict(cpu_shares=2048)


def test_managed_view_reads_memory_in_other_units():
    d = spec(memory="1GiB")
    root = parsed(d)
    root.find("memory").set("unit", "MiB")
    root.find("memory").text = "1024"
    root.find("currentMemory").set("unit", "bytes")
    root.find("currentMemory").text = str(GIB)
    assert vmspec.managed_view(xmlutil.tostring(root), d) == d


def test_uefi_by_loader_reads_back_as_uefi():
    d = spec(firmware="uefi")
    root = parsed(spec(firmware="bios"))
    ET.SubElement(root.find("os"), "loader", readonly="yes", type="pflash").text = "/usr/share/OVMF/OVMF_CODE.fd"
    assert vmspec.managed_view(xmlutil.tostring(root), d)["firmware"] == "uefi"


@pytest.mark.parametrize("options", [dict(memory="1GB"), dict(memory=MIB + 1), dict(memory="2GiB", qos=dict(memory_limit="3GB"))])
def test_sizes_that_are_not_whole_kib_read_back(options):
    d = spec(**options)
    assert vmspec.managed_view(vmspec.build_xml(d, "kvm"), d) == d


@pytest.mark.parametrize("text", ["", " padded "])
def test_description_reads_back_verbatim(text):
    d = spec(description=text)
    assert vmspec.managed_view(vmspec.build_xml(d, "kvm"), d) == d


# ---------------------------------------------------------------- build_xml on an existing domain

EXISTING = """<domain type='kvm'>
  <name>vm1</name>
  <uuid>6f1c3a52-0d1e-4b7a-9c55-2b1f0e9d8a71</uuid>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/><vmport state='off'/></features>
  <cpu mode='host-model' check='partial'/>
  <clock offset='utc'/>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/kvmfusion/datastores/ds1/vm1-root'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <controller type='scsi' index='0' model='virtio-scsi'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
    </controller>
    <controller type='virtio-serial' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>
    </controller>
    <interface type='network'>
      <mac address='52:54:00:11:22:33'/>
      <source network='default'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:44:55:66'/>
      <source bridge='br0'/>
      <model type='e1000'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
    </interface>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video>
      <model type='vga' vram='16384' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </video>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x08' function='0x0'/>
    </memballoon>
  </devices>
</domain>"""


def interfaces(root):
    return root.findall("devices/interface")


def test_an_empty_spec_changes_nothing_managed():
    root = parsed(spec(), "kvm", EXISTING)
    assert xmlutil.equal(root, xmlutil.parse(EXISTING), ignore_generated=False)


def test_existing_domain_keeps_what_is_not_managed():
    root = parsed(spec(vcpus=3, max_vcpus=4, graphics="spice"), "kvm", EXISTING)
    assert xmlutil.find_text(root, "uuid") == "6f1c3a52-0d1e-4b7a-9c55-2b1f0e9d8a71"
    assert xmlutil.find_text(root, "on_crash") == "destroy"
    assert root.find("features/vmport") is not None
    assert xmlutil.find_attr(root, "os/type", "machine") == "pc-i440fx-7.2"
    assert [b.get("dev") for b in root.findall("os/boot")] == ["hd"]
    disk = root.find("devices/disk")
    assert xmlutil.find_attr(disk, "source", "file") == DS_PATH + "/vm1-root"
    assert xmlutil.find_attr(disk, "address", "slot") == "0x04"
    assert [xmlutil.find_attr(el, "mac", "address") for el in interfaces(root)] == ["52:54:00:11:22:33", "52:54:00:44:55:66"]
    assert [xmlutil.find_attr(el, "address", "slot") for el in interfaces(root)] == ["0x03", "0x07"]
    assert len(root.findall("devices/controller")) == 4
    assert len(root.findall("devices/channel")) == 1
    # no second set of the devices a new VM gets
    assert root.find("devices/serial") is None and root.find("devices/rng") is None
    assert len(root.findall("devices/memballoon")) == 1
    # the managed parts did change
    assert (root.find("vcpu").text, root.find("vcpu").get("current")) == ("4", "3")
    assert [g.get("type") for g in root.findall("devices/graphics")] == ["spice"]
    assert [xmlutil.find_attr(v, "model", "type") for v in root.findall("devices/video")] == ["virtio"]


def test_existing_vcpus_equal_to_max_drop_current():
    vcpu = parsed(spec(vcpus=4), "kvm", EXISTING).find("vcpu")
    assert (vcpu.text, vcpu.get("current")) == ("4", None)


def test_existing_guest_agent_is_removed_and_not_duplicated():
    root = parsed(spec(guest_agent=False), "kvm", EXISTING)
    assert root.findall("devices/channel") == []
    root = parsed(spec(guest_agent=True), "kvm", EXISTING)
    assert len(root.findall("devices/channel")) == 1


def test_existing_nic_without_spec_mac_keeps_its_mac():
    d = spec(nics=[dict(bridge="br1"), dict(bridge="br0", model="e1000")])
    root = parsed(d, "kvm", EXISTING)
    nic0, nic1 = interfaces(root)
    assert nic0.get("type") == "bridge" and xmlutil.find_attr(nic0, "source", "bridge") == "br1"
    assert xmlutil.find_attr(nic0, "mac", "address") == "52:54:00:11:22:33"
    assert xmlutil.find_attr(nic0, "model", "type") == "virtio"
    # the unchanged NIC is left alone, PCI address included
    assert xmlutil.find_attr(nic1, "address", "slot") == "0x07"
    assert vmspec.managed_view(xmlutil.tostring(root), d) == d


def test_existing_nics_are_replaced_by_position():
    d = spec(nics=[dict(network="default"), dict(network="lan", portgroup="web", mac="52:54:00:AA:BB:CC")])
    before = list(xmlutil.parse(EXISTING).find("devices"))
    root = parsed(d, "kvm", EXISTING)
    devices = root.find("devices")
    nic0, nic1 = interfaces(root)
    # first matches the spec: untouched
    assert xmlutil.find_attr(nic0, "address", "slot") == "0x03"
    # second replaced in place: same position among the devices, the spec's MAC, no stale address
    assert list(devices).index(nic1) == [i for i, el in enumerate(before) if el.tag == "interface"][1]
    assert nic1.get("type") == "network"
    assert nic1.find("source").attrib == {"network": "lan", "portgroup": "web"}
    assert xmlutil.find_attr(nic1, "mac", "address") == "52:54:00:aa:bb:cc"
    assert nic1.find("address") is None
    assert vmspec.managed_view(xmlutil.tostring(root), d) == d


def test_existing_extra_nics_are_removed():
    root = parsed(spec(nics=[dict(network="default")]), "kvm", EXISTING)
    assert [xmlutil.find_attr(el, "mac", "address") for el in interfaces(root)] == ["52:54:00:11:22:33"]
    assert interfaces(parsed(spec(nics=[]), "kvm", EXISTING)) == []


def test_existing_nics_are_appended():
    root = parsed(spec(nics=[dict(network="default"), dict(bridge="br0", model="e1000"), dict(bridge="br9")]), "kvm", EXISTING)
    assert [xmlutil.find_attr(el, "source", "bridge") for el in interfaces(root)] == [None, "br0", "br9"]
    assert interfaces(root)[2].find("mac") is None


def test_existing_nics_are_kept_when_nics_are_not_managed():
    assert len(interfaces(parsed(spec(vcpus=1), "kvm", EXISTING))) == 2


def test_machine_family_change_lets_libvirt_lay_out_pci_again():
    root = parsed(spec(machine="q35"), "kvm", EXISTING)
    assert xmlutil.find_attr(root, "os/type", "machine") == "q35"
    controllers = root.findall("devices/controller")
    assert sorted(c.get("type") for c in controllers) == ["scsi", "usb", "virtio-serial"]  # a USB controller (and its model) is the user's: kept
    assert [a for a in root.iter("address") if a.get("type") == "pci"] == []
    # devices themselves stay, as do non-PCI addresses
    assert xmlutil.find_attr(root, "devices/disk/source", "file") == DS_PATH + "/vm1-root"
    assert len(interfaces(root)) == 2
    assert xmlutil.find_attr(root, "devices/channel/address", "type") == "virtio-serial"


@pytest.mark.parametrize("machine", ["pc", "pc-i440fx-7.2"])
def test_same_machine_family_keeps_the_pci_layout(machine):
    root = parsed(spec(machine=machine), "kvm", EXISTING)
    assert len(root.findall("devices/controller")) == 4
    pci = [a.attrib for a in root.iter("address") if a.get("type") == "pci"]
    assert len(pci) == 8 and pci == [a.attrib for a in xmlutil.parse(EXISTING).iter("address") if a.get("type") == "pci"]


def test_same_machine_family_keeps_the_machine_version():
    root = parsed(spec(machine="pc", description="x"), "kvm", EXISTING)
    assert xmlutil.find_attr(root, "os/type", "machine") == "pc-i440fx-7.2"


def test_machine_family_change_keeps_host_device_sources():
    existing = xmlutil.parse(EXISTING)
    vf = ET.SubElement(existing.find("devices"), "interface", type="hostdev", managed="yes")
    ET.SubElement(ET.SubElement(vf, "source"), "address", type="pci", domain="0x0000", bus="0x3b", slot="0x10",
                  function="0x2")
    root = parsed(spec(machine="q35"), "kvm", xmlutil.tostring(existing))
    assert root.find("devices/interface[@type='hostdev']/source/address") is not None


def test_firmware_bios_removes_the_uefi_loader():
    existing = xmlutil.parse(EXISTING)
    os_el = existing.find("os")
    os_el.set("firmware", "efi")
    ET.SubElement(os_el, "loader", readonly="yes", type="pflash").text = "/usr/share/OVMF/OVMF_CODE.fd"
    ET.SubElement(os_el, "nvram").text = "/var/lib/libvirt/qemu/nvram/vm1_VARS.fd"
    d = spec(firmware="bios")
    root = parsed(d, "kvm", xmlutil.tostring(existing))
    assert root.find("os").get("firmware") is None
    assert root.find("os/loader") is None and root.find("os/nvram") is None
    assert vmspec.managed_view(xmlutil.tostring(root), d) == d


def test_kernel_without_cmdline_removes_the_old_cmdline():
    existing = vmspec.build_xml(spec(kernel="/boot/a", cmdline="quiet"), "kvm")
    root = parsed(spec(kernel="/boot/b"), "kvm", existing)
    assert xmlutil.find_text(root, "os/kernel") == "/boot/b"
    assert root.find("os/cmdline") is None


def test_qos_is_replaced_and_removed():
    existing = vmspec.build_xml(spec(qos=dict(cpu_shares=4096, cpu_limit=50, memory_limit="4GiB",
                                              memory_reservation="locked")), "kvm")
    root = parsed(spec(qos=dict(cpu_shares=100)), "kvm", existing)
    assert [(el.tag, el.text) for el in root.find("cputune")] == [("shares", "100")]
    assert root.find("memtune") is None and root.find("memoryBacking") is None
    assert len(root.findall("cputune")) == 1


def test_qos_keeps_other_memory_backing():
    existing = xmlutil.parse(EXISTING)
    ET.SubElement(ET.SubElement(existing, "memoryBacking"), "hugepages")
    root = parsed(spec(qos=dict(memory_reservation="locked")), "kvm", xmlutil.tostring(existing))
    assert root.find("memoryBacking/hugepages") is not None and root.find("memoryBacking/locked") is not None
    root = parsed(spec(qos=dict(memory_reservation="none")), "kvm", xmlutil.tostring(root))
    assert root.find("memoryBacking/hugepages") is not None and root.find("memoryBacking/locked") is None


def test_qos_keeps_vcpu_pinning():
    existing = xmlutil.parse(EXISTING)
    ET.SubElement(ET.SubElement(existing, "cputune"), "vcpupin", vcpu="0", cpuset="2")
    root = parsed(spec(qos=dict(cpu_shares=2048)), "kvm", xmlutil.tostring(existing))
    assert root.find("cputune/vcpupin") is not None


def test_cpu_model_keeps_the_topology():
    existing = xmlutil.parse(EXISTING)
    ET.SubElement(existing.find("cpu"), "topology", sockets="1", dies="1", cores="2", threads="2")
    root = parsed(spec(cpu_model="Skylake-Client"), "kvm", xmlutil.tostring(existing))
    assert root.find("cpu/topology") is not None


def test_max_vcpus_alone_keeps_the_current_vcpus():
    vcpu = parsed(spec(max_vcpus=8), "kvm", EXISTING).find("vcpu")
    assert (vcpu.text, vcpu.get("current")) == ("8", "2")


def test_template_flag_is_replaced_in_existing_metadata():
    existing = xmlutil.parse(EXISTING)
    meta = ET.SubElement(existing, "metadata")
    ET.SubElement(meta, "{https://example.org/other}app", name="keep")
    ET.SubElement(meta, VM_TAG, template="true")
    root = parsed(spec(template=False), "kvm", xmlutil.tostring(existing))
    assert root.find("metadata/" + VM_TAG) is None
    assert root.find("metadata/{https://example.org/other}app") is not None
    root = parsed(spec(template=True), "kvm", xmlutil.tostring(root))
    assert len(root.findall("metadata/" + VM_TAG)) == 1


def test_hypervisor_of_an_existing_domain_is_set():
    assert parsed(spec(), "qemu", EXISTING).get("type") == "qemu"


# ---------------------------------------------------------------- PowerManager

# virDomainState numbers and whether a managed save image exists
POWER = {"running": (1, 0), "paused": (3, 0), "shutoff": (5, 0), "suspended": (5, 1), "crashed": (6, 0),
         "blocked": (2, 0), "shutdown": (4, 0), "pmsuspended": (7, 0)}


@pytest.fixture
def client(fake_libvirt):
    # no libvirt network here is a DVS: NICs are defined as declared (see test_network.py for DVS NICs)
    fake_libvirt.conn.networkLookupByName.side_effect = fake_libvirt.libvirtError(
        "Network not found", fake_libvirt.VIR_ERR_NO_NETWORK)
    return Client(URI)


def converge(client, current, want, check_mode=True, template=False, **kw):
    dom = fake_dom(*POWER[current])
    mgr = power.PowerManager(client, check_mode=check_mode, **kw)
    mgr.ensure("vm1", dom, want, template=template)
    return mgr.actions, dom


def _stop(client, dom):
    mgr = power.PowerManager(client)
    mgr.ensure("vm1", dom, "stopped")
    return mgr.actions


@pytest.mark.parametrize("current, want, actions", [
    ("running", "running", []),
    ("shutoff", "running", ["start"]),
    ("crashed", "running", ["start"]),
    ("suspended", "running", ["restore from disk"]),
    ("paused", "running", ["resume"]),
    ("blocked", "running", []),
    ("shutdown", "running", []),
    ("shutoff", "paused", ["start", "pause"]),
    ("suspended", "paused", ["start", "pause"]),
    ("running", "paused", ["pause"]),
    ("paused", "paused", []),
    ("running", "suspended", ["save to disk"]),
    ("paused", "suspended", ["save to disk"]),
    ("suspended", "suspended", []),
    ("running", "stopped", ["shut down"]),
    ("paused", "stopped", ["shut down"]),
    ("shutoff", "stopped", []),
    ("running", "restarted", ["reboot"]),
    ("paused", "restarted", ["resume", "reboot"]),
    ("shutoff", "restarted", ["start"]),
    ("running", "present", []),
    ("shutoff", "present", []),
])
def test_power_actions_in_check_mode(fake_libvirt, client, current, want, actions):
    got, dom = converge(client, current, want)
    assert got == actions
    assert_untouched(fake_libvirt, dom)
    dom.state.assert_called_once_with(0)


def test_state_of_reads_managed_save_only_when_shut_off(client):
    dom = fake_dom(*POWER["running"])
    assert power.state_of(client, dom, "vm1") == "running"
    dom.hasManagedSaveImage.assert_not_called()
    dom = fake_dom(*POWER["suspended"])
    assert power.state_of(client, dom, "vm1") == "suspended"
    dom.hasManagedSaveImage.assert_called_once_with(0)


@pytest.mark.parametrize("state, name", [(0, "nostate"), (2, "running"), (4, "running"), (7, "pmsuspended"), (9, "9")])
def test_state_of_folds_transient_states(client, state, name):
    assert power.state_of(client, fake_dom(state), "vm1") == name


def test_only_a_running_or_paused_vm_can_be_suspended(client):
    with pytest.raises(ValueError) as err:
        converge(client, "shutoff", "suspended")
    assert str(err.value) == "VM 'vm1' is shutoff: only a running or paused VM can be suspended to disk"


@pytest.mark.parametrize("want", ["running", "restarted", "paused", "suspended"])
def test_templates_are_never_started(client, want):
    with pytest.raises(ValueError) as err:
        converge(client, "shutoff", want, template=True)
    assert str(err.value) == "VM 'vm1' is a template: templates cannot be started (clone it)"


@pytest.mark.parametrize("want", ["stopped", "present"])
def test_templates_may_be_stopped(client, want):
    assert converge(client, "shutoff", want, template=True)[0] == []


@pytest.mark.parametrize("current, want, method, args", [
    ("shutoff", "running", "create", ()),
    ("suspended", "running", "create", ()),
    ("paused", "running", "resume", ()),
    ("running", "paused", "suspend", ()),
    ("running", "suspended", "managedSave", (0,)),
    ("running", "restarted", "reboot", (0,)),
])
def test_power_actions_call_libvirt(client, current, want, method, args):
    dom = converge(client, current, want, check_mode=False)[1]
    getattr(dom, method).assert_called_once_with(*args)


def test_a_suspended_vm_is_stopped_only_with_force(fake_libvirt, client):
    """Stopping a VM suspended to disk throws its saved memory away: not without force."""
    with pytest.raises(ValueError) as err:
        converge(client, "suspended", "stopped", check_mode=False)
    assert "suspended to disk" in str(err.value) and "force=true" in str(err.value)
    dom = converge(client, "suspended", "stopped", check_mode=False, force=True)[1]
    dom.managedSaveRemove.assert_called_once_with(0)
    assert converge(client, "suspended", "stopped", force=True)[0] == ["discard saved state"]


def test_paused_restart_resumes_and_reboots_through_the_guest(client):
    dom = converge(client, "paused", "restarted", check_mode=False)[1]
    assert [c[0] for c in dom.mock_calls if c[0] in ("reset", "resume", "reboot")] == ["resume", "reboot"]


def test_paused_restart_with_force_is_a_reset_then_resume(client):
    dom = converge(client, "paused", "restarted", check_mode=False, force=True)[1]
    assert [c[0] for c in dom.mock_calls if c[0] in ("reset", "resume", "reboot")] == ["reset", "resume"]


def test_shutdown_asks_agent_and_acpi_and_waits(client):
    dom = fake_dom(*POWER["running"])
    dom.isActive.side_effect = [1, 0]
    assert _stop(client, dom) == ["shut down"]
    assert dom.isActive.call_count == 2
    dom.shutdownFlags.assert_called_once_with(constants.SHUTDOWN_AGENT | constants.SHUTDOWN_ACPI)
    dom.destroy.assert_not_called()


def test_shutdown_falls_back_to_acpi(fake_libvirt, client):
    dom = fake_dom(*POWER["running"])
    dom.shutdownFlags.side_effect = [fake_libvirt.libvirtError("Guest agent is not responding", 86), 0]
    dom.isActive.side_effect = [0]
    _stop(client, dom)
    flags = [c.args for c in dom.shutdownFlags.call_args_list]
    assert flags == [(constants.SHUTDOWN_AGENT | constants.SHUTDOWN_ACPI,), (constants.SHUTDOWN_ACPI,)]


def test_paused_vm_is_resumed_before_shutdown(client):
    dom = fake_dom(*POWER["paused"])
    dom.isActive.side_effect = [0]
    _stop(client, dom)
    assert [c[0] for c in dom.mock_calls if c[0] in ("resume", "shutdownFlags")] == ["resume", "shutdownFlags"]


def test_shutdown_timeout_without_force_is_an_error(client):
    with pytest.raises(ValueError) as err:
        converge(client, "running", "stopped", check_mode=False, shutdown_timeout=0)
    assert "VM 'vm1' did not shut down within 0s" in str(err.value) and "force=true" in str(err.value)


def test_shutdown_timeout_with_force_powers_off(client):
    got, dom = converge(client, "running", "stopped", check_mode=False, shutdown_timeout=0, force=True)
    assert got == ["shut down", "power off (shutdown timed out)"]
    dom.destroy.assert_called_once_with()


def test_a_guest_suspended_to_ram_is_woken_not_resumed(client):
    dom = converge(client, "pmsuspended", "running", check_mode=False)[1]
    dom.resume.assert_not_called()


# ---------------------------------------------------------------- VmManager.present

def no_domain(fake_libvirt):
    fake_libvirt.conn.lookupByName.side_effect = fake_libvirt.libvirtError(
        "Domain not found: no domain with matching name 'vm1'", fake_libvirt.VIR_ERR_NO_DOMAIN)


def existing(fake_libvirt, d, running=False, hypervisor="kvm"):
    xml = as_libvirt_would(vmspec.build_xml(d, hypervisor))
    dom = fake_dom(1 if running else 5, xml=xml)
    fake_libvirt.conn.lookupByName.return_value = dom
    return dom


def vm_manager(client, check_mode=True):
    return domains.VmManager(client, check_mode=check_mode)


def test_present_defines_a_missing_vm_in_check_mode(fake_libvirt, client):
    no_domain(fake_libvirt)
    d = spec(**FULL)
    mgr = vm_manager(client)
    before, after, system_disk = mgr.present(d, "kvm", [], "present")
    assert mgr.actions[0] == "define"
    assert mgr.actions == ["define"]
    assert (before, after, system_disk) == (None, d, None)
    assert mgr.reboot_required is False
    assert not fake_libvirt.conn.defineXMLFlags.called


def test_present_defines_a_missing_vm(fake_libvirt, client):
    no_domain(fake_libvirt)
    d = spec(vcpus=2, nics=[dict(network="default")])
    mgr = vm_manager(client, check_mode=False)
    mgr.present(d, "qemu", [], "present")
    assert mgr.actions == ["define"]
    fake_libvirt.conn.defineXMLFlags.assert_called_once_with(vmspec.build_xml(d, "qemu"), 0)


def test_a_missing_template_is_not_defined_to_run(fake_libvirt, client):
    no_domain(fake_libvirt)
    with pytest.raises(ValueError) as err:
        vm_manager(client).present(spec(template=True), "kvm", [], "running")
    assert "VM 'vm1' is a template" in str(err.value)


@pytest.mark.parametrize("options", [FULL, dict(), dict(machine="q35", nics=[dict(bridge="br0")], qos=dict(cpu_reservation=5))],
                         ids=["full", "minimal", "q35"])
@pytest.mark.parametrize("running", [False, True])
def test_present_on_an_identical_vm_does_nothing(fake_libvirt, client, options, running):
    d = spec(**options)
    dom = existing(fake_libvirt, d, running=running)
    mgr = vm_manager(client)
    before, after, system_disk = mgr.present(d, "kvm", [], "present")
    assert system_disk is None
    assert mgr.actions == []
    assert before == after == d
    assert mgr.reboot_required is False
    # read with its secrets: a redefinition from it would keep a console password
    dom.XMLDesc.assert_called_with(constants.XML_INACTIVE | constants.XML_SECURE)
    assert_untouched(fake_libvirt, dom)


def test_more_vcpus_within_max_are_set_live(fake_libvirt, client):
    dom = existing(fake_libvirt, spec(vcpus=1, max_vcpus=4), running=True)
    mgr = vm_manager(client)
    before, after = mgr.present(spec(vcpus=2, max_vcpus=4), "kvm", [], "running")[:2]
    assert mgr.actions == ["update vcpus", "set 2 vCPUs live"]
    assert mgr.reboot_required is False
    assert (before["vcpus"], after["vcpus"]) == (1, 2)
    assert_untouched(fake_libvirt, dom)


def test_more_vcpus_within_max_are_defined_and_set_live(fake_libvirt, client):
    dom = existing(fake_libvirt, spec(vcpus=1, max_vcpus=4), running=True)
    mgr = vm_manager(client, check_mode=False)
    mgr.present(spec(vcpus=2, max_vcpus=4), "kvm", [], "running")
    xml = fake_libvirt.conn.defineXMLFlags.call_args[0][0]
    vcpu = xmlutil.parse(xml).find("vcpu")
    assert (vcpu.text, vcpu.get("current")) == ("4", "2")
    # the definition is edited, not rebuilt: libvirt's values survive
    assert xmlutil.find_text(xmlutil.parse(xml), "uuid") == "6f1c3a52-0d1e-4b7a-9c55-2b1f0e9d8a71"
    dom.setVcpusFlags.assert_called_once_with(2, constants.AFFECT_LIVE)


def test_vcpus_of_a_stopped_vm_are_only_defined(fake_libvirt, client):
    dom = existing(fake_libvirt, spec(vcpus=1, max_vcpus=4))
    mgr = vm_manager(client)
    mgr.present(spec(vcpus=2, max_vcpus=4), "kvm", [], "present")
    assert mgr.actions == ["update vcpus"]
    assert mgr.reboot_required is False
    assert_untouched(fake_libvirt, dom)


def test_raising_max_vcpus_needs_a_reboot(fake_libvirt, client):
    existing(fake_libvirt, spec(vcpus=2), running=True)
    mgr = vm_manager(client)
    mgr.present(spec(vcpus=2, max_vcpus=4), "kvm", [], "running")
    assert mgr.actions == ["update max_vcpus"]
    assert mgr.reboot_required is True


def test_graphics_change_needs_a_reboot(fake_libvirt, client):
    dom = existing(fake_libvirt, spec(graphics="vnc"), running=True)
    mgr = vm_manager(client)
    before, after = mgr.present(spec(graphics="spice"), "kvm", [], "running")[:2]
    assert mgr.actions == ["update graphics"]
    assert mgr.reboot_required is True
    assert (before["graphics"], after["graphics"]) == ("vnc", "spice")
    assert_untouched(fake_libvirt, dom)


def test_memory_within_max_is_ballooned_live(fake_libvirt, client):
    existing(fake_libvirt, spec(memory="1GiB", max_memory="4GiB"), running=True)
    mgr = vm_manager(client)
    mgr.present(spec(memory="2GiB", max_memory="4GiB"), "kvm", [], "running")
    assert mgr.actions == ["update memory", "balloon memory to %d bytes live" % (2 * GIB)]
    assert mgr.reboot_required is False


def test_a_new_nic_is_hot_plugged(fake_libvirt, client):
    existing(fake_libvirt, spec(nics=[dict(network="default")]), running=True)
    mgr = vm_manager(client)
    mgr.present(spec(nics=[dict(network="default"), dict(bridge="br0")]), "kvm", [], "running")
    assert mgr.actions == ["update nics", "hot-plug NIC 1"]
    assert mgr.reboot_required is False


def test_a_running_vm_is_not_made_a_template(fake_libvirt, client):
    existing(fake_libvirt, spec(), running=True)
    with pytest.raises(ValueError) as err:
        vm_manager(client).present(spec(template=True), "kvm", [], "present")
    assert str(err.value) == "VM 'vm1' is running: stop it before making it a template"


# ---------------------------------------------------------------- definition_copy_path

def test_definition_copy_sits_beside_the_first_file_disk():
    root = xmlutil.parse(EXISTING)
    devices = root.find("devices")
    cdrom = ET.Element("disk", type="file", device="cdrom")
    ET.SubElement(cdrom, "source", file="/isos/install.iso")
    lun = ET.Element("disk", type="block", device="disk")
    ET.SubElement(lun, "source", dev="/dev/sdb")
    devices.insert(0, lun)
    devices.insert(0, cdrom)
    assert images.definition_copy_path(xmlutil.tostring(root)) == DS_PATH + "/.vm1~vm.xml"


def test_definition_copy_needs_a_file_disk():
    assert images.definition_copy_path(vmspec.build_xml(spec(), "kvm")) is None
    root = xmlutil.parse(EXISTING)
    disk = root.find("devices/disk")
    disk.set("type", "block")
    disk.find("source").attrib = {"dev": "/dev/sdb"}
    assert images.definition_copy_path(xmlutil.tostring(root)) is None


def test_a_change_keeps_the_console_password(fake_libvirt, client):
    """libvirt leaves a VNC/SPICE password out of the XML unless asked for it (SECURE): a redefinition made from
    the plain XML would remove it on the next vCPU change."""
    d = spec(vcpus=2, max_vcpus=4, graphics="vnc")
    xml = as_libvirt_would(vmspec.build_xml(d, "kvm"))
    secure = xml.replace("<graphics type=\"vnc\"", "<graphics type=\"vnc\" passwd=\"s3cret\"")
    assert secure != xml
    dom = fake_dom(5, xml=xml)
    dom.XMLDesc.side_effect = lambda flags=0: secure if flags & constants.XML_SECURE else xml
    fake_libvirt.conn.lookupByName.return_value = dom
    mgr = vm_manager(client, check_mode=False)
    mgr.present(spec(vcpus=3, max_vcpus=4, graphics="vnc"), "kvm", [], "present")
    defined = fake_libvirt.conn.defineXMLFlags.call_args[0][0]
    assert 'passwd="s3cret"' in defined


def test_running_jobs_report_a_migration_and_a_block_copy_in_progress():
    client = mock.MagicMock()
    client.call.side_effect = lambda action, obj, fn, *a: fn(*a)
    dom = mock.MagicMock()
    dom.jobStats.return_value = {"type": 2, "operation": 5, "time_elapsed": 5210, "data_total": 1000,
                                 "data_processed": 369, "data_remaining": 631, "memory_iteration": 1}
    dom.blockJobInfo.side_effect = lambda target, flags: (
        {"type": 2, "cur": 3, "end": 8, "bandwidth": 1048576} if target == "vda" else {})
    root = xmlutil.parse("<domain><devices><disk><target dev='vda'/><mirror ready='no'/></disk>"
                         "<disk><target dev='vdb'/></disk></devices></domain>")
    job, block = domains.running_jobs(client, dom, "vm1", root)
    assert job["operation"] == "outgoing_migration" and job["percent"] == 36.9 and job["elapsed_ms"] == 5210
    assert block == [{"disk": "vda", "type": "copy", "cur": 3, "end": 8, "bandwidth": 1048576, "percent": 37.5,
                      "ready": False}]
    dom.jobStats.return_value = {"type": 0}
    dom.blockJobInfo.side_effect = lambda target, flags: {}
    assert domains.running_jobs(client, dom, "vm1", root) == (None, [])


def test_running_jobs_of_a_vm_that_stopped_meanwhile_are_none(fake_libvirt):
    client = mock.MagicMock()
    client.is_stopped_or_gone = Client.is_stopped_or_gone
    stopped = LibvirtClientError("read the job of", "VM 'vm1'", "qemu:///system",
                                 fake_libvirt.VIR_ERR_OPERATION_INVALID, "domain is not running")
    client.call.side_effect = stopped
    root = xmlutil.parse("<domain><devices><disk><target dev='vda'/></disk></devices></domain>")
    assert domains.running_jobs(client, mock.MagicMock(), "vm1", root) == (None, [])
    client.call.side_effect = LibvirtClientError("read the job of", "VM 'vm1'", "qemu:///system", 1, "internal error")
    with pytest.raises(LibvirtClientError, match="internal error"):
        domains.running_jobs(client, mock.MagicMock(), "vm1", root)


def test_progress_is_100_only_when_done():
    """A copy one byte short of its end reported 100.0 (rounded), and the storage_migration target saw a running
    copy as finished."""
    from ansible_collections.kvmfusion.compute.plugins.module_utils.domains import _percent
    assert _percent(134217727, 134217728) == 99.9
    assert _percent(134217728, 134217728) == 100.0
    assert _percent(0, 134217728) == 0.0
    assert _percent(1, 3) == 33.3
    assert _percent(5, 0) is None


# ---------------------------------------------------------------- a VM under HA: power through the cluster
class _Runs(object):
    def __init__(self):
        self.calls = []

    def __call__(self, cmd, data=None):
        self.calls.append(list(cmd))
        return 0, "", ""


def ha_converge(client, monkeypatch, current, want, nodes, check_mode=False):
    monkeypatch.setattr(power.PowerManager, "_under_ha", lambda self, name: ("kvmfusion-vm-vm1", nodes))
    monkeypatch.setattr(power.Cluster, "which", staticmethod(lambda name: "/usr/sbin/" + name))
    runs = _Runs()
    dom = fake_dom(*POWER[current])
    mgr = power.PowerManager(client, check_mode=check_mode, run_command=runs)
    mgr.ensure("vm1", dom, want)
    return mgr.actions, runs.calls, dom


@pytest.mark.parametrize("current, want, nodes, role", [
    ("running", "stopped", ["cna1"], "Stopped"),
    ("shutoff", "running", [], "Started"),
])
def test_a_vm_under_ha_is_started_and_stopped_by_the_cluster(client, monkeypatch, current, want, nodes, role):
    actions, calls, dom = ha_converge(client, monkeypatch, current, want, nodes)
    verb = "stop" if role == "Stopped" else "start"
    assert actions == ["%s through the HA cluster (resource kvmfusion-vm-vm1)" % verb]
    assert calls[0][-2:] == ["--parameter-value", role] and calls[1][:2] == ["/usr/sbin/crm_resource", "--wait"]
    dom.create.assert_not_called()
    dom.shutdownFlags.assert_not_called()


def test_a_vm_under_ha_running_on_another_cna_is_left_alone(client, monkeypatch):
    """Stopped here (a definition a failover left), running where the cluster put it: nothing to do."""
    actions, calls, dom = ha_converge(client, monkeypatch, "shutoff", "running", ["cna2"])
    assert actions == [] and calls == []
    dom.create.assert_not_called()


def test_a_vm_under_ha_restarts_through_the_cluster_and_is_never_paused(client, monkeypatch):
    actions, calls, dom = ha_converge(client, monkeypatch, "running", "restarted", ["cna1"])
    assert calls[0][1:4] == ["--restart", "--resource", "kvmfusion-vm-vm1"]
    dom.reboot.assert_not_called()
    for want in ("paused", "suspended"):
        with pytest.raises(ValueError) as err:
            ha_converge(client, monkeypatch, "running", want, ["cna1"])
        assert "is under HA (cluster resource kvmfusion-vm-vm1)" in str(err.value)


def test_check_mode_through_the_cluster_runs_nothing(client, monkeypatch):
    actions, calls, _dom = ha_converge(client, monkeypatch, "running", "stopped", ["cna1"], check_mode=True)
    assert actions and calls == []


def test_the_cluster_is_asked_before_a_change_and_for_stopped(client, monkeypatch):
    """Running stays running and a paused VM resumes here without asking; "stopped" always asks, since a VM shut
    off here may run on another CNA under the cluster."""
    asked = []
    monkeypatch.setattr(power.PowerManager, "_under_ha", lambda self, name: asked.append(name))
    converge(client, "running", "running")
    assert converge(client, "paused", "running")[0] == ["resume"]
    assert asked == []
    converge(client, "shutoff", "stopped")
    converge(client, "running", "stopped")
    converge(client, "shutoff", "running")
    assert asked == ["vm1"] * 3


def test_a_cluster_node_without_pacemaker_refuses_power_changes(client, monkeypatch, tmp_path):
    """Fail closed: a node of an HA cluster whose pacemaker does not run cannot tell whether a VM runs elsewhere."""
    conf = tmp_path / "corosync.conf"
    conf.write_text("# Written by kvmfusion.compute.cna: changes here are replaced on the role's next run.\n")
    monkeypatch.setattr(power, "COROSYNC_CONF", str(conf))
    monkeypatch.setattr(power.Cluster, "which", staticmethod(lambda name: "/usr/sbin/" + name))
    monkeypatch.setattr(power.Cluster, "status", lambda self: None)
    with pytest.raises(ValueError) as err:
        converge(client, "shutoff", "running")
    assert "pacemaker is not running here" in str(err.value)
    conf.write_text("totem {\n")  # Debian's own default, not a cluster the cna role formed
    assert converge(client, "shutoff", "running")[0] == ["start"]


def test_ha_off_or_an_unmanaged_vm_is_handled_directly(client, monkeypatch):
    monkeypatch.setattr(power.Cluster, "which", staticmethod(lambda name: "/usr/sbin/" + name))
    monkeypatch.setattr(power.Cluster, "resources_config", lambda self: {"kvmfusion-vm-vm1": {}})
    for mm, managed in ((True, True), (False, False)):
        st = {"ready": True, "maintenance_mode": mm,
              "resources": {"kvmfusion-vm-vm1": {"managed": managed, "nodes": []}}}
        monkeypatch.setattr(power.Cluster, "status", lambda self, st=st: st)
        assert converge(client, "shutoff", "running")[0] == ["start"]
