# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A VM under HA moved by the cluster: vm_migration (crm_resource --move / --wait / --clear) and host_maintenance
(node standby), against a fake pacemaker at the command runner and the fake CNAs of test_migration at the libvirt
client. The fake pacemaker keeps nodes, resources and location rules, answers crm_mon and cibadmin from them, and
settles (moves resources off standby nodes, to where a move constraint says) on crm_resource --wait, as pacemaker
would with the ha module's scores."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import xml.etree.ElementTree as ET
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import cluster, maintenance, migration, power, storage
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_migration import (
    LOCAL, MIB, SHARED, FakeClient, FakePool, domain_xml, fake_dom)

RID = "kvmfusion-vm-vm1"
MUTATING = ("--move", "--clear", "--update", "--delete", "--set-parameter", "--restart")


class FakePacemaker(object):
    """Nodes, VM resources and location rules; every command is recorded in ``calls``, the changing ones also in
    ``writes`` (tool name and arguments)."""

    def __init__(self, nodes=("cna1", "cna2", "cna3")):
        self.nodes = dict((n, {"online": True, "standby": False}) for n in nodes)
        self.capacity = {}  # node -> {cpu, hv_memory}
        self.resources = {}  # rid -> {vm, node, managed, utilization}
        self.locations = []  # (id, rsc, node, score)
        self.props = {}
        self.ready = True
        self.quorate = True
        self.maintenance_mode = False
        self.settles = True  # False: --wait times out and nothing moves
        self.calls, self.writes = [], []

    def add_vm(self, vm, node, preferred=(), forbidden=(), managed=True, cpu=1, memory=512):
        rid = cluster.vm_resource_id(vm)
        self.resources[rid] = {"vm": vm, "node": node, "managed": managed,
                               "utilization": {"cpu": str(cpu), "hv_memory": str(memory)}}
        for h in preferred:
            self.locations.append(("%s.prefer.%s" % (rid, h), rid, h, "200"))
        for h in forbidden:
            self.locations.append(("%s.avoid.%s" % (rid, h), rid, h, "-INFINITY"))
        return rid

    # what pacemaker would do -------------------------------------------------------------------
    def _usable(self, n):
        return self.nodes[n]["online"] and not self.nodes[n]["standby"]

    def _settle(self):
        for rid, r in self.resources.items():
            if not r["managed"] or self.maintenance_mode or r["node"] is None:
                continue
            moved = [loc[2] for loc in self.locations if loc[0] == "cli-prefer-" + rid]
            if moved and self._usable(moved[0]):
                r["node"] = moved[0]
            elif not self._usable(r["node"]):
                banned = set(loc[2] for loc in self.locations if loc[1] == rid and loc[3] == "-INFINITY")
                fits = [n for n in sorted(self.nodes) if self._usable(n) and n not in banned]
                r["node"] = fits[0] if fits else None

    # the tools ---------------------------------------------------------------------------------
    def __call__(self, argv, data=None):
        tool, args = os.path.basename(argv[0]), list(argv[1:])
        assert argv[0] == "/usr/sbin/" + tool, argv
        opt = dict(zip(args, args[1:] + [None]))
        self.calls.append([tool] + args)
        if any(a in MUTATING for a in args) or (tool == "crm_resource" and "--wait" in args):
            self.writes.append([tool] + args)
        if tool == "crm_mon":
            return (0, self._mon(), "") if self.ready else (cluster.NOT_CONNECTED, "", "crm_mon: not connected")
        if tool == "crm_node":
            return 0, "cna1\n", ""
        if tool == "cibadmin" and "--query" in args:
            return 0, self._cib(opt["--scope"]), ""
        if tool == "crm_resource" and "--move" in args:
            self.locations = [loc for loc in self.locations if loc[0] != "cli-prefer-" + opt["--resource"]]
            self.locations.append(("cli-prefer-" + opt["--resource"], opt["--resource"], opt["--node"], "INFINITY"))
            return 0, "", ""
        if tool == "crm_resource" and "--clear" in args:
            # pacemaker's --clear: the move (cli-prefer) and ban (cli-ban) constraints of the resource, on --node only
            # when given
            self.locations = [loc for loc in self.locations
                              if not (loc[0].startswith(("cli-prefer-", "cli-ban-")) and loc[1] == opt["--resource"]
                                      and opt.get("--node") in (None, loc[2]))]
            return 0, "", ""
        if tool == "cibadmin" and "--delete" in args:
            gone = ET.fromstring(opt["--xml-text"]).get("id")
            self.locations = [loc for loc in self.locations if loc[0] != gone]
            return 0, "", ""
        if tool == "crm_resource" and "--wait" in args:
            if not self.settles:
                return 124, "", "crm_resource: Timeout after 600s"
            self._settle()
            return 0, "", ""
        if tool == "crm_attribute" and opt.get("--name") == "standby":
            assert opt["--lifetime"] == "forever"
            self.nodes[opt["--node"]]["standby"] = opt["--update"] == "on"
            return 0, "", ""
        raise AssertionError("unexpected command %s" % argv)

    def _mon(self):
        nodes = "".join('<node name="%s" online="%s" standby="%s" pending="false" unclean="false" maintenance="false" '
                        'is_dc="false" resources_running="0"/>' % (n, str(s["online"]).lower(), str(s["standby"]).lower())
                        for n, s in sorted(self.nodes.items()))
        res = "".join('<resource id="%s" resource_agent="ocf:heartbeat:VirtualDomain" role="%s" active="%s" '
                      'failed="false" managed="%s">%s</resource>'
                      % (rid, "Started" if r["node"] else "Stopped", str(bool(r["node"])).lower(),
                         str(r["managed"] and not self.maintenance_mode).lower(),
                         '<node name="%s"/>' % r["node"] if r["node"] else "")
                      for rid, r in sorted(self.resources.items()))
        return ('<pacemaker-result><summary><current_dc present="true" name="cna1" with_quorum="%s"/>'
                '<cluster_options stonith-enabled="true" maintenance-mode="%s"/></summary><nodes>%s</nodes>'
                '<resources>%s</resources></pacemaker-result>'
                % (str(self.quorate).lower(), str(self.maintenance_mode).lower(), nodes, res))

    def _cib(self, scope):
        conf = ET.Element("configuration")
        props = ET.SubElement(ET.SubElement(conf, "crm_config"), "cluster_property_set", {"id": "cib-bootstrap-options"})
        for k, v in self.props.items():
            ET.SubElement(props, "nvpair", {"id": "o-" + k, "name": k, "value": v})
        nodes = ET.SubElement(conf, "nodes")
        for n in sorted(self.nodes):
            el = ET.SubElement(nodes, "node", {"id": n, "uname": n})
            if n in self.capacity:
                util = ET.SubElement(el, "utilization", {"id": n + "-u"})
                for k, v in self.capacity[n].items():
                    ET.SubElement(util, "nvpair", {"id": "%s-%s" % (n, k), "name": k, "value": str(v)})
        resources = ET.SubElement(conf, "resources")
        for rid, r in sorted(self.resources.items()):
            p = ET.SubElement(resources, "primitive", {"id": rid, "class": "ocf", "provider": "heartbeat",
                                                       "type": "VirtualDomain"})
            meta = ET.SubElement(p, "meta_attributes", {"id": rid + ".meta"})
            ET.SubElement(meta, "nvpair", {"id": rid + ".vm", "name": "kvmfusion-vm", "value": r["vm"]})
            util = ET.SubElement(p, "utilization", {"id": rid + ".util"})
            for k, v in r["utilization"].items():
                ET.SubElement(util, "nvpair", {"id": "%s.%s" % (rid, k), "name": k, "value": v})
        cons = ET.SubElement(conf, "constraints")
        for cid, rsc, node, score in self.locations:
            ET.SubElement(cons, "rsc_location", {"id": cid, "rsc": rsc, "node": node, "score": score})
        if scope == "resources":
            return ET.tostring(resources, encoding="unicode")
        return ET.tostring(conf, encoding="unicode")

    def moves_left(self):
        return [loc for loc in self.locations if loc[0].startswith("cli-prefer-")]


