# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Port security, the pure part: rule validation, NIC metadata, the OpenFlow batches (read as text and run
through a small model of the bridge's pipeline), what ovs-vsctl reports, a clone's NICs, and the libvirt hook."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.machinery
import importlib.util
import io
import ipaddress
import json
import os
import re
import sys
import time
import types
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import clones, portsec, xmlutil
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_network import FakeOvs

MAC = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"
TCP22 = {"direction": "in", "protocol": "tcp", "ports": [22]}
HOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(portsec.__file__)))),
                    "roles", "cna", "files", "portsec_hook.py")


def one_line_error(fn, *args):
    with pytest.raises(ValueError) as err:
        fn(*args)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------- domain XML with port metadata
def nic(mac=MAC, network="dvs1", portgroup="web", dev="vnet3", group=None, ips=()):
    return {"mac": mac, "network": network, "portgroup": portgroup, "dev": dev, "group": group, "ips": list(ips)}


def vm_xml(name, nics, live=True, extra_devices=""):
    """A domain as libvirt shows it: live, a DVS NIC is type='bridge' with the network kept in <source>; the
    port security of its NICs is the kvmfports metadata, keyed by MAC."""
    ports = "".join(
        "<kvmfports:port mac='%s'%s>%s</kvmfports:port>"
        % (n["mac"], " security_group='%s'" % n["group"] if n["group"] else "",
           "".join("<kvmfports:ip>%s</kvmfports:ip>" % ip for ip in n["ips"]))
        for n in nics if n["group"] or n["ips"])
    meta = ("<metadata><kvmfports:ports xmlns:kvmfports='%s'>%s</kvmfports:ports></metadata>" % (portsec.PORTS_NS, ports)
            if ports else "")
    devices = []
    for n in nics:
        pg = " portgroup='%s'" % n["portgroup"] if n["portgroup"] else ""
        if live:
            devices.append("<interface type='bridge'><mac address='%s'/><source network='%s'%s bridge='%s'/>"
                           "<virtualport type='openvswitch'/><target dev='%s'/><model type='virtio'/></interface>"
                           % (n["mac"], n["network"], pg, n["network"], n["dev"]))
        else:
            devices.append("<interface type='network'><mac address='%s'/><source network='%s'%s/>"
                           "<model type='virtio'/></interface>" % (n["mac"], n["network"], pg))
    return "<domain type='kvm'><name>%s</name>%s<os><type arch='x86_64'>hvm</type></os><devices>%s%s</devices></domain>" % (
        name, meta, "".join(devices), extra_devices)


# ---------------------------------------------------------------------------- rule validation
def rule_error(rule, group="web"):
    # the bad rule is the second: the message names its index
    return one_line_error(portsec.normalize_rules, [dict(TCP22, ports=[2222]), rule], group)


@pytest.mark.parametrize("rule, fragment", [
    (dict(protocol="icmp", ports=[22]), "ports apply to tcp and udp, not to protocol icmp"),
    (dict(protocol="any", ports=[22]), "ports apply to tcp and udp, not to protocol any"),
    (dict(ports=[22]), "ports apply to tcp and udp, not to protocol any"),
    (dict(protocol="sctp"), "protocol must be one of any, tcp, udp, icmp, icmpv6, got 'sctp'"),
    (dict(protocol="tcp", ports=["1000-2000", "1500-1600"]), "port ranges 1000-2000 and 1500-1600 overlap"),
    (dict(protocol="tcp", ports=[80, "80-81"]), "port ranges 80-80 and 80-81 overlap"),
    (dict(protocol="tcp", ports=[22, 22]), "port ranges 22-22 and 22-22 overlap"),
    (dict(protocol="udp", ports=[0]), "port range 0 must lie within 1-65535"),
    (dict(protocol="udp", ports=[65536]), "port range 65536 must lie within 1-65535"),
    (dict(protocol="udp", ports=["2000-1000"]), "port range '2000-1000' must lie within 1-65535, low end first"),
    (dict(protocol="tcp", ports=["http"]), "ports must be numbers or ranges"),
    (dict(protocol="tcp", ports=[True]), "ports must be numbers or ranges"),
    (dict(protocol="tcp", remote_cidr="10.0.0.300/8"), "remote_cidr '10.0.0.300/8' is not an address or network"),
    (dict(protocol="tcp", remote_cidr="not-a-net"), "remote_cidr 'not-a-net' is not an address or network"),
    (dict(protocol="icmp", remote_cidr="2001:db8::/32"), "protocol icmp does not match the IPv6 remote_cidr 2001:db8::/32"),
    (dict(protocol="icmpv6", remote_cidr="10.0.0.0/8"), "protocol icmpv6 does not match the IPv4 remote_cidr 10.0.0.0/8"),
    (dict(protocol="tcp", icmp_type=8), "icmp_type applies to protocol icmp or icmpv6, not tcp"),
    (dict(protocol="icmp", icmp_type=256), "icmp_type must be 0-255, got 256"),
    (dict(protocol="icmp", icmp_type=True), "icmp_type must be 0-255, got True"),
    (dict(protocol="tcp", remote_group="db", remote_cidr="10.0.0.0/8"), "give remote_cidr or remote_group, not both"),
    (dict(protocol="tcp", port=22), "unknown rule key port"),
    (dict(direction="both"), "direction must be in or out, got 'both'"),
    ("tcp/22", "a rule is a dict"),
])
def test_a_bad_rule_is_one_line_naming_the_group_and_the_rule_index(rule, fragment):
    msg = rule_error(rule)
    assert msg.startswith("security group 'web' rule 1: ")
    assert fragment in msg


def test_a_bad_remote_group_name_names_the_group_and_the_rule_index():
    msg = rule_error(dict(protocol="tcp", remote_group="db group"))
    assert "remote_group name must be 1-63 characters" in msg
    assert msg.startswith("security group 'web' rule 1: ")


def test_a_repeated_rule_is_refused_even_when_written_differently():
    msg = one_line_error(portsec.normalize_rules, [TCP22, dict(protocol="TCP", ports="22")], "web")
    assert msg == "security group 'web' rule 1 repeats an earlier rule"


def test_normalize_rules_gives_one_canonical_order_and_form():
    rules = [dict(protocol="udp", ports=["5000-5010", 53]), TCP22,
             dict(direction="out", protocol="any", remote_cidr="10.1.2.3/8"),
             dict(protocol="icmp", icmp_type=8, remote_cidr="192.0.2.0/24")]
    a = portsec.normalize_rules(rules, "web")
    b = portsec.normalize_rules(list(reversed(rules)), "web")
    assert a == b
    assert {"direction": "in", "protocol": "udp", "ports": [[53, 53], [5000, 5010]]} in a
    assert {"direction": "out", "protocol": "any", "remote_cidr": "10.0.0.0/8"} in a
    assert {"direction": "in", "protocol": "icmp", "icmp_type": 8, "remote_cidr": "192.0.2.0/24"} in a
    # what OVS stores reads back equal: an unchanged group is no change
    assert json.loads(portsec.encode(a)) == a


def test_the_canonical_rules_a_group_reports_can_be_given_back():
    a = portsec.normalize_rules([TCP22, dict(protocol="udp", ports=["5000-5010", 53])], "web")
    assert portsec.normalize_rules(a, "web") == a


def test_an_empty_rule_list_is_a_group_that_lets_nothing_in():
    assert portsec.normalize_rules(None, "web") == [] and portsec.normalize_rules([], "web") == []


def test_rules_as_the_module_passes_them_with_every_option_present():
    # the module's suboptions hand every key over, unset ones as None
    rule = dict(direction="in", protocol="tcp", ports=[22], icmp_type=None, remote_cidr=None, remote_group=None)
    assert portsec.normalize_rules([rule], "web") == [{"direction": "in", "protocol": "tcp", "ports": [[22, 22]]}]


@pytest.mark.parametrize("name", ["", "-web", "a" * 64, "web group", "web/1", None])
def test_bad_group_names_are_refused(name):
    assert "security group name must be 1-63 characters" in one_line_error(portsec.validate_group_name, name)


