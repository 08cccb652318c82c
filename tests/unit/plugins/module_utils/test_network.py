# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""DVS and port groups: validation, XML, and the managers against a fake libvirt and a fake ovs-vsctl."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import xml.etree.ElementTree as ET
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, netspec, network, ovs, portsec, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client

URI = "qemu:///system"


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("params, fragment", [
    (dict(name="a" * 16), "DVS name must be 1-15 characters"),
    (dict(name="br/0"), "DVS name must be 1-15 characters"),
    (dict(name="dvs1", uplinks=["eth1", "eth1"]), "uplink eth1 is listed twice"),
    (dict(name="dvs1", uplinks=["eth:1"]), "uplink must be 1-15 characters"),
    (dict(name="dvs1", uplinks=["eth1"], bond_mode="balance-slb"), "apply to two or more uplinks"),
    (dict(name="dvs1", uplinks=["eth1", "eth2"], bond_mode="balance-tcp"), "balance-tcp needs LACP"),
    (dict(name="dvs1", uplinks=["eth1", "eth2"], bond_mode="balance-tcp", lacp="off"), "balance-tcp needs LACP"),
    (dict(name="dvs1", mtu=67), "mtu must be 68-65535"),
    (dict(name="dvs1", uplinks=[], mtu=1500), "mtu is set on the uplinks, and uplinks is empty"),
])
def test_bad_dvs_input_is_one_line(params, fragment):
    with pytest.raises(ValueError) as err:
        netspec.dvs_state(params)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_bond_defaults_to_active_backup_without_lacp():
    assert netspec.dvs_state(dict(name="d", uplinks=["eth2", "eth1"])) == {
        "name": "d", "uplinks": ["eth1", "eth2"], "bond_mode": "active-backup", "lacp": "off"}
    assert netspec.dvs_state(dict(name="d")) == {"name": "d"}  # uplinks not managed


def pg(**kw):
    base = dict(dvs="dvs1", name="web", vlan_mode=None, vlan=None, trunk_vlans=None, native_vlan=None, shaping=None)
    base.update(kw)
    return base


@pytest.mark.parametrize("params, fragment", [
    (pg(vlan=0), "vlan must be a VLAN ID from 1 to 4094, got 0"),
    (pg(vlan=4095), "vlan must be a VLAN ID from 1 to 4094, got 4095"),
    (pg(), "an access port group needs its vlan"),
    (pg(vlan_mode="trunk"), "a trunk port group needs at least one VLAN"),
    (pg(vlan_mode="trunk", trunk_vlans=[]), "a trunk port group needs at least one VLAN"),
    (pg(vlan_mode="trunk", trunk_vlans=[100, 100]), "VLAN 100 is listed twice"),
    (pg(vlan_mode="trunk", trunk_vlans=["100-105", 103]), "VLAN 103 is listed twice"),
    (pg(vlan_mode="trunk", trunk_vlans=["110-100"]), "runs backwards"),
    (pg(vlan_mode="trunk", trunk_vlans=[4095]), "got 4095"),
    (pg(vlan_mode="trunk", trunk_vlans=["x"]), "must be VLAN IDs"),
    (pg(vlan_mode="trunk", trunk_vlans=[100], vlan=5), "vlan is for vlan_mode access"),
    (pg(vlan=5, trunk_vlans=[100]), "trunk_vlans and native_vlan are for vlan_mode trunk"),
    (pg(vlan=5, shaping=dict(outbound=dict(average=100, peak=50))), "peak (50 Mbit/s) is below average (100 Mbit/s)"),
    (pg(vlan=5, shaping=dict(outbound=dict(peak=50))), "average is needed"),
    (pg(vlan=5, shaping=dict(outbound=dict(average=-1))), "must be a positive number"),
    (pg(vlan=5, shaping=dict(outbound=dict(average=1, rate=2))), "unknown setting rate"),
    (pg(dvs="x" * 16, vlan=5), "dvs must be 1-15 characters"),
    (pg(name="a/b", vlan=5), "port group"),
])
def test_bad_portgroup_input_is_one_line(params, fragment):
    with pytest.raises(ValueError) as err:
        netspec.portgroup_state(params)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("params", [
    pg(vlan=100),
    pg(vlan=100, shaping=dict(outbound=dict(average=100, peak=200, burst=50), inbound=dict(average=10))),
    pg(vlan_mode="trunk", trunk_vlans=[300, "100-102"]),
    pg(vlan_mode="trunk", trunk_vlans=[100, 200], native_vlan=7),
])
def test_portgroup_element_reads_back_as_declared(params):
    d = netspec.portgroup_state(params)
    el = ET.fromstring(xmlutil.tostring(netspec.portgroup_element(d)))
    # the port security switches live in OVS, not in the <portgroup>
    assert netspec.portgroup_view("dvs1", el) == dict((k, v) for k, v in d.items() if k not in netspec.PORT_SECURITY)