@pytest.fixture
def pm(monkeypatch, tmp_path):
    """The fake pacemaker, its tools installed; this host's corosync.conf not one the cna role wrote."""
    monkeypatch.setattr(cluster.Cluster, "which", staticmethod(lambda name: "/usr/sbin/" + name))
    monkeypatch.setattr(power, "COROSYNC_CONF", str(tmp_path / "no-corosync.conf"))

    def facts(client, pool):
        return {"name": pool.n, "type": "dir", "path": pool.path, "shared": pool.shared,
                "uuid": pool.uuid_ if pool.shared else None}
    monkeypatch.setattr(storage, "facts", facts)
    monkeypatch.setattr(migration, "write_definition_copy", mock.MagicMock())
    return FakePacemaker()


def our_corosync(monkeypatch, tmp_path):
    conf = tmp_path / "corosync.conf"
    conf.write_text(power.COROSYNC_MARK + ": changes here are replaced on the role's next run.\n")
    monkeypatch.setattr(power, "COROSYNC_CONF", str(conf))


# ---------------------------------------------------------------- vm_migration
def cnas(state=1, disks=None):
    xml = domain_xml(disks=disks)
    dom = fake_dom(xml, state=state)
    pools = [FakePool("shared", SHARED, True), FakePool("local", LOCAL, False)]
    src = FakeClient("cna1", domains={"vm1": dom}, pools=pools)
    dst = FakeClient("cna2", pools=[FakePool("shared", SHARED, True), FakePool("local", LOCAL, False)], local=False)
    return src, dst, dom


