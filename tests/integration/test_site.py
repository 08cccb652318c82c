# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole site from one inventory: playbooks/lab.yml (the README's main command after 'tools/lab up') applies the
example site inventories/lab/ with playbooks/site.yml on the lab.

Covers: bad declarations refused in one line before any change; the site applied (the VRM, the CNAs' HA cluster,
datastore, switch and port groups, security groups, a template, a VM under HA, linked clones, HA settings) and the
summary printed; day two: snapshot.yml twice (one name for the set, the policy's retention), maintenance.yml on the CNA
of the VM under HA (moved by the cluster and back), a host that is not a CNA refused; a second run changed=0 on
every host; --check --diff after it changed=0 with no diff; a purge
(kvmfusion_purge) of clones dropped from the inventory, listed by --check and left in place there, then done, except the
clone replaced by hand by another VM of its name (not the VM the site made: left); a purge of everything
(kvmfusion_purge_all), listed by --check first, which removes only what the site made (a VM defined by hand stays).
Ends with the lab as the plain cna role leaves it (site/teardown.yml).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SITE = os.path.join(ROOT, "playbooks", "site.yml")
LAB_YML = os.path.join(ROOT, "playbooks", "lab.yml")
EXAMPLE = os.path.join(ROOT, "inventories", "lab")
TEARDOWN = os.path.join(HERE, "site", "teardown.yml")
SNAPSHOT = os.path.join(ROOT, "playbooks", "snapshot.yml")
MAINTENANCE = os.path.join(ROOT, "playbooks", "maintenance.yml")
SHARED = "/var/lib/kvmfusion/shared"  # the lab's shared filesystem (kvmfusion_shared_datastore_path)
NOTHING = {"kvmfusion_datastores": [], "kvmfusion_switches": [], "kvmfusion_security_groups": [],
           "kvmfusion_templates": [], "kvmfusion_vms": [], "kvmfusion_clones": [], "kvmfusion_ha": {}}


def playbook(lab, path, *args):
    res = subprocess.run(["ansible-playbook", "-i", lab.inventory, "-i", EXAMPLE, path] + list(args),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=2400, check=False)
    print(res.stdout[-20000:])
    return res


def recap(output):
    return dict((m.group(1), int(m.group(2))) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M))


def vms(lab, host):
    return sorted(lab.ssh(host, "virsh -c qemu:///system list --all --name").stdout.split())


def state(lab):
    """What a refused run must leave as it was: each CNA's VMs, pools, bridges and the site's record."""
    return dict((h, (vms(lab, h), lab.ssh(h, "virsh -c qemu:///system pool-list --all --name").stdout.split(),
                     lab.ssh(h, "ovs-vsctl list-br").stdout.split(),
                     lab.ssh(h, "cat /var/lib/kvmfusion/site/declared.json", check=False).stdout))
                for h in lab.group("cna"))


def purge_everything(lab, *args):
    everything = dict(NOTHING, kvmfusion_purge=True, kvmfusion_purge_all=True)
    return playbook(lab, SITE, "--tags", "purge", "-e", json.dumps(everything), *args)


