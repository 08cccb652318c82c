# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Addresses learned from a guest's DHCP leases (bound_ips: dhcp): parsing, recording, expiry, rules, vm spec."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import portsec, vmspec, xmlutil

MAC = "52:54:00:78:00:02"
NOW = 1800000000


def dhcp_frame(kind=5, mac=MAC, yiaddr="192.168.78.101", lease=3600, sport=67, dport=68, vlan=None, op=2, extra=b""):
    """An Ethernet frame with a DHCP message of type ``kind`` (5 = ACK) from a server to a client."""
    opts = bytes([53, 1, kind])
    if lease is not None:
        opts += bytes([51, 4]) + struct.pack(">I", lease)
    bootp = (bytes([op, 1, 6, 0]) + b"\x12\x34\x56\x78" + b"\x00" * 8 + bytes(int(x) for x in yiaddr.split("."))
             + b"\x00" * 8 + bytes(int(x, 16) for x in mac.split(":")) + b"\x00" * 10 + b"\x00" * 192
             + portsec.DHCP_MAGIC + extra + opts + b"\xff")
    udp = struct.pack(">HHHH", sport, dport, 8 + len(bootp), 0) + bootp
    ip = bytes([0x45, 0]) + struct.pack(">H", 20 + len(udp)) + b"\x00" * 4 + bytes([64, 17]) + b"\x00\x00" \
        + bytes([192, 168, 78, 5]) + bytes([192, 168, 78, 101])
    eth = bytes(int(x, 16) for x in mac.split(":")) + b"\x52\x54\x00\x78\x00\x05"
    if vlan is not None:
        eth += b"\x81\x00" + struct.pack(">H", vlan)
    return eth + b"\x08\x00" + ip + udp


def test_an_ack_gives_the_client_mac_the_leased_address_and_the_lease():
    assert portsec.parse_dhcp_ack(dhcp_frame()) == (MAC, "192.168.78.101", 3600)
    assert portsec.parse_dhcp_ack(dhcp_frame(vlan=100)) == (MAC, "192.168.78.101", 3600)  # a trunk port
    assert portsec.parse_dhcp_ack(dhcp_frame(lease=None)) == (MAC, "192.168.78.101", 3600)  # default hour
    # pad options before the message type are skipped
    assert portsec.parse_dhcp_ack(dhcp_frame(extra=b"\x00\x00")) == (MAC, "192.168.78.101", 3600)


@pytest.mark.parametrize("frame", [
    dhcp_frame(kind=2),  # an offer binds nothing
    dhcp_frame(kind=6),  # a NAK
    dhcp_frame(op=1),  # a request (what a client sends)
    dhcp_frame(sport=68, dport=67),  # client to server
    dhcp_frame(yiaddr="0.0.0.0"),
    dhcp_frame()[:200],  # cut short
    dhcp_frame()[:-10] + b"\x33\x40",  # an option running past the end
    b"\x00" * 400,
], ids=["offer", "nak", "request", "to-server", "no-address", "short", "truncated-option", "zeros"])
def test_anything_but_a_server_ack_binds_nothing(frame):
    assert portsec.parse_dhcp_ack(frame) is None


def meta(learn="dhcp", learned=()):
    v = {"security_group": None, "ips": []}
    if learn:
        v.update(learn=learn, learned=list(learned))
    return {MAC: v}


def test_a_lease_is_recorded_with_its_expiry_and_a_renewal_changes_nothing_until_it_matters():
    m = portsec.learn(meta(), MAC, "192.168.78.101", 3600, NOW)
    assert m[MAC]["learned"] == [{"ip": "192.168.78.101", "expires": NOW + 3600}]
    assert portsec.learn(m, MAC, "192.168.78.101", 3600, NOW + 100) is None  # renewed early: no rewrite
    later = portsec.learn(m, MAC, "192.168.78.101", 3600, NOW + 1800)
    assert later[MAC]["learned"] == [{"ip": "192.168.78.101", "expires": NOW + 5400}]
    # a new address is added beside the old one until that expires
    two = portsec.learn(m, MAC, "192.168.78.102", 3600, NOW + 10)
    assert [e["ip"] for e in two[MAC]["learned"]] == ["192.168.78.101", "192.168.78.102"]


def test_a_nic_that_does_not_learn_or_another_mac_learns_nothing():
    assert portsec.learn(meta(learn=None), MAC, "192.168.78.101", 3600, NOW) is None
    assert portsec.learn(meta(), "52:54:00:00:00:99", "192.168.78.101", 3600, NOW) is None


def test_expired_leases_go():
    m = meta(learned=[{"ip": "192.168.78.101", "expires": NOW - 1}, {"ip": "192.168.78.102", "expires": NOW + 60}])
    assert portsec.expire(m, NOW)[MAC]["learned"] == [{"ip": "192.168.78.102", "expires": NOW + 60}]
    assert portsec.expire(portsec.expire(m, NOW), NOW) is None