def migrate(pm, src, dst, check_mode=False, **kw):
    p = dict(name="vm1", mode="auto", storage="auto", compression="none", auto_converge=False, post_copy=False)
    p.update(kw)
    mgr = migration.MigrationManager(src, dst, check_mode=check_mode, run_command=pm)
    return mgr.converge(p)


def refused(pm, src, dst, *fragments, **kw):
    with pytest.raises(ValueError) as err:
        migrate(pm, src, dst, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_an_ha_vm_is_moved_by_the_cluster_with_move_wait_locate_clear(pm):
    pm.add_vm("vm1", "cna1")
    src, dst, dom = cnas()
    res = migrate(pm, src, dst)
    assert pm.writes == [["crm_resource", "--move", "--resource", RID, "--node", "cna2"],
                         ["crm_resource", "--wait", "--timeout=600s"],
                         ["crm_resource", "--clear", "--resource", RID, "--node", "cna2"]]
    # where it runs is read between the wait and the clear
    wait = pm.calls.index(pm.writes[1])
    assert ["crm_mon", "--one-shot", "--output-as=xml", "--include=all"] in pm.calls[wait:pm.calls.index(pm.writes[2])]
    assert res.changed and res.values["through_cluster"] is True
    assert res.actions == ["live-migrate to cna2, moved by the cluster (resource %s)" % RID]
    assert res.values["migration"]["through_cluster"] is True and res.values["migration"]["destination"] == "cna2"
    assert res.before == {"host": "cna1", "state": "running"} and res.after == {"host": "cna2", "state": "running"}
    assert pm.resources[RID]["node"] == "cna2" and pm.moves_left() == []
    dom.migrateToURI3.assert_not_called()


def test_the_destination_node_is_the_short_host_name_and_timeout_bounds_the_wait(pm):
    pm.add_vm("vm1", "cna1", preferred=["cna1", "cna2"])
    src, dst, _dom = cnas()
    dst.host = "cna2.example.org"
    res = migrate(pm, src, dst, timeout=90)
    assert pm.writes[0][-2:] == ["--node", "cna2"] and pm.writes[1] == ["crm_resource", "--wait", "--timeout=90s"]
    assert res.values["host"] == "cna2.example.org"


@pytest.mark.parametrize("rules, fragments", [
    (dict(forbidden=["cna2"]), ["cna2 is forbidden for it", "forbidden_hosts (kvmfusion.compute.ha)"]),
    (dict(preferred=["cna1", "cna3"]), ["prefers cna1, cna3", "would move it back from cna2",
                                        "add cna2 to the VM's preferred_hosts (kvmfusion.compute.ha)"]),
])
def test_a_forbidden_or_not_preferred_destination_is_refused_before_any_command(pm, rules, fragments):
    pm.add_vm("vm1", "cna1", **rules)
    src, dst, dom = cnas()
    refused(pm, src, dst, *fragments)
    assert pm.writes == [] and pm.resources[RID]["node"] == "cna1"
    dom.migrateToURI3.assert_not_called()


def test_a_ban_an_operator_placed_survives_a_move(pm):
    pm.add_vm("vm1", "cna1")
    pm.locations.append(("cli-ban-%s-on-cna3" % RID, RID, "cna3", "-INFINITY"))
    src, dst, _dom = cnas()
    assert migrate(pm, src, dst).changed and pm.resources[RID]["node"] == "cna2"
    assert ("cli-ban-%s-on-cna3" % RID, RID, "cna3", "-INFINITY") in pm.locations and pm.moves_left() == []


def test_a_preferred_destination_is_moved_to(pm):
    pm.add_vm("vm1", "cna1", preferred=["cna2"], forbidden=["cna3"])
    src, dst, _dom = cnas()
    assert migrate(pm, src, dst).changed and pm.resources[RID]["node"] == "cna2"


def test_a_vm_the_cluster_runs_on_the_destination_is_no_change(pm):
    """The cluster's account, not libvirt's: a definition a failover left on the source does not count."""
    pm.add_vm("vm1", "cna2")
    src, dst, _dom = cnas(state=5)
    dst.domains["vm1"] = fake_dom(domain_xml())
    res = migrate(pm, src, dst)
    assert not res.changed and res.actions == [] and pm.writes == []
    assert res.values["through_cluster"] is True and res.values["migration"] is None and res.values["host"] == "cna2"


def test_a_move_constraint_an_interrupted_run_left_is_cleared(pm):
    pm.add_vm("vm1", "cna2")
    pm.locations.append(("cli-prefer-" + RID, RID, "cna2", "INFINITY"))
    src, dst, _dom = cnas(state=5)
    res = migrate(pm, src, dst)
    delete = ["cibadmin", "--delete", "--scope", "constraints", "--xml-text", '<rsc_location id="cli-prefer-%s"/>' % RID]
    assert res.changed and pm.writes == [delete]
    assert pm.moves_left() == []
    assert not migrate(pm, src, dst).changed


def test_check_mode_runs_no_changing_command(pm):
    pm.add_vm("vm1", "cna1")
    src, dst, dom = cnas()
    res = migrate(pm, src, dst, check_mode=True)
    assert res.changed and res.actions == ["live-migrate to cna2, moved by the cluster (resource %s)" % RID]
    assert res.values["migration"] is None and res.values["through_cluster"] is True
    assert pm.writes == [] and pm.resources[RID]["node"] == "cna1"
    dom.migrateToURI3.assert_not_called()


def test_a_cluster_node_whose_pacemaker_is_down_fails_closed(pm, monkeypatch, tmp_path):
    pm.add_vm("vm1", "cna1")
    pm.ready = False
    src, dst, dom = cnas()
    our_corosync(monkeypatch, tmp_path)
    refused(pm, src, dst, "VM 'vm1': this CNA is a node of an HA cluster whose pacemaker is not running here",
            "systemctl start pacemaker")
    assert pm.writes == []
    dom.migrateToURI3.assert_not_called()


def test_a_host_that_is_no_cluster_node_migrates_directly(pm):
    """pacemaker's tools installed, but no cluster here (and no corosync.conf of ours): libvirt moves the VM."""
    pm.ready = False
    src, dst, dom = cnas()
    dom.migrateToURI3.side_effect = lambda *a: (dst.domains.update(vm1=dom), src.domains.pop("vm1"))
    res = migrate(pm, src, dst)
    assert res.values["through_cluster"] is False and dom.migrateToURI3.called and pm.writes == []


@pytest.mark.parametrize("how", ["maintenance_mode", "unmanaged", "not_under_ha"])
def test_ha_off_an_unmanaged_vm_or_a_vm_not_under_ha_is_moved_directly(pm, how):
    if how != "not_under_ha":
        pm.add_vm("vm1", "cna1", managed=how != "unmanaged", forbidden=["cna2"])
    pm.maintenance_mode = how == "maintenance_mode"
    src, dst, dom = cnas()
    dom.migrateToURI3.side_effect = lambda *a: (dst.domains.update(vm1=dom), src.domains.pop("vm1"))
    res = migrate(pm, src, dst)
    assert res.values["through_cluster"] is False and dom.migrateToURI3.called and pm.writes == []


@pytest.mark.parametrize("setup, kw, fragments", [
    (lambda pm, src, dom: None, dict(storage="copy"), ["cluster moves it without copying them", "state=absent"]),
    (lambda pm, src, dom: None, dict(mode="cold"), ["is running on cna1: cold migration needs it stopped"]),
    (lambda pm, src, dom: pm.resources[RID].update(node=None), {}, ["and stopped", "nothing to move",
                                                                    "preferred_hosts"]),
    (lambda pm, src, dom: pm.resources[RID].update(node="cna3"), {}, ["runs on cna3, not on cna1"]),
    (lambda pm, src, dom: pm.nodes["cna2"].update(standby=True), {}, ["cannot place it on cna2", "standby"]),
    (lambda pm, src, dom: pm.nodes["cna2"].update(online=False), {}, ["cannot place it on cna2", "offline"]),
    (lambda pm, src, dom: setattr(pm, "quorate", False), {}, ["no quorum"]),
    (lambda pm, src, dom: setattr(dom.listAllSnapshots, "return_value", [mock.MagicMock()]), {},
     ["has 1 snapshot(s)", "the cluster would restart it"]),
])
def test_what_the_cluster_cannot_do_is_refused_before_any_command(pm, setup, kw, fragments):
    pm.add_vm("vm1", "cna1")
    src, dst, dom = cnas()
    setup(pm, src, dom)
    refused(pm, src, dst, *(["VM 'vm1'"] + fragments), **kw)
    assert pm.writes == []
    dom.migrateToURI3.assert_not_called()


def test_a_disk_the_destination_does_not_share_is_refused(pm):
    pm.add_vm("vm1", "cna1")
    src, dst, dom = cnas(disks=[("file", LOCAL + "/vm1.qcow2", "vda", "")])
    vol = mock.MagicMock()
    vol.XMLDesc.return_value = "<volume><target><format type='qcow2'/></target></volume>"
    vol.info.return_value = (0, 1024 * MIB, 10 * MIB)
    vol.infoFlags.return_value = (0, 11 * MIB, 10 * MIB)
    src.volumes[LOCAL + "/vm1.qcow2"] = vol
    with mock.patch.object(migration.images, "datastore_dir", lambda client, pool, name, who: pool.path), \
            mock.patch.object(migration.images, "users_of", lambda client, path, local=True: []):
        refused(pm, src, dst, "is on datastore local, which cna2 does not share", "the cluster does not copy disks")
    assert pm.writes == [] and dst.pools["local"].created == []


def test_a_destination_outside_the_cluster_is_refused(pm):
    pm.add_vm("vm1", "cna1")
    src, dst, _dom = cnas()
    dst.host = "cna9"
    refused(pm, src, dst, "cna9 is not a node of its cluster (cna1, cna2, cna3)")
    assert pm.writes == []


def test_a_move_the_cluster_does_not_finish_fails_and_leaves_no_constraint(pm):
    pm.add_vm("vm1", "cna1")
    pm.settles = False
    src, dst, _dom = cnas()
    msg = refused(pm, src, dst, "the cluster did not move VM 'vm1' to cna2", "not settled within 600 s",
                  "it runs on cna1, and the move constraint is cleared")
    assert "Timeout after 600s" in msg
    assert pm.writes[-1] == ["crm_resource", "--clear", "--resource", RID, "--node", "cna2"] and pm.moves_left() == []


def test_options_of_libvirt_migration_are_said_unused(pm):
    pm.add_vm("vm1", "cna1")
    src, dst, _dom = cnas()
    res = migrate(pm, src, dst, check_mode=True, max_downtime=100, auto_converge=True)
    assert res.warnings == ["VM 'vm1': max_downtime, auto_converge not used: the cluster migrates a VM under HA with "
                            "its own settings (kvmfusion.compute.ha migrate_timeout; the cna role's migration "
                            "transport)"]


# ---------------------------------------------------------------- host_maintenance
def cna1(pm, vms):
    """cna1 running ``vms`` (names), cna2 its peer with room; each VM's migration lands on cna2."""
    src = FakeClient("cna1", pools=[FakePool("shared", SHARED, True)])
    peer = FakeClient("cna2", pools=[FakePool("shared", SHARED, True)], local=False)
    for name in vms:
        dom = fake_dom(domain_xml(name=name, disks=[("file", "%s/%s.qcow2" % (SHARED, name), "vda", "")]))
        dom.isActive.return_value = 1
        dom.migrateToURI3.side_effect = lambda *a, name=name: peer.domains.update({name: src.domains.pop(name)})
        src.domains[name] = dom
    src.secret_by_uuid = lambda uuid: None
    src.conn.secretDefineXML = mock.MagicMock()
    return src, peer


def in_maintenance(client):
    """The CNA of ``client`` marked in maintenance already (the libvirt secret host_maintenance leaves)."""
    secret = mock.MagicMock()
    secret.XMLDesc.return_value = maintenance.hosts.maintenance_xml("patching")
    client.secret_by_uuid = lambda uuid: secret
    return secret


def maintain(pm, src, peer, check_mode=False, **kw):
    p = dict(state="maintenance", parallel=1, auto_converge=False)
    p.update(kw)
    return maintenance.MaintenanceManager(src, [peer], check_mode=check_mode, run_command=pm).converge(p)


def test_standby_moves_the_ha_vms_and_only_the_others_are_evacuated(pm):
    pm.add_vm("db1", "cna1", forbidden=["cna2"])
    src, peer = cna1(pm, ["db1", "web1"])
    db1 = src.domains["db1"]
    res = maintain(pm, src, peer, timeout=300)
    assert res.actions == ["mark cna1 in maintenance", "put cluster node cna1 in standby: the cluster moves db1",
                           "migrate web1 to cna2"]
    assert pm.writes == [["crm_attribute", "--node", "cna1", "--name", "standby", "--update", "on", "--lifetime",
                          "forever"], ["crm_resource", "--wait", "--timeout=300s"]]
    assert res.values["cluster_moves"] == [{"vm": "db1", "to": "cna3"}] and res.values["standby"] is True
    assert [m["vm"] for m in res.values["moves"]] == ["web1"] and peer.domains.keys() == {"web1"}
    db1.migrateToURI3.assert_not_called()
    assert res.after == {"maintenance": True, "running": [], "standby": True}


def test_standby_check_mode_changes_nothing(pm):
    pm.add_vm("db1", "cna1")
    src, peer = cna1(pm, ["db1", "web1"])
    res = maintain(pm, src, peer, check_mode=True)
    assert res.changed and "put cluster node cna1 in standby: the cluster moves db1" in res.actions
    assert pm.writes == [] and not pm.nodes["cna1"]["standby"] and pm.resources[cluster.vm_resource_id("db1")][
        "node"] == "cna1"
    assert not src.conn.secretDefineXML.called and src.domains.keys() == {"db1", "web1"}


def test_a_node_already_in_standby_is_no_change_and_active_takes_it_out(pm):
    pm.nodes["cna1"]["standby"] = True
    pm.add_vm("db1", "cna2")
    src, peer = cna1(pm, [])
    secret = in_maintenance(src)
    res = maintain(pm, src, peer)
    assert not res.changed and res.actions == [] and pm.writes == []
    assert res.values["standby"] is True and res.values["cluster_moves"] == []
    res = maintain(pm, src, peer, check_mode=True, state="active")
    assert res.actions == ["end the maintenance of cna1", "take cluster node cna1 out of standby"] and pm.writes == []
    res = maintain(pm, src, peer, state="active")
    assert res.changed and pm.writes == [["crm_attribute", "--node", "cna1", "--name", "standby", "--update", "off",
                                          "--lifetime", "forever"]]
    assert not pm.nodes["cna1"]["standby"] and res.values["standby"] is False
    secret.undefine.assert_called_once_with()
    src.secret_by_uuid = lambda uuid: None
    assert not maintain(pm, src, peer, state="active").changed and len(pm.writes) == 1


@pytest.mark.parametrize("setup, fragment", [
    (lambda pm: (pm.nodes["cna2"].update(standby=True), pm.nodes["cna3"].update(online=False)),
     "nowhere else to run it (cna2 standby, cna3 offline)"),
    (lambda pm: pm.locations.extend([(RID + ".avoid.cna2", RID, "cna2", "-INFINITY"),
                                     ("cli-ban-%s-on-cna3" % RID, RID, "cna3", "-INFINITY")]),
     "nowhere else to run it (cna2 forbidden for it, cna3 forbidden for it)"),
    (lambda pm: (pm.props.update({"placement-strategy": "utilization"}),
                 pm.capacity.update(cna2={"cpu": 4, "hv_memory": 1024}, cna3={"cpu": 4, "hv_memory": 256})),
     "no other node has room for it (cpu 1, hv_memory 512)"),
    (lambda pm: setattr(pm, "quorate", False), "has no quorum"),
])
def test_a_standby_that_leaves_an_ha_vm_nowhere_to_run_is_refused(pm, setup, fragment):
    pm.add_vm("vm1", "cna1")
    if "room" in fragment:
        pm.add_vm("db9", "cna2", memory=768)  # cna2 keeps 256 MiB free
    setup(pm)
    src, peer = cna1(pm, ["vm1", "web1"])
    with pytest.raises(ValueError) as err:
        maintain(pm, src, peer, shutdown_unmovable=True)
    msg = str(err.value)
    assert msg.startswith("maintenance of cna1 is blocked: VM 'vm1' (under HA): ") and fragment in msg, msg
    assert "VMs under HA are not shut down for a maintenance" in msg and "\n" not in msg
    assert pm.writes == [] and not src.conn.secretDefineXML.called
    assert not any(d.migrateToURI3.called for d in src.domains.values())


def test_room_is_counted_down_for_several_ha_vms(pm):
    pm.props["placement-strategy"] = "balanced"
    pm.capacity.update(cna2={"cpu": 2, "hv_memory": 1024}, cna3={"cpu": 2, "hv_memory": 1024})
    for vm in ("a", "b", "c"):
        pm.add_vm(vm, "cna1", memory=600)
    src, peer = cna1(pm, [])
    with pytest.raises(ValueError) as err:
        maintain(pm, src, peer, check_mode=True)
    # a and b take cna2 and cna3; c fits nowhere
    assert "VM 'c' (under HA): no other node has room for it" in str(err.value)
    assert "VM 'a'" not in str(err.value) and "VM 'b'" not in str(err.value)


def test_a_maintenance_in_place_with_nothing_running_is_no_change_while_pacemaker_stops(pm, monkeypatch, tmp_path):
    # the operator stopped pacemaker to patch the node: re-applying the play reports no change
    pm.ready = False
    our_corosync(monkeypatch, tmp_path)
    src, peer = cna1(pm, [])
    secret = in_maintenance(src)
    res = maintain(pm, src, peer)
    assert not res.changed and res.actions == [] and pm.writes == []
    # leaving it needs the cluster (the node's standby): refused, one line, while pacemaker is stopped
    with pytest.raises(ValueError) as err:
        maintain(pm, src, peer, state="active")
    assert "pacemaker is not running" in str(err.value) and "\n" not in str(err.value)
    assert not secret.undefine.called


def test_a_cluster_node_whose_pacemaker_is_down_refuses_maintenance(pm, monkeypatch, tmp_path):
    pm.ready = False
    our_corosync(monkeypatch, tmp_path)
    src, peer = cna1(pm, ["web1"])
    with pytest.raises(ValueError) as err:
        maintain(pm, src, peer)
    assert "maintenance of cna1: this CNA is a node of an HA cluster whose pacemaker is not running" in str(err.value)
    with pytest.raises(ValueError):
        maintain(pm, src, peer, state="active")
    assert pm.writes == [] and not src.conn.secretDefineXML.called


def test_with_ha_off_the_ha_vms_are_evacuated_like_the_others(pm):
    pm.add_vm("db1", "cna1")
    pm.maintenance_mode = True
    src, peer = cna1(pm, ["db1"])
    db1 = src.domains["db1"]
    res = maintain(pm, src, peer)
    assert db1.migrateToURI3.called and [m["vm"] for m in res.values["moves"]] == ["db1"]
    assert res.values["cluster_moves"] == [] and pm.writes[0][-4:] == ["--update", "on", "--lifetime", "forever"]
    assert ["crm_resource", "--wait", "--timeout=600s"] not in pm.writes


def test_ha_vms_the_cluster_did_not_move_fail_the_task_naming_them(pm):
    pm.add_vm("db1", "cna1")
    pm.settles = False
    src, peer = cna1(pm, ["db1", "web1"])
    with pytest.raises(ValueError) as err:
        maintain(pm, src, peer)
    msg = str(err.value)
    assert "maintenance of cna1 is incomplete: the cluster did not move db1 (still on cna1) after 600 s" in msg
    assert "web1 to cna2 moved" in msg and "\n" not in msg
    assert pm.nodes["cna1"]["standby"] is True


def test_a_host_that_is_no_cluster_node_is_evacuated_as_before(pm):
    pm.ready = False
    src, peer = cna1(pm, ["web1"])
    res = maintain(pm, src, peer)
    assert res.actions == ["mark cna1 in maintenance", "migrate web1 to cna2"]
    assert res.values["standby"] is None and pm.writes == []


# ---------------------------------------------------------------- is a VM under HA (snapshots, reverts, disk moves ask)
def test_ha_resource_names_the_vm_resource_and_fails_closed(pm, monkeypatch, tmp_path):
    pm.add_vm("vm1", "cna1")
    assert power.ha_resource(pm, True, "vm1") == RID
    assert power.ha_resource(pm, True, "vm2") is None
    assert power.ha_resource(pm, False, "vm1") is None  # a remote client: the cluster of that CNA is not known here
    pm.ready = False
    assert power.ha_resource(pm, True, "vm1") is None  # pacemaker installed, but this host is no node of ours
    our_corosync(monkeypatch, tmp_path)
    with pytest.raises(ValueError) as err:
        power.ha_resource(pm, True, "vm1")
    assert "pacemaker is not running here" in str(err.value) and "\n" not in str(err.value)
    assert pm.writes == []
