# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/ha.py: the ha module's manager against a fake pacemaker (its CIB kept as XML and changed by the
same cibadmin/crm_attribute/crm_resource commands the manager runs) and a fake libvirt client.

Mocks stop at the two boundaries the manager has: the command runner and the libvirt client. The lab target
(tests/integration/targets/ha) runs the same paths against real pacemaker."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import cluster, ha

EMPTY_CIB = """<configuration>
  <crm_config><cluster_property_set id="cib-bootstrap-options">
    <nvpair id="o1" name="stonith-enabled" value="true"/></cluster_property_set></crm_config>
  <nodes><node id="1" uname="cna1"/><node id="2" uname="cna2"/></nodes>
  <resources/>
  <constraints/>
</configuration>"""

MON = """<pacemaker-result api-version="2.25" request="crm_mon">
  <summary><current_dc present="true" name="cna1" with_quorum="true"/>
    <cluster_options stonith-enabled="true" no-quorum-policy="stop" maintenance-mode="false"/></summary>
  <nodes>
    <node name="cna1" id="1" online="true" standby="false" pending="false" unclean="false" is_dc="true" resources_running="0"/>
    <node name="cna2" id="2" online="true" standby="false" pending="false" unclean="false" is_dc="false" resources_running="0"/>
  </nodes>
  <resources>%s</resources>
</pacemaker-result>"""

DOMAIN = """<domain type='qemu'><name>%s</name><uuid>6b1c7e9a-0000-4000-8000-00000000000%d</uuid>
  <memory unit='KiB'>%d</memory><vcpu placement='static'>%d</vcpu>
  <devices><disk type='file' device='disk'><source file='%s/%s.qcow2'/><target dev='vda'/></disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>
</domain>"""


class FakePacemaker(object):
    """cibadmin, crm_attribute, crm_resource, crm_mon and crm_node on one CIB; writes are recorded."""

    def __init__(self, quorate=True):
        self.conf = ET.fromstring(EMPTY_CIB)
        self.running = {}  # resource id -> node
        self.quorate = quorate
        self.writes = []
        self.agent_answers = True

    def _section(self, name):
        return self.conf.find(name)

    def _set_nv(self, parent, pid, name, value):
        for nv in parent.findall("nvpair"):
            if nv.get("name") == name:
                nv.set("value", value)
                return
        ET.SubElement(parent, "nvpair", {"id": "%s-%s" % (pid, name), "name": name, "value": value})

    def __call__(self, argv, data=None):
        tool, args = os.path.basename(argv[0]), argv[1:]
        opt = dict(zip(args, args[1:] + [None]))
        if tool == "crm_mon":
            res = "".join('<resource id="%s" resource_agent="ocf:heartbeat:VirtualDomain" role="Started" active="true" '
                          'failed="false" managed="true"><node name="%s"/></resource>' % (r, n)
                          for r, n in self.running.items())
            text = MON % res
            return 0, text.replace('with_quorum="true"', 'with_quorum="%s"' % str(self.quorate).lower()), ""
        if tool == "virsh":  # the guest agent's ping (read only)
            assert args[2:4] == ["qemu-agent-command", args[3]] and "guest-ping" in args[4]
            return (0, '{"return":{}}', "") if self.agent_answers else (1, "", "error: Guest agent is not responding")
        if tool == "crm_node":
            return 0, "cna1\n", ""
        if tool == "cibadmin" and "--query" in args:
            return 0, ET.tostring(self.conf, encoding="unicode"), ""
        self.writes.append([tool] + args)
        if tool == "cibadmin":
            el = ET.fromstring(opt["--xml-text"])
            if "--create" in args:
                self._section(opt["--scope"]).append(el)
            elif "--replace" in args:
                sec = self._section(opt["--scope"])
                old = [c for c in sec if c.get("id") == el.get("id")][0]
                sec.remove(old)
                sec.append(el)
            elif "--delete" in args:
                for sec in self.conf:
                    for c in list(sec):
                        if c.tag == el.tag and c.get("id") == el.get("id"):
                            sec.remove(c)
                self.running.pop(el.get("id"), None)
            return 0, "", ""
        if tool == "crm_attribute":
            if "--node" in args:
                node = [n for n in self.conf.find("nodes") if n.get("uname") == opt["--node"]][0]
                util = node.find("utilization")
                if util is None:
                    util = ET.SubElement(node, "utilization", {"id": "nodes-%s-utilization" % opt["--node"]})
                self._set_nv(util, util.get("id"), opt["--name"], opt["--update"])
            else:
                sid = opt.get("--set-name", "cib-bootstrap-options")
                ps = [p for p in self.conf.find("crm_config") if p.get("id") == sid]
                ps = ps[0] if ps else ET.SubElement(self.conf.find("crm_config"), "cluster_property_set", {"id": sid})
                self._set_nv(ps, sid, opt["--name"], opt["--update"])
            return 0, "", ""
        if tool == "crm_resource":
            if "--refresh" in args and not any(p.get("id") == opt["--resource"] for p in self.conf.iter("primitive")):
                return 105, "", "crm_resource: Resource '%s' not found" % opt["--resource"]
            return 0, "", ""
        raise AssertionError("unexpected command %s" % argv)

    def primitive(self, rid):
        return cluster.parse_cib(ET.tostring(self.conf, encoding="unicode"))["resources"].get(rid)


