# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Distributed virtual switches and port groups on Open vSwitch, one CNA at a time.

A DVS on a CNA is an OVS bridge of its name, its uplink (one NIC, or a bond of several), and a libvirt
network of its name forwarding to the bridge; a play over the CNAs makes it span them. A port group is
a ``<portgroup>`` of that network; a change reaches the definition (for VMs started or migrated later)
and the running VMs' ports on this CNA (OVS columns and libvirt's live bandwidth), without restarting
anything. OVS work is local: both managers refuse a remote URI.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import netspec, portsec, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    AFFECT_LIVE,
    NETWORK_SECTION_PORTGROUP,
    NETWORK_UPDATE_ADD_LAST,
    NETWORK_UPDATE_AFFECT_CONFIG,
    NETWORK_UPDATE_AFFECT_LIVE,
    NETWORK_UPDATE_DELETE,
    NETWORK_UPDATE_MODIFY,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.ovs import OWNER_KEY, Ovs


def _datapath():
    """The datapath this CNA's OVS bridges use: the kernel one when its module is loaded, else userspace."""
    return "system" if os.path.exists("/sys/module/openvswitch") else "netdev"


def nic_users(client, network, portgroup=None):
    """[(vm, target dev or None, running)] of this CNA's VMs with a NIC on ``network`` (and ``portgroup``)."""
    out = []
    for name in client.domain_names():
        dom = client.domain(name)
        if dom is None:
            continue
        running = bool(client.call("read state of", "VM '%s'" % name, dom.isActive))
        seen = set()
        for inactive in ((False, True) if running else (True,)):
            root = xmlutil.parse(client.domain_xml(name, inactive=inactive))
            for el in root.findall("devices/interface"):
                # defined as type='network'; a running VM's live XML shows type='bridge' with the network kept
                # in <source network=...>
                if xmlutil.find_attr(el, "source", "network") != network:
                    continue
                if portgroup is not None and xmlutil.find_attr(el, "source", "portgroup") != portgroup:
                    continue
                mac = xmlutil.find_attr(el, "mac", "address")
                if mac in seen:
                    continue
                seen.add(mac)
                out.append((name, xmlutil.find_attr(el, "target", "dev") if not inactive else None, running and not inactive))
    return out


def network_root(client, name):
    """The parsed definition of libvirt network ``name``, or None when this CNA has no such network."""
    net = client.network(name)
    if net is None:
        return None
    return xmlutil.parse(client.call("read", "network '%s'" % name, net.XMLDesc, 0))


def userspace_dvs(mgr, network):
    """Whether libvirt network ``network`` is a DVS whose OVS bridge runs on the userspace (netdev) datapath."""
    root = network_root(mgr.client, network)
    bridge = xmlutil.find_attr(root, "bridge", "name") if root is not None else None
    if not bridge or not netspec.is_dvs_network(root):
        return False
    ovs = Ovs(mgr)
    if not ovs.bridge_exists(bridge):
        return False
    return (ovs.records("Bridge", ["datapath_type"], [bridge])[0]["datapath_type"] or "system") == "netdev"


def guest_checksums(mgr, xml):
    """``xml`` with host checksum offload off on the NICs that sit on a userspace-datapath DVS of this CNA.

    A virtio-net guest hands TCP/UDP packets over with partial checksums; the userspace datapath reads them
    from the tap (AF_PACKET) and passes them on unfinished, so the receiving guest drops them as corrupt
    (ping works, TCP does not). With ``<driver><host csum='off'/></driver>`` the guest computes its own.
    Through a remote URI the datapath cannot be read here: the definition is left as it is.
    """
    if not mgr.local:
        return xml
    root = xmlutil.parse(xml)
    changed, seen = False, {}
    for el in root.findall("devices/interface"):
        net = xmlutil.find_attr(el, "source", "network")
        if not net:
            continue
        if net not in seen:
            seen[net] = userspace_dvs(mgr, net)
        if not seen[net]:
            continue
        driver = el.find("driver")
        if driver is None:
            driver = ET.SubElement(el, "driver")
        host = driver.find("host")
        if host is None:
            host = ET.SubElement(driver, "host")
        if host.get("csum") != "off":
            host.set("csum", "off")
            changed = True
    return xmlutil.tostring(root) if changed else xml


