# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module's EXAMPLES block, run in the lab: documentation that cannot run is wrong.

The examples are taken from the modules' own DOCUMENTATION strings, in an order that tells one story
(datastores, web1, its disks, snapshots of db1 and web1, reverts, clones, templates, the info modules),
with a few set-up tasks between them where an example's text says what it expects ("web1 stopped").
Values that cannot exist in the lab are mapped, and only these (MAPPING, with the reason for each);
examples that need what the lab cannot have run in check mode (CHECK_ONLY, with the reason). Each example
must succeed; the test fails naming the first one that does not.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os
import re
import subprocess
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODULES = os.path.join(ROOT, "plugins", "modules")

# (text in EXAMPLES, what the lab uses, why)
MAPPING = [
    ("/dev/disk/by-id/wwn-0x600a0b800026d63a", "'{{ __lun }}'", "a SAN LUN: a loop device the test attaches on the CNA"),
    ("qemu+ssh://root@cna2/system", "'{{ __cna2_uri }}'", "the controller reaches lab hosts with the lab's own SSH key"),
    ("count: 20", "count: 2", "twenty desktops: two are enough to show a batch"),
    ("20GiB", "64MiB", "sizes scaled down to the lab's disk"),
    ("40GiB", "96MiB", "sizes scaled down to the lab's disk"),
    ("10GiB", "32MiB", "sizes scaled down to the lab's disk"),
    ("max_memory: 8GiB", "max_memory: 384MiB", "memory scaled down to the lab"),
    ("memory: 4GiB", "memory: 256MiB", "memory scaled down to the lab"),
    ("memory: 2GiB", "memory: 192MiB", "memory scaled down to the lab"),
    ("uplinks: [eth1, eth2]", "uplinks: [eth1, kvmfex-up2]", "a second NIC: a veth the test makes on each CNA"),
]
# Running VMs of the examples use TCG: this machine's KVM cannot start host-model guests (LAB-NOTES).
RUNNING_VM_EXTRA = {"hypervisor": "qemu", "graphics": "none"}
# Modules whose examples run in an integration target of their own, which has what they need.
ELSEWHERE = {
    "ha": "needs an HA cluster: the ha target forms one and runs these examples on it (targets/ha/files/examples.py)",
}
CHECK_ONLY = {
    "An NFS datastore": "the lab has no NFS server (no kernel NFS in its namespaces)",
    "An iSCSI SAN through libiscsi with CHAP": "the site's SAN portal and IQN (the lab's own iSCSI target is "
    "tested by the datastore_iscsi target)",
    "Pick up a grown LUN": "the same SAN",
}