class FakeSnapshot(object):
    def __init__(self, name):
        self._name = name

    def getName(self):
        return self._name


class FakeDomain(object):
    def __init__(self, xml, active=True, persistent=True, autostart=False):
        self.xml, self.active, self.persistent, self._autostart = xml, active, persistent, autostart
        self.snapshots = []

    def listAllSnapshots(self, _flags):
        return [FakeSnapshot(n) for n in self.snapshots]

    def isActive(self):
        return self.active

    def isPersistent(self):
        return self.persistent

    def state(self, _flags):
        return (1, 0) if self.active else (5, 0)

    def hasManagedSaveImage(self, _flags):
        return 0

    def autostart(self):
        return self._autostart

    def setAutostart(self, value):
        self._autostart = bool(value)


class FakeClient(object):
    uri = "qemu:///system"
    is_local = True

    def __init__(self, domains=None, cpus=2, memory_mib=4096):
        self.domains = domains or {}
        self.cpus, self.memory_mib = cpus, memory_mib
        self.defined = []

    def domain(self, name):
        return self.domains.get(name)

    def domain_xml(self, name, inactive=False, secure=False):
        return self.domains[name].xml

    def call(self, _action, _obj, fn, *args):
        return fn(*args)

    def host_info(self):
        return {"cpus": self.cpus, "memory_bytes": self.memory_mib * 1024 ** 2}

    def define_domain(self, xml, flags=0):
        self.defined.append(xml)


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setattr(cluster.Cluster, "which", staticmethod(lambda name: "/usr/sbin/" + name))
    # the shared-datastore check and the definition copy touch libvirt pools and files: tested in the lab target
    monkeypatch.setattr(ha.HaManager, "_need_shared", lambda self, name, xml: None)
    monkeypatch.setattr(ha.HaManager, "_definition_copy", lambda self, name, path: [])
    pm = FakePacemaker()
    ds = str(tmp_path)

    def vm(name, vcpus=1, mib=160, n=1, **kw):
        return FakeDomain(DOMAIN % (name, n, mib * 1024, vcpus, ds, name), **kw)

    client = FakeClient({"web1": vm("web1"), "big": vm("big", vcpus=4, mib=2048, n=2),
                         "off1": vm("off1", n=3, active=False, autostart=True)})
    for name, dom in client.domains.items():  # the definition copies the vm module keeps beside the disks
        with open(os.path.join(ds, ".%s~vm.xml" % name), "w") as f:
            f.write(dom.xml)
    peers = FakeClient(cpus=2, memory_mib=4096)

    def manager(check_mode=False):
        return ha.HaManager(client, check_mode=check_mode, run_command=pm, peers=lambda hosts: [peers] * len(hosts))

    return pm, client, manager, ds