def test_normalize_ips_sorts_ipv4_before_ipv6_and_drops_repeats():
    assert portsec.normalize_ips(["2001:db8::7", " 192.0.2.7", "10.0.0.1", "192.0.2.7", "2001:DB8::7"], "nic 0") == [
        "10.0.0.1", "192.0.2.7", "2001:db8::7"]


@pytest.mark.parametrize("value, fragment", [
    ("10.0.0.0/24", "'10.0.0.0/24' is not an IP address"),
    ("10.0.0.300", "'10.0.0.300' is not an IP address"),
    ("224.0.0.1", "224.0.0.1 cannot be a NIC's own address"),
    ("0.0.0.0", "0.0.0.0 cannot be a NIC's own address"),
    ("::", ":: cannot be a NIC's own address"),
])
def test_bad_bound_ips_are_one_line(value, fragment):
    assert fragment in one_line_error(portsec.normalize_ips, [value], "VM 'vm1': nic 0 bound_ips")


@pytest.mark.parametrize("call", ["bound_ips", "remote_cidr"])
def test_an_ipv6_address_with_a_zone_index_is_refused(call):
    if call == "bound_ips":
        one_line_error(portsec.normalize_ips, ["fe80::1%eth0"], "VM 'vm1': nic 0 bound_ips")
    else:
        one_line_error(portsec.normalize_rules, [dict(protocol="tcp", ports=[22], remote_cidr="fe80::1%eth0")], "web")


def test_cookie_carries_the_mac_under_the_collections_mark():
    assert portsec.cookie("52:54:00:AB:CD:EF") == 0x4B56525400ABCDEF
    assert portsec.cookie(MAC) >> 48 == 0x4B56 and portsec.cookie(MAC) != portsec.SHARED_COOKIE
    assert "not a MAC address" in one_line_error(portsec.cookie, "52:54:00:00:01")


# ---------------------------------------------------------------------------- port ranges as value/mask pairs
def expand(masked):
    """The ports one tp_dst value (N or 0xVVVV/0xMMMM) matches, by brute force over every 16-bit port."""
    if "/" not in masked:
        return {int(masked)}
    value, mask = (int(x, 16) for x in masked.split("/"))
    assert value & ~mask & 0xFFFF == 0, "value %s has bits outside its mask" % masked
    return set(p for p in range(65536) if p & mask == value)


@pytest.mark.parametrize("lo, hi", [(1, 1), (22, 22), (1000, 2000), (1, 65535), (80, 81), (1024, 2047),
                                    (65535, 65535), (32768, 65535), (1023, 1025), (3, 4)])
def test_port_masks_cover_the_range_exactly(lo, hi):
    masks = portsec._port_masks(lo, hi)
    covered = [expand(m) for m in masks]
    assert set().union(*covered) == set(range(lo, hi + 1))
    # no port twice either: the pairs are disjoint
    assert sum(len(c) for c in covered) == hi - lo + 1


def test_port_masks_are_few_for_aligned_ranges():
    assert portsec._port_masks(22, 22) == ["22"]
    assert portsec._port_masks(1024, 2047) == ["0x0400/0xfc00"]
    assert portsec._port_masks(80, 81) == ["0x0050/0xfffe"]


def test_a_remote_group_rule_matches_the_groups_members_bound_addresses():
    rules = portsec.normalize_rules([dict(protocol="tcp", ports=[8080], remote_group="web"),
                                     dict(protocol="icmp", remote_group="web"), TCP22], "app")
    assert portsec.remote_groups(rules) == ["web"]
    resolved = portsec.resolve(rules, {"web": ["2001:db8::7", "192.0.2.15", "192.0.2.15"]})
    tcp_rule = [r for r in resolved if r["protocol"] == "tcp" and r.get("remote_group")][0]
    assert tcp_rule["remote_ips"] == ["192.0.2.15", "2001:db8::7"]
    assert [r for r in resolved if not r.get("remote_group")] == [dict(TCP22, ports=[[22, 22]])]
    assert json.loads(portsec.encode(resolved)) == resolved
    assert portsec._rule_matches(tcp_rule, "in") == ["tcp,nw_src=192.0.2.15,tp_dst=8080", "tcp6,ipv6_src=2001:db8::7,tp_dst=8080"]
    icmp_rule = [r for r in resolved if r["protocol"] == "icmp"][0]
    assert portsec._rule_matches(icmp_rule, "in") == ["icmp,nw_src=192.0.2.15"]  # an IPv6 member is not an ICMP source
    # no member with a bound address: the rule matches nothing (never everything)
    empty = portsec.resolve(rules, {})
    assert all(portsec._rule_matches(r, "in") == [] for r in empty if r.get("remote_group"))
    lines = portsec.port_flows({"mac": MAC, "ofport": 5, "ips": []}, {}, empty)
    assert any("tp_dst=22" in ln for ln in lines)
    assert not any("tp_dst=8080" in ln or ",icmp," in ln for ln in lines)


def test_rule_matches_see_the_remote_end_from_the_vms_port():
    inbound = portsec.normalize_rule(dict(protocol="tcp", ports=[22], remote_cidr="10.0.0.0/8"), "r")
    assert portsec._rule_matches(inbound, "in") == ["tcp,nw_src=10.0.0.0/8,tp_dst=22"]
    outbound = portsec.normalize_rule(dict(direction="out", protocol="udp", ports=[53], remote_cidr="2001:db8::/32"), "r")
    assert portsec._rule_matches(outbound, "out") == ["udp6,ipv6_dst=2001:db8::/32,tp_dst=53"]
    # no remote: both families
    assert portsec._rule_matches(portsec.normalize_rule(dict(protocol="any"), "r"), "in") == ["ip", "ipv6"]
    assert portsec._rule_matches(portsec.normalize_rule(dict(protocol="icmpv6", icmp_type=128), "r"), "in") == [
        "icmp6,icmp_type=128"]


# ---------------------------------------------------------------------------- port_flows as text
def flows(isolate=False, bind=False, rules=None, ips=(), ofport=5, mac=MAC, police=None):
    port = {"mac": mac, "ofport": ofport, "ips": list(ips), "security_group": "web" if rules is not None else None,
            "police": police}
    return portsec.port_flows(port, {"dhcp_isolation": isolate, "ip_mac_binding": bind},
                              None if rules is None else portsec.normalize_rules(rules, "web"))


def adds(lines, table=None):
    out = [ln for ln in lines if ln.startswith("add ")]
    return out if table is None else [ln for ln in out if ("add table=%d," % table) in ln]


def has(lines, prio, *fragments):
    """Whether an add line of priority ``prio`` contains every fragment."""
    return any(",priority=%d," % prio in ln and all(f in ln for f in fragments) for ln in adds(lines))


def delete_line(mac=MAC):
    return "delete cookie=0x%x/-1" % portsec.cookie(mac)


def test_an_unsecured_port_only_loses_its_old_rules():
    assert flows() == [delete_line()]
    assert flows(ofport=-1) == [delete_line()]  # no OpenFlow number is needed to clear a port


def test_a_secured_port_without_an_openflow_number_is_an_error():
    assert "has no OpenFlow number yet" in one_line_error(flows, True, False, None, (), -1)


def test_dhcp_isolation_drops_dhcp_server_replies_from_the_port():
    lines = flows(isolate=True)
    assert "add table=0,priority=300,cookie=0x%x,in_port=5,udp,tp_src=67,actions=drop" % portsec.cookie(MAC) in lines
    assert "add table=0,priority=300,cookie=0x%x,in_port=5,udp6,tp_src=547,actions=drop" % portsec.cookie(MAC) in lines
    # everything else from the port goes on
    assert has(lines, 100, "table=0,", "in_port=5,actions=goto_table:1")