# ---------------------------------------------------------------------------- port security
def ovs_text(value):
    """An OVSDB string atom for ovs-vsctl: quoted, so JSON's quotes, commas and braces survive."""
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def security_state(mgr):
    """This CNA's port security settings as the hook reads them (portsec.ovs_state)."""
    return portsec.ovs_state(mgr.run(portsec.VSCTL_STATE))


def portgroup_security(state, dvs, name):
    """{"dhcp_isolation", "ip_mac_binding"} of port group ``name`` of ``dvs`` in ``state`` (off when unset)."""
    s = ((state["bridges"].get(dvs) or {}).get("portgroups") or {}).get(name) or {}
    return {"dhcp_isolation": bool(s.get("dhcp_isolation")), "ip_mac_binding": bool(s.get("ip_mac_binding"))}


def program_ports(mgr, match, state=None, record=True):
    """Rewrite the security rules of this CNA's running VM ports for which ``match(vm, port)`` holds.

    ``state`` is the settings the rules are computed from (default: what OVS holds now); one ``ovs-ofctl
    --bundle`` batch per port, as the hook writes them. Each port is an action of ``mgr`` (``record``), or
    done at once when the caller made the whole call one action. Returns the number of ports.
    """
    client = mgr.client
    count = 0
    for name in client.domain_names():
        dom = client.domain(name)
        if dom is None or not client.call("read state of", "VM '%s'" % name, dom.isActive):
            continue
        ports = [p for p in portsec.domain_ports(xmlutil.parse(client.domain_xml(name)), now=time.time())
                 if match(name, p)]
        if not ports:
            continue
        if state is None:
            state = security_state(mgr)
        for bridge, port, lines in portsec.batches(ports, state):
            count += 1
            if record:
                mgr.act("program port security of %s (VM %s)" % (port["dev"], name), _program, mgr, bridge, port, lines)
            else:
                _program(mgr, bridge, port, lines)
    return count


def _program(mgr, bridge, port, lines):
    """One port: its outbound meter when shaped on the userspace datapath, then its rules as one batch."""
    meter = portsec.meter_commands(bridge, port)
    if meter and mgr.probe(meter[0])[0] != 0:
        mgr.run(meter[1])
    mgr.run(portsec.ofctl_batch(bridge), "\n".join(lines) + "\n")


