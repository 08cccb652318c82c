# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lab: the kvmfusion.compute.vms inventory plugin through ansible-inventory, against the lab's CNAs.

Covers: throwaway VMs named invp-* on both CNAs (a running test guest started as a transient domain, as the
cluster starts a VM under HA, its agent reporting an address set in the guest; two stopped VMs with a disk on a
datastore and a NIC on a DVS port group, defined as the vm module defines them) are listed from both CNAs in one
run with their CNA, state, vCPUs, memory, datastores, port groups, HA, guest addresses and ansible_host; compose,
groups and keyed_groups build their variables and groups; an unreachable CNA fails the source (none of its VMs listed), or is
skipped with skip_unreachable; every EXAMPLES document of the plugin runs in the lab (MAPPING says what is
changed for it). The invp-* VMs, networks, datastores and files are always removed, also those of an earlier run
that was killed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import json
import os
import re
import shlex
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET

import pytest
import yaml

from ansible_collections.kvmfusion.compute.plugins.inventory import vms
from ansible_collections.kvmfusion.compute.plugins.module_utils import diskspec, netspec, storage, vmspec, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "invp-"
SHARED = "/var/lib/kvmfusion/shared"
GUEST_DIR = "/var/cache/kvmfusion/test-guest"
GUEST_IP = "192.0.2.57"
MIB = 1024 ** 2

# What the plugin's EXAMPLES need changed to run in the lab, and why.
MAPPING = {
    "hosts": "the lab's CNA names do not resolve on the controller and take the lab's SSH key: each name in hosts "
             "becomes a uris entry {name, uri} with the lab's qemu+ssh URI of that CNA (uri_template goes)",
    "uris": "the lab has no TLS listener and no 10.0.0.0/24: each entry's uri becomes the lab's qemu+ssh URI of the "
            "lab CNA at the same position, its name kept",
    "cache_connection": "a temporary directory instead of /var/tmp/kvmfusion-vms-cache",
}


def _reset(client, cna):
    """Remove every invp-* domain, network and datastore of the CNA (this run's, or a killed run's)."""
    for dom in client.call("list domains", None, client.conn.listAllDomains, 0):
        if dom.name().startswith(PREFIX):
            persistent = dom.isPersistent()  # a transient domain is gone once destroyed
            if dom.isActive():
                dom.destroy()
            if persistent:
                dom.undefineFlags(0)
    for net in client.call("list networks", None, client.conn.listAllNetworks, 0):
        if net.name().startswith(PREFIX):
            if net.isActive():
                net.destroy()
            net.undefine()
    for pool in client.call("list storage pools", None, client.conn.listAllStoragePools, 0):
        if pool.name().startswith(PREFIX):
            if pool.isActive():
                pool.destroy()
            pool.undefine()
    assert not [n for n in client.domain_names() if n.startswith(PREFIX)], "invp-* VMs left on %s" % cna


def _stopped_vm(name, vcpus, memory, dvs, portgroup, disk):
    """A VM as the vm module defines it: its XML built by vmspec, its disk by diskspec."""
    d = vmspec.desired_state(dict(name=name, vcpus=vcpus, memory=memory, graphics="none",
                                  nics=[dict(dvs=dvs, portgroup=portgroup)]))
    root = xmlutil.parse(vmspec.build_xml(d, "qemu"))
    spec = diskspec.desired_state(dict(name=name + "-vda", datastore="ds", vm=name))
    root.find("devices").append(diskspec.disk_element(spec, disk, "raw", "vda"))
    return xmlutil.tostring(root)


def _guest_vm(name, guest, disk):
    """The test guest with its agent, a NIC (type ethernet: a tap on no switch; the address is set in the guest)
    and a small disk on the datastore."""
    d = vmspec.desired_state(dict(name=name, vcpus=1, memory="128MiB", graphics="none", guest_agent=True,
                                  kernel=guest["kernel"], initrd=guest["initrd"], cmdline=guest["cmdline"]))
    root = xmlutil.parse(vmspec.build_xml(d, "qemu"))
    devices = root.find("devices")
    nic = ET.SubElement(devices, "interface", type="ethernet")
    ET.SubElement(nic, "model", type="virtio")
    ET.SubElement(nic, "rom", enabled="no")  # no iPXE ROM to run at boot
    spec = diskspec.desired_state(dict(name=name + "-vda", datastore="ds", vm=name))
    devices.append(diskspec.disk_element(spec, disk, "raw", "vda"))
    return xmlutil.tostring(root)