def test_ip_mac_binding_allows_only_the_bound_addresses_from_the_ports_mac():
    lines = flows(bind=True, ips=["192.0.2.7", "198.51.100.9", "2001:db8::7"])
    m = "in_port=5,dl_src=%s" % MAC
    for ip in ("192.0.2.7", "198.51.100.9"):
        assert has(lines, 200, m + ",arp,arp_sha=%s,arp_spa=%s," % (MAC, ip), "goto_table:1")
        assert has(lines, 200, m + ",ip,nw_src=%s," % ip, "goto_table:1")
    assert has(lines, 200, m + ",ipv6,ipv6_src=2001:db8::7,", "goto_table:1")
    assert not has(lines, 200, "nw_src=2001:db8::7") and not has(lines, 200, "arp_spa=2001:db8::7")
    # an unconfigured guest may ask for DHCP; link-local IPv6 and duplicate address detection pass
    assert has(lines, 200, m + ",udp,nw_src=0.0.0.0,tp_src=68,tp_dst=67,", "goto_table:1")
    assert has(lines, 200, m + ",ipv6,ipv6_src=fe80::/10,")
    assert has(lines, 220, m + ",icmp6,ipv6_src=::,icmp_type=135,icmp_code=0,nd_sll=00:00:00:00:00:00,")
    # neighbour discovery carries this NIC's MAC and claims only link-local or bound targets; the rest is dropped
    assert has(lines, 220, m + ",icmp6,ipv6_src=fe80::/10,icmp_type=136,icmp_code=0,nd_target=2001:db8::7,nd_tll=%s," % MAC)
    assert not any("nd_target=2001:db8::8" in ln for ln in lines)
    assert has(lines, 210, "in_port=5,icmp6,icmp_type=136,", "drop") and has(lines, 210, "in_port=5,icmp6,icmp_type=135,", "drop")
    # everything else from the port is dropped, and nothing is let through from any address
    assert lines[-1] == "add table=0,priority=100,cookie=0x%x,in_port=5,actions=drop" % portsec.cookie(MAC)
    assert not has(lines, 190, m + ",ip,")


def test_ip_mac_binding_without_bound_ips_binds_the_mac_only():
    lines = flows(bind=True)
    m = "in_port=5,dl_src=%s" % MAC
    assert has(lines, 190, m + ",arp,arp_sha=%s," % MAC, "goto_table:1")
    assert has(lines, 190, m + ",ip,", "goto_table:1")
    assert not any("arp_spa=" in ln for ln in lines)
    assert [ln for ln in lines if "nw_src=" in ln] == [ln for ln in lines if "nw_src=0.0.0.0" in ln]
    assert has(lines, 100, "in_port=5,actions=drop")


def test_a_security_group_port_is_tracked_in_its_own_zone_and_lets_in_what_the_rules_allow():
    lines = flows(rules=[TCP22], ofport=7)
    c = "cookie=0x%x" % portsec.cookie(MAC)
    for fam in ("ip", "ipv6"):
        assert "add table=1,priority=100,%s,in_port=7,%s,actions=ct(table=2,zone=7)" % (c, fam) in lines
        assert "add table=3,priority=100,%s,%s,dl_dst=%s,actions=ct(table=4,zone=7)" % (c, fam, MAC) in lines
    assert set(re.findall(r"zone=(\d+)", "\n".join(lines))) == {"7"}
    # inbound: the rule's new connections are committed, and nothing else is new
    dst = "dl_dst=%s,ct_state=+trk+new," % MAC
    assert "add table=4,priority=100,%s,%stcp,tp_dst=22,actions=ct(commit,zone=7),NORMAL" % (c, dst) in lines
    assert "add table=4,priority=100,%s,%stcp6,tp_dst=22,actions=ct(commit,zone=7),NORMAL" % (c, dst) in lines
    assert len([ln for ln in adds(lines, 4) if "+trk+new" in ln]) == 2
    assert adds(lines, 4)[-1] == "add table=4,priority=1,%s,dl_dst=%s,actions=drop" % (c, MAC)
    assert has(lines, 300, "table=4,", "ct_state=+trk+inv", "actions=drop")
    assert has(lines, 200, "table=4,", "ct_state=+trk+est", "actions=NORMAL")
    assert has(lines, 200, "table=4,", "ct_state=+trk+rel", "actions=NORMAL")


def test_a_security_group_without_outbound_rules_lets_every_new_connection_out():
    lines = flows(rules=[TCP22])
    new_out = [ln for ln in adds(lines, 2) if "+trk+new" in ln]
    assert sorted(new_out) == sorted(
        "add table=2,priority=100,cookie=0x%x,in_port=5,ct_state=+trk+new,%s,actions=ct(commit,zone=5),goto_table:3"
        % (portsec.cookie(MAC), fam) for fam in ("ip", "ipv6"))
    assert adds(lines, 2)[-1].endswith(",in_port=5,actions=drop") and ",priority=1," in adds(lines, 2)[-1]


def test_outbound_rules_let_out_only_what_they_name():
    lines = flows(rules=[TCP22, dict(direction="out", protocol="tcp", ports=[443], remote_cidr="198.51.100.0/24"),
                         dict(direction="out", protocol="udp", ports=[53])])
    new_out = sorted(ln.split("ct_state=+trk+new,")[1].split(",actions=")[0]
                     for ln in adds(lines, 2) if "+trk+new" in ln)
    assert new_out == ["tcp,nw_dst=198.51.100.0/24,tp_dst=443", "udp,tp_dst=53", "udp6,tp_dst=53"]
    # an outbound rule never opens an inbound port
    assert not any("tp_dst=443" in ln or "tp_dst=53" in ln for ln in adds(lines, 4))