def test_shaping_is_converted_to_libvirts_kib():
    d = netspec.portgroup_state(pg(vlan=1, shaping=dict(outbound=dict(average=100, peak=200, burst=8))))
    assert d["outbound"] == {"average": 12207, "peak": 24414, "burst": 977}


def test_a_portgroup_made_elsewhere_without_a_vlan_is_seen_as_an_unrestricted_trunk():
    assert netspec.portgroup_view("d", ET.fromstring("<portgroup name='x'/>"))["vlan_mode"] is None


@pytest.mark.parametrize("params, cols", [
    (pg(vlan=100), {"vlan_mode": "access", "tag": "100", "trunks": "[]"}),
    (pg(vlan_mode="trunk", trunk_vlans=[200, 100]), {"vlan_mode": "trunk", "tag": "[]", "trunks": "[100,200]"}),
    (pg(vlan_mode="trunk", trunk_vlans=[100], native_vlan=5),
     {"vlan_mode": "native-untagged", "tag": "5", "trunks": "[5,100]"}),
])
def test_ovs_columns_of_a_port(params, cols):
    assert netspec.ovs_vlan_columns(netspec.portgroup_state(params)) == cols


def test_ovsdb_json_values_decode():
    assert ovs.decode(["set", []]) == [] and ovs.decode(["set", [1, 2]]) == [1, 2]
    assert ovs.decode(["map", [["kvmfusion", "uplink"]]]) == {"kvmfusion": "uplink"}
    assert ovs.decode(["uuid", "abc"]) == "abc" and ovs.decode("x") == "x"


