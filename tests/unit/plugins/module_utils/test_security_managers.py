# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Port security through the managers: security groups, a port group's switches and a VM's NICs, against a fake
libvirt and a fake ovs-vsctl / ovs-ofctl."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import xml.etree.ElementTree as ET
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, domains, network, portsec, vmspec, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_domains import as_libvirt_would, spec
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_network import URI, Host
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_portsec import MAC, MAC2, TCP22, nic, vm_xml

REMOTE = "qemu+ssh://root@cna2/system"
MAC3 = "52:54:00:00:00:03"
PG_WEB = "<portgroup name='web'><vlan><tag id='100'/></vlan></portgroup>"
PG_DB = "<portgroup name='db'><vlan><tag id='200'/></vlan></portgroup>"
HTTPS = {"direction": "in", "protocol": "tcp", "ports": [443]}


@pytest.fixture
def host(fake_libvirt):
    h = Host(fake_libvirt)
    h.ovs.add_bridge("dvs1")
    h.ovs.ofports.update({"dvs1": 65534, "vnet3": 5, "vnet4": 6, "vnet5": 7})
    return h


def add_vm(host, name, nics, running=True, defined_nics=None):
    """A VM whose NICs (test_portsec.nic) are on DVS port groups; ``defined_nics``: its definition when it
    differs from what runs."""
    dom = mock.MagicMock(name="virDomain %s" % name)
    dom.name.return_value = name
    dom.isActive.return_value = 1 if running else 0
    defined = vm_xml(name, nics if defined_nics is None else defined_nics, live=False)
    live = vm_xml(name, nics)
    dom.XMLDesc.side_effect = lambda flags=0: defined if (flags & constants.XML_INACTIVE or not running) else live
    host.domains[name] = dom
    return dom


def define_group(host, name, rules):
    host.ovs.system_ids[portsec.SG_KEY + name] = portsec.encode(portsec.normalize_rules(rules, name))


def stored_group(host, name):
    return json.loads(host.ovs.system_ids[portsec.SG_KEY + name])


class Recorder(object):
    """A runner that records every command and answers none (for work that must not reach it)."""

    def __init__(self):
        self.calls = []

    def __call__(self, cmd, data=None):
        self.calls.append(cmd)
        raise AssertionError("unexpected command %s" % cmd)


# ---------------------------------------------------------------------------- SecurityGroupManager
def sg_manager(host, check_mode=False, uri=URI, runner=None):
    return network.SecurityGroupManager(Client(uri), check_mode=check_mode, run_command=runner or host.ovs)


def sg_params(**kw):
    base = dict(name="web", state="present", rules=[], force=False)
    base.update(kw)
    return base


def test_a_new_group_is_one_ovs_write_of_its_canonical_rules(host):
    rules = [dict(protocol="icmp", icmp_type=8), dict(protocol="tcp", ports=["443", 80]), TCP22]
    mgr = sg_manager(host)
    r = mgr.converge(sg_params(rules=rules)).as_dict()
    canonical = portsec.normalize_rules(rules, "web")
    assert r["changed"] is True and r["ports"] == 0
    assert r["security_group"] == {"name": "web", "rules": canonical}
    assert mgr.actions == ["define security group web (3 rules)"]
    assert len(host.ovs.writes) == 1
    words = host.ovs.writes[0]
    assert words[:4] == ["--", "set", "open_vswitch", "."] and len(words) == 5
    key, value = words[4].split("=", 1)
    assert key == "external_ids:kvmfusion-sg-web"
    # quoted as an OVSDB string: JSON's quotes, commas and brackets survive ovs-vsctl's parser
    assert value[0] == value[-1] == '"' and json.loads(json.loads(value)) == canonical
    assert stored_group(host, "web") == canonical


def test_the_same_rules_in_another_order_are_no_change(host):
    rules = [TCP22, HTTPS, dict(direction="out", protocol="udp", ports=[53], remote_cidr="192.0.2.0/24")]
    sg_manager(host).converge(sg_params(rules=rules))
    writes = list(host.ovs.writes)
    mgr = sg_manager(host)
    r = mgr.converge(sg_params(rules=[dict(r) for r in reversed(rules)])).as_dict()
    assert r["changed"] is False and mgr.actions == [] and r["ports"] == 0
    assert host.ovs.writes == writes and host.ovs.batches == []