CONFIGS = [
    dict(isolate=True),
    dict(bind=True),
    dict(bind=True, ips=["192.0.2.7", "2001:db8::7"]),
    dict(rules=[]),
    dict(rules=[TCP22]),
    dict(isolate=True, bind=True, ips=["192.0.2.7"], rules=[TCP22, dict(direction="out", protocol="udp", ports=["1000-2000"])]),
    dict(rules=[dict(protocol="icmp", icmp_type=8), dict(protocol="any", remote_cidr="2001:db8::/32"),
                dict(direction="out", protocol="icmpv6")]),
    dict(police=(20000, 8000)),
    dict(police=(20000, 8000), bind=True, ips=["192.0.2.7"], rules=[TCP22]),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_table_jump_goes_to_a_higher_table(config):
    lines = flows(**config)
    jumps = 0
    for ln in adds(lines):
        table = int(re.search(r"\btable=(\d+),", ln).group(1))
        actions = ln.split(",actions=", 1)[1]
        for target in re.findall(r"goto_table:(\d+)|ct\(table=(\d+)", actions):
            jumps += 1
            assert int(target[0] or target[1]) > table, ln
    assert jumps > 0


@pytest.mark.parametrize("config", CONFIGS)
def test_every_rule_carries_the_ports_cookie_or_the_shared_one(config):
    lines = flows(mac=MAC2, **config)
    own, shared = "cookie=0x%x," % portsec.cookie(MAC2), "cookie=0x%x," % portsec.SHARED_COOKIE
    assert all((own in ln) != (shared in ln) for ln in adds(lines))
    assert [ln for ln in adds(lines) if shared in ln] == portsec.shared_flows()
    # ``add`` and one ``delete`` are all a batch holds
    assert all(ln.startswith("add ") for ln in lines if not ln.startswith("delete "))


@pytest.mark.parametrize("config", [dict()] + CONFIGS)
def test_a_batch_deletes_exactly_this_ports_cookie_before_adding_its_rules(config):
    lines = flows(mac=MAC2, **config)
    deletes = [i for i, ln in enumerate(lines) if not ln.startswith("add ")]
    assert [lines[i] for i in deletes] == ["delete cookie=0x%x/-1" % portsec.cookie(MAC2)]
    own = "cookie=0x%x," % portsec.cookie(MAC2)
    assert all(i > deletes[0] for i, ln in enumerate(lines) if own in ln)
    if not config:
        assert deletes == [0]


def test_removal_deletes_each_ports_cookie():
    assert portsec.removal([MAC, MAC2]) == [delete_line(MAC), delete_line(MAC2)]


def test_a_batch_is_given_to_ovs_ofctl_as_one_bundle():
    assert portsec.ofctl_batch("dvs1") == ["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", "dvs1", "-"]


# ---------------------------------------------------------------------------- the pipeline, run on model packets
class Conntrack(object):
    """Enough of a connection tracker: committed connections by zone; ICMPv6 other than echo is not tracked
    (Open vSwitch then reports +trk+inv: lib/conntrack.c extract_l4_icmp6, and the kernel's nf_conntrack)."""

    def __init__(self):
        self.committed = set()

    @staticmethod
    def key(p):
        return (p["type"], p.get("proto"), p.get("src"), p.get("dst"), p.get("tp_src"), p.get("tp_dst"))

    def lookup(self, zone, p):
        if p["type"] == "ipv6" and p.get("proto") == "icmp" and p.get("icmp_type") not in (1, 2, 3, 4, 128, 129):
            return {"trk", "inv"}
        k = self.key(p)
        rev = (k[0], k[1], k[3], k[2], k[5], k[4])
        if (zone, k) in self.committed or (zone, rev) in self.committed:
            return {"trk", "est"}
        return {"trk", "new"}

    def commit(self, zone, p):
        self.committed.add((zone, self.key(p)))


PROTO = {"ip": ("ip", None), "ipv6": ("ipv6", None), "arp": ("arp", None), "tcp": ("ip", "tcp"), "tcp6": ("ipv6", "tcp"),
         "udp": ("ip", "udp"), "udp6": ("ipv6", "udp"), "icmp": ("ip", "icmp"), "icmp6": ("ipv6", "icmp")}


class Bridge(object):
    """A bridge's flow tables, written by batches and walked by model packets."""

    def __init__(self):
        self.flows = []  # (table, priority, cookie, match, actions)
        self.ct = Conntrack()
        self.metered = []  # the meters packets went through

    def apply(self, lines):
        for ln in lines:
            verb, _sep, rest = ln.partition(" ")
            if verb == "delete":
                m = re.match(r"^cookie=0x([0-9a-f]+)/-1$", rest)
                assert m, ln
                self.flows = [f for f in self.flows if f[2] != int(m.group(1), 16)]
                continue
            assert verb == "add", ln
            match, actions = rest.split(",actions=", 1)
            fields = [tuple(item.split("=", 1)) if "=" in item else (item, None) for item in match.split(",")]
            head = dict(fields[:3])
            assert list(head) == ["table", "priority", "cookie"], ln
            flow = (int(head["table"]), int(head["priority"]), int(head["cookie"], 16), tuple(fields[3:]), actions)
            self.flows = [f for f in self.flows if (f[0], f[1], f[3]) != (flow[0], flow[1], flow[3])] + [flow]

    @staticmethod
    def _matches(fields, p, ct_state):
        for k, v in fields:
            if k in PROTO:
                if p["type"] != PROTO[k][0] or (PROTO[k][1] and p.get("proto") != PROTO[k][1]):
                    return False
            elif k == "in_port":
                if int(v) != p["in_port"]:
                    return False
            elif k in ("dl_src", "dl_dst", "arp_sha"):
                if p.get(k) != v:
                    return False
            elif k == "arp_spa":
                if p.get("src") != v:
                    return False
            elif k in ("nw_src", "ipv6_src", "nw_dst", "ipv6_dst"):
                addr = p.get("src" if k.endswith("src") else "dst")
                if addr is None or ipaddress.ip_address(addr) not in ipaddress.ip_network(v):
                    return False
            elif k in ("tp_src", "tp_dst"):
                value, mask = (int(x, 16) for x in v.split("/")) if "/" in v else (int(v), 0xFFFF)
                if p.get(k) is None or p[k] & mask != value:
                    return False
            elif k == "icmp_type":
                if p.get("icmp_type") != int(v):
                    return False
            elif k == "ct_state":
                for sign, flag in re.findall(r"([+-])([a-z]+)", v):
                    if (flag in ct_state) != (sign == "+"):
                        return False
            else:
                raise AssertionError("the model does not know match field %s" % k)
        return True

    def send(self, p):
        """'deliver' (NORMAL), 'drop' or 'miss' for packet ``p``; connections are committed on the way."""
        table, ct_state = 0, set()
        while True:
            hits = [f for f in self.flows if f[0] == table and self._matches(f[3], p, ct_state)]
            if not hits:
                return "miss"
            top = max(f[1] for f in hits)
            best = [f for f in hits if f[1] == top]
            assert len(set(f[4] for f in best)) == 1, "ambiguous flows at priority %d: %s" % (top, best)
            nxt = None
            for action in re.findall(r"ct\([^)]*\)|[^,]+", best[0][4]):
                if action == "drop":
                    return "drop"
                if action == "NORMAL":
                    return "deliver"
                if action.startswith("meter:"):
                    self.metered.append(int(action.split(":")[1]))
                    continue
                if action.startswith("goto_table:"):
                    nxt = int(action.split(":")[1])
                    break
                args = dict(a.split("=") if "=" in a else (a, True) for a in action[3:-1].split(","))
                if "commit" in args:
                    self.ct.commit(int(args["zone"]), p)
                if "table" in args:
                    ct_state = self.ct.lookup(int(args["zone"]), p)
                    nxt = int(args["table"])
                    break
            assert nxt is not None and nxt > table
            table = nxt


UPLINK = 1
PEER_MAC = "52:54:00:99:99:99"


def tcp(**kw):
    p = dict(type="ip", proto="tcp", in_port=UPLINK, dl_src=PEER_MAC, dl_dst=MAC, src="198.51.100.9", dst="192.0.2.7",
             tp_src=40000, tp_dst=22)
    p.update(kw)
    return p


def reply(p, in_port):
    return dict(p, in_port=in_port, dl_src=p["dl_dst"], dl_dst=p["dl_src"], src=p["dst"], dst=p["src"],
                tp_src=p["tp_dst"], tp_dst=p["tp_src"])


def bridge_with(**config):
    br = Bridge()
    br.apply(flows(**config))
    return br


def test_model_inbound_connections_pass_only_where_a_rule_allows_and_replies_follow():
    br = bridge_with(rules=[TCP22])
    ssh = tcp()
    assert br.send(ssh) == "deliver"
    assert br.send(reply(ssh, 5)) == "deliver"  # the VM's answer is an established connection
    assert br.send(tcp(tp_dst=23)) == "drop"
    assert br.send(tcp(type="ipv6", src="2001:db8::9", dst="2001:db8::7", tp_dst=22)) == "deliver"
    # the VM's own connections go out (no outbound rules) and their replies come back
    out = tcp(in_port=5, dl_src=MAC, dl_dst=PEER_MAC, src="192.0.2.7", dst="203.0.113.1", tp_src=50000, tp_dst=80)
    assert br.send(out) == "deliver" and br.send(reply(out, UPLINK)) == "deliver"
    # ARP is not tracked
    assert br.send(dict(type="arp", in_port=UPLINK, dl_src=PEER_MAC, dl_dst=MAC, src="198.51.100.9")) == "deliver"


def test_model_outbound_rules_restrict_the_vms_new_connections():
    br = bridge_with(rules=[dict(direction="out", protocol="tcp", ports=[443])])
    out = tcp(in_port=5, dl_src=MAC, dl_dst=PEER_MAC, src="192.0.2.7", dst="203.0.113.1", tp_src=50000)
    assert br.send(dict(out, tp_dst=443)) == "deliver"
    assert br.send(dict(out, tp_dst=80)) == "drop"
    assert br.send(tcp(tp_dst=22)) == "drop"  # no inbound rule at all


def test_model_ip_mac_binding_and_dhcp_isolation():
    br = bridge_with(isolate=True, bind=True, ips=["192.0.2.7"])
    out = tcp(in_port=5, dl_src=MAC, dl_dst=PEER_MAC, src="192.0.2.7", dst="203.0.113.1", tp_src=50000, tp_dst=80)
    assert br.send(out) == "deliver"
    assert br.send(dict(out, src="192.0.2.8")) == "drop"  # spoofed address
    assert br.send(dict(out, dl_src=PEER_MAC)) == "drop"  # spoofed MAC
    arp = dict(type="arp", in_port=5, dl_src=MAC, dl_dst="ff:ff:ff:ff:ff:ff", arp_sha=MAC, src="192.0.2.7")
    assert br.send(arp) == "deliver" and br.send(dict(arp, src="192.0.2.1")) == "drop"
    discover = dict(type="ip", proto="udp", in_port=5, dl_src=MAC, dl_dst="ff:ff:ff:ff:ff:ff", src="0.0.0.0",
                    dst="255.255.255.255", tp_src=68, tp_dst=67)
    assert br.send(discover) == "deliver"
    offer = dict(discover, src="192.0.2.7", tp_src=67, tp_dst=68)  # the guest playing DHCP server
    assert br.send(offer) == "drop"
    # another port is not concerned
    assert br.send(tcp()) == "deliver"


def test_model_an_unsecured_port_after_a_secured_one_switches_normally():
    br = bridge_with(rules=[TCP22])
    br.apply(flows(mac=MAC2, ofport=6))
    assert br.send(tcp(in_port=6, dl_src=MAC2, dl_dst=PEER_MAC, tp_dst=23)) == "deliver"
    assert br.send(tcp(dl_dst=MAC2, tp_dst=23)) == "deliver"
    # removing the secured port's rules leaves it switched normally too
    br.apply(portsec.removal([MAC]))
    assert br.send(tcp(tp_dst=23)) == "deliver"


ND = [
    ("neighbour solicitation from the VM", dict(in_port=5, dl_src=MAC, dl_dst="33:33:ff:00:00:01", src="fe80::5054:ff:fe00:1",
                                                dst="ff02::1:ff00:1", icmp_type=135)),
    ("neighbour advertisement from the VM", dict(in_port=5, dl_src=MAC, dl_dst=PEER_MAC, src="fe80::5054:ff:fe00:1",
                                                 dst="fe80::1", icmp_type=136)),
    ("neighbour solicitation to the VM", dict(in_port=UPLINK, dl_src=PEER_MAC, dl_dst=MAC, src="fe80::1",
                                              dst="fe80::5054:ff:fe00:1", icmp_type=135)),
    ("neighbour advertisement to the VM", dict(in_port=UPLINK, dl_src=PEER_MAC, dl_dst=MAC, src="fe80::1",
                                               dst="fe80::5054:ff:fe00:1", icmp_type=136)),
    ("router solicitation from the VM", dict(in_port=5, dl_src=MAC, dl_dst="33:33:00:00:00:02", src="fe80::5054:ff:fe00:1",
                                             dst="ff02::2", icmp_type=133)),
]


@pytest.mark.parametrize("what, packet", ND, ids=[n[0] for n in ND])
def test_model_ipv6_neighbour_discovery_of_a_security_group_port_passes(what, packet):
    br = bridge_with(rules=[dict(protocol="any")])  # even a group that allows everything in
    assert br.send(dict(packet, type="ipv6", proto="icmp")) == "deliver", what


def test_ports_of_two_dvs_on_one_cna_are_tracked_in_different_zones():
    state = {"bridges": {"dvs1": {"bridge": "dvs1", "portgroups": {}}, "dvs2": {"bridge": "dvs2", "portgroups": {}}},
             "groups": {"web": portsec.normalize_rules([TCP22], "web")},
             "ofports": {"vnet3": 5, "vnet4": 5},  # OpenFlow numbers count from 1 on each bridge
             "ifindexes": {"vnet3": 17, "vnet4": 18}}  # kernel interface indexes are unique on the host
    ports = live_ports(nic(group="web"), nic(mac=MAC2, network="dvs2", dev="vnet4", group="web"))
    zones = [set(re.findall(r"zone=(\d+)", "\n".join(lines))) for _br, _p, lines in portsec.batches(ports, state)]
    assert len(zones) == 2 and not zones[0] & zones[1]


# ---------------------------------------------------------------------------- plan / batches
def state_with(groups=None, portgroups=None, ofports=None):
    return {"bridges": {"dvs1": {"bridge": "dvs1", "portgroups": portgroups or {}}},
            "groups": dict((g, portsec.normalize_rules(r, g)) for g, r in (groups or {}).items()),
            "ofports": {"vnet3": 5, "vnet4": 6} if ofports is None else ofports}


def live_ports(*nics):
    return portsec.domain_ports(ET.fromstring(vm_xml("vm1", list(nics))))


def test_batches_give_one_batch_per_dvs_port_and_skip_other_networks():
    ports = live_ports(nic(group="web"), nic(mac=MAC2, portgroup="db", dev="vnet4"),
                       nic(mac="52:54:00:00:00:03", network="default", portgroup=None, dev="vnet5"))
    out = portsec.batches(ports, state_with(groups={"web": [TCP22]}, portgroups={"db": {"dhcp_isolation": True}}))
    assert [(br, p["dev"], p["ofport"]) for br, p, _l in out] == [("dvs1", "vnet3", 5), ("dvs1", "vnet4", 6)]

    def isolating(lines):  # a DHCP server port's packets dropped from the VM's port
        return any("in_port=" in ln and "tp_src=67" in ln and ln.endswith("actions=drop") for ln in lines)
    assert any("tp_dst=22" in ln for ln in out[0][2]) and not isolating(out[0][2])
    assert isolating(out[1][2]) and not any("ct(" in ln for ln in out[1][2])


def test_batches_name_a_port_that_has_no_openflow_number_yet():
    msg = one_line_error(portsec.batches, live_ports(nic()), state_with(ofports={"vnet4": 6}))
    assert msg == "port vnet3 of NIC %s has no OpenFlow number yet" % MAC


def test_a_nic_in_a_group_this_cna_does_not_have_is_an_error_not_an_open_port():
    msg = one_line_error(portsec.batches, live_ports(nic(group="db")), state_with(groups={"web": [TCP22]}))
    assert msg == "NIC %s: security group 'db' is not defined on this CNA" % MAC


# ---------------------------------------------------------------------------- ovs_state
# What VSCTL_STATE prints on a CNA: one JSON table per command, columns in the order asked for.
PG_DB = portsec.encode({"dhcp_isolation": False, "ip_mac_binding": True})
PG_WEB = portsec.encode({"dhcp_isolation": True, "ip_mac_binding": False})
VSCTL_OUTPUT = "\n".join([
    json.dumps({"data": [["dvs1", ["map", [["kvmfusion-pg-db", PG_DB], ["kvmfusion-pg-web", PG_WEB], ["owner", "someone-else"]]],
                          "netdev"],
                         ["dvs2", ["map", []], ""]],
                "headings": ["name", "external_ids", "datapath_type"]}),
    json.dumps({"data": [[["map", [["hostname", "cna1"],
                                   ["kvmfusion-sg-empty", "[]"],
                                   ["kvmfusion-sg-web", portsec.encode(portsec.normalize_rules([TCP22], "web"))],
                                   ["system-id", "5f0c6e0a-5a0e-4e54-a3c4-0d1b0b4f2c11"]]]]],
                "headings": ["external_ids"]}),
    json.dumps({"data": [["dvs1", 65534, 4, 0, 0], ["eth1", 1, 3, 0, 0], ["vnet3", 5, 17, 20000, 0], ["vnet4", -1, 0, 0, 0],
                         ["vnet5", ["set", []], ["set", []], 1000, 100]],
                "headings": ["name", "ofport", "ifindex", "ingress_policing_rate", "ingress_policing_burst"]}),
]) + "\n"


def test_ovs_state_reads_port_groups_security_groups_and_openflow_numbers():
    assert portsec.ovs_state(VSCTL_OUTPUT) == {
        "bridges": {"dvs1": {"bridge": "dvs1", "datapath": "netdev",
                             "portgroups": {"web": {"dhcp_isolation": True, "ip_mac_binding": False},
                                            "db": {"dhcp_isolation": False, "ip_mac_binding": True}}},
                    "dvs2": {"bridge": "dvs2", "datapath": "system", "portgroups": {}}},
        "groups": {"web": [{"direction": "in", "protocol": "tcp", "ports": [[22, 22]]}], "empty": []},
        # not yet assigned (-1, or an empty set) is no number
        "ofports": {"dvs1": 65534, "eth1": 1, "vnet3": 5},
        # the rate libvirt set for a NIC's outbound shaping, with OVS's default burst when none is set
        "policing": {"vnet3": (20000, portsec.DEFAULT_BURST_KB), "vnet5": (1000, 100)},
        # kernel interface indexes (the conntrack zones), none when OVS reports none
        "ifindexes": {"dvs1": 4, "eth1": 3, "vnet3": 17},
    }


def test_ovs_state_of_nothing_is_empty():
    assert portsec.ovs_state("") == {"bridges": {}, "groups": {}, "ofports": {}, "policing": {}, "ifindexes": {}}


def test_ovs_state_takes_a_corrupt_stored_value_as_no_setting():
    text = "\n".join([json.dumps({"data": [["dvs1", ["map", [["kvmfusion-pg-web", "{not json"]]], ""]],
                                  "headings": ["name", "external_ids", "datapath_type"]}),
                      json.dumps({"data": [[["map", [["kvmfusion-sg-web", "[oops"]]]]], "headings": ["external_ids"]}),
                      json.dumps({"data": [], "headings": ["name", "ofport"]})])
    state = portsec.ovs_state(text)
    assert state["bridges"]["dvs1"]["portgroups"] == {"web": {}} and state["groups"] == {"web": []}


def test_the_fake_ovs_answers_the_state_query_the_same_way():
    ovs = FakeOvs()
    ovs.add_bridge("dvs1")
    ovs.bridges["dvs1"]["external_ids"]["kvmfusion-pg-web"] = portsec.encode({"dhcp_isolation": True})
    ovs.system_ids["kvmfusion-sg-web"] = portsec.encode([])
    ovs.ofports.update({"vnet3": 5, "vnet4": -1})
    rc, out, _err = ovs(portsec.VSCTL_STATE)
    state = portsec.ovs_state(out)
    assert rc == 0
    assert state["bridges"]["dvs1"]["portgroups"] == {"web": {"dhcp_isolation": True}}
    assert (state["groups"], state["ofports"], state["policing"]) == ({"web": []}, {"vnet3": 5}, {})


# ---------------------------------------------------------------------------- outbound shaping by meter
def test_a_shaped_port_passes_its_meter_on_the_way_out():
    lines = flows(police=(20000, 8000), ofport=6)
    assert lines == portsec.shared_flows() + [
        delete_line(), "add table=0,priority=100,cookie=0x%x,in_port=6,actions=meter:6,goto_table:3" % portsec.cookie(MAC)]
    br = Bridge()
    br.apply(lines)
    assert br.send(tcp(in_port=6, dl_src=MAC, dl_dst=PEER_MAC)) == "deliver" and br.metered == [6]
    assert br.send(tcp()) == "deliver" and br.metered == [6]  # traffic to the VM is not metered


def test_a_shaped_and_bound_port_meters_only_what_it_may_send():
    lines = flows(police=(20000, 8000), bind=True, ips=["192.0.2.7"], rules=[TCP22])
    own = [ln for ln in adds(lines, 0) if "cookie=0x%x," % portsec.cookie(MAC) in ln]
    assert all(ln.endswith("actions=meter:5,goto_table:1") for ln in own if "goto_table" in ln)
    assert not any("meter:" in ln for ln in lines if "add table=0," not in ln)
    br = Bridge()
    br.apply(lines)
    out = tcp(in_port=5, dl_src=MAC, dl_dst=PEER_MAC, src="192.0.2.7", dst="203.0.113.1", tp_src=50000, tp_dst=80)
    assert br.send(out) == "deliver" and br.metered == [5]
    assert br.send(dict(out, src="192.0.2.99")) == "drop" and br.metered == [5]


def test_meter_commands_modify_the_ports_meter_or_add_it():
    assert portsec.meter_commands("dvs1", {"ofport": 5, "police": None}) is None
    mod, add = portsec.meter_commands("dvs1", {"ofport": 5, "police": (20000, 8000)})
    spec = "meter=5,kbps,burst,band=type=drop,rate=20000,burst_size=8000"
    assert mod == ["ovs-ofctl", "-O", "OpenFlow13", "mod-meter", "dvs1", spec]
    assert add == ["ovs-ofctl", "-O", "OpenFlow13", "add-meter", "dvs1", spec]


@pytest.mark.parametrize("datapath, police", [("netdev", (20000, 8000)), ("system", None)])
def test_batches_shape_by_meter_only_on_the_userspace_datapath(datapath, police):
    state = state_with()
    state["bridges"]["dvs1"]["datapath"] = datapath
    state["policing"] = {"vnet3": (20000, 8000)}
    (_br, port, lines), = portsec.batches(live_ports(nic()), state)
    assert port["police"] == police
    assert any("meter:5" in ln for ln in lines) == (police is not None)


# ---------------------------------------------------------------------------- NIC metadata
def test_ports_element_and_ports_meta_round_trip():
    ports = {MAC: {"security_group": "web", "ips": ["192.0.2.7", "2001:db8::7"]},
             MAC2: {"security_group": None, "ips": ["10.0.0.2"]},
             "52:54:00:00:00:03": {"security_group": None, "ips": []}}  # nothing set: not recorded
    el = portsec.ports_element(ports)
    assert el.tag == "{%s}ports" % portsec.PORTS_NS
    root = ET.fromstring("<domain><metadata>%s</metadata></domain>" % ET.tostring(el).decode())
    assert portsec.ports_meta(root) == {MAC: {"security_group": "web", "ips": ["192.0.2.7", "2001:db8::7"]},
                                        MAC2: {"security_group": None, "ips": ["10.0.0.2"]}}
    assert portsec.ports_element({MAC: {"security_group": None, "ips": []}}) is None


def test_ports_element_without_namespace_is_what_set_metadata_takes():
    el = portsec.ports_element({MAC: {"security_group": "web", "ips": ["192.0.2.7"]}}, namespaced=False)
    assert el.tag == "ports" and [c.tag for c in el] == ["port"] and el[0].attrib == {"mac": MAC, "security_group": "web"}
    assert [(c.tag, c.text) for c in el[0]] == [("ip", "192.0.2.7")]


def test_ports_meta_reads_libvirts_metadata_and_lowercases_macs():
    root = ET.fromstring(vm_xml("vm1", [nic(mac="52:54:00:AA:BB:CC", group="web", ips=["192.0.2.7"])]))
    assert portsec.ports_meta(root) == {"52:54:00:aa:bb:cc": {"security_group": "web", "ips": ["192.0.2.7"]}}
    assert portsec.ports_meta(ET.fromstring("<domain><metadata><x xmlns='urn:other'/></metadata></domain>")) == {}
    assert portsec.ports_meta(ET.fromstring("<domain/>")) == {}


def test_domain_ports_reads_the_live_nics_on_networks():
    other = ("<interface type='bridge'><mac address='52:54:00:00:00:09'/><source bridge='br0'/><target dev='vnet9'/>"
             "</interface><interface type='user'><mac address='52:54:00:00:00:0a'/></interface>")
    xml = vm_xml("vm1", [nic(group="web", ips=["192.0.2.7"]), nic(mac=MAC2, portgroup="db", dev="vnet4")],
                 extra_devices=other)
    assert portsec.domain_ports(ET.fromstring(xml)) == [
        {"mac": MAC, "dev": "vnet3", "network": "dvs1", "bridge": "dvs1", "portgroup": "web", "security_group": "web",
         "ips": ["192.0.2.7"]},
        {"mac": MAC2, "dev": "vnet4", "network": "dvs1", "bridge": "dvs1", "portgroup": "db", "security_group": None,
         "ips": []},
    ]
    # the definition (not live) has no devices to name
    defined = portsec.domain_ports(ET.fromstring(vm_xml("vm1", [nic(group="web")], live=False)))
    assert defined == [{"mac": MAC, "dev": None, "network": "dvs1", "bridge": None, "portgroup": "web",
                        "security_group": "web", "ips": []}]
    assert portsec.domain_ports(ET.fromstring(xml), live=False)[0]["dev"] is None


# ---------------------------------------------------------------------------- a clone's NICs
CLONE_SOURCE = vm_xml("tpl", [nic(group="web", ips=["192.0.2.7", "2001:db8::7"]),
                              nic(mac=MAC2, ips=["192.0.2.8"], dev="vnet4"),
                              nic(mac="52:54:00:00:00:03", network="default", portgroup=None, dev="vnet5")], live=False)


def test_a_clone_keeps_its_nics_security_group_under_a_new_mac_without_the_bound_ips():
    src = xmlutil.parse(CLONE_SOURCE)
    root = clones.clone_xml(src, "web-01", "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f", {}, [], "web-01", {},
                            {"source": "tpl", "snapshot": None, "linked": False})
    root = xmlutil.parse(xmlutil.tostring(root))  # what is defined is the text
    macs = [xmlutil.find_attr(el, "mac", "address") for el in root.findall("devices/interface")]
    assert macs[0] and re.match(r"^52:54:00(:[0-9a-f]{2}){3}$", macs[0]) and macs[0] != MAC
    assert macs[1:] == [None, None]  # libvirt gives those NICs new MACs
    assert portsec.ports_meta(root) == {macs[0]: {"security_group": "web", "ips": []}}
    assert portsec.domain_ports(root, live=False)[0]["security_group"] == "web"
    # the source is untouched
    assert portsec.ports_meta(src) == portsec.ports_meta(xmlutil.parse(CLONE_SOURCE))


def test_a_clone_of_a_vm_without_port_security_has_no_port_metadata():
    root = clones.clone_xml(xmlutil.parse(vm_xml("tpl", [nic()], live=False)), "web-01",
                            "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f", {}, [], "web-01", {},
                            {"source": "tpl", "snapshot": None, "linked": False})
    assert root.find("metadata/{%s}ports" % portsec.PORTS_NS) is None
    assert root.find("devices/interface/mac") is None


# ---------------------------------------------------------------------------- the libvirt hook
class FakeClock(object):
    def __init__(self, on_sleep=None):
        self.now = 1000.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self.sleeps)