def _agent(lab, cna, vm, command, **arguments):
    msg = {"execute": command}
    if arguments:
        msg["arguments"] = arguments
    res = lab.ssh(cna, "virsh -c qemu:///system qemu-agent-command %s %s" % (vm, shlex.quote(json.dumps(msg))),
                  check=False)
    return res.returncode, res.stdout, res.stderr


def _guest_shell(lab, cna, vm, script):
    rc, out, err = _agent(lab, cna, vm, "guest-exec", path="/bin/sh", arg=["-c", script],
                          **{"capture-output": True})
    assert rc == 0, "guest-exec in %s: %s" % (vm, err)
    pid = json.loads(out)["return"]["pid"]
    for _i in range(60):
        rc, out, err = _agent(lab, cna, vm, "guest-exec-status", pid=pid)
        status = json.loads(out)["return"]
        if status.get("exited"):
            assert status.get("exitcode") == 0, "%r in %s: %s" % (script, vm, status)
            return
        time.sleep(0.5)
    raise AssertionError("%r in %s did not end" % (script, vm))


@pytest.fixture(scope="module")
def site(lab):
    """The invp-* objects on the lab's two CNAs; removed afterwards whatever happens."""
    cna1, cna2 = lab.group("cna")[:2]
    tag = uuid.uuid4().hex[:6]
    names = {"run": "invp-run-" + tag, "web": "invp-web-" + tag, "db": "invp-db-" + tag,
             "dvs": "invp-d" + tag, "ds": "invp-ds-" + tag}
    ds_dir = "%s/%s" % (SHARED, names["ds"])
    subprocess.run([os.path.join(ROOT, "tools", "build-test-guest")], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(GUEST_DIR, "guest.json")) as f:
        guest = json.load(f)
    clients = {cna: Client(lab.uri(cna)) for cna in (cna1, cna2)}
    try:
        for cna, client in clients.items():
            _reset(client, cna)
        lab.ssh(cna1, "rm -rf %s/invp-*" % SHARED)
        # the guest's kernel and initramfs where every CNA sees them
        lab.ssh(cna1, "mkdir -p %s %s/%s-guest" % (ds_dir, SHARED, names["ds"]))
        guest_files = {}
        for key in ("kernel", "initrd"):
            dest = "%s/%s-guest/%s" % (SHARED, names["ds"], os.path.basename(guest[key]))
            with open(guest[key], "rb") as src:
                subprocess.run([os.path.join(ROOT, "tools", "lab"), "ssh", cna1, "cat > %s" % dest], stdin=src,
                               check=True, timeout=120)
            guest_files[key] = dest
        lab.ssh(cna1, "truncate -s 8M %s/run.raw %s/web.raw %s/db.raw" % (ds_dir, ds_dir, ds_dir))
        pool = storage.pool_xml(storage.desired_state(dict(name=names["ds"], type="dir", path=ds_dir)))
        dvs = netspec.network_xml(names["dvs"], [
            netspec.portgroup_element(netspec.portgroup_state(dict(dvs=names["dvs"], name=pg, vlan=vlan)))
            for pg, vlan in (("invp-web", 10), ("invp-db", 20))])
        for client in clients.values():
            client.call("define", "datastore", client.conn.storagePoolDefineXML, pool, 0)
            client.call("define", "DVS", client.conn.networkDefineXML, dvs)
        clients[cna1].define_domain(_stopped_vm(names["web"], 2, "256MiB", names["dvs"], "invp-web", ds_dir + "/web.raw"))
        clients[cna2].define_domain(_stopped_vm(names["db"], 1, "192MiB", names["dvs"], "invp-db", ds_dir + "/db.raw"))
        # started the way pacemaker's VirtualDomain starts a VM under HA: a transient domain
        clients[cna1].call("start", "VM '%s'" % names["run"], clients[cna1].conn.createXML,
                           _guest_vm(names["run"], dict(guest, **guest_files), ds_dir + "/run.raw"), 0)
        for _i in range(120):
            if _agent(lab, cna1, names["run"], "guest-ping")[0] == 0:
                break
            time.sleep(1)
        else:
            raise AssertionError("the guest agent of %s did not answer within 120 s" % names["run"])
        # the guest's DHCP client has no server to ask: stopped, so that it never takes the address away
        _guest_shell(lab, cna1, names["run"], "killall udhcpc; ip addr add %s/24 dev eth0" % GUEST_IP)
        yield dict(names, cna1=cna1, cna2=cna2, ds_dir=ds_dir)
    finally:
        for cna, client in clients.items():
            try:
                _reset(client, cna)
            finally:
                client.close()
        lab.ssh(cna1, "rm -rf %s/invp-*" % SHARED, check=False)