# ---------------------------------------------------------------------------- a fake ovs-vsctl
class FakeOvs(object):
    """ovs-vsctl over an in-memory database: bridges -> ports -> interfaces; records the commands that write."""

    READS = ("br-exists", "list-ports", "list", "show")

    def __init__(self):
        self.bridges = {}  # name -> {"datapath_type": str, "ports": {name: {...}}, "external_ids": {}}
        self.system_ids = {}  # external_ids of the Open_vSwitch record
        self.ofports = {}  # interface -> OpenFlow number
        self.writes = []
        self.batches = []  # (bridge, [lines]) given to ovs-ofctl --bundle add-flows

    def add_bridge(self, name, dp="netdev"):
        self.bridges[name] = {"datapath_type": dp, "ports": {}, "external_ids": {}}

    def add_port(self, br, name, interfaces=None, **cols):
        port = {"interfaces": interfaces or [name], "bond_mode": [], "lacp": [], "external_ids": {}, "tag": [],
                "trunks": [], "vlan_mode": [], "mtu": {}}
        port.update(cols)
        self.bridges[br]["ports"][name] = port

    def __call__(self, cmd, data=None):
        if cmd[0] == "ovs-ofctl":
            assert cmd[:-2] == portsec.OFCTL and cmd[-1] == "-" and data.endswith("\n")
            self.batches.append((cmd[-2], data.splitlines()))
            return 0, "", ""
        if cmd == portsec.VSCTL_STATE:
            return 0, self._state(), ""
        assert cmd[:2] == ["ovs-vsctl", "--timeout=10"]
        words = cmd[2:]
        if words and words[0] == "--":
            self.writes.append(words)
            self._apply(words)
            return 0, "", ""
        opts = [w for w in words if w.startswith("--")]
        args = [w for w in words if not w.startswith("--")]
        verb = args[0]
        if verb == "br-exists":
            return (0 if args[1] in self.bridges else 2), "", ""
        if verb == "list-ports":
            return 0, "".join(p + "\n" for p in sorted(self.bridges[args[1]]["ports"])), ""
        if verb == "list":
            cols = [o for o in opts if o.startswith("--columns=")][0].split("=", 1)[1].split(",")
            return 0, json.dumps(self._list(args[1], cols, args[2:])), ""
        raise AssertionError("unexpected ovs-vsctl %s" % words)

    def _apply(self, words):
        """The external_ids writes, so that later reads see them (ovs-vsctl's quoted string atoms decoded)."""
        for c in " ".join(words).split(" -- "):
            w = c.strip("- ").split(" ")
            target = None
            if len(w) >= 3 and w[0] in ("set", "remove"):
                target = self.system_ids if w[1] == "open_vswitch" else (
                    self.bridges.get(w[2], {}).get("external_ids") if w[1] == "bridge" else None)
            if target is None:
                continue
            if w[0] == "set" and w[3].startswith("external_ids:"):
                key, value = " ".join(w[3:])[len("external_ids:"):].split("=", 1)
                target[key] = json.loads(value)  # a quoted OVSDB string is a JSON string
            elif w[0] == "remove" and w[3] == "external_ids":
                target.pop(w[4], None)

    def _state(self):
        def table(cols, rows):
            return json.dumps({"headings": cols, "data": [[r[c] for c in cols] for r in rows]})
        return "\n".join([
            table(["name", "external_ids"], [{"name": n, "external_ids": ["map", sorted(b["external_ids"].items())]}
                                             for n, b in sorted(self.bridges.items())]),
            table(["external_ids"], [{"external_ids": ["map", sorted(self.system_ids.items())]}]),
            table(["name", "ofport"], [{"name": i, "ofport": n} for i, n in sorted(self.ofports.items())]),
        ]) + "\n"

    def _list(self, table, cols, names):
        rows = []
        if table == "Bridge":
            for n in names:
                rows.append({"name": n, "datapath_type": self.bridges[n]["datapath_type"]})
        elif table == "Interface":
            for br in self.bridges.values():
                for p in br["ports"].values():
                    for i in p["interfaces"]:
                        mtu = p["mtu"].get(i)
                        rows.append({"_uuid": ["uuid", "u-" + i], "name": i, "type": "",
                                     "mtu_request": mtu if mtu is not None else ["set", []]})
        elif table == "Port":
            for br in self.bridges.values():
                for n, p in br["ports"].items():
                    if n in names:
                        rows.append({"name": n, "interfaces": ["set", [["uuid", "u-" + i] for i in p["interfaces"]]],
                                     "bond_mode": p["bond_mode"] or ["set", []], "lacp": p["lacp"] or ["set", []],
                                     "external_ids": ["map", sorted(p["external_ids"].items())],
                                     "tag": ["set", []], "trunks": ["set", []], "vlan_mode": ["set", []]})
        return {"headings": cols, "data": [[r[c] for c in cols] for r in rows]}


def network_desc(name, portgroups=""):
    return ("<network><name>%s</name><forward mode='bridge'/><bridge name='%s'/><virtualport type='openvswitch'/>%s"
            "</network>" % (name, name, portgroups))


class Host(object):
    def __init__(self, fake_libvirt):
        self.fake = fake_libvirt
        self.ovs = FakeOvs()
        self.networks = {}
        self.domains = {}
        conn = fake_libvirt.conn
        conn.networkLookupByName.side_effect = self._network
        conn.listAllNetworks.side_effect = lambda flags: [self.networks[n] for n in sorted(self.networks)]
        conn.listAllDomains.side_effect = lambda flags: [self.domains[n] for n in sorted(self.domains)]
        conn.lookupByName.side_effect = lambda n: self.domains[n] if n in self.domains else self._missing("Domain", 42)
        conn.networkDefineXML.side_effect = self._define

    def _missing(self, what, code):
        raise self.fake.libvirtError("%s not found" % what, code)

    def _network(self, name):
        return self.networks[name] if name in self.networks else self._missing("Network", 43)

    def _define(self, xml):
        return self.add_network(ET.fromstring(xml).findtext("name"), active=False, autostart=False, xml=xml)

    def add_network(self, name, active=True, autostart=True, xml=None, portgroups=""):
        net = mock.MagicMock(name="virNetwork %s" % name)
        net.name.return_value = name
        net.XMLDesc.return_value = xml or network_desc(name, portgroups)
        net.isActive.return_value = 1 if active else 0
        net.autostart.return_value = 1 if autostart else 0
        self.networks[name] = net
        return net

    def add_vm(self, name, network, portgroup, running=True, dev="vnet3"):
        dom = mock.MagicMock(name="virDomain %s" % name)
        dom.name.return_value = name
        dom.isActive.return_value = 1 if running else 0
        defined = ("<domain><name>%s</name><devices><interface type='network'><mac address='52:54:00:00:00:01'/>"
                   "<source network='%s' portgroup='%s'/><model type='virtio'/></interface></devices></domain>"
                   % (name, network, portgroup))
        # what libvirt shows of a running VM: the NIC as type='bridge', the network kept in <source>
        live = ("<domain><name>%s</name><devices><interface type='bridge'><mac address='52:54:00:00:00:01'/>"
                "<source network='%s' portgroup='%s' bridge='%s'/><virtualport type='openvswitch'/>"
                "<target dev='%s'/><model type='virtio'/></interface></devices></domain>"
                % (name, network, portgroup, network, dev))
        dom.XMLDesc.side_effect = lambda flags=0: defined if (flags & constants.XML_INACTIVE or not running) else live
        self.domains[name] = dom
        return dom