class ShapingOvs(FakeOvs):
    """FakeOvs that also reports the bridges' datapath and the ports' ingress policing, and keeps meters."""

    def __init__(self):
        super(ShapingOvs, self).__init__()
        self.policing = {}  # interface -> (rate, burst) as libvirt sets them
        self.meters = {}  # (bridge, id) -> spec

    def __call__(self, cmd, data=None):
        if cmd[:3] == ["ovs-ofctl", "-O", "OpenFlow13"]:
            verb, bridge, spec = cmd[3:]
            key = (bridge, int(spec.split(",")[0].split("=")[1]))
            if verb == "mod-meter" and key not in self.meters:
                return 1, "", "OFPT_ERROR (OF1.3): OFPMMFC_UNKNOWN_METER"
            assert verb in ("mod-meter", "add-meter")
            self.meters[key] = spec
            return 0, "", ""
        return super(ShapingOvs, self).__call__(cmd, data)

    def _state(self):
        bridges, system, ifaces = (json.loads(x) for x in FakeOvs._state(self).splitlines())
        bridges["headings"].append("datapath_type")
        for row in bridges["data"]:
            row.append(self.bridges[row[0]]["datapath_type"])
        ifaces["headings"] += ["ingress_policing_rate", "ingress_policing_burst"]
        for row in ifaces["data"]:
            row += list(self.policing.get(row[0], (0, 0)))
        return "\n".join(json.dumps(t) for t in (bridges, system, ifaces)) + "\n"