def examples(module):
    with open(os.path.join(MODULES, module + ".py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "EXAMPLES":
            text = node.value.value if hasattr(node.value, "value") else node.value.s
            for old, new, _why in MAPPING:
                text = text.replace(old, new)
            return yaml.safe_load(text)
    raise AssertionError("%s has no EXAMPLES" % module)


# The migration examples' VMs have their own names here: web1 and db1 of the other examples are on local
# datastores under snapshots, which cannot move live (the migration target tests that refusal).
MODULE_MAPPING = {
    "vm_migration": [("name: web1", "name: mig-web1"), ("name: db1", "name: mig-db1"), ("name: old1", "name: mig-old1")],
    "storage_migration": [("vm: db1", "vm: sm-db1"), ("vm: web1", "vm: sm-web1")],
}


def ex(module, index):
    task = examples(module)[index]
    for old, new in MODULE_MAPPING.get(module, []):
        task = yaml.safe_load(yaml.safe_dump(task).replace(old, new))
    name = task["name"]
    if name in CHECK_ONLY:
        task["check_mode"] = True
    args = task.get("kvmfusion.compute.vm")
    if isinstance(args, dict) and args.get("state") in ("running", None) and args.get("vcpus"):
        args.update(RUNNING_VM_EXTRA)
    task["name"] = "EXAMPLE %s: %s" % (module, name)
    return task


def on_first(tasks):
    return {"name": "On the first CNA", "when": "inventory_hostname == groups['cna'] | first", "block": tasks}


def glue(name, **task):
    return dict(name="SET-UP: " + name, **task)


def story(lab):
    cna2 = lab.group("cna")[1]
    guest = "/var/lib/kvmfusion/shared/test-guest"
    vm_tasks = [
        glue("the test guest", **{"ansible.builtin.include_role": {"name": "{{ playbook_dir }}/targets/setup_test_guest"}}),
        glue("the network prod with port group web", **{"ansible.builtin.shell": (
            "virsh -c qemu:///system net-info prod >/dev/null 2>&1 && exit 0; "
            "printf \"<network><name>prod</name><bridge name='kvmfprod0'/><forward mode='nat'/>"
            "<ip address='192.168.123.1' netmask='255.255.255.0'/><portgroup name='web'/></network>\" > /tmp/prod.xml; "
            "virsh -c qemu:///system net-define /tmp/prod.xml && virsh -c qemu:///system net-start prod")}),
        glue("a datastore fast-ssd", **{"kvmfusion.compute.datastore": {
            "name": "fast-ssd", "type": "dir", "path": "/var/lib/kvmfusion/datastores/fast-ssd"}}),
        glue("VMs whose disks move", **{"kvmfusion.compute.vm": {
            "name": "{{ item.name }}", "hypervisor": "kvm", "memory": "64MiB", "graphics": "none",
            "guest_agent": False, "state": "running", "disks": "{{ item.disks }}"},
            "loop": [{"name": "sm-db1", "disks": [{"datastore": "local", "name": "sm-db1.qcow2", "size": "16MiB"}]},
                     {"name": "sm-web1", "disks": [{"datastore": "fast-ssd", "name": "sm-web1.qcow2", "size": "16MiB"},
                                                   {"datastore": "fast-ssd", "name": "sm-web1-data.qcow2",
                                                    "size": "16MiB"}]}]}),
        ex("storage_migration", 0), ex("storage_migration", 1),
        glue("a snapshot of web1 (the next examples move its layers)", **{"kvmfusion.compute.snapshot": {
            "vm": "sm-web1", "name": "before-move"}}),
        ex("storage_migration", 2), ex("storage_migration", 3),
        glue("the VMs whose disks moved go", **{"kvmfusion.compute.vm": {"name": "{{ item }}", "state": "absent",
                                                                         "delete_disks": True},
                                                "loop": ["sm-db1", "sm-web1"]}),
        glue("db1, a Linux VM with a guest agent", **{"kvmfusion.compute.vm": {
            "name": "db1", "hypervisor": "qemu", "memory": "128MiB", "graphics": "none",
            "kernel": guest + "/vmlinux", "initrd": guest + "/initrd.img", "cmdline": "console=ttyS0 panic=-1 quiet",
            "disks": [{"datastore": "shared", "name": "db1-system.qcow2", "size": "32MiB"}], "state": "running"}}),
        glue("wait for db1's guest agent", **{"ansible.builtin.command": "virsh -c qemu:///system qemu-agent-command db1 "
                                              "'{\"execute\":\"guest-ping\"}'",
                                              "register": "__ping", "until": "__ping.rc == 0", "retries": 60,
                                              "delay": 2, "changed_when": False}),
        glue("a desktop template", **{"kvmfusion.compute.vm": {
            "name": "win-desktop-template", "hypervisor": "qemu", "memory": "64MiB", "graphics": "none",
            "template": True,
            "disks": [{"datastore": "shared", "name": "win-desktop.qcow2", "size": "32MiB"}]}}),
        ex("vm", 0), ex("vm", 1),
        ex("disk", 0),
        glue("stop web1 (the next example says so)", **{"kvmfusion.compute.vm": {"name": "web1", "state": "stopped",
                                                                                 "force": True,
                                                                                 "shutdown_timeout": 1}}),
        ex("disk", 1),
        glue("start web1 (the next example says it runs)", **{"kvmfusion.compute.vm": {"name": "web1",
                                                                                       "state": "running"}}),
        ex("disk", 2),
        ex("snapshot", 0), ex("snapshot", 1),
        ex("snapshot_info", 0), ex("snapshot_info", 1),
        ex("snapshot_revert", 0), ex("snapshot_revert", 1),
        ex("clone", 0), ex("clone", 1), ex("clone", 2),
        ex("snapshot", 2),
        ex("disk", 3), ex("disk", 5),
        glue("a disk old.qcow2 attached to web1", **{"kvmfusion.compute.disk": {
            "datastore": "shared", "name": "old.qcow2", "size": "16MiB", "vm": "web1"}}),
        ex("disk", 6),
        glue("a loop device as the LUN", **{"ansible.builtin.shell": (
            "truncate -s 32M /var/lib/kvmfusion/itest-lun.img && losetup --find --show /var/lib/kvmfusion/itest-lun.img"),
            "register": "__losetup"}),
        glue("remember it", **{"ansible.builtin.set_fact": {"__lun": "{{ __losetup.stdout }}"}}),
        glue("stop db1 (a loop device is mapped into a stopped VM)", **{"kvmfusion.compute.vm": {
            "name": "db1", "state": "stopped", "force": True, "shutdown_timeout": 30}}),
        ex("disk", 4),
        ex("vm", 2), ex("vm", 3), ex("vm", 4),
        ex("disk_info", 0), ex("disk_info", 1), ex("disk_info", 2),
        ex("vm_info", 0), ex("vm_info", 1), ex("vm_info", 2),
    ]
    fw = {"hypervisor": "kvm", "memory": "64MiB", "graphics": "none", "guest_agent": False}
    migration_tasks = [
        glue("VMs on the shared datastore to move", **{"kvmfusion.compute.vm": dict(
            fw, name="{{ item.name }}", state="{{ item.state }}",
            disks=[{"datastore": "shared", "name": "{{ item.name }}.qcow2", "size": "16MiB"}]),
            "loop": [{"name": "mig-web1", "state": "running"}, {"name": "mig-db1", "state": "running"},
                     {"name": "mig-old1", "state": "stopped"}]}),
        ex("vm_migration", 0), ex("vm_migration", 1), ex("vm_migration", 2), ex("vm_migration", 3),
        ex("vm_migration", 4), ex("vm_migration", 5), ex("vm_migration", 6),
        ex("host_maintenance", 0), ex("host_maintenance", 1), ex("host_maintenance", 2),
        glue("the moved VMs go", **{"kvmfusion.compute.vm": {"name": "{{ item }}", "state": "absent",
                                                             "delete_disks": True},
                                    "delegate_to": cna2, "loop": ["mig-web1", "mig-db1", "mig-old1"]}),
    ]
    network_tasks = [
        glue("a second NIC for the bond example", **{"ansible.builtin.shell": (
            "ip link show kvmfex-up2 >/dev/null 2>&1 || ip link add kvmfex-up2 type veth peer name kvmfex-up2p; "
            "ip link set kvmfex-up2 up; ip link set kvmfex-up2p up")}),
        ex("dvs", 0), ex("dvs_info", 0), ex("dvs_info", 1), ex("dvs", 1),
        ex("portgroup", 0), ex("portgroup", 1), ex("portgroup", 2), ex("portgroup", 3),
        ex("portgroup_info", 0), ex("portgroup_info", 1),
        ex("security_group", 0), ex("security_group", 1), ex("security_group", 2), ex("security_group", 3),
        ex("security_group_info", 0), ex("security_group_info", 1),
        ex("dvs", 2),
    ]
    return [{
        "name": "Every module's EXAMPLES",
        "hosts": "cna",
        "gather_facts": False,
        "vars": {"__cna2_uri": lab.uri(cna2), "vault_san1_chap": "not-a-secret", "__lun": "/dev/null"},
        # ha_info: the integration lab has no HA cluster, so its examples report running=false and the two that need
        # a cluster skip; the cna role's molecule scenario reads a formed cluster with the module
        "tasks": [ex("host_info", i) for i in range(3)] + [ex("cluster_cpu_info", i) for i in range(2)]
        + [ex("ha_info", i) for i in range(3)]
        + [ex("datastore", i) for i in range(5)] + [on_first(migration_tasks)] + network_tasks
        + [on_first(vm_tasks)] + [ex("datastore_info", i) for i in range(3)] + [ex("datastore", 5)],
    }]


CLEANUP = """
- name: Remove what the examples made
  hosts: cna
  gather_facts: false
  tasks:
    - name: Return the first CNA to service (the maintenance example)
      kvmfusion.compute.host_maintenance: {state: active}
      when: inventory_hostname == groups['cna'] | first
    - name: Remove the migration examples' VMs wherever they are
      kvmfusion.compute.vm: {name: "{{ item }}", state: absent, delete_disks: true}
      loop: [mig-web1, mig-db1, mig-old1, sm-db1, sm-web1]
    - name: Remove VMs and clones with their disks (clones first)
      kvmfusion.compute.vm: {name: "{{ item }}", state: absent, delete_disks: true}
      loop: [desk-001, desk-002, db1-copy, db1-test-a, db1-test-b, web1, db1, old1]
      when: inventory_hostname == groups['cna'] | first
    - name: Templates become VMs again, then go
      kvmfusion.compute.vm: {name: "{{ item }}", template: false}
      loop: [win-desktop-template, debian12-template]
      when: inventory_hostname == groups['cna'] | first
      failed_when: false
    - name: Remove the templates
      kvmfusion.compute.vm: {name: "{{ item }}", state: absent, delete_disks: true}
      loop: [win-desktop-template, debian12-template]
      when: inventory_hostname == groups['cna'] | first
    - name: Remove the disks left on the shared datastore and the loop device
      ansible.builtin.shell: |
        for f in web1-data.raw old.qcow2; do virsh -c qemu:///system vol-delete --pool shared $f 2>/dev/null; done
        for l in $(losetup -j /var/lib/kvmfusion/itest-lun.img -O NAME -n); do losetup -d $l; done
        rm -f /var/lib/kvmfusion/itest-lun.img
        virsh -c qemu:///system net-destroy prod 2>/dev/null; virsh -c qemu:///system net-undefine prod 2>/dev/null
        exit 0
      when: inventory_hostname == groups['cna'] | first
      changed_when: true
    - name: Remove the example DVS
      kvmfusion.compute.dvs: {name: dvs-prod, state: absent, force: true}
    - name: Remove the example security groups
      kvmfusion.compute.security_group: {name: "{{ item }}", state: absent, force: true}
      loop: [app, web, db]
    - name: Remove the second NIC
      ansible.builtin.command: ip link del kvmfex-up2
      failed_when: false
      changed_when: true
    - name: Remove the example datastores (files of the local ones too)
      kvmfusion.compute.datastore: {name: "{{ item }}", state: absent, purge: "{{ item != 'shared' }}"}
      loop: [fast-ssd, local, shared]
"""


def run(lab, text):
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=HERE, delete=False) as f:
        f.write(text)
    try:
        res = subprocess.run(["ansible-playbook", "-i", lab.inventory, f.name], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=1800, check=False)
    finally:
        os.unlink(f.name)
    print(res.stdout[-30000:])
    return res


def test_every_example_runs(lab):
    run(lab, CLEANUP)
    try:
        plays = story(lab)
        res = run(lab, yaml.safe_dump(plays, sort_keys=False))
        failed = re.findall(r"TASK \[(EXAMPLE [^\]]+|SET-UP[^\]]+)\][^\n]*\n(?:(?!TASK \[)[^\n]*\n)*?fatal:", res.stdout)
        assert res.returncode == 0, "failed: %s\n%s" % (failed, res.stdout[-8000:])
        # every example of every module ran
        for name in sorted(os.listdir(MODULES)):
            module = name[:-3]
            if module in ELSEWHERE:
                continue
            for task in examples(module):
                assert "EXAMPLE %s: %s" % (module, task["name"]) in res.stdout, "example not run: %s" % task["name"]
    finally:
        run(lab, CLEANUP)