def member_vms(host):
    add_vm(host, "web1", [nic(group="web", ips=["192.0.2.7"])])  # running member
    add_vm(host, "web2", [nic(mac=MAC2, group="web", dev="vnet4")], running=False)  # stopped member
    add_vm(host, "db1", [nic(mac=MAC3, portgroup="db", dev="vnet5")])  # running, in no group


def test_a_rule_change_reprograms_the_running_members_ports_only(host):
    define_group(host, "web", [TCP22])
    member_vms(host)
    mgr = sg_manager(host)
    r = mgr.converge(sg_params(rules=[TCP22, HTTPS])).as_dict()
    assert mgr.actions == ["update security group web (2 rules)", "program port security of vnet3 (VM web1)"]
    assert r["ports"] == 1 and stored_group(host, "web") == portsec.normalize_rules([TCP22, HTTPS], "web")
    assert [br for br, _lines in host.ovs.batches] == ["dvs1"]
    lines = host.ovs.batches[0][1]
    assert "delete cookie=0x%x/-1" % portsec.cookie(MAC) in lines
    assert any(",tcp,tp_dst=443,actions=ct(commit,zone=5),NORMAL" in ln for ln in lines)
    assert any(",tcp,tp_dst=22,actions=ct(commit,zone=5),NORMAL" in ln for ln in lines)
    assert not any("cookie=0x%x" % portsec.cookie(MAC3) in ln for ln in lines)


def test_check_mode_plans_the_same_and_writes_nothing(host):
    define_group(host, "web", [TCP22])
    member_vms(host)
    check = sg_manager(host, check_mode=True)
    r = check.converge(sg_params(rules=[HTTPS])).as_dict()
    assert r["changed"] is True and r["ports"] == 1
    assert host.ovs.writes == [] and host.ovs.batches == []
    assert stored_group(host, "web") == portsec.normalize_rules([TCP22], "web")
    real = sg_manager(host)
    real.converge(sg_params(rules=[HTTPS]))
    assert check.actions == real.actions == ["update security group web (1 rules)",
                                             "program port security of vnet3 (VM web1)"]
    assert len(host.ovs.writes) == 1 and len(host.ovs.batches) == 1


def test_absent_refuses_while_nics_defined_or_running_are_in_the_group(host):
    define_group(host, "web", [TCP22])
    member_vms(host)
    # running with the group live, though its definition already left it
    add_vm(host, "web3", [nic(mac="52:54:00:00:00:04", group="web", dev="vnet6")],
           defined_nics=[nic(mac="52:54:00:00:00:04", dev="vnet6")])
    mgr = sg_manager(host)
    with pytest.raises(ValueError) as err:
        mgr.converge(sg_params(state="absent"))
    assert str(err.value) == ("security group 'web' is used by VM NICs: web1 (%s), web2 (%s), web3 (52:54:00:00:00:04); "
                              "take them out of it first or set force=true" % (MAC, MAC2))
    assert host.ovs.writes == [] and mgr.actions == [] and portsec.SG_KEY + "web" in host.ovs.system_ids


def test_absent_with_force_deletes_the_group_and_warns_naming_the_nics(host):
    define_group(host, "web", [TCP22])
    member_vms(host)
    mgr = sg_manager(host)
    r = mgr.converge(sg_params(state="absent", force=True)).as_dict()
    assert r["changed"] is True and r["security_group"] is None
    assert mgr.actions == ["delete security group web"]
    assert host.ovs.writes == [["--", "remove", "open_vswitch", ".", "external_ids", "kvmfusion-sg-web"]]
    assert portsec.SG_KEY + "web" not in host.ovs.system_ids
    assert len(mgr.warnings) == 1 and "web1 (%s), web2 (%s)" % (MAC, MAC2) in mgr.warnings[0]
    assert host.ovs.batches == []  # running ports keep the last rules


