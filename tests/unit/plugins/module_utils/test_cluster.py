# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/cluster.py: crm_mon, cibadmin and corosync-quorumtool output as pacemaker 2.1.5 and corosync 3.1.7
print it on a lab CNA (fixtures captured there), read into plain dicts."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import cluster

FIX = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fixtures", "cluster")


def fixture(name):
    with open(os.path.join(FIX, name)) as f:
        return f.read()


FENCE_EVENTS = """  <fence_history>
    <fence_event action="reboot" target="cna2" client="stonith_admin.2701" origin="cna1" status="success"
                 delegate="cna1" completed="2026-12-01 20:02:46Z"/>
    <fence_event action="off" target="cna2" client="pacemaker-controld.1" origin="cna1" status="failed"
                 delegate="cna1" completed="2026-12-01 19:50:00Z"/>
  </fence_history>
"""

VM_RESOURCE = """<primitive id="kvmfusion-vm-web1" class="ocf" provider="heartbeat" type="VirtualDomain">
      <instance_attributes id="web1-ia"><nvpair id="web1-ia-config" name="config" value="/x/web1.xml"/></instance_attributes>
      <meta_attributes id="web1-meta"><nvpair id="web1-meta-priority" name="priority" value="30"/></meta_attributes>
    </primitive>
  </resources>"""

VM_STATUS = """    <resource id="kvmfusion-vm-web1" resource_agent="ocf:heartbeat:VirtualDomain" role="Started" active="true"
              orphaned="false" blocked="false" managed="true" failed="false" failure_ignored="false" nodes_running_on="1">
      <node name="cna2" id="2" cached="true"/>
    </resource>
  </resources>"""

VM_HISTORY = """<node_history>
    <node name="cna1">
      <resource_history id="kvmfusion-vm-web1" orphan="false" migration-threshold="3" fail-count="2"/>
    </node>"""


class FakeRun(object):
    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        return self.outputs[os.path.basename(argv[0])]


@pytest.fixture
def tools(monkeypatch):
    monkeypatch.setattr(cluster.Cluster, "which", staticmethod(lambda name: "/usr/sbin/" + name))


def test_status_reads_nodes_quorum_and_fencing_devices():
    st = cluster.parse_status(fixture("crm_mon.xml"))
    assert st["dc"] == "cna1" and st["quorate"] and st["stonith_enabled"] and st["no_quorum_policy"] == "stop"
    assert [(n["name"], n["online"]) for n in st["nodes"]] == [("cna1", True), ("cna2", True)]
    assert st["resources"]["kvmfusion-fence-cna1"]["nodes"] == ["cna2"]
    assert st["resources"]["kvmfusion-fence-cna2"]["nodes"] == ["cna1"]
    assert st["fence_history"] == [] and st["failcounts"] == {}


def test_quorum_reads_votes_flags_and_the_device():
    q = cluster.parse_quorum(fixture("quorumtool.txt"))
    assert q == {"expected_votes": 3, "total_votes": 3, "quorum": 2, "flags": ["Quorate", "WaitForAll", "Qdevice"],
                 "device": {"votes": 1, "configured_votes": 1}}


def test_quorum_when_this_node_lacks_the_devices_vote():
    """corosync-quorumtool 3.1.7 prints "(votes N)" after Qdevice when the device's vote is not this node's."""
    text = fixture("quorumtool.txt").replace("         0          1            Qdevice\n",
                                             "         0          0            Qdevice (votes 1)\n")
    assert cluster.parse_quorum(text)["device"] == {"votes": 0, "configured_votes": 1}


def test_quorum_without_a_device():
    text = fixture("quorumtool.txt").replace("         0          1            Qdevice\n", "")
    assert cluster.parse_quorum(text)["device"] is None


def test_resources_read_agent_params_and_meta():
    res = cluster.parse_resources(fixture("resources.xml").replace("</resources>", VM_RESOURCE.split("</resources>", maxsplit=1)[0] + "</resources>"))
    assert res["kvmfusion-fence-cna2"]["agent"] == "stonith:fence_redfish"
    assert res["kvmfusion-fence-cna2"]["params"]["pcmk_host_list"] == "cna2"
    assert res["kvmfusion-vm-web1"] == {"agent": "ocf:heartbeat:VirtualDomain", "params": {"config": "/x/web1.xml"},
                                        "meta": {"priority": "30"}}