def vm_params(name, **kw):
    p = dict(name=name, state="present", priority="medium", preferred_hosts=[], forbidden_hosts=[], max_restarts=3,
             failure_timeout=600, guest_monitor=False, start_timeout=120, stop_timeout=120, migrate_timeout=120,
             timeout=120, cluster=None)
    p.update(kw)
    return p


def cluster_params(**kw):
    return dict(name=None, cluster=kw)


# ---------------------------------------------------------------------------- ids
@pytest.mark.parametrize("name", ["web1", "web.1", "a:b+c", "x_2e", "db-1.prefer.cna1"])
def test_ids_hold_no_dot_from_names_so_no_name_forges_another(name):
    assert "." not in ha.id_part(name)
    assert ha.resource_id(name).startswith("kvmfusion-vm-")


def test_a_vm_named_like_a_rule_gets_another_id():
    # VM "a" preferring host "b" vs a VM named "a.prefer.b": different ids
    assert ha.location_id("a", "prefer", "b") != ha.resource_id("a.prefer.b")
    assert ha.id_part("a.b") != ha.id_part("a_2eb") and ha.id_part("a_b") != ha.id_part("a_5fb")


def test_primitive_xml_reads_back_as_written():
    want = {"params": {"config": "/d/.web1~vm.xml", "hypervisor": "qemu:///system"},
            "meta": {"priority": "30", ha.NAME_META: "web1"}, "utilization": {"cpu": "2", "hv_memory": "512"},
            "ops": {"monitor": {"interval": "10s", "timeout": "30s"}}}
    xml = ha.primitive_xml("kvmfusion-vm-web1", want, "Started")
    back = cluster.parse_cib("<configuration><resources>%s</resources></configuration>" % xml)["resources"]
    r = back["kvmfusion-vm-web1"]
    assert r["agent"] == cluster.VM_AGENT and r["params"] == want["params"] and r["ops"] == want["ops"]
    assert r["meta"] == dict(want["meta"], **{"target-role": "Started"}) and r["utilization"] == want["utilization"]


@pytest.mark.parametrize("policy,cpu,mem", [(("hosts", 1), 8, 4096), (("hosts", 2), 4, 2048),
                                            (("percent", 25), 12, 6144), ((None, 0), 16, 8192)])
def test_allowance_keeps_the_largest_hosts_or_a_share_free(policy, cpu, mem):
    caps = {"a": {"cpu": "8", "hv_memory": "4096"}, "b": {"cpu": "4", "hv_memory": "2048"},
            "c": {"cpu": "4", "hv_memory": "2048"}}
    assert ha.allowance(caps, policy) == {"cpu": cpu, "hv_memory": mem}


@pytest.mark.parametrize("unit,value,mib", [("KiB", 163840, 160), ("MiB", 96, 96), ("GiB", 2, 2048), ("KiB", 1, 1)])
def test_domain_demand_in_mib_rounded_up(unit, value, mib):
    xml = "<domain><vcpu>3</vcpu><memory unit='%s'>%d</memory></domain>" % (unit, value)
    assert ha.domain_demand(xml) == (3, mib)


# ---------------------------------------------------------------------------- a VM
def test_a_running_vm_put_under_ha_four_steps(env):
    pm, client, manager, ds = env
    pm.running = {}
    check = manager(check_mode=True).converge(vm_params("web1", priority="high", preferred_hosts=["cna1"]))
    assert check.changed and pm.writes == []
    res = manager().converge(vm_params("web1", priority="high", preferred_hosts=["cna1"]))
    assert res.changed
    rid = ha.resource_id("web1")
    r = pm.primitive(rid)
    assert r["meta"]["target-role"] == "Started" and r["meta"]["priority"] == "30"
    assert r["params"]["config"] == os.path.join(ds, ".web1~vm.xml")
    assert r["utilization"] == {"cpu": "1", "hv_memory": "160"}
    assert res.values["vm"]["preferred_hosts"] == ["cna1"]
    pm.running[rid] = "cna1"
    writes = len(pm.writes)
    again = manager(check_mode=True).converge(vm_params("web1", priority="high", preferred_hosts=["cna1"]))
    assert not again.changed and again.before == again.after
    again = manager().converge(vm_params("web1", priority="high", preferred_hosts=["cna1"]))
    assert not again.changed and again.actions == [] and len(pm.writes) == writes