def test_absent_of_a_group_this_cna_does_not_have_is_no_change(host):
    mgr = sg_manager(host)
    r = mgr.converge(sg_params(state="absent")).as_dict()
    assert r["changed"] is False and mgr.actions == [] and host.ovs.writes == []


def test_a_group_through_a_remote_uri_is_refused_before_anything_is_read_or_written(host, fake_libvirt):
    runner = Recorder()
    for params in (sg_params(rules=[TCP22]), sg_params(state="absent", force=True)):
        with pytest.raises(ValueError) as err:
            sg_manager(host, uri=REMOTE, runner=runner).converge(params)
        assert str(err.value).startswith("security group 'web': programming Open vSwitch rules works on files or devices "
                                         "of the CNA")
        assert "uri %s is remote" % REMOTE in str(err.value)
    assert runner.calls == [] and host.ovs.writes == []
    assert not fake_libvirt.conn.listAllDomains.called


def test_bad_rules_are_refused_before_anything_is_read(host):
    runner = Recorder()
    with pytest.raises(ValueError) as err:
        sg_manager(host, runner=runner).converge(sg_params(rules=[dict(protocol="icmp", ports=[22])]))
    assert str(err.value).startswith("security group 'web' rule 0: ports apply to tcp and udp")
    assert runner.calls == []


def test_a_remote_group_rule_needs_peers(host):
    runner = Recorder()
    rule = dict(protocol="tcp", ports=[8080], remote_group="web")
    with pytest.raises(ValueError) as err:
        sg_manager(host, runner=runner).converge(sg_params(name="app", rules=[rule]))
    assert "a remote_group rule needs peers" in str(err.value) and runner.calls == []


def test_a_remote_group_rule_stores_the_members_bound_addresses_and_warns_of_members_without(host):
    member_vms(host)  # web1 has 192.0.2.7 bound; web2 none
    mgr = sg_manager(host)
    rule = dict(protocol="tcp", ports=[8080], remote_group="web")
    mgr.converge(sg_params(name="app", rules=[rule], peers=[]), peers=[])
    assert stored_group(host, "app") == [{"direction": "in", "protocol": "tcp", "ports": [[8080, 8080]],
                                          "remote_group": "web", "remote_ips": ["192.0.2.7"]}]
    assert len(mgr.warnings) == 1 and MAC2 in mgr.warnings[0] and "without bound_ips" in mgr.warnings[0]
    # the same members again: no change
    again = sg_manager(host)
    assert again.converge(sg_params(name="app", rules=[rule], peers=[]), peers=[]).as_dict()["changed"] is False


# ---------------------------------------------------------------------------- PortgroupManager switches
def pg_manager(host, check_mode=False):
    return network.PortgroupManager(Client(URI), check_mode=check_mode, run_command=host.ovs)


def pg_params(**kw):
    base = dict(dvs="dvs1", name="web", vlan_mode="access", vlan=100, trunk_vlans=None, native_vlan=None, shaping=None,
                state="present", force=False, dhcp_isolation=False, ip_mac_binding=False)
    base.update(kw)
    return base


def pg_host(host, stored=None):
    host.add_network("dvs1", portgroups=PG_WEB + PG_DB)
    add_vm(host, "web1", [nic(ips=["192.0.2.7"])])  # port group web, vnet3
    add_vm(host, "db1", [nic(mac=MAC2, portgroup="db", dev="vnet4")])
    if stored is not None:
        host.ovs.bridges["dvs1"]["external_ids"][portsec.PG_KEY + "web"] = portsec.encode(stored)