@pytest.mark.parametrize("value,name", [("30", "high"), ("25", "medium"), ("10", "low"), ("0", "0"), (None, None)])
def test_priority_names(value, name):
    assert cluster.priority_name(value) == name


def test_summary_with_fencing_history_and_an_ha_vm(tools):
    mon = fixture("crm_mon.xml").replace("  <node_history>", FENCE_EVENTS + "  " + VM_HISTORY, 1)
    mon = mon.replace("  </resources>", VM_STATUS, 1)
    res = fixture("resources.xml").replace("</resources>", VM_RESOURCE.split("</resources>", maxsplit=1)[0] + "</resources>")
    run = FakeRun({"crm_mon": (0, mon, ""), "cibadmin": (0, res, ""), "corosync-quorumtool": (0, fixture("quorumtool.txt"), "")})
    s = cluster.ha_summary(cluster.Cluster(run))
    assert s["running"] and s["quorate"] and s["quorum"]["device"] == {"votes": 1, "configured_votes": 1}
    f2 = [f for f in s["fencing"] if f["target"] == "cna2"][0]
    assert f2["running_on"] == ["cna1"] and f2["agent"] == "stonith:fence_redfish"
    assert f2["last"]["status"] == "success" and f2["last"]["action"] == "reboot"  # the newest of the two
    assert [f for f in s["fencing"] if f["target"] == "cna1"][0]["last"] is None
    assert s["vms"] == [{"name": "web1", "resource": "kvmfusion-vm-web1", "role": "Started", "hosts": ["cna2"],
                         "priority": "high", "failcounts": {"cna1": 2}}]
    assert all(c[0].startswith("/usr/sbin/") for c in run.calls)


def test_summary_where_pacemaker_does_not_run(tools):
    down = ('<pacemaker-result api-version="2.25" request="crm_mon"><status code="102" message="Not connected"/>'
            '</pacemaker-result>')
    run = FakeRun({"crm_mon": (102, down, "")})
    assert cluster.ha_summary(cluster.Cluster(run)) == {"running": False}
    assert len(run.calls) == 1


def test_summary_where_pacemaker_is_not_installed(monkeypatch):
    monkeypatch.setattr(cluster.Cluster, "which", staticmethod(lambda name: None))
    run = FakeRun({})
    assert cluster.ha_summary(cluster.Cluster(run)) == {"running": False}
    assert run.calls == []


def test_a_failing_tool_is_one_line_naming_it(tools):
    run = FakeRun({"crm_mon": (0, fixture("crm_mon.xml"), ""), "cibadmin": (103, "", "Call cib_query failed\n(-6): No such device")})
    with pytest.raises(cluster.ClusterError) as e:
        cluster.ha_summary(cluster.Cluster(run))
    assert str(e.value).startswith("cibadmin failed (rc=103): Call cib_query failed (-6)") and "\n" not in str(e.value)


def test_quorum_of_a_partition_without_quorum_is_read_and_an_error_is_one_line(tools):
    text = fixture("quorumtool.txt").replace("Quorate WaitForAll Qdevice", "WaitForAll Qdevice")
    assert cluster.Cluster(FakeRun({"corosync-quorumtool": (2, text, "")})).quorum()["flags"] == ["WaitForAll", "Qdevice"]
    with pytest.raises(cluster.ClusterError, match=r"^corosync-quorumtool failed \(rc=1\): Cannot initialize QUORUM service$"):
        cluster.Cluster(FakeRun({"corosync-quorumtool": (1, "", "Cannot initialize QUORUM service\n")})).quorum()


def test_summary_while_pacemakerd_starts_its_daemons(tools):
    """crm_mon exits 0 with only <pacemakerd state="starting_daemons"> then: not running yet, nothing else asked."""
    starting = ('<pacemaker-result api-version="2.25" request="crm_mon"><pacemakerd sys_from="pacemakerd" '
                'state="starting_daemons" last_updated="2026-12-01 20:27:55Z"/><status code="0" message="OK"/>'
                '</pacemaker-result>')
    run = FakeRun({"crm_mon": (0, starting, "")})
    assert cluster.ha_summary(cluster.Cluster(run)) == {"running": False}
    assert len(run.calls) == 1