def test_a_vm_with_snapshots_is_refused_before_any_change(env):
    # the cluster restarts a VM under HA as a transient domain (VirtualDomain): its snapshots' metadata would be lost
    pm, client, manager, _ds = env
    client.domains["web1"].snapshots = ["before-upgrade"]
    with pytest.raises(ValueError) as e:
        manager().converge(vm_params("web1"))
    assert "1 snapshot(s) (before-upgrade)" in str(e.value) and "\n" not in str(e.value)
    assert pm.writes == []


def test_a_stopped_vm_stays_stopped_and_loses_libvirt_autostart(env):
    pm, client, manager, _ds = env
    res = manager().converge(vm_params("off1"))
    assert pm.primitive(ha.resource_id("off1"))["meta"]["target-role"] == "Stopped"
    assert client.domains["off1"].autostart() is False
    assert any("autostart" in a for a in res.actions)


def test_a_changed_parameter_of_a_running_vm_is_applied_unmanaged(env):
    pm, _client, manager, _ds = env
    manager().converge(vm_params("web1"))
    rid = ha.resource_id("web1")
    pm.running[rid] = "cna1"
    pm.writes = []
    res = manager().converge(vm_params("web1", guest_monitor=True))
    assert res.changed and pm.primitive(rid)["params"]["monitor_scripts"] == ha.GUEST_PING
    # replaced with is-managed=false, refreshed (probed again: found running), managed again; never a restart
    assert [w[:2] for w in pm.writes] == [["cibadmin", "--replace"], ["crm_resource", "--refresh"],
                                          ["crm_resource", "--wait"], ["crm_resource", "--resource"],
                                          ["crm_resource", "--wait"]]
    assert 'name="is-managed" value="false"' in pm.writes[0][-1]
    assert pm.writes[3][-2:] == ["--delete-parameter", "is-managed"]


def test_a_meta_change_is_a_plain_replace(env):
    pm, _client, manager, _ds = env
    manager().converge(vm_params("web1"))
    pm.running[ha.resource_id("web1")] = "cna1"
    pm.writes = []
    manager().converge(vm_params("web1", priority="low", max_restarts=5))
    assert [w[:2] for w in pm.writes if w[0] == "cibadmin"] == [["cibadmin", "--replace"]]
    assert pm.primitive(ha.resource_id("web1"))["meta"]["migration-threshold"] == "5"


def test_placement_rules_follow_the_lists(env):
    pm, _client, manager, _ds = env
    manager().converge(vm_params("web1", preferred_hosts=["cna1"], forbidden_hosts=["cna2"]))
    locs = cluster.parse_cib(ET.tostring(pm.conf, encoding="unicode"))["locations"]
    assert sorted((c["node"], c["score"]) for c in locs) == [("cna1", ha.PREFERRED_SCORE), ("cna2", "-INFINITY")]
    manager().converge(vm_params("web1", preferred_hosts=[], forbidden_hosts=["cna2"]))
    locs = cluster.parse_cib(ET.tostring(pm.conf, encoding="unicode"))["locations"]
    assert [(c["node"], c["score"]) for c in locs] == [("cna2", "-INFINITY")]


@pytest.mark.parametrize("kw,msg", [
    ({"preferred_hosts": ["nosuch"]}, "host nosuch is not a node of the cluster"),
    ({"preferred_hosts": ["cna2"], "forbidden_hosts": ["cna2"]}, "both preferred and forbidden"),
])
def test_bad_hosts_change_nothing(env, kw, msg):
    pm, _client, manager, _ds = env
    with pytest.raises(ValueError, match=msg):
        manager().converge(vm_params("web1", **kw))
    assert pm.writes == []