def test_ip_mac_binding_on_is_recorded_on_the_bridge_and_reaches_that_port_groups_running_ports(host):
    pg_host(host)
    mgr = pg_manager(host)
    r = mgr.converge(pg_params(ip_mac_binding=True)).as_dict()
    assert r["changed"] is True and r["portgroup"]["ip_mac_binding"] is True
    assert mgr.actions == ["set port security of port group web: ip_mac_binding", "program port security of vnet3 (VM web1)"]
    assert len(host.ovs.writes) == 1 and host.ovs.writes[0][:4] == ["--", "set", "bridge", "dvs1"]
    assert json.loads(host.ovs.bridges["dvs1"]["external_ids"]["kvmfusion-pg-web"]) == {
        "dhcp_isolation": False, "ip_mac_binding": True}
    assert [br for br, _l in host.ovs.batches] == ["dvs1"]
    lines = host.ovs.batches[0][1]
    assert any(",in_port=5,dl_src=%s,ip,nw_src=192.0.2.7,actions=goto_table:1" % MAC in ln for ln in lines)
    assert lines[-1] == "add table=0,priority=100,cookie=0x%x,in_port=5,actions=drop" % portsec.cookie(MAC)
    assert not any("in_port=6" in ln for ln in lines)
    # the VLAN part of the port group is untouched
    assert host.networks["dvs1"].update.call_count == 0


def test_port_security_all_off_removes_the_key_and_clears_the_ports_rules(host):
    pg_host(host, stored={"dhcp_isolation": True, "ip_mac_binding": True})
    mgr = pg_manager(host)
    r = mgr.converge(pg_params()).as_dict()
    assert r["changed"] is True
    assert mgr.actions == ["clear port security of port group web", "program port security of vnet3 (VM web1)"]
    assert host.ovs.writes == [["--", "remove", "bridge", "dvs1", "external_ids", "kvmfusion-pg-web"]]
    assert "kvmfusion-pg-web" not in host.ovs.bridges["dvs1"]["external_ids"]
    assert host.ovs.batches == [("dvs1", ["delete cookie=0x%x/-1" % portsec.cookie(MAC)])]


def test_an_unchanged_portgroup_with_its_switches_is_no_change(host):
    pg_host(host, stored={"dhcp_isolation": True, "ip_mac_binding": False})
    mgr = pg_manager(host)
    r = mgr.converge(pg_params(dhcp_isolation=True)).as_dict()
    assert r["changed"] is False and mgr.actions == []
    assert host.ovs.writes == [] and host.ovs.batches == []
    assert r["portgroup"]["dhcp_isolation"] is True


def test_portgroup_switches_in_check_mode_change_nothing(host):
    pg_host(host)
    check = pg_manager(host, check_mode=True)
    check.converge(pg_params(dhcp_isolation=True))
    assert host.ovs.writes == [] and host.ovs.batches == []
    real = pg_manager(host)
    real.converge(pg_params(dhcp_isolation=True))
    assert check.actions == real.actions == ["set port security of port group web: dhcp_isolation",
                                             "program port security of vnet3 (VM web1)"]
    assert any("tp_src=67,actions=drop" in ln for ln in host.ovs.batches[0][1])


def test_a_deleted_portgroup_forgets_its_switches(host):
    pg_host(host, stored={"dhcp_isolation": True, "ip_mac_binding": False})
    mgr = pg_manager(host)
    mgr.converge(pg_params(state="absent", force=True))
    assert mgr.actions == ["delete port group web", "forget port security of port group web"]
    assert "kvmfusion-pg-web" not in host.ovs.bridges["dvs1"]["external_ids"]


# ---------------------------------------------------------------------------- VmManager
def vm_manager(host, check_mode=False, uri=URI, runner=None):
    return domains.VmManager(Client(uri), check_mode=check_mode, run_command=runner or host.ovs)


def sg_nic(**kw):
    base = dict(dvs="dvs1", portgroup="web", security_group="web")
    base.update(kw)
    return base


def test_a_vm_nic_in_a_group_this_cna_does_not_have_fails_before_any_define(host, fake_libvirt):
    host.add_network("dvs1", portgroups=PG_WEB)
    define_group(host, "db", [TCP22])
    mgr = vm_manager(host)
    with pytest.raises(ValueError) as err:
        mgr.present(spec(nics=[sg_nic(), sg_nic(security_group="db")]), "kvm", [], "present")
    assert str(err.value) == ("VM 'vm1': security group web is not defined on this CNA (kvmfusion.compute.security_group "
                              "defines it)")
    assert mgr.actions == [] and not fake_libvirt.conn.defineXMLFlags.called and host.ovs.writes == []


