# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Port security on a DVS: DHCP isolation, IP-MAC binding and security groups as OpenFlow rules.

libvirt 9.0 refuses nwfilter on Open vSwitch ports, so a VM port's security is a set of OpenFlow rules on its
CNA's bridge, all with one cookie derived from the port's MAC. They are written as ONE ``ovs-ofctl --bundle``
batch per port (an atomic transaction that first deletes the port's old rules): by the libvirt hook the ``cna``
role installs (when a port appears, also after a live migration, and when it goes), and by the modules when a
setting changes (running ports follow at once).

Where the settings live, so that the hook never has to call libvirt:
  - a port group's switches: the bridge's OVS ``external_ids:kvmfusion-pg-<group>`` (JSON);
  - a security group's rules: ``external_ids:kvmfusion-sg-<group>`` of the CNA's Open_vSwitch record (JSON);
  - a NIC's security group and bound IPs: the domain's metadata (``<ports>`` in PORTS_NS, keyed by MAC), which
    travels with the VM through migration.

Tables (only ports with a setting get rules; everything else keeps the bridge's NORMAL switching; a packet only
ever moves to a higher table, as OpenFlow requires):
  0: from a port: DHCP isolation, IP-MAC binding -> 1 / drop; anything else -> 3
  1: egress of a security group port: conntrack (zone = the port's OpenFlow number) -> 2; other ports -> 3
  2: egress verdict: established/related, or new and allowed -> commit -> 3; else drop
  3: to a security group port's MAC: conntrack -> 4; else NORMAL
  4: ingress verdict: established/related, or new and allowed -> commit -> NORMAL; else drop

Pure and standard-library only: the hook on a CNA imports this file as it is, outside Ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import json
import re
import xml.etree.ElementTree as ET

PORTS_NS = "https://kvmfusion.compute/xmlns/ports/1"
PORTS_KEY = "kvmfports"
PG_KEY = "kvmfusion-pg-"
SG_KEY = "kvmfusion-sg-"
# Cookies: the top 16 bits mark this collection's rules; a port's cookie carries its MAC in the low 48.
COOKIE_BASE = 0x4B56 << 48
SHARED_COOKIE = COOKIE_BASE  # the bridge-wide rules every secured port needs (MAC 0 is never a NIC's)
PROTOCOLS = ("any", "tcp", "udp", "icmp", "icmpv6")
# ICMPv6 that IPv6 itself needs: MLD query/report/done, router and neighbour solicitation/advertisement, MLDv2 report
ND_TYPES = (130, 131, 132, 133, 134, 135, 136, 143)
DIRECTIONS = ("in", "out")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


# ---------------------------------------------------------------------------- names, values
def validate_group_name(value, kind="security group"):
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError("%s name must be 1-63 characters of letters, digits, '_', '.' and '-', starting with a "
                         "letter or digit, got %r" % (kind, value))
    return value


def normalize_ips(values, where):
    """Sorted, de-duplicated host addresses (IPv4 or IPv6) of a NIC; a network or a bad address is an error."""
    out = []
    for v in values or []:
        try:
            if "%" in str(v):  # a zone index (fe80::1%eth0) names an interface of some host, not a NIC address
                raise ValueError(v)
            ip = ipaddress.ip_address(str(v).strip())
        except ValueError:
            raise ValueError("%s: %r is not an IP address" % (where, v))
        if ip.is_multicast or ip.is_unspecified:
            raise ValueError("%s: %s cannot be a NIC's own address" % (where, ip))
        if str(ip) not in out:
            out.append(str(ip))
    return sorted(out, key=lambda s: (":" in s, ipaddress.ip_address(s)))


def cookie(mac):
    if not isinstance(mac, str) or not _MAC.match(mac.lower()):
        raise ValueError("not a MAC address: %r" % (mac,))
    return COOKIE_BASE | int(mac.lower().replace(":", ""), 16)


# ---------------------------------------------------------------------------- security group rules
def _port_range(value, where):
    if isinstance(value, bool):
        raise ValueError("%s: ports must be numbers or ranges like '1000-2000', got %r" % (where, value))
    if isinstance(value, int):
        lo = hi = value
    elif (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(x, int) and not isinstance(x, bool) for x in value)):
        lo, hi = value  # the canonical form the modules return: a rule set read back can be given again
    elif isinstance(value, str) and re.match(r"^\s*\d+\s*(-\s*\d+\s*)?$", value):
        parts = [int(x) for x in value.split("-")]
        lo, hi = parts[0], parts[-1]
    else:
        raise ValueError("%s: ports must be numbers or ranges like '1000-2000', got %r" % (where, value))
    if not 1 <= lo <= hi <= 65535:
        raise ValueError("%s: port range %r must lie within 1-65535, low end first" % (where, value))
    return [lo, hi]


def normalize_rule(rule, where):
    """One rule: direction, protocol, ports ([[lo, hi]...]), remote_cidr; validated, in a canonical form."""
    if not isinstance(rule, dict):
        raise ValueError("%s: a rule is a dict (direction, protocol, ports, remote_cidr), got %r" % (where, rule))
    keys = ("direction", "protocol", "ports", "remote_cidr", "remote_group", "remote_ips", "icmp_type")
    unknown = sorted(set(rule) - set(keys))
    if unknown:
        raise ValueError("%s: unknown rule key %s (direction, protocol, ports, remote_cidr, remote_group, icmp_type)"
                         % (where, unknown[0]))
    direction = rule.get("direction", "in")
    if direction not in DIRECTIONS:
        raise ValueError("%s: direction must be in or out, got %r" % (where, direction))
    proto = str(rule.get("protocol") or "any").lower()
    if proto not in PROTOCOLS:
        raise ValueError("%s: protocol must be one of %s, got %r" % (where, ", ".join(PROTOCOLS), rule.get("protocol")))
    out = {"direction": direction, "protocol": proto}
    if rule.get("remote_group") is not None:
        if rule.get("remote_cidr") is not None:
            raise ValueError("%s: give remote_cidr or remote_group, not both" % where)
        try:
            out["remote_group"] = validate_group_name(rule["remote_group"], "remote_group")
        except ValueError as e:
            raise ValueError("%s: %s" % (where, e))
        if rule.get("remote_ips") is not None:  # resolved (stored rules): the members' bound addresses
            out["remote_ips"] = normalize_ips(rule["remote_ips"], where + " remote_ips")
    ports = rule.get("ports")
    if ports is not None and ports != []:
        if proto not in ("tcp", "udp"):
            raise ValueError("%s: ports apply to tcp and udp, not to protocol %s" % (where, proto))
        if not isinstance(ports, list):
            ports = [ports]
        ranges = sorted(_port_range(p, where) for p in ports)
        for a, b in zip(ranges, ranges[1:]):
            if b[0] <= a[1]:
                raise ValueError("%s: port ranges %s and %s overlap" % (where, "-".join(map(str, a)), "-".join(map(str, b))))
        out["ports"] = ranges
    if rule.get("icmp_type") is not None:
        if proto not in ("icmp", "icmpv6"):
            raise ValueError("%s: icmp_type applies to protocol icmp or icmpv6, not %s" % (where, proto))
        t = rule["icmp_type"]
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 255:
            raise ValueError("%s: icmp_type must be 0-255, got %r" % (where, t))
        out["icmp_type"] = t
    cidr = rule.get("remote_cidr")
    if cidr is not None:
        try:
            if "%" in str(cidr):
                raise ValueError(cidr)
            net = ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            raise ValueError("%s: remote_cidr %r is not an address or network" % (where, cidr))
        if proto == "icmp" and net.version == 6 or proto == "icmpv6" and net.version == 4:
            raise ValueError("%s: protocol %s does not match the IPv%d remote_cidr %s" % (where, proto, net.version, net))
        out["remote_cidr"] = str(net)
    return out


def normalize_rules(rules, group):
    """A group's rules in canonical form and order (so equal rule sets compare equal); duplicates are errors."""
    out = []
    for i, r in enumerate(rules or []):
        n = normalize_rule(r, "security group '%s' rule %d" % (group, i))
        if n in out:
            raise ValueError("security group '%s' rule %d repeats an earlier rule" % (group, i))
        out.append(n)
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def remote_groups(rules):
    """The groups named by remote_group rules."""
    return sorted(set(r["remote_group"] for r in rules if r.get("remote_group")))


def resolve(rules, members):
    """``rules`` with each remote_group rule's ``remote_ips`` set from ``members`` ({group: [ips]}), canonical."""
    out = []
    for r in rules:
        r = dict(r)
        if r.get("remote_group"):
            r["remote_ips"] = normalize_ips(members.get(r["remote_group"], []), "remote_group %s" % r["remote_group"])
        out.append(r)
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def encode(value):
    """The JSON text stored in an OVS external_ids value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def decode(text, default=None):
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


# ---------------------------------------------------------------------------- NIC metadata in the domain
def ports_meta(root):
    """{mac: {"security_group", "ips" (bound), and for a learning NIC "learn" ("dhcp") and "learned": [{"ip",
    "expires"}]}} from a parsed domain's metadata. Learned addresses (from the guest's DHCP leases) exist in a running VM's live
    metadata only, so they travel with it through a live migration and go when it stops."""
    out = {}
    el = root.find("metadata/{%s}ports" % PORTS_NS)
    if el is None:
        return out
    for p in el:
        if p.tag.split("}")[-1] != "port" or not p.get("mac"):
            continue
        ips, learned = [], []
        for ip in p:
            if ip.tag.split("}")[-1] != "ip" or not ip.text:
                continue
            if ip.get("learned"):
                try:
                    learned.append({"ip": ip.text.strip(), "expires": int(ip.get("expires") or 0)})
                except ValueError:
                    continue
            else:
                ips.append(ip.text.strip())
        v = {"security_group": p.get("security_group") or None, "ips": ips}
        if p.get("learn"):  # only a learning NIC has these keys
            v.update(learn=p.get("learn"), learned=learned)
        out[p.get("mac").lower()] = v
    return out


def settings(meta):
    """What a user sets of a port (group, bound addresses, learning), without what was learned."""
    return dict((mac, {"security_group": v.get("security_group"), "ips": list(v.get("ips") or []),
                       "learn": v.get("learn")}) for mac, v in meta.items())


def ports_element(ports, namespaced=True):
    """The metadata element for {mac: {security_group, ips, learn, learned}} (None when no NIC has a setting)."""
    items = [(mac, v) for mac, v in sorted(ports.items()) if v.get("security_group") or v.get("ips") or v.get("learn")]
    if not items:
        return None
    q = (lambda t: "{%s}%s" % (PORTS_NS, t)) if namespaced else (lambda t: t)
    root = ET.Element(q("ports"))
    for mac, v in items:
        p = ET.SubElement(root, q("port"), mac=mac)
        if v.get("security_group"):
            p.set("security_group", v["security_group"])
        if v.get("learn"):
            p.set("learn", v["learn"])
        for ip in v.get("ips") or []:
            ET.SubElement(p, q("ip")).text = ip
        if v.get("learn"):
            for entry in v.get("learned") or []:
                ET.SubElement(p, q("ip"), learned=v["learn"], expires=str(int(entry["expires"]))).text = entry["ip"]
    return root


def learn(meta, mac, ip, lease, now):
    """``meta`` (ports_meta) with ``ip`` learned for NIC ``mac`` until now + lease; expired entries dropped.
    None when nothing changes (the NIC does not learn, or it already holds the address for long enough)."""
    v = meta.get(mac)
    if not v or not v.get("learn"):
        return None
    cur = v.get("learned") or []
    keep = [e for e in cur if e["expires"] > now and e["ip"] != ip]
    old = [e for e in cur if e["ip"] == ip and e["expires"] > now]
    expires = int(now + max(int(lease), 60))
    # a renewal that moves the expiry by less than a tenth of the lease is not worth rewriting the metadata
    if old and len(keep) + 1 == len(cur) and abs(old[0]["expires"] - expires) < max(int(lease) // 10, 30):
        return None
    out = dict(meta)
    out[mac] = dict(v, learned=sorted(keep + [{"ip": ip, "expires": expires}], key=lambda e: e["ip"]))
    return out


def expire(meta, now):
    """``meta`` without learned entries that expired, or None when none did."""
    changed = False
    out = {}
    for mac, v in meta.items():
        if v.get("learn"):
            live = [e for e in v.get("learned") or [] if e["expires"] > now]
            changed = changed or len(live) != len(v.get("learned") or [])
            v = dict(v, learned=live)
        out[mac] = v
    return out if changed else None


def domain_ports(root, live=True, now=None):
    """[{mac, dev, network, portgroup, security_group, ips (, learn)}] of a parsed domain's NICs on a network; ``ips``
    holds the bound addresses and, with ``now``, the learned ones not yet expired."""
    meta = ports_meta(root)
    out = []
    for el in root.findall("devices/interface"):
        src = el.find("source")
        mac_el = el.find("mac")
        if src is None or mac_el is None or not src.get("network"):
            continue
        mac = mac_el.get("address", "").lower()
        tgt = el.find("target")
        m = meta.get(mac, {})
        ips = list(m.get("ips") or [])
        if now is not None and m.get("learn"):
            ips += [e["ip"] for e in m.get("learned") or [] if e["expires"] > now and e["ip"] not in ips]
        port = {"mac": mac, "dev": tgt.get("dev") if (live and tgt is not None) else None,
                "network": src.get("network"), "bridge": src.get("bridge"), "portgroup": src.get("portgroup"),
                "security_group": m.get("security_group"), "ips": ips}
        if m.get("learn"):
            port["learn"] = m["learn"]
        out.append(port)
    return out


# ---------------------------------------------------------------------------- DHCP leases, as the guest got them
DHCP_MAGIC = b"\x63\x82\x53\x63"


def parse_dhcp_ack(frame):
    """(client MAC, leased address, lease seconds) of an Ethernet frame carrying a DHCPACK, else None."""
    if len(frame) < 14 + 20 + 8 + 240:
        return None
    off = 12
    ethertype = int.from_bytes(frame[off:off + 2], "big")
    if ethertype == 0x8100:  # one VLAN tag (a trunk port)
        off += 4
        ethertype = int.from_bytes(frame[off:off + 2], "big")
    off += 2
    if ethertype != 0x0800 or frame[off] >> 4 != 4 or frame[off + 9] != 17:
        return None
    off += (frame[off] & 0x0F) * 4
    if int.from_bytes(frame[off:off + 2], "big") != 67 or int.from_bytes(frame[off + 2:off + 4], "big") != 68:
        return None
    b = frame[off + 8:]
    if len(b) < 240 or b[0] != 2 or b[1] != 1 or b[2] != 6 or b[236:240] != DHCP_MAGIC:
        return None
    mac = ":".join("%02x" % x for x in b[28:34])
    yiaddr = ".".join(str(x) for x in b[16:20])
    kind, lease, i = None, None, 240
    while i < len(b) and b[i] != 255:
        if b[i] == 0:
            i += 1
            continue
        if i + 1 >= len(b) or i + 2 + b[i + 1] > len(b):
            return None
        code, data = b[i], b[i + 2:i + 2 + b[i + 1]]
        if code == 53 and len(data) == 1:
            kind = data[0]
        elif code == 51 and len(data) == 4:
            lease = int.from_bytes(data, "big")
        i += 2 + b[i + 1]
    if kind != 5 or yiaddr == "0.0.0.0":
        return None
    return mac, yiaddr, lease if lease is not None else 3600


# ---------------------------------------------------------------------------- OpenFlow rules
def _port_masks(lo, hi):
    """value/mask pairs covering lo..hi exactly (OpenFlow matches ports by mask)."""
    out = []
    while lo <= hi:
        size = 1
        while lo % (size * 2) == 0 and lo + size * 2 - 1 <= hi and size < 65536:
            size *= 2
        out.append("%d" % lo if size == 1 else "0x%04x/0x%04x" % (lo, 0xFFFF & ~(size - 1)))
        lo += size
    return out


def _rule_matches(rule, direction):
    """OpenFlow match strings for one security group rule, seen at the VM's port (in: remote is the source).

    A remote group's rule matches its members' bound addresses (``remote_ips``); with none it matches nothing.
    """
    proto = rule["protocol"]
    if "remote_group" in rule:
        remotes = list(rule.get("remote_ips") or [])
    elif rule.get("remote_cidr"):
        remotes = [rule["remote_cidr"]]
    else:
        remotes = [None]
    out = []
    for remote in remotes:
        version = ipaddress.ip_network(remote, strict=False).version if remote else None
        if proto == "icmp" and version == 6 or proto == "icmpv6" and version == 4:
            continue  # a remote group member's address of the other family
        if proto == "icmp":
            version = 4
        elif proto == "icmpv6":
            version = 6
        for v in ((version,) if version else (4, 6)):
            if proto in ("tcp", "udp"):
                base = proto + ("6" if v == 6 else "")
            elif proto in ("icmp", "icmpv6"):
                base = "icmp" if v == 4 else "icmp6"
            else:
                base = "ip" if v == 4 else "ipv6"
            parts = [base]
            if remote:
                field = ("nw_src" if v == 4 else "ipv6_src") if direction == "in" else ("nw_dst" if v == 4 else "ipv6_dst")
                parts.append("%s=%s" % (field, remote))
            if rule.get("icmp_type") is not None:
                parts.append("icmp_type=%d" % rule["icmp_type"])
            if rule.get("ports"):
                for lo, hi in rule["ports"]:
                    for m in _port_masks(lo, hi):
                        out.append(",".join(parts + ["tp_dst=%s" % m]))
            else:
                out.append(",".join(parts))
    return out


def shared_flows():
    """Bridge-wide rules secured ports rely on (idempotent: every port's batch writes them again)."""
    c = "cookie=0x%x" % SHARED_COOKIE
    return ["add table=0,priority=1,%s,actions=goto_table:3" % c,
            "add table=1,priority=0,%s,actions=goto_table:3" % c,
            "add table=3,priority=0,%s,actions=NORMAL" % c]


def port_flows(port, portgroup, rules):
    """The batch for one port: delete its old rules, then add its new ones (empty list of adds when unsecured).

    ``port``: {mac, ofport, ips, security_group, police: (kbps, burst kb) or None}; ``portgroup``:
    {dhcp_isolation, ip_mac_binding};
    ``rules``: the security group's normalized rules, or None when the NIC is in no group.
    """
    mac = port["mac"].lower()
    c = cookie(mac)
    lines = ["delete cookie=0x%x/-1" % c]
    pg = portgroup or {}
    isolate, bind, sg = bool(pg.get("dhcp_isolation")), bool(pg.get("ip_mac_binding")), rules is not None
    shaped = bool(port.get("police"))
    if not (isolate or bind or sg or shaped):
        return lines
    n = int(port["ofport"])
    if n <= 0:
        raise ValueError("port of %s has no OpenFlow number yet" % mac)
    zone = int(port.get("zone") or (n & 0xFFFF))
    ck = "cookie=0x%x" % c

    def add(table, prio, match, actions):
        lines.append("add table=%d,priority=%d,%s,%s,actions=%s" % (table, prio, ck, match, actions))

    src = "in_port=%d" % n
    # a shaped port's traffic passes its meter (outbound shaping on the userspace datapath)
    meter = "meter:%d," % n if shaped else ""
    nxt = meter + ("goto_table:1" if (bind or sg or isolate) else "goto_table:3")
    if isolate:
        # the guest cannot be a DHCP (or DHCPv6) server for anyone: nothing from a server port, nothing to a
        # client port (a server answering from another port), no router advertisements
        add(0, 300, src + ",udp,tp_src=67", "drop")
        add(0, 300, src + ",udp,tp_dst=68", "drop")
        add(0, 300, src + ",udp6,tp_src=547", "drop")
        add(0, 300, src + ",udp6,tp_dst=546", "drop")
        add(0, 300, src + ",icmp6,icmp_type=134", "drop")
    if bind:
        m = src + ",dl_src=" + mac
        ips = port.get("ips") or []
        # DHCP from an unconfigured guest, IPv6 link-local and duplicate address detection
        add(0, 200, m + ",udp,nw_src=0.0.0.0,tp_src=68,tp_dst=67", nxt)
        add(0, 200, m + ",ipv6,ipv6_src=fe80::/10", nxt)
        # Neighbour discovery names link-layer addresses and targets of its own: a solicitation or an
        # advertisement carries this NIC's MAC (or none), and an advertisement claims only a link-local address
        # or a bound one; everything else of ND from the port is dropped (above the allows of its source).
        v6 = [ip for ip in ips if ":" in ip]
        for lla in (mac, "00:00:00:00:00:00"):
            for source in ["::", "fe80::/10"] + v6:
                add(0, 220, m + ",icmp6,ipv6_src=%s,icmp_type=135,icmp_code=0,nd_sll=%s" % (source, lla), nxt)
            for source in ["fe80::/10"] + v6:
                for target in ["fe80::/10"] + v6:
                    add(0, 220, m + ",icmp6,ipv6_src=%s,icmp_type=136,icmp_code=0,nd_target=%s,nd_tll=%s"
                        % (source, target, lla), nxt)
        add(0, 210, src + ",icmp6,icmp_type=135", "drop")
        add(0, 210, src + ",icmp6,icmp_type=136", "drop")
        for ip in ips:
            if ":" in ip:
                add(0, 200, m + ",ipv6,ipv6_src=" + ip, nxt)
            else:
                add(0, 200, m + ",arp,arp_sha=%s,arp_spa=%s" % (mac, ip), nxt)
                add(0, 200, m + ",ip,nw_src=" + ip, nxt)
        if not ips and not port.get("learn"):
            # no bound address: the MAC is still bound (ARP from this MAC only, IP from any address). A NIC that
            # learns its addresses from DHCP leases has none until it leases one: DHCP only, until then.
            add(0, 190, m + ",arp,arp_sha=" + mac, nxt)
            add(0, 190, m + ",ip", nxt)
            add(0, 190, m + ",ipv6", nxt)
        add(0, 100, src, "drop")
    else:
        add(0, 100, src, nxt)
    if sg:
        # neighbour discovery and MLD are not tracked (conntrack calls them invalid): they pass around it, as ARP does
        for t in ND_TYPES:
            add(1, 110, src + ",icmp6,icmp_type=%d" % t, "goto_table:3")
            add(3, 110, "icmp6,icmp_type=%d,dl_dst=%s" % (t, mac), "NORMAL")
        # a DHCP server answers the offered address, which no tracked connection knows: replies to the client
        # ports pass to the member (servers on isolated port groups cannot send them)
        add(3, 110, "udp,tp_src=67,tp_dst=68,dl_dst=" + mac, "NORMAL")
        add(3, 110, "udp6,tp_src=547,tp_dst=546,dl_dst=" + mac, "NORMAL")
        # unicast IP to a member in a broadcast or multicast frame would flood past its conntrack check
        for ip in port.get("ips") or []:
            family, field = ("ipv6", "ipv6_dst") if ":" in ip else ("ip", "nw_dst")
            add(3, 105, "%s,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,%s=%s" % (family, field, ip), "drop")
        for family in ("ip", "ipv6"):
            add(1, 100, src + "," + family, "ct(table=2,zone=%d)" % zone)
            add(3, 100, "%s,dl_dst=%s" % (family, mac), "ct(table=4,zone=%d)" % zone)
        # egress verdict: replies and related (ICMP errors) pass; new connections by the rules (none: all out)
        add(2, 300, src + ",ct_state=+trk+inv", "drop")
        add(2, 200, src + ",ct_state=+trk+est", "goto_table:3")
        add(2, 200, src + ",ct_state=+trk+rel", "goto_table:3")
        outbound = [r for r in rules if r["direction"] == "out"]
        allow = "ct(commit,zone=%d),goto_table:3" % zone
        if not outbound:
            add(2, 100, src + ",ct_state=+trk+new,ip", allow)
            add(2, 100, src + ",ct_state=+trk+new,ipv6", allow)
        for r in outbound:
            for match in _rule_matches(r, "out"):
                add(2, 100, src + ",ct_state=+trk+new," + match, allow)
        add(2, 1, src, "drop")
        # ingress verdict
        dst = "dl_dst=" + mac
        add(4, 300, dst + ",ct_state=+trk+inv", "drop")
        add(4, 200, dst + ",ct_state=+trk+est", "NORMAL")
        add(4, 200, dst + ",ct_state=+trk+rel", "NORMAL")
        for r in rules:
            if r["direction"] == "in":
                for match in _rule_matches(r, "in"):
                    add(4, 100, dst + ",ct_state=+trk+new," + match, "ct(commit,zone=%d),NORMAL" % zone)
        add(4, 1, dst, "drop")
    return shared_flows() + lines


def plan(ports, bridges, groups):
    """Batches {bridge: [lines]} for ``ports`` (from domain_ports, each with its ``ofport``).

    ``bridges``: {network: {"bridge": name, "portgroups": {group: settings}}} for the DVSs of this CNA;
    ``groups``: {security group: normalized rules}. A NIC in a group this CNA does not know is an error:
    its port is never left open.
    """
    out = []
    for p in ports:
        net = bridges.get(p["network"])
        if net is None:
            continue
        rules = None
        if p.get("security_group"):
            if p["security_group"] not in groups:
                raise ValueError("NIC %s: security group '%s' is not defined on this CNA"
                                 % (p["mac"], p["security_group"]))
            rules = groups[p["security_group"]]
        pg = net["portgroups"].get(p.get("portgroup") or "", {})
        out.append((net["bridge"], p, port_flows(p, pg, rules)))
    return out


def removal(macs):
    """The batch deleting every rule of ports ``macs``."""
    return ["delete cookie=0x%x/-1" % cookie(m) for m in macs]


OFCTL = ["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows"]


def ofctl_batch(bridge):
    """The command that applies one batch (the lines on its standard input) atomically."""
    return OFCTL + [bridge, "-"]


# ---------------------------------------------------------------------------- what this CNA's OVS holds
# One ovs-vsctl call reads everything a batch needs: bridges with their port groups' switches, the security
# groups, and the interfaces' OpenFlow numbers.
VSCTL_STATE = ["ovs-vsctl", "--timeout=10", "--format=json", "--data=json",
               "--", "--columns=name,external_ids,datapath_type", "list", "Bridge",
               "--", "--columns=external_ids", "list", "Open_vSwitch",
               "--", "--columns=name,ofport,ifindex,ingress_policing_rate,ingress_policing_burst", "list", "Interface"]
# OVS's own default burst for ingress policing when none is set (kb)
DEFAULT_BURST_KB = 8000


def _ovs_value(v):
    if isinstance(v, list) and len(v) == 2 and v[0] in ("map", "set", "uuid"):
        if v[0] == "map":
            return dict((a, _ovs_value(b)) for a, b in v[1])
        if v[0] == "set":
            return [_ovs_value(x) for x in v[1]]
        return v[1]
    return v


def ovs_state(text):
    """{"bridges": {name: {"portgroups": {group: settings}}}, "groups": {name: rules}, "ofports": {iface: n}}
    from the output of VSCTL_STATE."""
    tables = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            data = json.loads(line)
            heads = data.get("headings", [])
            tables.append([dict(zip(heads, [_ovs_value(v) for v in row])) for row in data.get("data", [])])
    while len(tables) < 3:
        tables.append([])
    bridges = {}
    for br in tables[0]:
        ids = br.get("external_ids") or {}
        pgs = dict((k[len(PG_KEY):], decode(v, {})) for k, v in ids.items() if k.startswith(PG_KEY))
        bridges[br["name"]] = {"bridge": br["name"], "portgroups": pgs, "datapath": br.get("datapath_type") or "system"}
    groups = {}
    for rec in tables[1]:
        for k, v in (rec.get("external_ids") or {}).items():
            if k.startswith(SG_KEY):
                groups[k[len(SG_KEY):]] = decode(v, [])
    ofports, policing, ifindexes = {}, {}, {}
    for i in tables[2]:
        n = i.get("ofport")
        if isinstance(n, int) and n > 0:
            ofports[i["name"]] = n
        x = i.get("ifindex")
        if isinstance(x, int) and x > 0:
            ifindexes[i["name"]] = x
        rate = i.get("ingress_policing_rate")
        if isinstance(rate, int) and rate > 0:
            burst = i.get("ingress_policing_burst")
            policing[i["name"]] = (rate, burst if isinstance(burst, int) and burst > 0 else DEFAULT_BURST_KB)
    return {"bridges": bridges, "groups": groups, "ofports": ofports, "policing": policing, "ifindexes": ifindexes}


def zone_of(ifindex, ofport):
    """The port's conntrack zone. The connection tracker is one per CNA, shared by every bridge, while OpenFlow
    numbers count from 1 on each bridge: the zone comes from the port's kernel interface index, unique on the
    host (two live ports collide only if their indexes differ by a multiple of 65535); the OpenFlow number only
    when OVS reports no index."""
    if isinstance(ifindex, int) and ifindex > 0:
        return ifindex % 65535 + 1
    return int(ofport) & 0xFFFF


class NotReady(ValueError):
    """A port has no OpenFlow number yet (OVS is still adding it): read again shortly."""


def batches(ports, state):
    """[(bridge, port, lines)] for a domain's ports on this CNA's DVSs; a port without an OpenFlow number yet is
    NotReady (the caller waits and reads again)."""
    ready = []
    for p in ports:
        br = state["bridges"].get(p["network"])
        if br is None:
            continue
        n = state["ofports"].get(p.get("dev") or "")
        if not n:
            raise NotReady("port %s of NIC %s has no OpenFlow number yet" % (p.get("dev"), p["mac"]))
        # The userspace datapath does not enforce the OVS ingress policing libvirt sets for outbound shaping:
        # there the port's own OpenFlow meter does it.
        police = state.get("policing", {}).get(p.get("dev")) if br.get("datapath") == "netdev" else None
        ready.append(dict(p, ofport=n, police=police, zone=zone_of(state.get("ifindexes", {}).get(p.get("dev")), n)))
    return plan(ready, state["bridges"], state["groups"])


def meter_commands(bridge, port):
    """(modify, add) commands of the port's outbound meter (id = its OpenFlow number), or None when unshaped.
    Modify first: a meter of that number may exist from an earlier port; add when it does not."""
    police = port.get("police")
    if not police:
        return None
    spec = "meter=%d,kbps,burst,band=type=drop,rate=%d,burst_size=%d" % (int(port["ofport"]), police[0], police[1])
    base = ["ovs-ofctl", "-O", "OpenFlow13"]
    return base + ["mod-meter", bridge, spec], base + ["add-meter", bridge, spec]