def _plain(value):
    """ansible-inventory's JSON with the markers of values that are not templates (__ansible_unsafe) taken off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _inventory(tmp_path, config, name="lab.kvmfusion_vms.yml", check=True, env=None):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(dict({"plugin": "kvmfusion.compute.vms"}, **config)))
    started = time.monotonic()
    res = subprocess.run(["ansible-inventory", "-i", str(path), "--list"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=300, check=False,
                         env=dict(os.environ, **(env or {})))
    took = time.monotonic() - started
    if check:
        # a source that fails to parse is a warning to ansible-inventory, which then exits 0
        assert res.returncode == 0 and "Unable to parse" not in res.stderr, "ansible-inventory failed:\n%s" % res.stderr
        return _plain(json.loads(res.stdout)), res.stderr, took
    return res


def _groups(listing):
    return {g: sorted(v.get("hosts", [])) for g, v in listing.items() if g != "_meta"}


def _sanitized(group):
    """A group name as Ansible makes it (to_safe_group_name)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", group)


def _uris(lab, cnas):
    return [{"name": cna, "uri": lab.uri(cna)} for cna in cnas]


def test_vms_of_both_cnas_with_their_vars_and_groups(lab, site, tmp_path):
    listing, stderr, took = _inventory(tmp_path, {
        "uris": _uris(lab, [site["cna1"], site["cna2"]]),
        "include": ["invp-*"],
        "agent_timeout": 10,
        "compose": {"invp_label": "kvmfusion_cna ~ '-' ~ kvmfusion_state"},
        "groups": {"invp_ha": "kvmfusion_ha", "invp_two_vcpus": "kvmfusion_vcpus >= 2"},
        "keyed_groups": [{"key": "kvmfusion_cna", "prefix": "invp_cna"},
                         {"key": "kvmfusion_state", "prefix": "invp_state"},
                         {"key": "kvmfusion_datastores", "prefix": "invp_ds"},
                         {"key": "kvmfusion_portgroups", "prefix": "invp_pg"}],
    })
    print("ansible-inventory listed the invp VMs of two CNAs in %.2f s" % took)
    hostvars = listing["_meta"]["hostvars"]
    run, web, db = hostvars[site["run"]], hostvars[site["web"]], hostvars[site["db"]]
    assert sorted(hostvars) == sorted([site["run"], site["web"], site["db"]])

    assert (run["kvmfusion_cna"], run["kvmfusion_state"], run["kvmfusion_vcpus"], run["kvmfusion_memory"]) == (
        site["cna1"], "running", 1, 128 * MIB)
    assert (run["kvmfusion_ha"], run["kvmfusion_persistent"]) == (True, False)
    assert run["kvmfusion_ips"] == [GUEST_IP] and run["ansible_host"] == GUEST_IP
    assert run["kvmfusion_nics"][0]["ips"] == [GUEST_IP]
    assert run["kvmfusion_datastores"] == [site["ds"]] and run["kvmfusion_portgroups"] == []
    assert run["kvmfusion_uri"] == lab.uri(site["cna1"])

    assert (web["kvmfusion_cna"], web["kvmfusion_state"], web["kvmfusion_vcpus"], web["kvmfusion_memory"]) == (
        site["cna1"], "shutoff", 2, 256 * MIB)
    assert (db["kvmfusion_cna"], db["kvmfusion_state"], db["kvmfusion_vcpus"], db["kvmfusion_memory"]) == (
        site["cna2"], "shutoff", 1, 192 * MIB)
    for vm, pg in ((web, "invp-web"), (db, "invp-db")):
        assert vm["kvmfusion_datastores"] == [site["ds"]]
        assert vm["kvmfusion_portgroups"] == ["%s/%s" % (site["dvs"], pg)]
        assert vm["kvmfusion_nics"][0]["dvs"] == site["dvs"] and vm["kvmfusion_nics"][0]["portgroup"] == pg
        assert (vm["kvmfusion_ha"], vm["kvmfusion_persistent"], vm["kvmfusion_ips"]) == (False, True, [])
        assert "ansible_host" not in vm
    assert web["invp_label"] == "%s-shutoff" % site["cna1"]

    groups = _groups(listing)
    sanitized = _sanitized
    assert groups["invp_cna_" + sanitized(site["cna1"])] == sorted([site["run"], site["web"]])
    assert groups["invp_cna_" + sanitized(site["cna2"])] == [site["db"]]
    assert groups["invp_state_running"] == [site["run"]]
    assert groups["invp_state_shutoff"] == sorted([site["web"], site["db"]])
    assert groups["invp_ha"] == [site["run"]]
    assert groups["invp_two_vcpus"] == [site["web"]]
    assert groups["invp_ds_" + sanitized(site["ds"])] == sorted([site["run"], site["web"], site["db"]])
    assert groups["invp_pg_%s_invp_web" % sanitized(site["dvs"])] == [site["web"]]
    assert groups["invp_pg_%s_invp_db" % sanitized(site["dvs"])] == [site["db"]]