@pytest.fixture
def host(fake_libvirt, monkeypatch):
    h = Host(fake_libvirt)
    real_exists = network.os.path.exists
    monkeypatch.setattr(network.os.path, "exists",
                        lambda p: p in ("/sys/class/net/eth1", "/sys/class/net/eth2") or real_exists(p))
    return h


def dvs_manager(host, check_mode=False):
    return network.DvsManager(Client(URI), check_mode=check_mode, run_command=host.ovs)


def dvs_params(**kw):
    base = dict(name="dvs1", state="present", uplinks=None, bond_mode=None, lacp=None, mtu=None, force=False)
    base.update(kw)
    return base


# ---------------------------------------------------------------------------- DvsManager
def test_a_new_dvs_in_check_mode_plans_bridge_uplink_and_network_and_writes_nothing(host):
    mgr = dvs_manager(host, check_mode=True)
    r = mgr.converge(dvs_params(uplinks=["eth1"])).as_dict()
    assert r["changed"] is True
    assert mgr.actions == ["create OVS bridge dvs1 (%s datapath)" % network._datapath(), "set uplinks none -> eth1",
                           "define network dvs1 on OVS bridge dvs1", "autostart network dvs1", "start network dvs1"]
    assert host.ovs.writes == [] and host.fake.conn.networkDefineXML.call_count == 0


def test_a_new_dvs_is_one_ovs_transaction_per_step_and_a_started_network(host):
    mgr = dvs_manager(host)
    mgr.converge(dvs_params(uplinks=["eth1"]))
    assert host.ovs.writes == [
        ["--", "add-br", "dvs1", "--", "set", "bridge", "dvs1", "datapath_type=%s" % network._datapath()],
        ["--", "add-port", "dvs1", "eth1", "--", "set", "port", "eth1", "external_ids:kvmfusion=uplink"],
    ]
    xml = host.fake.conn.networkDefineXML.call_args[0][0]
    assert netspec.is_dvs_network(xmlutil.parse(xml))
    host.networks["dvs1"].setAutostart.assert_called_once_with(1)
    host.networks["dvs1"].create.assert_called_once_with()


def test_an_existing_dvs_as_declared_changes_nothing(host):
    host.ovs.add_bridge("dvs1")
    host.ovs.add_port("dvs1", "eth1", external_ids={"kvmfusion": "uplink"})
    host.add_network("dvs1")
    mgr = dvs_manager(host)
    r = mgr.converge(dvs_params(uplinks=["eth1"])).as_dict()
    assert r["changed"] is False and mgr.actions == [] and host.ovs.writes == []
    assert r["dvs"]["uplinks"] == ["eth1"] and r["dvs"]["uplink_port"] == "eth1"


def test_changing_the_uplink_to_a_bond_is_one_transaction_that_touches_no_vm_port(host):
    host.ovs.add_bridge("dvs1")
    host.ovs.add_port("dvs1", "eth1", external_ids={"kvmfusion": "uplink"})
    host.ovs.add_port("dvs1", "vnet3")  # a running VM's port
    host.add_network("dvs1")
    mgr = dvs_manager(host)
    mgr.converge(dvs_params(uplinks=["eth1", "eth2"], bond_mode="balance-slb"))
    assert mgr.actions == ["set uplinks eth1 -> eth1,eth2"]
    assert host.ovs.writes == [["--", "del-port", "dvs1", "eth1",
                                "--", "add-bond", "dvs1", "dvs1:uplink", "eth1", "eth2",
                                "--", "set", "port", "dvs1:uplink", "external_ids:kvmfusion=uplink",
                                "bond_mode=balance-slb", "lacp=off"]]
    assert not any("vnet3" in w for w in host.ovs.writes[0])


