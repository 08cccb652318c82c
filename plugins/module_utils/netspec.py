# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Distributed virtual switches and port groups as data: validation, libvirt network XML, managed views.

Pure: no libvirt, no commands. A DVS is an Open vSwitch bridge of the same name on each CNA plus a
libvirt network forwarding to it (``<virtualport type='openvswitch'/>``); a port group is one
``<portgroup>`` of that network (VLAN access or trunk, bandwidth).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import names, xmlutil

BOND_MODES = ("active-backup", "balance-slb", "balance-tcp")
LACP_MODES = ("off", "active", "passive")
VLAN_MODES = ("access", "trunk")
PRIORITIES = ("low", "medium", "high")
# A port group's port security switches (kept in OVS for the hook, not in the libvirt network).
PORT_SECURITY = ("dhcp_isolation", "ip_mac_binding")
# Linux interface names: at most 15 bytes, no '/', ':' or white space (dev_valid_name in the kernel).
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# The bond port of a DVS's uplinks: a ':' no Linux NIC name can hold, so it never collides with one.
BOND_SUFFIX = ":uplink"


def validate_ifname(value, kind):
    if not isinstance(value, str) or not _IFNAME.match(value) or value in (".", "..") or value.startswith("-"):
        raise ValueError("%s must be 1-15 characters of letters, digits, '_', '.' and '-' (a Linux interface "
                         "name), got %r" % (kind, value))
    return value


def bond_port(dvs):
    return dvs + BOND_SUFFIX


# ---------------------------------------------------------------------------- dvs
def dvs_state(p):
    """The managed view the user declared: name, and uplinks / bond_mode / lacp / mtu when given."""
    name = validate_ifname(p.get("name"), "DVS name")
    d = {"name": name}
    if p.get("uplinks") is not None:
        ups = [validate_ifname(u, "DVS '%s': uplink" % name) for u in p["uplinks"]]
        if len(set(ups)) != len(ups):
            raise ValueError("DVS '%s': uplink %s is listed twice" % (name, sorted(u for u in ups if ups.count(u) > 1)[0]))
        d["uplinks"] = sorted(ups)
    mode, lacp = p.get("bond_mode"), p.get("lacp")
    n_up = len(d.get("uplinks", []))
    if (mode or lacp) and "uplinks" in d and n_up < 2:
        raise ValueError("DVS '%s': bond_mode and lacp apply to two or more uplinks (a bond), %d given" % (name, n_up))
    if mode and mode not in BOND_MODES:
        raise ValueError("DVS '%s': bond_mode must be one of %s" % (name, ", ".join(BOND_MODES)))
    if lacp and lacp not in LACP_MODES:
        raise ValueError("DVS '%s': lacp must be one of %s" % (name, ", ".join(LACP_MODES)))
    if mode == "balance-tcp" and (lacp or "off") == "off":
        raise ValueError("DVS '%s': bond_mode balance-tcp needs LACP (lacp: active or passive)" % name)
    if n_up >= 2:
        d["bond_mode"] = mode or "active-backup"
        d["lacp"] = lacp or "off"
    mtu = p.get("mtu")
    if mtu is not None:
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
            raise ValueError("DVS '%s': mtu must be 68-65535, got %r" % (name, mtu))
        if "uplinks" in d and not d["uplinks"]:
            raise ValueError("DVS '%s': mtu is set on the uplinks, and uplinks is empty" % name)
        d["mtu"] = mtu
    return d


def network_xml(name, portgroups=()):
    """A libvirt network forwarding to OVS bridge ``name``; ``portgroups`` are <portgroup> elements kept as they are."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "forward", mode="bridge")
    ET.SubElement(root, "bridge", name=name)
    ET.SubElement(root, "virtualport", type="openvswitch")
    for pg in portgroups:
        root.append(pg)
    return xmlutil.tostring(root)


def is_dvs_network(root):
    """Whether a parsed libvirt network definition is a DVS (bridge mode on an OVS bridge)."""
    return (xmlutil.find_attr(root, "forward", "mode") == "bridge"
            and xmlutil.find_attr(root, "virtualport", "type") == "openvswitch")


# ---------------------------------------------------------------------------- port groups
def _vlan_id(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4094:
        raise ValueError("%s must be a VLAN ID from 1 to 4094, got %r" % (what, value))
    return value


def parse_vlans(items, what):
    """[int] from a list of IDs and "a-b" ranges; a VLAN listed twice (also inside a range) is an error."""
    out = []
    for item in items or []:
        if isinstance(item, str) and re.match(r"^\s*\d+\s*-\s*\d+\s*$", item):
            a, b = (int(x) for x in item.split("-"))
            if a > b:
                raise ValueError("%s: range %r runs backwards" % (what, item))
            ids = list(range(_vlan_id(a, what), _vlan_id(b, what) + 1))
        else:
            try:
                ids = [_vlan_id(int(item) if isinstance(item, str) and item.strip().isdigit() else item, what)]
            except (TypeError, ValueError):
                raise ValueError("%s must be VLAN IDs (1-4094) or ranges like '100-110', got %r" % (what, item))
        for i in ids:
            if i in out:
                raise ValueError("%s: VLAN %d is listed twice" % (what, i))
            out.append(i)
    return sorted(out)


def _mbit_to_kib(value, what):
    """Mbit/s (or Mbit) to libvirt's KiB/s (KiB), at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("%s must be a positive number (Mbit/s, burst in Mbit), got %r" % (what, value))
    return max(1, int(round(value * 1000000.0 / 8 / 1024)))