class DvsManager(Manager):
    """One DVS on this CNA: the OVS bridge, its uplink port, and the libvirt network."""

    def converge(self, params):
        d = netspec.dvs_state(params)
        name = d["name"]
        self.need_local("DVS '%s': configuring Open vSwitch" % name)
        self.ovs = Ovs(self)
        before = self.facts(name)
        if params.get("state") == "absent":
            self._absent(name, before, params.get("force"))
            return self.result(before and self._view(before), None, dvs=None)
        for nic in d.get("uplinks", []):
            if not os.path.exists(os.path.join("/sys/class/net", nic)):
                raise ValueError("DVS '%s': uplink %s is not a network interface of this host" % (name, nic))
        self._bridge(name, before)
        self._uplinks(d, before)
        self._network(name)
        after_view = dict(self._view(before) if before else {"name": name}, **d)
        info = self.facts(name) if not self.check_mode else None
        return self.result(before and self._view(before), after_view, dvs=info)

    # reading ---------------------------------------------------------------------------
    def facts(self, name):
        """What this CNA has of DVS ``name``: bridge, uplink, network (None when it has nothing of it)."""
        br = Ovs(self).bridge(name)
        net = self.client.network(name)
        if br is None and net is None:
            return None
        uplink = None
        if br is not None:
            ours = [p for p in br["ports"].values() if (p.get("external_ids") or {}).get(OWNER_KEY) == "uplink"]
            uplink = ours[0] if ours else None
        netinfo = None
        portgroups = []
        if net is not None:
            root = network_root(self.client, name)
            netinfo = {"active": bool(self.client.call("read state of", "network '%s'" % name, net.isActive)),
                       "autostart": bool(self.client.call("read autostart of", "network '%s'" % name, net.autostart)),
                       "dvs": netspec.is_dvs_network(root)}
            portgroups = [el.get("name") for el in root.findall("portgroup")]
        return {
            "name": name,
            "bridge": br is not None,
            "datapath": br["datapath_type"] if br else None,
            "uplinks": uplink["interfaces"] if uplink else [],
            "uplink_port": uplink["name"] if uplink else None,
            "bond_mode": (uplink.get("bond_mode") or None) if uplink and len(uplink["interfaces"]) > 1 else None,
            "lacp": (uplink.get("lacp") or "off") if uplink and len(uplink["interfaces"]) > 1 else None,
            "mtu": (uplink["mtu"][0] if uplink and len(uplink["mtu"]) == 1 else None),
            "network": netinfo,
            "portgroups": portgroups,
            "vms": sorted(set(u[0] for u in nic_users(self.client, name))) if net is not None else [],
        }

    @staticmethod
    def _view(f):
        v = {"name": f["name"], "uplinks": f["uplinks"]}
        if len(f["uplinks"]) > 1:
            v["bond_mode"], v["lacp"] = f["bond_mode"], f["lacp"]
        if f["mtu"] is not None:
            v["mtu"] = f["mtu"]
        return v

    # changing --------------------------------------------------------------------------
    def _bridge(self, name, cur):
        if cur is None or not cur["bridge"]:
            dp = _datapath()
            self.act("create OVS bridge %s (%s datapath)" % (name, dp), self.ovs.run,
                     ["add-br", name], ["set", "bridge", name, "datapath_type=%s" % dp])

    def _uplinks(self, d, cur):
        if "uplinks" not in d and "mtu" not in d:
            return
        name = d["name"]
        have = cur["uplinks"] if cur else []
        port = cur["uplink_port"] if cur else None
        want = d.get("uplinks", have)
        cmds, what = [], []
        if want != have:
            what.append("uplinks %s -> %s" % (",".join(have) or "none", ",".join(want) or "none"))
            if port:
                cmds.append(["del-port", name, port])
            if len(want) == 1:
                cmds += [["add-port", name, want[0]], ["set", "port", want[0], "external_ids:%s=uplink" % OWNER_KEY]]
            elif len(want) > 1:
                bond = netspec.bond_port(name)
                cmds += [["add-bond", name, bond] + want,
                         ["set", "port", bond, "external_ids:%s=uplink" % OWNER_KEY,
                          "bond_mode=%s" % d["bond_mode"], "lacp=%s" % d["lacp"]]]
        elif len(want) > 1 and "bond_mode" in d and (cur["bond_mode"], cur["lacp"]) != (d["bond_mode"], d["lacp"]):
            what.append("bond %s, lacp %s" % (d["bond_mode"], d["lacp"]))
            cmds.append(["set", "port", port, "bond_mode=%s" % d["bond_mode"], "lacp=%s" % d["lacp"]])
        if "mtu" in d and want and (want != have or (cur and cur["mtu"]) != d["mtu"]):
            what.append("mtu %d" % d["mtu"])
            cmds += [["set", "interface", nic, "mtu_request=%d" % d["mtu"]] for nic in want]
        if cmds:
            # One transaction: VM ports on the bridge are not touched, and OVS never holds half a change.
            self.act("set " + "; ".join(what), self.ovs.run, *cmds)

    def _network(self, name):
        net = self.client.network(name)
        if net is None:
            self.act("define network %s on OVS bridge %s" % (name, name), self.client.call, "define",
                     "network '%s'" % name, self.client.conn.networkDefineXML, netspec.network_xml(name))
            self.act("autostart network %s" % name, self._autostart, name)
            self.act("start network %s" % name, self._start, name)
            return
        root = network_root(self.client, name)
        if not netspec.is_dvs_network(root):
            raise ValueError("DVS '%s': libvirt network '%s' exists and is not a DVS (bridge mode on Open vSwitch): "
                             "choose another name" % (name, name))
        if not self.client.call("read autostart of", "network '%s'" % name, net.autostart):
            self.act("autostart network %s" % name, self._autostart, name)
        if not self.client.call("read state of", "network '%s'" % name, net.isActive):
            self.act("start network %s" % name, self._start, name)

    def _autostart(self, name):
        net = self.client.network(name)
        self.client.call("autostart", "network '%s'" % name, net.setAutostart, 1)

    def _start(self, name):
        net = self.client.network(name)
        self.client.call("start", "network '%s'" % name, net.create)

    def _absent(self, name, cur, force):
        if cur is None:
            return
        users = nic_users(self.client, name) if cur["network"] else []
        if users and not force:
            raise ValueError("DVS '%s' is used by VM NICs: %s; move them to another DVS or set force=true"
                             % (name, ", ".join(sorted(set(u[0] for u in users)))))
        if users:
            self.warn("DVS '%s' removed while VMs %s have NICs on it: they stay defined, their NICs have no network"
                      % (name, ", ".join(sorted(set(u[0] for u in users)))))
        net = self.client.network(name)
        if net is not None:
            if cur["network"]["active"]:
                self.act("stop network %s" % name, self.client.call, "stop", "network '%s'" % name, net.destroy)
            self.act("undefine network %s" % name, self.client.call, "undefine", "network '%s'" % name, net.undefine)
        if cur["bridge"]:
            self.act("delete OVS bridge %s" % name, self.ovs.run, ["--if-exists", "del-br", name])


