# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/decommission.yml on a lab of its own (./dev test cluster): a VRM and three CNAs in one HA cluster
(inventories/lab's cluster and fencing), one of which leaves.

Refusals first, each in one line with nothing changed; then a CNA holding a running VM (evacuated live) and a
stopped one (which stops the playbook, named); then the CNA leaves: the other two stay a quorate cluster without it,
its cluster services are off, its fencing device and rules are gone. A second run changes nothing, and site.yml over
the inventory without it changes nothing either. Ends with the lab down (KVMF_KEEP_LAB=1 keeps it).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import subprocess
import time

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "tools", "lab")
SITE = os.path.join(ROOT, "playbooks", "site.yml")
DECOMMISSION = os.path.join(ROOT, "playbooks", "decommission.yml")
EXAMPLE = os.path.join(ROOT, "inventories", "lab")
HERE = os.path.dirname(os.path.abspath(__file__))
MAINTENANCE_UUID = "ab9123e9-28f4-5791-a5ae-7a85f4d025e9"  # host_maintenance's mark (module_utils/hosts.py)


def sh(*cmd, **kw):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kw)


def play(inventory, path, *extra):
    t0 = time.time()
    res = sh("ansible-playbook", "-i", inventory, "-i", EXAMPLE, path, *extra, timeout=2400)
    print(res.stdout[-8000:])
    print("[%.0fs] ansible-playbook %s %s" % (time.time() - t0, os.path.basename(path), " ".join(extra)))
    return res


def on(host, command):
    return sh(LAB, "ssh", host, command).stdout