class HookRun(object):
    """The hook loaded as libvirt runs it, its commands answered by a FakeOvs."""

    def __init__(self, monkeypatch, tmp_path):
        self.ovs = ShapingOvs()
        self.ovs.add_bridge("dvs1")  # the userspace datapath
        self.ovs.ofports.update({"dvs1": 65534, "vnet3": 5, "vnet4": 6})
        self.calls = []
        self.clock = FakeClock()
        self.monkeypatch = monkeypatch
        # the hook sets PATH and sys.path for itself: both are put back after the test
        monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.setitem(sys.modules, "kvmf_portsec", portsec)
        loader = importlib.machinery.SourceFileLoader("kvmfusion_portsec_hook", HOOK)
        spec = importlib.util.spec_from_loader(loader.name, loader)
        self.hook = importlib.util.module_from_spec(spec)
        loader.exec_module(self.hook)
        assert self.hook.portsec is portsec
        self.log = tmp_path / "kvmfusion-portsec.log"
        monkeypatch.setattr(self.hook, "LOG", str(self.log))
        monkeypatch.setattr(self.hook, "run", self._run)
        monkeypatch.setattr(self.hook, "time", types.SimpleNamespace(monotonic=self.clock.monotonic,
                                                                     sleep=self.clock.sleep,
                                                                     strftime=time.strftime, time=self.clock.monotonic))

    def _run(self, cmd, data=None):
        self.calls.append(cmd)
        rc, out, err = self.ovs(cmd, data) if data is not None else self.ovs(cmd)
        if rc != 0:
            raise ValueError("%s: %s" % (" ".join(cmd[:2]), err))
        return out

    def __call__(self, op, xml, vm="vm1"):
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(xml))
        return self.hook.main(["/etc/libvirt/hooks/qemu.d/kvmfusion-portsec", vm, op, "begin", "-"])

    def define_group(self, name, rules):
        self.ovs.system_ids[portsec.SG_KEY + name] = portsec.encode(portsec.normalize_rules(rules, name))