def test_site(lab):
    cna1, cna2 = lab.group("cna")[:2]
    purge_everything(lab)
    playbook(lab, TEARDOWN)
    try:
        # ------------------------------------------------------------ bad input: one line, nothing changed
        before = state(lab)
        bad = playbook(lab, SITE, "-e", json.dumps({"kvmfusion_vms": [{"name": "bad vm", "host": "cna9"}]}))
        assert bad.returncode != 0
        msg = [line for line in bad.stdout.splitlines() if '"msg": "site: ' in line]
        assert len(msg) == 1 and "invalid VM name 'bad vm'" in msg[0] and "'cna9' is not in" in msg[0], bad.stdout
        empty = playbook(lab, SITE, "-e", json.dumps(dict(NOTHING, kvmfusion_purge=True)))
        assert empty.returncode != 0 and "set kvmfusion_purge_all as well" in empty.stdout, empty.stdout[-3000:]
        assert state(lab) == before

        # ------------------------------------------------------------ the site, three times
        first = playbook(lab, LAB_YML)
        assert first.returncode == 0, first.stdout[-6000:]
        assert sum(recap(first.stdout).values()) > 0
        for want in ("HA: quorate=True", "db1@%s" % cna2, "datastores: lab-shared", "port groups: dvs-lab/pg-db",
                     "web-01 running", "web-02 running"):
            assert want in first.stdout, want
        assert {"tpl-web", "web-01", "web-02"} <= set(vms(lab, cna1)) and "db1" in vms(lab, cna2)
        # ------------------------------------------------------------ day two: snapshots of a set, a CNA's maintenance
        policy = json.dumps({"kvmfusion_snapshot_policy": {"vms": ["web-01", "web-02"], "keep": 1,
                                                           "quiesce": "best_effort"}})
        taken = []
        for _run in range(2):
            snap = playbook(lab, SNAPSHOT, "-e", policy)
            assert snap.returncode == 0, snap.stdout[-6000:]
            now = dict((vm, lab.ssh(cna1, "virsh -c qemu:///system snapshot-list --name %s" % vm).stdout.split())
                       for vm in ("web-01", "web-02"))
            # one name for the set, and only the newest kept
            assert now["web-01"] == now["web-02"] and len(now["web-01"]) == 1, now
            taken.append(now["web-01"][0])
            time.sleep(1.1)
        assert taken[0] != taken[1] and taken[1].startswith("auto-")
        maint = playbook(lab, MAINTENANCE, "-e", "kvmfusion_maintenance_host=%s" % cna2,
                         "-e", "kvmfusion_maintenance_upgrade=false")
        assert maint.returncode == 0, maint.stdout[-6000:]
        assert "db1" in maint.stdout  # moved by the cluster on the way in
        bad = playbook(lab, MAINTENANCE, "-e", "kvmfusion_maintenance_host=vrm1")
        assert bad.returncode != 0 and "must be one CNA of the inventory" in bad.stdout, bad.stdout[-3000:]

        second = playbook(lab, LAB_YML)
        assert second.returncode == 0, second.stdout[-6000:]
        assert set(recap(second.stdout).values()) == {0}, "changed on the second run: %s" % second.stdout[-8000:]
        check = playbook(lab, LAB_YML, "--check", "--diff")
        assert check.returncode == 0, check.stdout[-6000:]
        assert set(recap(check.stdout).values()) == {0}, "changed in check mode: %s" % check.stdout[-8000:]
        assert "--- before" not in check.stdout and "+++ after" not in check.stdout, check.stdout[-8000:]

        # ------------------------------------------------------------ purge: the clones dropped from the inventory
        lab.ssh(cna1, "virsh -c qemu:///system define /dev/stdin <<'EOF'\n<domain type='qemu'><name>by-hand</name>"
                      "<memory unit='MiB'>32</memory><os><type>hvm</type></os></domain>\nEOF")
        # web-02 replaced by hand: a VM of that name that the site did not make (another UUID) must stay
        # (its files go too: an overlay left on the datastore would still stand on the template, and the purge of the
        # template would rightly refuse)
        lab.ssh(cna1, "virsh -c qemu:///system destroy web-02; virsh -c qemu:///system undefine --snapshots-metadata "
                      "web-02 && rm -f %s/lab-shared/web-02-* && virsh -c qemu:///system pool-refresh lab-shared && "
                      "virsh -c qemu:///system define /dev/stdin <<'EOF'\n<domain type='qemu'><name>web-02"
                      "</name><memory unit='MiB'>32</memory><os><type>hvm</type></os></domain>\nEOF" % SHARED)
        dropped = ["-e", json.dumps({"kvmfusion_clones": [], "kvmfusion_purge": True})]
        listed = playbook(lab, SITE, "--check", *dropped)
        assert listed.returncode == 0, listed.stdout[-6000:]
        assert "would remove: vms: web-01 (left: web-02, not the VM(s) the site made)" in listed.stdout, listed.stdout[-6000:]
        assert {"by-hand", "tpl-web", "web-01", "web-02"} <= set(vms(lab, cna1))
        purged = playbook(lab, SITE, *dropped)
        assert purged.returncode == 0, purged.stdout[-6000:]
        assert {"by-hand", "tpl-web", "web-02"} <= set(vms(lab, cna1)) and "web-01" not in vms(lab, cna1)
        record = json.loads(lab.ssh(cna1, "cat /var/lib/kvmfusion/site/declared.json").stdout)
        assert not {"web-01", "web-02"} & set(record["vms"]) and sorted(record["vm_uuids"]) == ["db1", "tpl-web"]
        again = playbook(lab, SITE, *dropped)
        assert set(recap(again.stdout).values()) == {0}, again.stdout[-8000:]
        lab.ssh(cna1, "virsh -c qemu:///system undefine web-02")

        # ------------------------------------------------------------ purge everything the site made
        listed = purge_everything(lab, "--check")
        assert listed.returncode == 0, listed.stdout[-6000:]
        assert ("would remove: vms: db1, tpl-web; ha: db1; security_groups: sg-db, sg-web; portgroups: dvs-lab/pg-db, "
                "dvs-lab/pg-web; switches: dvs-lab; datastores: lab-shared") in listed.stdout, listed.stdout[-6000:]
        assert {"tpl-web"} <= set(vms(lab, cna1)) and "db1" in vms(lab, cna2)
        gone = purge_everything(lab)
        assert gone.returncode == 0, gone.stdout[-6000:]
        assert "by-hand" in vms(lab, cna1) and not {"tpl-web", "db1"} & set(vms(lab, cna1) + vms(lab, cna2))
        assert "dvs-lab" not in lab.ssh(cna1, "ovs-vsctl list-br").stdout
        assert "lab-shared" not in lab.ssh(cna2, "virsh -c qemu:///system pool-list --all --name").stdout
    finally:
        lab.ssh(cna1, "virsh -c qemu:///system undefine by-hand; virsh -c qemu:///system domuuid web-02 | grep -q . && "
                      "! virsh -c qemu:///system dumpxml web-02 | grep -q '<disk' && virsh -c qemu:///system undefine "
                      "web-02", check=False)
        purge_everything(lab)
        down = playbook(lab, TEARDOWN)
        assert down.returncode == 0, down.stdout[-6000:]