def test_an_unknown_vm_is_refused(env):
    pm, _client, manager, _ds = env
    with pytest.raises(ValueError, match="neither defined on this CNA"):
        manager().converge(vm_params("nosuch"))
    assert pm.writes == []


def test_without_quorum_nothing_changes(env):
    pm, _client, manager, _ds = env
    pm.quorate = False
    with pytest.raises(ValueError, match="no quorum"):
        manager().converge(vm_params("web1"))
    assert pm.writes == []


def test_absent_keeps_the_vm_running_defined_where_it_runs(env):
    pm, client, manager, _ds = env
    manager().converge(vm_params("web1", preferred_hosts=["cna1"]))
    rid = ha.resource_id("web1")
    pm.running[rid] = "cna1"
    client.domains["web1"].persistent = False  # started by the cluster: transient
    pm.writes = []
    res = manager().converge(vm_params("web1", state="absent"))
    assert res.changed and pm.primitive(rid) is None
    assert cluster.parse_cib(ET.tostring(pm.conf, encoding="unicode"))["locations"] == []
    assert len(client.defined) == 1
    # orphans are kept running, the VM unmanaged before its resource goes, its history forgotten after
    steps = [(w[0], w[1], w[-1] if w[0] == "crm_attribute" else None) for w in pm.writes]
    assert steps == [("crm_attribute", "--type", "false"), ("crm_resource", "--resource", None),
                     ("cibadmin", "--delete", None), ("cibadmin", "--delete", None),
                     ("crm_resource", "--refresh", None), ("crm_resource", "--wait", None)]
    assert "rsc_location" in pm.writes[2][-1] and "primitive" in pm.writes[3][-1]
    again = manager().converge(vm_params("web1", state="absent"))
    assert not again.changed


# ---------------------------------------------------------------------------- admission control
def test_admission_control_refuses_a_vm_that_breaks_the_reserve(env):
    pm, _client, manager, _ds = env
    # two CNAs of 2 CPUs x 1 vCPU/CPU and 4096 MiB; one host failure kept free: 2 vCPUs, 4096 MiB in all
    manager().converge(cluster_params(admission_control={"enabled": True, "host_failures": 1, "vcpu_ratio": 1.0,
                                                         "percentage": None}))
    manager().converge(vm_params("web1"))
    pm.writes = []
    with pytest.raises(ValueError) as e:
        manager().converge(vm_params("big"))
    assert "admission control refuses VM big: it needs 4 vCPUs" in str(e.value) and "1 host failure" in str(e.value)
    assert pm.writes == []
    # disabled: admitted, and disabling is idempotent
    off = {"enabled": False, "host_failures": None, "percentage": None, "vcpu_ratio": 1.0}
    assert manager().converge(cluster_params(admission_control=off)).changed
    assert not manager().converge(cluster_params(admission_control=off)).changed
    assert manager().converge(vm_params("big")).changed


def test_admission_control_counts_stopped_vms_too(env):
    """The vm module may start a stopped HA VM through the cluster at any time: it holds its share already."""
    pm, _client, manager, _ds = env
    manager().converge(cluster_params(admission_control={"enabled": True, "host_failures": 1, "vcpu_ratio": 0.5,
                                                         "percentage": None}))
    assert manager().converge(vm_params("off1")).changed  # stopped, 1 vCPU of the 1 allowed
    with pytest.raises(ValueError, match="admission control refuses VM web1: it needs 1 vCPUs and the HA VMs already "
                                         "use 1 of the 1"):
        manager().converge(vm_params("web1"))