def test_a_vm_nic_in_a_known_group_is_defined(host, fake_libvirt):
    host.add_network("dvs1", portgroups=PG_WEB)
    define_group(host, "web", [TCP22])
    mgr = vm_manager(host)
    mgr.present(spec(nics=[sg_nic()]), "kvm", [], "present")
    assert mgr.actions == ["define"]
    xml = fake_libvirt.conn.defineXMLFlags.call_args[0][0]
    assert list(portsec.ports_meta(xmlutil.parse(xml)).values()) == [{"security_group": "web", "ips": []}]


def test_the_group_check_is_skipped_through_a_remote_uri(host, fake_libvirt):
    runner = Recorder()
    mgr = vm_manager(host, check_mode=True, uri=REMOTE, runner=runner)
    mgr.present(spec(nics=[sg_nic()]), "kvm", [], "present")
    assert mgr.actions == ["define"] and runner.calls == []


class RunningVm(object):
    """A running VM whose definition follows defineXMLFlags and whose live metadata follows setMetadata."""

    def __init__(self, host, d):
        self.defined = as_libvirt_would(vmspec.build_xml(d, "kvm"))
        root = xmlutil.parse(self.defined)
        for el in root.findall("devices/interface"):
            el.set("type", "bridge")
            el.find("source").set("bridge", el.find("source").get("network"))
            ET.SubElement(el, "target", dev="vnet3")
        self.live = xmlutil.tostring(root)
        self.dom = dom = mock.MagicMock(name="virDomain vm1")
        dom.name.return_value = "vm1"
        dom.isActive.return_value = 1
        dom.XMLDesc.side_effect = lambda flags=0: self.defined if flags & constants.XML_INACTIVE else self.live
        dom.setMetadata.side_effect = self._set_metadata
        host.domains["vm1"] = dom
        host.fake.conn.defineXMLFlags.side_effect = self._define

    def _define(self, xml, flags=0):
        self.defined = xml
        return self.dom

    def _set_metadata(self, kind, xml, key, uri, flags):
        assert (kind, key, uri, flags) == (constants.METADATA_ELEMENT, portsec.PORTS_KEY, portsec.PORTS_NS,
                                           constants.AFFECT_LIVE)
        root = xmlutil.parse(self.live)
        meta = root.find("metadata")
        if meta is None:
            meta = ET.SubElement(root, "metadata")
        for old in meta.findall("{%s}ports" % uri):
            meta.remove(old)
        el = ET.SubElement(meta, "{%s}ports" % uri)
        for port in ET.fromstring(xml):  # libvirt puts the element in the namespace it is given
            p = ET.SubElement(el, "{%s}port" % uri, port.attrib)
            for ip in port:
                ET.SubElement(p, "{%s}ip" % uri, ip.attrib).text = ip.text
        self.live = xmlutil.tostring(root)


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_running_vm_joining_a_group_gets_live_metadata_and_its_port_programmed(host, check_mode):
    host.add_network("dvs1", portgroups=PG_WEB)
    define_group(host, "web", [TCP22])
    vm = RunningVm(host, spec(nics=[dict(dvs="dvs1", portgroup="web", mac=MAC)]))
    mgr = vm_manager(host, check_mode=check_mode)
    mgr.present(spec(nics=[sg_nic(mac=MAC, bound_ips=["192.0.2.7"])]), "kvm", [], "running")
    # check mode plans exactly what is done: the metadata, then the VM's ports as one action
    assert mgr.actions == ["update nics", "set port security of the running VM",
                           "program port security of the running VM's DVS ports"]
    if check_mode:
        assert not vm.dom.setMetadata.called and host.ovs.batches == []
        return
    assert mgr.reboot_required is False
    assert vm.dom.setMetadata.call_count == 1
    assert portsec.ports_meta(xmlutil.parse(vm.live)) == {MAC: {"security_group": "web", "ips": ["192.0.2.7"]}}
    assert [br for br, _l in host.ovs.batches] == ["dvs1"]
    lines = host.ovs.batches[0][1]
    assert any(",tcp,tp_dst=22,actions=ct(commit,zone=5),NORMAL" in ln for ln in lines)