def test_an_uplink_that_is_not_a_nic_of_the_host_is_refused_before_any_change(host):
    mgr = dvs_manager(host)
    with pytest.raises(ValueError) as err:
        mgr.converge(dvs_params(uplinks=["eth9"]))
    assert str(err.value) == "DVS 'dvs1': uplink eth9 is not a network interface of this host"
    assert host.ovs.writes == [] and mgr.actions == []


def test_a_libvirt_network_of_the_name_that_is_not_a_dvs_is_refused(host):
    host.ovs.add_bridge("dvs1")
    host.add_network("dvs1", xml="<network><name>dvs1</name><forward mode='nat'/></network>")
    with pytest.raises(ValueError) as err:
        dvs_manager(host).converge(dvs_params())
    assert "libvirt network 'dvs1' exists and is not a DVS" in str(err.value)


def test_absent_refuses_while_vm_nics_use_it_and_names_them(host):
    host.ovs.add_bridge("dvs1")
    host.add_network("dvs1")
    host.add_vm("web1", "dvs1", "web")
    mgr = dvs_manager(host)
    with pytest.raises(ValueError) as err:
        mgr.converge(dvs_params(state="absent"))
    assert str(err.value) == "DVS 'dvs1' is used by VM NICs: web1; move them to another DVS or set force=true"
    assert host.ovs.writes == [] and host.networks["dvs1"].undefine.call_count == 0


def test_absent_with_force_removes_network_and_bridge_and_warns(host):
    host.ovs.add_bridge("dvs1")
    net = host.add_network("dvs1")
    host.add_vm("web1", "dvs1", "web")
    mgr = dvs_manager(host)
    mgr.converge(dvs_params(state="absent", force=True))
    assert mgr.actions == ["stop network dvs1", "undefine network dvs1", "delete OVS bridge dvs1"]
    net.destroy.assert_called_once_with()
    net.undefine.assert_called_once_with()
    assert host.ovs.writes == [["--", "--if-exists", "del-br", "dvs1"]]
    assert "web1" in mgr.warnings[0]


def test_dvs_work_through_a_remote_uri_is_refused(host):
    mgr = network.DvsManager(Client("qemu+ssh://root@cna2/system"), run_command=host.ovs)
    with pytest.raises(ValueError) as err:
        mgr.converge(dvs_params())
    assert "configuring Open vSwitch" in str(err.value) and host.ovs.writes == []


# ---------------------------------------------------------------------------- PortgroupManager
def pg_manager(host, check_mode=False):
    return network.PortgroupManager(Client(URI), check_mode=check_mode, run_command=host.ovs)


def pg_params(**kw):
    base = pg(vlan_mode="access", state="present", force=False)
    base.update(kw)
    return base


PG_WEB = "<portgroup name='web'><vlan><tag id='100'/></vlan></portgroup>"


def test_a_new_portgroup_is_added_live_and_to_the_config(host):
    net = host.add_network("dvs1")
    mgr = pg_manager(host)
    r = mgr.converge(pg_params(vlan=100)).as_dict()
    assert mgr.actions == ["add port group web"]
    cmd, section, index, xml, flags = net.update.call_args[0]
    assert (cmd, section, index) == (constants.NETWORK_UPDATE_ADD_LAST, constants.NETWORK_SECTION_PORTGROUP, -1)
    assert flags == constants.NETWORK_UPDATE_AFFECT_CONFIG | constants.NETWORK_UPDATE_AFFECT_LIVE
    assert dict(netspec.portgroup_view("dvs1", ET.fromstring(xml)), dhcp_isolation=False,
                ip_mac_binding=False) == r["portgroup"]


def test_an_unchanged_portgroup_reports_no_change(host):
    net = host.add_network("dvs1", portgroups=PG_WEB)
    mgr = pg_manager(host)
    assert mgr.converge(pg_params(vlan=100)).as_dict()["changed"] is False
    assert net.update.call_count == 0 and mgr.actions == []