@pytest.fixture
def hook(monkeypatch, tmp_path):
    return HookRun(monkeypatch, tmp_path)


VM_TWO_NICS = vm_xml("vm1", [nic(group="web", ips=["192.0.2.7"]), nic(mac=MAC2, portgroup="db", dev="vnet4"),
                             nic(mac="52:54:00:00:00:03", network="default", portgroup=None, dev="vnet5")])


@pytest.mark.parametrize("op", ["started", "reconnect"])
def test_hook_programs_one_batch_per_dvs_port_when_a_vm_starts(hook, op):
    hook.define_group("web", [TCP22])
    assert hook(op, VM_TWO_NICS) == 0
    assert [(br, lines[0] if len(lines) == 1 else None) for br, lines in hook.ovs.batches] == [
        ("dvs1", None), ("dvs1", delete_line(MAC2))]
    web = hook.ovs.batches[0][1]
    assert web == flows(rules=[TCP22], ips=["192.0.2.7"], ofport=5)
    assert any("tp_dst=22" in ln and "zone=5" in ln for ln in web)
    assert hook.calls[0] == portsec.VSCTL_STATE and hook.clock.sleeps == 0
    log = hook.log.read_text()
    assert "vm1: dvs1 port vnet3 (%s): %d rules" % (MAC, len(web) - 1) in log and "vnet4" in log


def test_hook_gives_a_shaped_port_its_meter_before_its_rules(hook):
    hook.ovs.policing["vnet4"] = (20000, 0)
    assert hook("started", VM_TWO_NICS.replace("security_group='web'", "")) == 0
    spec = "meter=6,kbps,burst,band=type=drop,rate=20000,burst_size=%d" % portsec.DEFAULT_BURST_KB
    assert hook.ovs.meters == {("dvs1", 6): spec}
    verbs = [c[3] if c[:2] == ["ovs-ofctl", "-O"] and c[2] == "OpenFlow13" else c[0] for c in hook.calls]
    # no meter 6 yet: modifying it fails, so it is added; then the port's batch
    assert verbs == ["ovs-vsctl", "ovs-ofctl", "mod-meter", "add-meter", "ovs-ofctl"]
    assert any(ln.endswith("in_port=6,actions=meter:6,goto_table:3") for ln in hook.ovs.batches[1][1])
    # the next time the meter exists and is modified
    del hook.calls[:]
    assert hook("reconnect", VM_TWO_NICS.replace("security_group='web'", "")) == 0
    assert [c[3] for c in hook.calls if c[2:3] == ["OpenFlow13"]] == ["mod-meter"]