def test_filters_and_read_only_listing(lab, site, tmp_path):
    listing, _stderr, _took = _inventory(tmp_path, {
        "uris": _uris(lab, [site["cna1"], site["cna2"]]), "include": ["invp-*"], "exclude": ["invp-db-*"],
        "states": ["shutoff", "running"], "filters": ["not kvmfusion_ha"], "guest_agent": False})
    assert sorted(listing["_meta"]["hostvars"]) == [site["web"]]


def test_unreachable_cna_fails_or_is_skipped(lab, site, tmp_path):
    nowhere = {"name": "nowhere", "uri": "qemu+ssh://root@127.0.0.1:1/system?no_verify=1"}
    config = {"uris": _uris(lab, [site["cna1"]]) + [nowhere], "include": ["invp-*"], "guest_agent": False}
    # the source fails as a whole: Ansible warns and lists none of its VMs, or stops when told to
    res = _inventory(tmp_path, config, check=False)
    message = "kvmfusion.compute.vms: cannot read the VMs of CNA nowhere: cannot connect to " \
              "qemu+ssh://root@127.0.0.1:1/system"
    assert res.returncode == 0 and message in res.stderr
    assert _plain(json.loads(res.stdout))["_meta"]["hostvars"] == {}
    res = _inventory(tmp_path, config, check=False, env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"})
    assert res.returncode != 0 and message in res.stderr
    listing, stderr, _took = _inventory(tmp_path, dict(config, skip_unreachable=True))
    assert sorted(listing["_meta"]["hostvars"]) == sorted([site["run"], site["web"]])
    assert "cannot read the VMs of CNA nowhere" in stderr


def _mapped(lab, example, tmp_path):
    cnas = lab.group("cna")
    example = dict(example)
    if "hosts" in example:
        example["uris"] = list(example.get("uris") or []) + _uris(lab, example.pop("hosts"))
        example.pop("uri_template", None)
    elif "uris" in example:
        example["uris"] = [{"name": e["name"] if isinstance(e, dict) else cnas[i], "uri": lab.uri(cnas[i])}
                           for i, e in enumerate(example["uris"])]
    if "cache_connection" in example:
        example["cache_connection"] = str(tmp_path / "cache")
    return example


def test_every_example_runs_in_the_lab(lab, site, tmp_path):
    examples = list(yaml.safe_load_all(vms.EXAMPLES))
    assert len(examples) >= 3
    cnas = lab.group("cna")
    for i, example in enumerate(examples):
        config = _mapped(lab, example, tmp_path)
        listing, _stderr, took = _inventory(tmp_path, {k: v for k, v in config.items() if k != "plugin"},
                                            name="example%d.kvmfusion_vms.yml" % i)
        print("EXAMPLES document %d: %d VMs in %.2f s" % (i, len(listing["_meta"]["hostvars"]), took))
        hostvars = listing["_meta"]["hostvars"]
        for name, v in hostvars.items():
            assert v["kvmfusion_cna"] in cnas, name
            if example.get("include"):
                assert any(fnmatch.fnmatchcase(name, p) for p in example["include"]), name
            if example.get("states"):
                assert v["kvmfusion_state"] in example["states"], name
            if example.get("compose", {}).get("ansible_user"):
                assert v["ansible_user"] == "admin"
        if not example.get("include"):
            # our VMs are in every listing that does not narrow it down
            assert {site["run"], site["web"], site["db"]} <= set(hostvars), "EXAMPLES document %d" % i
        groups = _groups(listing)
        for keyed in example.get("keyed_groups") or []:
            for name, v in hostvars.items():
                values = v[keyed["key"]] if isinstance(v[keyed["key"]], list) else [v[keyed["key"]]]
                for value in values:
                    group = _sanitized("%s_%s" % (keyed["prefix"], value))
                    assert name in groups.get(group, []), "%s not in %s" % (name, group)
        if example.get("cache"):
            assert os.listdir(str(tmp_path / "cache")), "the listing was not cached"