def test_a_vlan_change_reaches_the_running_ports_of_this_cna(host):
    net = host.add_network("dvs1", portgroups=PG_WEB)
    host.add_vm("web1", "dvs1", "web", dev="vnet3")
    host.add_vm("web2", "dvs1", "web", running=False)
    host.add_vm("db1", "dvs1", "db", dev="vnet4")
    mgr = pg_manager(host)
    mgr.converge(pg_params(vlan=200))
    assert mgr.actions == ["update port group web: vlan", "set VLAN of vnet3 (VM web1)"]
    assert net.update.call_args[0][0] == constants.NETWORK_UPDATE_MODIFY
    assert host.ovs.writes == [["--", "set", "port", "vnet3", "tag=200", "trunks=[]", "vlan_mode=access"]]


def test_a_shaping_change_reaches_the_running_ports_through_libvirt(host):
    host.add_network("dvs1", portgroups=PG_WEB)
    dom = host.add_vm("web1", "dvs1", "web", dev="vnet3")
    mgr = pg_manager(host)
    mgr.converge(pg_params(vlan=100, shaping=dict(outbound=dict(average=100))))
    assert mgr.actions == ["update port group web: outbound", "set bandwidth of vnet3 (VM web1)"]
    dev, params, flags = dom.setInterfaceParameters.call_args[0]
    assert dev == "vnet3" and params["outbound.average"] == 12207 and params["inbound.average"] == 0
    assert flags == constants.AFFECT_LIVE and host.ovs.writes == []


def test_check_mode_plans_the_same_and_changes_nothing(host):
    net = host.add_network("dvs1", portgroups=PG_WEB)
    host.add_vm("web1", "dvs1", "web", dev="vnet3")
    real = pg_manager(host)
    check = pg_manager(host, check_mode=True)
    check.converge(pg_params(vlan=300))
    assert net.update.call_count == 0 and host.ovs.writes == []
    real.converge(pg_params(vlan=300))
    assert check.actions == real.actions


def test_priority_is_not_applied_and_says_so(host):
    host.add_network("dvs1", portgroups=PG_WEB)
    mgr = pg_manager(host)
    mgr.converge(pg_params(vlan=100, shaping=dict(priority="high")))
    assert len(mgr.warnings) == 1 and "priority high is not applied" in mgr.warnings[0]
    assert mgr.actions == []


def test_an_unknown_dvs_is_refused(host):
    with pytest.raises(ValueError) as err:
        pg_manager(host).converge(pg_params(vlan=100))
    assert str(err.value) == ("port group 'web': unknown DVS 'dvs1' on qemu:///system (create it with "
                              "kvmfusion.compute.dvs first)")


def test_deleting_a_used_portgroup_needs_force(host):
    net = host.add_network("dvs1", portgroups=PG_WEB)
    host.add_vm("web1", "dvs1", "web")
    with pytest.raises(ValueError) as err:
        pg_manager(host).converge(pg_params(state="absent"))
    assert "is used by VM NICs: web1" in str(err.value) and net.update.call_count == 0
    mgr = pg_manager(host)
    mgr.converge(pg_params(state="absent", force=True))
    assert mgr.actions == ["delete port group web"] and net.update.call_args[0][0] == constants.NETWORK_UPDATE_DELETE


# ---------------------------------------------------------------------------- NICs on a userspace-datapath DVS
VM_XML = ("<domain><name>vm1</name><devices>"
          "<interface type='network'><source network='dvs1' portgroup='web'/><model type='virtio'/></interface>"
          "<interface type='network'><source network='default'/><model type='virtio'/></interface>"
          "</devices></domain>")


@pytest.mark.parametrize("datapath, csum", [("netdev", "off"), ("system", None)])
def test_nics_on_a_userspace_dvs_compute_their_own_checksums(host, datapath, csum):
    host.ovs.add_bridge("dvs1", dp=datapath)
    host.add_network("dvs1")
    host.add_network("default", xml="<network><name>default</name><forward mode='nat'/></network>")
    mgr = network.DvsManager(Client(URI), check_mode=True, run_command=host.ovs)
    root = ET.fromstring(network.guest_checksums(mgr, VM_XML))
    dvs_nic, nat_nic = root.findall("devices/interface")
    assert dvs_nic.find("driver/host") is None if csum is None else dvs_nic.find("driver/host").get("csum") == csum
    assert nat_nic.find("driver") is None
    assert host.ovs.writes == []


def test_nic_checksums_are_left_alone_through_a_remote_uri(host):
    host.ovs.add_bridge("dvs1")
    host.add_network("dvs1")
    mgr = network.DvsManager(Client("qemu+ssh://root@cna2/system"), run_command=host.ovs)
    assert network.guest_checksums(mgr, VM_XML) == VM_XML
