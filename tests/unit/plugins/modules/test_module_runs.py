# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Each module's run path, end to end through AnsibleModule, with libvirt faked at the client boundary:
argument spec -> manager -> converge -> Result -> module result (or a one-line failure)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
from unittest import mock

import pytest

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmfusion.compute.plugins.modules import (
    clone,
    datastore,
    disk,
    snapshot,
    snapshot_revert,
    vm,
)
from ansible_collections.kvmfusion.compute.tests.unit.plugins.modules.test_host_info import _conn as host_info_conn
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_disks import GIB, Host

REMOTE = "qemu+ssh://root@cna2/system"


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch):
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)


@pytest.fixture
def host(fake_libvirt, tmp_path):
    h = Host(fake_libvirt)
    pool = h.add_pool("ds1")
    pool.XMLDesc.return_value = "<pool type='dir'><name>ds1</name><target><path>%s</path></target></pool>" % tmp_path
    # the host as host_info's tests describe it, with the pools, volumes and domains of test_disks' Host
    listings = dict((k, getattr(fake_libvirt.conn, k).side_effect) for k in ("listAllDomains", "listAllStoragePools"))
    host_info_conn(fake_libvirt)
    for k, side_effect in listings.items():
        getattr(fake_libvirt.conn, k).side_effect = side_effect
    return h


@pytest.fixture
def commands(monkeypatch):
    """AnsibleModule.run_command replaced: records commands, answers with ``commands.answer(cmd)``."""
    class Commands(object):
        ran = []

        @staticmethod
        def answer(cmd):
            return 0, "", ""

    def run_command(self, args, **kwargs):
        Commands.ran.append((list(args), kwargs))
        rc, out, err = Commands.answer(args)
        if rc != 0 and kwargs.get("check_rc"):
            # what AnsibleModule does: the task ends here, no caller's cleanup runs
            self.fail_json(msg=err, cmd=args, rc=rc)
        return rc, out, err

    Commands.ran = []
    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return Commands


def one_line_failure(result, *fragments):
    assert result["failed"] is True
    assert "\n" not in result["msg"]
    for f in fragments:
        assert f in result["msg"], result["msg"]


# ---------------------------------------------------------------------------- disk

def test_disk_qemu_img_failure_removes_the_partial_file(host, commands, tmp_path, set_module_args, module_result):
    written = []

    def answer(cmd):
        # qemu-img gets as far as writing part of the image, then the datastore fills up.
        partial = cmd[-2]
        written.append(partial)
        with open(partial, "wb") as f:
            f.write(b"QFI\xfb" + b"\0" * 4096)
        return 1, "", "qemu-img: %s: Could not preallocate data for the new file: No space left on device" % partial
    commands.answer = staticmethod(answer)
    set_module_args(dict(name="data1", datastore="ds1", size="1GiB", provisioning="thick_lazy_zeroed"))
    code, result = module_result(disk.main)
    assert code == 1
    one_line_failure(result, "qemu-img create failed", "No space left on device")
    assert [c[0][:2] for c in commands.ran] == [["qemu-img", "create"]]
    assert commands.ran[0][1].get("check_rc") is not True  # the manager decides, so its cleanup runs
    # written under a name no disk can have, removed; the disk's own name was never used
    assert [os.path.basename(w) for w in written] == [".data1~new"]
    assert os.listdir(str(tmp_path)) == []


def test_disk_check_mode_creates_nothing_and_predicts_the_real_run(host, commands, set_module_args, module_result):
    set_module_args(dict(name="data1", datastore="ds1", size="2GiB"), check_mode=True, diff=True)
    code, result = module_result(disk.main)
    assert code == 0, result
    assert result["changed"] is True
    assert result["actions"] == ["create thin qcow2 disk of %d bytes" % (2 * GIB)]
    assert result["diff"]["before"] == {"volume": None, "attachment": None}
    assert result["diff"]["after"]["volume"]["size"] == 2 * GIB
    assert result["reboot_required"] is False and result["disk"] is None
    assert host.mutating_calls() == [] and commands.ran == []