class PortgroupManager(Manager):
    """One port group of a DVS on this CNA: the network's <portgroup> and the running ports that use it."""

    def converge(self, params):
        absent = params.get("state") == "absent"
        if absent:
            d = dict(zip(("dvs", "name"), netspec.portgroup_key(params)))
        else:
            d = netspec.portgroup_state(params)
        self.need_local("port group '%s': configuring Open vSwitch ports" % d["name"])
        net = self.client.network(d["dvs"])
        if net is None:
            raise ValueError("port group '%s': unknown DVS '%s' on %s (create it with kvmfusion.compute.dvs first)"
                             % (d["name"], d["dvs"], self.uri))
        root = network_root(self.client, d["dvs"])
        if not netspec.is_dvs_network(root):
            raise ValueError("port group '%s': network '%s' is not a DVS" % (d["name"], d["dvs"]))
        cur_el = [el for el in root.findall("portgroup") if el.get("name") == d["name"]]
        state = security_state(self)
        sec_before = portgroup_security(state, d["dvs"], d["name"])
        before = None
        if cur_el:
            before = dict(netspec.portgroup_view(d["dvs"], cur_el[0]), **sec_before)
        stored = d["name"] in ((state["bridges"].get(d["dvs"]) or {}).get("portgroups") or {})
        prio = (params.get("shaping") or {}).get("priority")
        if absent:
            if before is not None:
                users = nic_users(self.client, d["dvs"], d["name"])
                if users and not params.get("force"):
                    raise ValueError("port group '%s' of DVS '%s' is used by VM NICs: %s; move them first or set "
                                     "force=true" % (d["name"], d["dvs"], ", ".join(sorted(set(u[0] for u in users)))))
                self.act("delete port group %s" % d["name"], self._update, net, NETWORK_UPDATE_DELETE, cur_el[0])
            if stored:
                self.act("forget port security of port group %s" % d["name"], Ovs(self).run,
                         ["remove", "bridge", d["dvs"], "external_ids", portsec.PG_KEY + d["name"]])
            return self.result(before, None, portgroup=None)
        if prio is not None:
            self.warn("port group '%s': shaping priority %s is not applied: Open vSwitch's userspace datapath has no "
                      "egress priority queues, and this collection does not program them on the kernel datapath "
                      "either" % (d["name"], prio))
        sec = dict((k, d[k]) for k in netspec.PORT_SECURITY)
        xml_d = dict((k, v) for k, v in d.items() if k not in netspec.PORT_SECURITY)
        xml_before = dict((k, v) for k, v in before.items() if k not in netspec.PORT_SECURITY) if before else None
        if xml_before != xml_d:
            el = netspec.portgroup_element(xml_d)
            if before is None:
                self.act("add port group %s" % d["name"], self._update, net, NETWORK_UPDATE_ADD_LAST, el)
            else:
                changed = sorted(k for k in set(xml_d) | set(xml_before) if xml_d.get(k) != xml_before.get(k))
                self.act("update port group %s: %s" % (d["name"], ", ".join(changed)), self._update, net,
                         NETWORK_UPDATE_MODIFY, el)
                self._running_ports(xml_d, xml_before)
        if sec != sec_before or (stored and not any(sec.values())):
            self._security(d, sec, sec_before, state)
        return self.result(before, d, portgroup=d)

    def _security(self, d, sec, sec_before, state):
        """Record the port group's switches where the hook reads them; reprogram its running ports."""
        key = portsec.PG_KEY + d["name"]
        ovs = Ovs(self)
        on = sorted(k for k, v in sec.items() if v)
        if on:
            self.act("set port security of port group %s: %s" % (d["name"], ", ".join(on)), ovs.run,
                     ["set", "bridge", d["dvs"], "external_ids:%s=%s" % (key, ovs_text(portsec.encode(sec)))])
        else:
            self.act("clear port security of port group %s" % d["name"], ovs.run,
                     ["remove", "bridge", d["dvs"], "external_ids", key])
        if sec != sec_before:
            state["bridges"].setdefault(d["dvs"], {"bridge": d["dvs"], "portgroups": {}})["portgroups"][d["name"]] = sec
            program_ports(self, lambda vm, p: p["network"] == d["dvs"] and p["portgroup"] == d["name"], state)

    def _update(self, net, command, el):
        flags = NETWORK_UPDATE_AFFECT_CONFIG
        if self.client.call("read state of", "network", net.isActive):
            flags |= NETWORK_UPDATE_AFFECT_LIVE
        self.client.call("update port groups of", "network '%s'" % net.name(), net.update, command,
                         NETWORK_SECTION_PORTGROUP, -1, xmlutil.tostring(el), flags)

    def _running_ports(self, d, before):
        """Bring the ports of running VMs on this CNA to the new settings, without restarting them."""
        ovs = Ovs(self)
        vlan_changed = any(d.get(k) != before.get(k) for k in ("vlan_mode", "vlan", "trunk_vlans", "native_vlan"))
        bw_changed = any(d.get(k) != before.get(k) for k in ("inbound", "outbound"))
        for vm, dev, running in nic_users(self.client, d["dvs"], d["name"]):
            if not running or not dev:
                continue
            if vlan_changed:
                cols = netspec.ovs_vlan_columns(d)
                self.act("set VLAN of %s (VM %s)" % (dev, vm), ovs.run,
                         ["set", "port", dev] + ["%s=%s" % kv for kv in sorted(cols.items())])
            if bw_changed:
                self.act("set bandwidth of %s (VM %s)" % (dev, vm), self._bandwidth, vm, dev, d)
        if bw_changed:
            # on the userspace datapath the outbound rate is the port's meter, made from what libvirt just set
            program_ports(self, lambda vm, p: p["network"] == d["dvs"] and p["portgroup"] == d["name"])

    def _bandwidth(self, vm, dev, d):
        params = {}
        for direction in ("inbound", "outbound"):
            for key in ("average", "peak", "burst"):
                params["%s.%s" % (direction, key)] = int((d.get(direction) or {}).get(key, 0))
        dom = self.client.domain(vm)
        self.client.call("set bandwidth of", "VM '%s' NIC %s" % (vm, dev), dom.setInterfaceParameters, dev, params,
                         AFFECT_LIVE)