def recap(res):
    """{host: changed count} of a play's recap."""
    return dict((h, int(c)) for h, c in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", res.stdout, re.M))


def one_line_failure(res, pattern):
    assert res.returncode != 0, res.stdout[-3000:]
    msgs = re.findall(r'"msg": "([^"\n]*)"', res.stdout)
    hits = [m for m in msgs if re.search(pattern, m)]
    assert hits, msgs
    assert "\\n" not in hits[0], hits[0]
    return hits[0]


def cluster(host="cna1"):
    """What the cluster looks like from a CNA: its node names, online members, quorum, fencing devices, rules."""
    mon = on(host, "crm_mon --one-shot --output-as=xml --include=summary,nodes")
    cib = on(host, "cibadmin --query --scope configuration")
    return {
        "nodes": sorted(set(re.findall(r'<node name="([^"]+)"', mon))),
        "online": sorted(re.findall(r'<node name="([^"]+)" id="[^"]*" online="true"[^>]* pending="false"', mon)),
        "quorate": 'with_quorum="true"' in mon,
        "fencing": sorted(re.findall(r'<primitive id="(kvmfusion-fence-[^"]+)"', cib)),
        "rules": sorted(re.findall(r'<rsc_location id="(kvmfusion-[^"]+)"', cib)),
        "corosync": sorted(re.findall(r"name:\s*(\S+)\s+nodeid", on(host, "cat /etc/corosync/corosync.conf"))),
    }


def where(vm):
    return sorted(h for h in ("cna1", "cna2", "cna3") if vm in on(h, "virsh -c qemu:///system list --all --name").split())


@pytest.fixture(scope="module")
def lab():
    assert sh(LAB, "down").returncode == 0
    up = sh(LAB, "up", "--cna", "3", "--vrm", "1")
    assert up.returncode == 0, up.stdout
    inventory = sh(LAB, "inventory").stdout.strip()
    res = play(inventory, SITE, "--tags", "platform")
    assert res.returncode == 0, res.stdout[-4000:]
    yield inventory
    if not os.environ.get("KVMF_KEEP_LAB"):
        sh(LAB, "down")


def test_a_cna_leaves_the_site_and_its_cluster(lab, tmp_path):
    before = cluster()
    assert before["online"] == ["cna1", "cna2", "cna3"] and before["quorate"], before
    assert "kvmfusion-fence-cna3" in before["fencing"] and "cna3" in before["corosync"], before

    # Refused in one line, before any change.
    one_line_failure(play(lab, DECOMMISSION), "kvmfusion_decommission_host unset is not a CNA")
    one_line_failure(play(lab, DECOMMISSION, "-e", "kvmfusion_decommission_host=vrm1"), "vrm1 is not a CNA")
    one_line_failure(play(lab, DECOMMISSION, "-e", "kvmfusion_decommission_host=cna3", "--limit", "cna1,cna3"),
                     r"CNA\(s\) cna2 are not in this run")
    # the example site keeps db1 preferring cna2
    one_line_failure(play(lab, DECOMMISSION, "-e", "kvmfusion_decommission_host=cna2"),
                     "once cna2 has left, site.yml would refuse: .*VM db1: ha host 'cna2' is not in")
    # a cluster already missing a member: cna3 leaving could take its quorum
    on("cna2", "systemctl stop pacemaker")
    one_line_failure(play(lab, DECOMMISSION, "-e", "kvmfusion_decommission_host=cna3"),
                     r"the HA cluster is not whole \(not members: cna2, quorate: True\)")
    on("cna2", "systemctl start pacemaker")
    deadline = time.time() + 180
    while cluster()["online"] != before["online"] and time.time() < deadline:
        time.sleep(3)
    assert cluster() == before
    assert MAINTENANCE_UUID not in on("cna3", "virsh -c qemu:///system secret-list"), "cna3 went into maintenance"

    # A running VM (evacuated live) and a stopped one (it stops the playbook) on cna3.
    res = play(lab, os.path.join(HERE, "vms.yml"), "-e", "state=present")
    assert res.returncode == 0, res.stdout[-3000:]
    assert where("decom-run") == ["cna3"] and where("decom-stopped") == ["cna3"]

    # --check: the checks and the evacuation's plan, nothing changed
    res = play(lab, DECOMMISSION, "-e", "kvmfusion_decommission_host=cna3", "--check")
    assert res.returncode == 0, res.stdout[-3000:]
    assert where("decom-run") == ["cna3"] and cluster() == before

    msg = one_line_failure(play(lab, DECOMMISSION, "-e", "kvmfusion_decommission_host=cna3"),
                           "cna3 still has VM")
    assert "decom-stopped" in msg and "decom-run" not in msg, msg
    assert where("decom-run") in (["cna1"], ["cna2"]), "the running VM went live to another CNA"
    assert cluster() == before, "nothing of the cluster changed while a VM was left"

    res = play(lab, os.path.join(HERE, "vms.yml"), "-e", "state=absent", "-e", "only=decom-stopped")
    assert res.returncode == 0, res.stdout[-3000:]

    res = play(lab, DECOMMISSION, "-e", "kvmfusion_decommission_host=cna3")
    assert res.returncode == 0, res.stdout[-4000:]
    after = cluster()
    assert after["online"] == ["cna1", "cna2"] and after["nodes"] == ["cna1", "cna2"] and after["quorate"], after
    assert after["corosync"] == ["cna1", "cna2"] and cluster("cna2")["corosync"] == ["cna1", "cna2"], after
    assert "kvmfusion-fence-cna3" not in after["fencing"] and not [r for r in after["rules"] if "cna3" in r], after
    assert on("cna1", "ls /var/lib/kvmfusion/cluster").split() == ["fence-cna1.xml", "fence-cna2.xml"]
    for unit in ("corosync", "pacemaker", "corosync-qdevice"):
        state = on("cna3", "systemctl is-active %s; systemctl is-enabled %s; true" % (unit, unit)).split()
        assert state[0] != "active" and state[1] != "enabled", (unit, state)
    assert on("cna3", "ls /etc/corosync").split().count("corosync.conf") == 0
    # the cluster's secrets and state do not stay on a host outside it
    assert on("cna3", "ls -d /etc/corosync/authkey /etc/corosync/qdevice/net/nssdb /var/lib/pacemaker/cib/cib.xml "
                      "/var/lib/pacemaker/pengine/pe-* /var/lib/kvmfusion/cluster 2>/dev/null; true").split() == []
    assert on("cna3", "ls /var/lib/kvmfusion/site").split() == ["declared.json.decommissioned"]
    assert "Quorate" in on("cna1", "corosync-quorumtool -s") and "Qdevice" in on("cna1", "corosync-quorumtool -s")
    assert where("decom-run") in (["cna1"], ["cna2"])

    again = play(lab, DECOMMISSION, "-e", "kvmfusion_decommission_host=cna3")
    assert again.returncode == 0 and set(recap(again).values()) == {0}, recap(again)

    # The inventory without cna3: site.yml's platform finds nothing to change.
    with open(lab) as f:
        inv = yaml.safe_load(f)
    del inv["all"]["children"]["cna"]["hosts"]["cna3"]
    smaller = tmp_path / "inventory.yml"
    smaller.write_text(yaml.safe_dump(inv))
    os.chmod(str(smaller), 0o600)
    res = play(str(smaller), SITE, "--tags", "platform")
    assert res.returncode == 0 and set(recap(res).values()) == {0}, recap(res)
    assert cluster() == after

    res = play(lab, os.path.join(HERE, "vms.yml"), "-e", "state=absent", "-e", "only=decom-run", "--limit", "cna1,cna2")
    assert res.returncode == 0, res.stdout[-3000:]