def test_hook_removes_the_rules_of_each_dvs_port_when_a_vm_stops(hook):
    assert hook("stopped", VM_TWO_NICS) == 0
    assert hook.ovs.batches == [("dvs1", [delete_line(MAC)]), ("dvs1", [delete_line(MAC2)])]
    assert "port of %s removed" % MAC in hook.log.read_text()


def test_hook_fails_closed_for_a_starting_vm_in_a_group_this_cna_does_not_have(hook, capsys):
    assert hook("started", VM_TWO_NICS) == 1  # libvirt then stops the VM
    assert hook.ovs.batches == []
    assert hook.clock.sleeps == 0  # at once: only a port still being added is waited for
    err = capsys.readouterr().err
    assert err == "kvmfusion port security: NIC %s: security group 'web' is not defined on this CNA\n" % MAC
    assert "vm1 started: FAILED" in hook.log.read_text()


def test_hook_still_removes_the_rules_of_a_stopping_vm_in_an_unknown_group(hook):
    assert hook("stopped", VM_TWO_NICS) == 0
    assert [lines for _br, lines in hook.ovs.batches] == [[delete_line(MAC)], [delete_line(MAC2)]]


def test_hook_failing_to_reach_ovs_fails_a_start_but_not_a_stop(hook, capsys):
    def broken(cmd, data=None):
        raise ValueError("ovs-vsctl --timeout=10: database connection failed")
    hook.monkeypatch.setattr(hook.hook, "run", broken)
    assert hook("stopped", VM_TWO_NICS) == 0
    assert hook("started", VM_TWO_NICS) == 1
    assert "database connection failed" in capsys.readouterr().err


@pytest.mark.parametrize("op", ["prepare", "migrate", "restore", "attach"])
def test_hook_ignores_other_operations(hook, op):
    hook.define_group("web", [TCP22])
    assert hook(op, VM_TWO_NICS) == 0
    assert hook.calls == [] and hook.ovs.batches == []
    assert sys.stdin.read() == VM_TWO_NICS  # not even read


def test_hook_does_nothing_for_a_vm_without_network_nics(hook):
    assert hook("started", "") == 0
    assert hook("started", "<domain><name>vm1</name><devices/></domain>") == 0
    assert hook.calls == []


def test_hook_waits_for_a_port_to_get_its_openflow_number(hook):
    hook.define_group("web", [TCP22])
    del hook.ovs.ofports["vnet3"]
    hook.clock.on_sleep = lambda n: hook.ovs.ofports.update({"vnet3": 7}) if n == 2 else None
    assert hook("started", VM_TWO_NICS) == 0
    assert hook.clock.sleeps == 2
    assert hook.calls.count(portsec.VSCTL_STATE) == 3
    assert hook.ovs.batches[0][1] == flows(rules=[TCP22], ips=["192.0.2.7"], ofport=7)


def test_hook_gives_up_on_a_port_that_never_gets_an_openflow_number(hook, capsys):
    hook.define_group("web", [TCP22])
    hook.ovs.ofports["vnet3"] = -1
    assert hook("started", VM_TWO_NICS) == 1
    assert hook.ovs.batches == []
    # about ten seconds of 0.1 s waits, then the failure
    assert 90 <= hook.clock.sleeps <= 110
    assert "port vnet3 of NIC %s has no OpenFlow number yet" % MAC in capsys.readouterr().err


def test_hook_programs_plugged_ports_before_qemu_runs_and_leaves_the_rest_to_started(hook):
    hook.define_group("web", [TCP22])
    # "start": libvirt has plugged the taps, QEMU has not run yet: the rules are in place before any packet
    assert hook("start", VM_TWO_NICS) == 0
    assert [br for br, _l in hook.ovs.batches] == ["dvs1", "dvs1"] and hook.clock.sleeps == 0
    # a port not in OVS yet is not waited for there ("started" does it)
    hook.ovs.batches[:] = []
    del hook.ovs.ofports["vnet3"]
    assert hook("start", VM_TWO_NICS) == 0
    assert hook.ovs.batches == [] and hook.clock.sleeps == 0


def test_hook_fails_a_start_before_qemu_runs_for_a_group_this_cna_does_not_have(hook):
    assert hook("start", VM_TWO_NICS) == 1  # libvirt then does not start QEMU at all
    assert hook.ovs.batches == []


# ---------------------------------------------------------------- the keeper after an Open vSwitch restart
SNOOP = os.path.join(os.path.dirname(HOOK), "dhcp_snoop.py")


class KeeperDom(object):
    def __init__(self, name, xml):
        self._name, self.xml = name, xml

    def name(self):
        return self._name

    def XMLDesc(self, flags=0):
        return self.xml


@pytest.fixture
def keeper(hook, monkeypatch):
    """dhcp_snoop.py loaded as the service runs it, on the hook of ``hook``; dump-flows answers from ``flows``."""
    monkeypatch.setitem(sys.modules, "portsec_hook", hook.hook)
    loader = importlib.machinery.SourceFileLoader("kvmfusion_dhcp_snoop", SNOOP)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    snoop = importlib.util.module_from_spec(spec)
    loader.exec_module(snoop)
    assert snoop.hook is hook.hook and snoop.portsec is portsec
    snoop.flows = set()  # cookies Open vSwitch holds rules of
    plain = hook.hook.run

    def run(cmd, data=None):
        if cmd[:4] == ["ovs-ofctl", "-O", "OpenFlow14", "dump-flows"]:
            ck = int(cmd[5].split("=")[1].split("/")[0], 16)
            return " cookie=0x%x, table=0, priority=100 actions=drop\n" % ck if ck in snoop.flows else ""
        return plain(cmd, data)
    monkeypatch.setattr(hook.hook, "run", run)
    snoop.programmed = []
    monkeypatch.setattr(hook.hook, "program", lambda vm, ports, wait=True: snoop.programmed.append(vm))
    other = vm_xml("vm2", [nic(mac="52:54:00:00:00:09", network="default", portgroup=None, dev="vnet9")])
    conn = types.SimpleNamespace(listAllDomains=lambda flags: [KeeperDom("vm1", VM_TWO_NICS), KeeperDom("vm2", other)])
    return snoop, conn


def test_the_keeper_finds_the_vms_whose_rules_open_vswitch_lost_and_programs_only_them(keeper, hook):
    snoop, conn = keeper
    hook.define_group("web", [TCP22])
    snoop.flows.update([portsec.cookie(MAC), portsec.cookie(MAC2)])
    assert snoop.lost_rules(conn) == []
    # one port of vm1 lost its rules (programmed while ovs-vswitchd was still setting its bridge up)
    snoop.flows.discard(portsec.cookie(MAC2))
    assert snoop.lost_rules(conn) == ["vm1"]
    snoop.reprogram_all(conn, only={"vm1"})
    assert snoop.programmed == ["vm1"]
    # a port OVS has not given an OpenFlow number yet counts as lost too: it is tried again at the next scan
    snoop.flows.add(portsec.cookie(MAC2))
    del hook.ovs.ofports["vnet4"]
    assert snoop.lost_rules(conn) == ["vm1"]
    # vm2 has no DVS port: never lost (after a restart every VM with NICs on networks is handed to the hook,
    # which programs the DVS ones)
    assert "vm2" not in snoop.lost_rules(conn)
    del snoop.programmed[:]
    snoop.reprogram_all(conn)
    assert snoop.programmed == ["vm1", "vm2"]