def test_cluster_settings_four_steps(env):
    pm, _client, manager, _ds = env
    want = {"enabled": True, "isolation_response": "stop", "placement": "balanced",
            "admission_control": {"enabled": True, "host_failures": 1, "percentage": None, "vcpu_ratio": 4.0}}
    check = manager(check_mode=True).converge(cluster_params(**want))
    assert check.changed and pm.writes == []
    res = manager().converge(cluster_params(**want))
    assert res.values["cluster"]["capacity"] == {"cna1": {"cpu": "8", "hv_memory": "4096"},
                                                 "cna2": {"cpu": "8", "hv_memory": "4096"}}
    props = cluster.parse_cib(ET.tostring(pm.conf, encoding="unicode"))["properties"]
    assert props["cib-bootstrap-options"]["placement-strategy"] == "balanced"
    assert props["cib-bootstrap-options"]["maintenance-mode"] == "false"
    assert props[ha.OWN_SET][ha.ADMISSION] == "hosts:1"
    assert not manager(check_mode=True).converge(cluster_params(**want)).changed
    assert not manager().converge(cluster_params(**want)).changed


def test_a_memory_reading_that_moves_a_little_keeps_the_stored_capacity(env):
    """The kernel's MemTotal moves (a balloon, hot-plug, reserved memory): a re-run must not report a change for it;
    a real change (a DIMM added or lost) is stored."""
    pm, client, manager, _ds = env
    want = {"placement": "balanced"}
    manager().converge(cluster_params(**want))
    client.memory_mib = 4096 + 128  # 3 %
    res = manager().converge(cluster_params(**want))
    assert not res.changed and res.values["cluster"]["capacity"]["cna1"]["hv_memory"] == "4096"
    assert not manager(check_mode=True).converge(cluster_params(**want)).changed
    client.memory_mib = 8192
    res = manager().converge(cluster_params(**want))
    assert res.changed and res.values["cluster"]["capacity"]["cna1"]["hv_memory"] == "8192"
    assert "set capacity of node cna1: hv_memory=8192" in res.actions


@pytest.mark.parametrize("stored, reading, close", [
    ("6105", "6233", True), ("6233", "6105", True), ("4096", "4400", False), (None, "4096", False),
    ("", "4096", False), ("0", "0", False), ("4096", "4096", True),
    # a large host: 5 % would hide a lost DIMM; at most 512 MiB either way
    ("1048576", str(1048576 - 51200), False), ("1048576", str(1048576 + 400), True), ("1048576", str(1048576 - 600), False),
])
def test_memory_close(stored, reading, close):
    assert ha.memory_close(stored, reading) is close


@pytest.mark.parametrize("ac,msg", [
    ({"enabled": True, "host_failures": 2, "percentage": None, "vcpu_ratio": 4.0}, "host_failures must be"),
    ({"enabled": True, "host_failures": None, "percentage": 100, "vcpu_ratio": 4.0}, "percentage must be"),
    ({"enabled": True, "host_failures": None, "percentage": None, "vcpu_ratio": 0.0}, "vcpu_ratio must be"),
])
def test_bad_cluster_settings_change_nothing(env, ac, msg):
    pm, _client, manager, _ds = env
    with pytest.raises(ValueError, match=msg):
        manager().converge(cluster_params(admission_control=ac))
    assert pm.writes == []


def test_ha_off_is_maintenance_mode(env):
    pm, _client, manager, _ds = env
    res = manager().converge(cluster_params(enabled=False))
    assert res.after["enabled"] is False
    assert cluster.parse_cib(ET.tostring(pm.conf, encoding="unicode"))["properties"]["cib-bootstrap-options"][
        "maintenance-mode"] == "true"


def test_a_definition_left_here_by_a_failover_is_not_the_vm(env, monkeypatch):
    pm, client, manager, ds = env
    manager().converge(vm_params("web1"))
    rid = ha.resource_id("web1")
    with open(os.path.join(ds, ".web1~vm.xml"), "w") as f:
        f.write(client.domains["web1"].xml)
    pm.running[rid] = "cna2"  # the cluster runs it on cna2; cna1 keeps an older definition, stopped
    client.domains["web1"] = FakeDomain(DOMAIN % ("web1", 1, 4096 * 1024, 8, ds, "web1"), active=False)
    copies = []
    monkeypatch.setattr(ha.HaManager, "_definition_copy", lambda self, name, path: copies.append(path) or [])
    res = manager().converge(vm_params("web1"))
    assert not res.changed and copies == []
    assert pm.primitive(rid)["utilization"] == {"cpu": "1", "hv_memory": "160"}