def _shaping(direction, s, where):
    if not s:
        return None
    s = dict(s)
    unknown = sorted(set(s) - set(("average", "peak", "burst")))
    if unknown:
        raise ValueError("%s %s: unknown setting %s (average, peak, burst)" % (where, direction, unknown[0]))
    if s.get("average") is None:
        raise ValueError("%s %s: average is needed (peak and burst shape around it)" % (where, direction))
    out = dict((k, _mbit_to_kib(v, "%s %s %s" % (where, direction, k))) for k, v in s.items() if v is not None)
    if "peak" in out and s["peak"] < s["average"]:
        raise ValueError("%s %s: peak (%s Mbit/s) is below average (%s Mbit/s)" % (where, direction, s["peak"], s["average"]))
    return out


def portgroup_key(p):
    """(dvs, name) of a port group, validated: what both a declaration and a removal name."""
    return validate_ifname(p.get("dvs"), "dvs"), names.validate_name(p.get("name"), kind="port group")


def portgroup_state(p):
    """The managed view of a port group: dvs, name, vlan_mode, vlan / trunk_vlans / native_vlan, inbound, outbound."""
    dvs, name = portgroup_key(p)
    where = "port group '%s'" % name
    mode = p.get("vlan_mode") or "access"
    if mode not in VLAN_MODES:
        raise ValueError("%s: vlan_mode must be access or trunk" % where)
    d = {"dvs": dvs, "name": name, "vlan_mode": mode}
    if mode == "access":
        if p.get("trunk_vlans") or p.get("native_vlan") is not None:
            raise ValueError("%s: trunk_vlans and native_vlan are for vlan_mode trunk" % where)
        if p.get("vlan") is None:
            # An access port without a tag would be an unrestricted trunk on OVS: never made.
            raise ValueError("%s: an access port group needs its vlan (1-4094)" % where)
        d["vlan"] = _vlan_id(p["vlan"], "%s: vlan" % where)
    else:
        if p.get("vlan") is not None:
            raise ValueError("%s: vlan is for vlan_mode access; a trunk lists trunk_vlans" % where)
        trunks = parse_vlans(p.get("trunk_vlans"), "%s: trunk_vlans" % where)
        if not trunks:
            # An empty list must never mean "every VLAN" (OpenNebula #8028).
            raise ValueError("%s: a trunk port group needs at least one VLAN in trunk_vlans" % where)
        d["trunk_vlans"] = trunks
        if p.get("native_vlan") is not None:
            d["native_vlan"] = _vlan_id(p["native_vlan"], "%s: native_vlan" % where)
    for direction in ("inbound", "outbound"):
        s = _shaping(direction, (p.get("shaping") or {}).get(direction), where)
        if s:
            d[direction] = s
    unknown = sorted(set(p.get("shaping") or {}) - set(("inbound", "outbound", "priority")))
    if unknown:
        raise ValueError("%s: shaping has no setting %s (inbound, outbound, priority)" % (where, unknown[0]))
    prio = (p.get("shaping") or {}).get("priority")
    if prio is not None and prio not in PRIORITIES:
        raise ValueError("%s: shaping priority must be low, medium or high" % where)
    for key in PORT_SECURITY:
        d[key] = bool(p.get(key))
    return d


def portgroup_element(d):
    el = ET.Element("portgroup", name=d["name"])
    vlan = ET.SubElement(el, "vlan")
    if d["vlan_mode"] == "access":
        ET.SubElement(vlan, "tag", id=str(d["vlan"]))
    else:
        vlan.set("trunk", "yes")
        for t in d["trunk_vlans"]:
            ET.SubElement(vlan, "tag", id=str(t))
        if d.get("native_vlan") is not None:
            ET.SubElement(vlan, "tag", id=str(d["native_vlan"]), nativeMode="untagged")
    if d.get("inbound") or d.get("outbound"):
        bw = ET.SubElement(el, "bandwidth")
        for direction in ("inbound", "outbound"):
            if d.get(direction):
                ET.SubElement(bw, direction, dict((k, str(v)) for k, v in sorted(d[direction].items())))
    return el


def portgroup_view(dvs, el):
    """The managed view of a <portgroup> element (the inverse of portgroup_element)."""
    d = {"dvs": dvs, "name": el.get("name")}
    vlan = el.find("vlan")
    tags = vlan.findall("tag") if vlan is not None else []
    if vlan is not None and vlan.get("trunk") == "yes":
        d["vlan_mode"] = "trunk"
        d["trunk_vlans"] = sorted(int(t.get("id")) for t in tags if t.get("nativeMode") is None)
        native = [int(t.get("id")) for t in tags if t.get("nativeMode") is not None]
        if native:
            d["native_vlan"] = native[0]
            if native[0] in d["trunk_vlans"]:
                d["trunk_vlans"].remove(native[0])
    elif tags:
        d["vlan_mode"] = "access"
        d["vlan"] = int(tags[0].get("id"))
    else:
        d["vlan_mode"] = None  # made elsewhere without a VLAN: an unrestricted trunk on OVS
    for direction in ("inbound", "outbound"):
        s = el.find("bandwidth/%s" % direction)
        if s is not None:
            d[direction] = dict((k, int(v)) for k, v in s.attrib.items() if k in ("average", "peak", "burst"))
    return d


def ovs_vlan_columns(d):
    """The OVS Port columns a VM port of port group ``d`` gets (what libvirt sets when the port appears)."""
    if d["vlan_mode"] == "access":
        return {"vlan_mode": "access", "tag": str(d["vlan"]), "trunks": "[]"}
    trunks = list(d["trunk_vlans"])
    if d.get("native_vlan") is not None:
        return {"vlan_mode": "native-untagged", "tag": str(d["native_vlan"]),
                "trunks": "[%s]" % ",".join(str(t) for t in sorted(set(trunks + [d["native_vlan"]])))}
    return {"vlan_mode": "trunk", "tag": "[]", "trunks": "[%s]" % ",".join(str(t) for t in trunks)}