def test_disk_existing_and_unchanged_reports_no_change(host, commands, set_module_args, module_result):
    host.add_volume("data1", capacity=GIB, allocation=GIB // 2)
    set_module_args(dict(name="data1", datastore="ds1", size="1GiB", uri=REMOTE))
    code, result = module_result(disk.main)
    assert code == 0, result
    assert result["changed"] is False and result["actions"] == []
    assert result["disk"]["name"] == "data1" and result["disk"]["size"] == GIB


def test_disk_file_work_through_a_remote_uri_is_refused(host, commands, set_module_args, module_result):
    set_module_args(dict(name="data1", datastore="ds1", size="1GiB", provisioning="thick_eager_zeroed", uri=REMOTE))
    code, result = module_result(disk.main)
    assert code == 1
    one_line_failure(result, "creating a thick_eager_zeroed disk works on files or devices of the CNA",
                     "uri %s is remote" % REMOTE)
    assert host.mutating_calls() == [] and commands.ran == []


def test_disk_bad_input_fails_before_any_change(host, commands, set_module_args, module_result):
    set_module_args(dict(name="a/b", datastore="ds1", size="1GiB"))
    code, result = module_result(disk.main)
    assert code == 1
    one_line_failure(result, "disk name", "'a/b'")
    assert host.mutating_calls() == []


# ---------------------------------------------------------------------------- vm

def test_vm_new_in_check_mode_predicts_define_disk_and_start(host, commands, set_module_args, module_result):
    set_module_args(dict(name="web1", vcpus=2, memory="1GiB", state="running",
                         disks=[dict(datastore="ds1", name="web1-root", size="4GiB")]), check_mode=True, diff=True)
    code, result = module_result(vm.main)
    assert code == 0, result
    assert result["changed"] is True
    assert result["actions"] == ["define", "create thin qcow2 disk of %d bytes" % (4 * GIB),
                                 "attach as vda (persistent config)", "start"]
    assert result["previous_state"] == "undefined" and result["vm"] is None
    assert result["diff"]["before"] == {} and result["diff"]["after"]["vcpus"] == 2
    assert host.mutating_calls() == []


def test_vm_absent_that_does_not_exist_is_no_change(host, set_module_args, module_result):
    set_module_args(dict(name="web1", state="absent"))
    code, result = module_result(vm.main)
    assert code == 0, result
    assert result["changed"] is False and result["previous_state"] == "absent"
    assert result["reboot_required"] is False


def test_vm_bad_input_is_one_line(host, set_module_args, module_result):
    set_module_args(dict(name="web1", vcpus=4, max_vcpus=2))
    code, result = module_result(vm.main)
    assert code == 1
    one_line_failure(result, "VM 'web1': vcpus 4 is above max_vcpus 2")
    assert host.mutating_calls() == []


# ---------------------------------------------------------------------------- datastore, snapshots, clones

def test_datastore_absent_that_does_not_exist_is_no_change(host, set_module_args, module_result):
    set_module_args(dict(name="nope", state="absent"))
    code, result = module_result(datastore.main)
    assert code == 0, result
    assert result["changed"] is False and result["actions"] == [] and result["datastore"] is None
    assert "reboot_required" not in result


def test_datastore_new_in_check_mode(host, set_module_args, module_result, tmp_path):
    set_module_args(dict(name="ds2", type="dir", path=str(tmp_path / "ds2")), check_mode=True)
    code, result = module_result(datastore.main)
    assert code == 0, result
    assert result["changed"] is True
    assert result["actions"] == ["define", "build", "start", "set autostart"]
    assert host.mutating_calls() == [] and not (tmp_path / "ds2").exists()


@pytest.mark.parametrize("module, args, fragment", [
    (snapshot, dict(vm="nope", name="s1"), "unknown VM 'nope' on qemu:///system"),
    (snapshot_revert, dict(vm="nope", name="s1"), "unknown VM 'nope' on qemu:///system"),
    (clone, dict(source="tpl", name="c1", uri=REMOTE), "clone works on the disk files"),
    (snapshot_revert, dict(vm="vm1", name="s1", save_current_as="x/y", discard_newer=False), "snapshot name 'x/y'"),
    (snapshot_revert, dict(vm="vm1", name="s1", save_current_as="keep"), "save_current_as keeps the current state"),
], ids=["snapshot", "revert", "clone-remote", "revert-bad-name", "save-current-with-discard"])
def test_failures_are_one_line_and_change_nothing(host, commands, set_module_args, module_result, module, args, fragment):
    host.add_domain("vm1", running=False)
    set_module_args(args)
    code, result = module_result(module.main)
    assert code == 1
    one_line_failure(result, fragment)
    assert "exception" in result
    assert host.mutating_calls() == [] and commands.ran == []


# ---------------------------------------------------------------------------- where a module runs
@pytest.mark.parametrize("module, args, fragment", [
    (disk, dict(name="data1", datastore="ds1", state="absent"), "deleting a disk"),
    (disk, dict(name="data1", datastore="ds1", provisioning="thick_eager_zeroed"), "checking whether a thick disk"),
    (snapshot, dict(vm="vm1", name="s1", state="absent"), "deleting a snapshot"),
    (snapshot, dict(vm="vm1", name="new"), "taking a snapshot"),
    (vm, dict(name="vm1", state="absent", delete_disks=True), "deleting its disks"),
    (vm, dict(name="vm1", template=True), "keeping a template's disks read-only"),
    (snapshot_revert, dict(vm="vm1", name="s1"), "snapshot_revert works on the disk files"),
], ids=["disk-absent", "disk-convert", "snapshot-absent", "snapshot-present", "vm-absent-disks", "vm-template",
        "revert"])
def test_file_work_through_a_remote_uri_is_refused_before_any_change(host, commands, set_module_args, module_result,
                                                                     module, args, fragment):
    """With the README's 'delegate to localhost' mode, libvirt is on the CNA but the files are not where the
    module runs: reading qcow2 headers, merging or deleting there would act on the wrong machine."""
    host.add_volume("data1", capacity=GIB, allocation=GIB)
    dom = host.add_domain("vm1", running=False)

    def lookup(name, flags=0):
        if name == "new":
            raise host.fake.libvirtError("no snapshot", 72)
        return mock.MagicMock(name="snapshot %s" % name)
    dom.snapshotLookupByName.side_effect = lookup
    dom.listAllSnapshots.return_value = []
    dom.state.return_value = [5, 0]
    dom.hasManagedSaveImage.return_value = 0
    set_module_args(dict(args, uri=REMOTE))
    code, result = module_result(module.main)
    assert code == 1, result
    one_line_failure(result, fragment, REMOTE)
    assert host.mutating_calls() == [] and commands.ran == []


def test_vm_absent_through_a_remote_uri_leaves_the_definition_copy_and_says_so(host, set_module_args, module_result):
    host.add_domain("vm1", running=False)
    set_module_args(dict(name="vm1", state="absent", uri=REMOTE))
    code, result = module_result(vm.main)
    assert code == 0 and result["changed"] is True
    assert any("definition copy" in w and "remote" in w for w in result["warnings"])


# ---------------------------------------------------------------------------- a failed task leaves nothing behind
@pytest.mark.parametrize("step", ["qemu-img", "attach", "start"])
def test_a_new_vm_whose_task_fails_at_any_step_is_removed_with_the_disks_it_made(host, commands, tmp_path,
                                                                                 set_module_args, module_result, step):
    """A new VM is made completely or not at all: a failure after the definition (disk creation, attach, start)
    removes the definition and the disks this task created, so a re-run after the cause is fixed converges."""
    conn = host.fake.conn
    state = {}

    def define(xml, flags=0):
        dom = host.add_domain("web1", running=False)
        dom.XMLDesc.return_value = xml
        dom.state.return_value = [5, 0]
        dom.hasManagedSaveImage.return_value = 0
        dom.listAllSnapshots.return_value = []
        dom.undefineFlags.side_effect = lambda flags: host.domains.pop("web1")
        if step == "attach":
            dom.attachDeviceFlags.side_effect = host.fake.libvirtError("attach failed: no space for PCI slot", 1)
        if step == "start":
            dom.create.side_effect = host.fake.libvirtError("start failed: no memory", 1)
        state["dom"] = dom
        return dom
    conn.defineXMLFlags.side_effect = define

    def answer(cmd):
        if step == "qemu-img":
            return 1, "", "qemu-img: No space left on device"
        with open(cmd[-2], "wb") as f:
            f.write(b"QFI\xfb")
        return 0, "", ""
    commands.answer = staticmethod(answer)
    set_module_args(dict(name="web1", memory="64MiB", state="running",
                         disks=[dict(datastore="ds1", name="web1-system.qcow2", size="64MiB")]))
    code, result = module_result(vm.main)
    assert code == 1 and "\n" not in result["msg"]
    assert state["dom"].undefineFlags.called and "web1" not in host.domains
    assert os.listdir(str(tmp_path)) == []  # the disk it made (or its temporary file) is gone