def test_a_refused_vm_keeps_its_autostart_and_definition_copy(env, monkeypatch):
    """Admission control refuses after reading the VM: nothing of the VM changed either."""
    pm, client, manager, _ds = env
    monkeypatch.setattr(ha.HaManager, "_definition_copy",
                        lambda self, name, path: [("write the copy", lambda: pytest.fail("copy written"), ())])
    manager().converge(cluster_params(admission_control={"enabled": True, "host_failures": 1, "vcpu_ratio": 0.5,
                                                         "percentage": None}))
    client.domains["off1"].active = True
    client.domains["web1"]._autostart = True
    web1 = {"params": {}, "meta": {}, "utilization": {"cpu": "1", "hv_memory": "160"}, "ops": {}}
    pm.conf.find("resources").append(ET.fromstring(ha.primitive_xml(ha.resource_id("web1"), web1, "Started")))
    with pytest.raises(ValueError, match="admission control refuses VM off1"):
        manager().converge(vm_params("off1"))
    assert client.domains["off1"].autostart() is True


def test_guest_monitor_needs_an_agent_that_answers(env):
    pm, client, manager, _ds = env
    pm.agent_answers = False
    with pytest.raises(ValueError, match="its guest agent does not answer"):
        manager().converge(vm_params("web1", guest_monitor=True))
    client.domains["web1"].xml = client.domains["web1"].xml.replace("org.qemu.guest_agent.0", "org.other")
    with pytest.raises(ValueError, match="has no guest agent channel"):
        manager().converge(vm_params("web1", guest_monitor=True))
    assert pm.writes == [] and client.domains["web1"].autostart() is False


def test_paused_or_suspended_vms_are_refused(env):
    pm, client, manager, _ds = env
    client.domains["web1"].state = lambda _flags: (3, 0)
    with pytest.raises(ValueError, match="VM web1 is paused"):
        manager().converge(vm_params("web1"))
    client.domains["off1"].hasManagedSaveImage = lambda _flags: 1
    with pytest.raises(ValueError, match="VM off1 is suspended"):
        manager().converge(vm_params("off1"))
    assert pm.writes == []


def test_every_node_forbidden_is_refused(env):
    pm, _client, manager, _ds = env
    with pytest.raises(ValueError, match="every node of the cluster is forbidden"):
        manager().converge(vm_params("web1", forbidden_hosts=["cna1", "cna2"]))
    assert pm.writes == []


def test_a_leftover_unmanaged_flag_is_a_difference(env):
    """A parameter change that failed half way left is-managed=false: the next run manages the VM again."""
    pm, _client, manager, _ds = env
    manager().converge(vm_params("web1"))
    rid = ha.resource_id("web1")
    pm.running[rid] = "cna1"
    prim = [p for p in pm.conf.iter("primitive") if p.get("id") == rid][0]
    ET.SubElement(prim.find("meta_attributes"), "nvpair", {"id": "x", "name": "is-managed", "value": "false"})
    res = manager().converge(vm_params("web1"))
    assert res.changed and "is-managed" not in pm.primitive(rid)["meta"]
    assert not manager().converge(vm_params("web1")).changed


def test_admission_settings_left_out_keep_what_is_stored(env):
    pm, _client, manager, _ds = env
    manager().converge(cluster_params(admission_control={"enabled": True, "percentage": 25, "host_failures": None,
                                                         "vcpu_ratio": 2.0}))
    res = manager().converge(cluster_params(admission_control={"enabled": True, "percentage": None,
                                                               "host_failures": None, "vcpu_ratio": None}))
    assert not res.changed
    assert res.values["cluster"]["admission_control"] == {"enabled": True, "host_failures": None, "percentage": 25,
                                                          "vcpu_ratio": 2.0}