def test_a_learning_nic_joining_a_group_keeps_the_address_its_guest_leased(host):
    host.add_network("dvs1", portgroups=PG_WEB)
    host.ovs.bridges["dvs1"]["external_ids"][portsec.PG_KEY + "web"] = portsec.encode({"ip_mac_binding": True})
    define_group(host, "web", [TCP22])
    vm = RunningVm(host, spec(nics=[dict(dvs="dvs1", portgroup="web", mac=MAC, bound_ips="dhcp")]))
    leased = {MAC: {"security_group": None, "ips": [], "learn": "dhcp",
                    "learned": [{"ip": "192.0.2.50", "expires": 4102444800}]}}  # what the binder recorded
    vm.dom.setMetadata(constants.METADATA_ELEMENT, xmlutil.tostring(portsec.ports_element(leased, namespaced=False)),
                       portsec.PORTS_KEY, portsec.PORTS_NS, constants.AFFECT_LIVE)
    mgr = vm_manager(host)
    mgr.present(spec(nics=[dict(dvs="dvs1", portgroup="web", mac=MAC, bound_ips="dhcp", security_group="web")]),
                "kvm", [], "running")
    assert "set port security of the running VM" in mgr.actions and mgr.reboot_required is False
    live = portsec.ports_meta(xmlutil.parse(vm.live))[MAC]
    assert live["security_group"] == "web" and live["learned"] == leased[MAC]["learned"]
    lines = host.ovs.batches[-1][1]
    assert any("arp_spa=192.0.2.50" in ln for ln in lines) and any("nw_src=192.0.2.50" in ln for ln in lines)


def test_a_nic_hot_plugged_onto_a_port_group_gets_its_rules_at_once(host):
    # the hook runs when a VM starts, not when a NIC is plugged: the vm module programs the VM's ports itself
    host.add_network("dvs1", portgroups=PG_WEB)
    host.ovs.bridges["dvs1"]["external_ids"][portsec.PG_KEY + "web"] = portsec.encode({"ip_mac_binding": True})
    RunningVm(host, spec(nics=[dict(dvs="dvs1", portgroup="web", mac=MAC)]))
    mgr = vm_manager(host)
    mgr.present(spec(nics=[dict(dvs="dvs1", portgroup="web", mac=MAC), dict(dvs="dvs1", portgroup="web")]),
                "kvm", [], "running")
    assert mgr.actions == ["update nics", "hot-plug NIC 1", "program port security of the running VM's DVS ports"]
    assert [br for br, _lines in host.ovs.batches] == ["dvs1"]
    assert any("dl_src=%s" % MAC in ln for ln in host.ovs.batches[0][1])


def test_a_nic_hot_unplugged_from_a_dvs_takes_its_rules_with_it(host):
    # no hook runs on an unplug: the vm module removes the port's rules itself
    host.add_network("dvs1", portgroups=PG_WEB)
    vm = RunningVm(host, spec(nics=[dict(dvs="dvs1", portgroup="web", mac=MAC), dict(dvs="dvs1", portgroup="web", mac=MAC2)]))
    root = xmlutil.parse(vm.live)  # what libvirt shows of a running OVS port
    for el in root.findall("devices/interface"):
        ET.SubElement(el, "virtualport", type="openvswitch")
    vm.live = xmlutil.tostring(root)
    mgr = vm_manager(host)
    mgr.present(spec(nics=[dict(dvs="dvs1", portgroup="web", mac=MAC)]), "kvm", [], "running")
    assert mgr.actions == ["update nics", "hot-unplug NIC 1", "remove port security of NIC 1"]
    assert host.ovs.batches == [("dvs1", ["delete cookie=0x%x/-1" % portsec.cookie(MAC2)])]