def domain(m, live=True):
    el = portsec.ports_element(m)
    nic = ("<interface type='bridge'><mac address='%s'/><source network='dvs1' portgroup='web' bridge='dvs1'/>"
           "<target dev='vnet2'/></interface>" % MAC)
    return ET.fromstring("<domain><metadata>%s</metadata><devices>%s</devices></domain>"
                         % (ET.tostring(el).decode() if el is not None else "", nic))


def test_learned_addresses_live_in_the_metadata_and_bind_until_they_expire():
    m = meta(learned=[{"ip": "192.168.78.101", "expires": NOW + 60}])
    root = domain(m)
    assert portsec.ports_meta(root) == m
    assert portsec.settings(portsec.ports_meta(root)) == {MAC: {"security_group": None, "ips": [], "learn": "dhcp"}}
    port = portsec.domain_ports(root, now=NOW)[0]
    assert port["ips"] == ["192.168.78.101"] and port["learn"] == "dhcp"
    assert portsec.domain_ports(root, now=NOW + 61)[0]["ips"] == []  # expired: no longer bound
    flows = "\n".join(portsec.port_flows(dict(port, ofport=5), {"ip_mac_binding": True}, None))
    assert "arp_spa=192.168.78.101" in flows and "nw_src=192.168.78.101" in flows


def test_a_nic_binding_dhcp_leases_reads_back_as_dhcp_and_keeps_no_static_address():
    d = vmspec.desired_state({"name": "vm1", "nics": [{"dvs": "dvs1", "portgroup": "web", "bound_ips": "dhcp",
                                                       "mac": MAC}]})
    assert d["nics"][0]["bound_ips"] == "dhcp"
    xml = vmspec.build_xml(d, "kvm")
    assert portsec.settings(portsec.ports_meta(xmlutil.parse(xml))) == {
        MAC: {"security_group": None, "ips": [], "learn": "dhcp"}}
    assert vmspec.managed_view(xml, d)["nics"][0]["bound_ips"] == "dhcp"


def test_bound_ips_is_a_list_or_dhcp():
    with pytest.raises(ValueError) as err:
        vmspec.desired_state({"name": "vm1", "nics": [{"dvs": "dvs1", "portgroup": "web", "bound_ips": "static"}]})
    assert "bound_ips must be a list of addresses or dhcp" in str(err.value)


def test_a_learning_nic_without_a_lease_sends_nothing_but_dhcp():
    # no lease yet (or it expired): not the MAC-only binding of a NIC without bound addresses
    port = {"mac": MAC, "ofport": 5, "ips": [], "learn": "dhcp"}
    flows = portsec.port_flows(port, {"ip_mac_binding": True}, None)
    allowed = [ln for ln in flows if ",in_port=5," in ln and not ln.endswith("actions=drop")]
    assert allowed and all("udp,nw_src=0.0.0.0" in ln or "ipv6" in ln or "icmp6" in ln for ln in allowed)
    static = portsec.port_flows({"mac": MAC, "ofport": 5, "ips": []}, {"ip_mac_binding": True}, None)
    assert any(ln.endswith(",ip,actions=goto_table:1") or ",ip,actions=goto_table:1" in ln for ln in static)


def test_dhcp_isolation_drops_server_answers_from_any_port_and_router_advertisements():
    flows = portsec.port_flows({"mac": MAC, "ofport": 5, "ips": []}, {"dhcp_isolation": True}, None)
    drops = [ln for ln in flows if ln.endswith("actions=drop")]
    for match in ("udp,tp_src=67", "udp,tp_dst=68", "udp6,tp_src=547", "udp6,tp_dst=546", "icmp6,icmp_type=134"):
        assert any("in_port=5," + match in ln for ln in drops), match


def test_a_group_member_gets_dhcp_answers_and_no_unicast_ip_in_broadcast_frames():
    rules = portsec.normalize_rules([{"protocol": "tcp", "ports": [22]}], "web")
    flows = portsec.port_flows({"mac": MAC, "ofport": 5, "ips": ["10.0.0.5"]}, {}, rules)
    assert any("udp,tp_src=67,tp_dst=68,dl_dst=%s,actions=NORMAL" % MAC in ln for ln in flows)
    assert any("ip,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,nw_dst=10.0.0.5,actions=drop" in ln for ln in flows)


def test_a_clone_of_a_learning_nic_keeps_learning_under_its_new_mac():
    from ansible_collections.kvmfusion.compute.plugins.module_utils import clones
    leased = meta(learned=[{"ip": "192.168.78.101", "expires": NOW + 60}])
    src = domain(leased)
    ET.SubElement(src, "os")  # clone_xml rewrites the source's <os> (SMBIOS)
    root = clones.clone_xml(src, "c1", "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f", {}, [], "c1", {},
                            {"source": "vm1", "snapshot": None, "linked": False})
    root = xmlutil.parse(xmlutil.tostring(root))
    new = root.find("devices/interface/mac").get("address")
    assert new != MAC
    assert portsec.ports_meta(root) == {new: {"security_group": None, "ips": [], "learn": "dhcp", "learned": []}}