def group_nics(client):
    """{(vm, mac): (security group, [bound ips])} of the VM NICs (defined or running) of ``client``'s CNA that are in
    a security group; a running VM's live settings win over its definition's."""
    out = {}
    for name in client.domain_names():
        dom = client.domain(name)
        if dom is None:
            continue
        xmls = [client.domain_xml(name, inactive=True)]
        if client.call("read state of", "VM '%s'" % name, dom.isActive):
            xmls.append(client.domain_xml(name))
        for xml in xmls:
            for p in portsec.domain_ports(xmlutil.parse(xml), live=False):
                if p["security_group"]:
                    out[(name, p["mac"])] = (p["security_group"], p["ips"])
    return out


def security_group_users(client, group):
    """[(vm, mac)] of this CNA's VM NICs (defined or running) in security group ``group``."""
    return sorted(k for k, (g, _ips) in group_nics(client).items() if g == group)


class SecurityGroupManager(Manager):
    """One security group on this CNA: its rules where the hook reads them, and its members' running ports."""

    def converge(self, params, peers=None):
        """``peers``: read-only clients of the other CNAs whose VMs may be members of a remote group (params
        ``peers`` names them)."""
        name = portsec.validate_group_name(params.get("name"))
        absent = params.get("state") == "absent"
        rules = None if absent else portsec.normalize_rules(params.get("rules"), name)
        if rules and portsec.remote_groups(rules) and params.get("peers") is None:
            raise ValueError("security group '%s': a remote_group rule needs peers, the other CNAs whose VMs may be in "
                             "that group (an empty list: this CNA only)" % name)
        self.need_local("security group '%s': programming Open vSwitch rules" % name)
        if rules and portsec.remote_groups(rules):
            rules = portsec.resolve(rules, self._members(portsec.remote_groups(rules), peers or []))
        state = security_state(self)
        before = {"name": name, "rules": state["groups"][name]} if name in state["groups"] else None
        ovs = Ovs(self)
        key = portsec.SG_KEY + name
        if absent:
            if before is not None:
                users = security_group_users(self.client, name)
                if users and not params.get("force"):
                    raise ValueError("security group '%s' is used by VM NICs: %s; take them out of it first or set "
                                     "force=true" % (name, ", ".join("%s (%s)" % u for u in users)))
                if users:
                    self.warn("security group '%s' removed while NICs %s are in it: their running ports keep the "
                              "group's last rules, and they cannot start on this CNA until they join a group it has"
                              % (name, ", ".join("%s (%s)" % u for u in users)))
                self.act("delete security group %s" % name, ovs.run, ["remove", "open_vswitch", ".", "external_ids", key])
            return self.result(before, None, security_group=None, ports=0)
        after = {"name": name, "rules": rules}
        ports = 0
        if before != after:
            self.act("%s security group %s (%d rules)" % ("define" if before is None else "update", name, len(rules)),
                     ovs.run, ["set", "open_vswitch", ".", "external_ids:%s=%s" % (key, ovs_text(portsec.encode(rules)))])
            state["groups"][name] = rules
            ports = program_ports(self, lambda vm, p: p["security_group"] == name, state)
        return self.result(before, after, security_group=after, ports=ports)

    def _members(self, groups, peers):
        """{group: [bound ips]} of the NICs in ``groups`` on this CNA and its peers."""
        members = dict((g, []) for g in groups)
        for client in [self.client] + list(peers):
            for (vm, mac), (group, ips) in sorted(group_nics(client).items()):
                if group not in members:
                    continue
                if not ips:
                    self.warn("NIC %s of VM %s (on %s) is in security group %s without bound_ips: rules naming the group "
                              "as remote_group cannot match it" % (mac, vm, client.uri, group))
                members[group].extend(ips)
        return members
