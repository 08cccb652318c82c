# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One test for each bug an audit planted in the code that the unit suite did not catch (issue 17).

Each test is named after its bug. ``tests/mutation/planted.yml`` plants the bugs again, one at a time, and
``./dev test mutation`` shows that these tests (and not only the lab's) kill every one of them.
Provisioning is checked on real files, from their extent maps, never from the manager's report.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, disks, domains, fileops, images, vmspec, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
from ansible_collections.kvmfusion.compute.plugins.module_utils.snapshots import SnapshotManager
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils import test_revert as rv
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_disks import DATA1, URI, Host, opts, volume_desc
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_domains import as_libvirt_would, fake_dom, spec

MiB = 1024 * 1024


@pytest.fixture
def host(fake_libvirt):
    return Host(fake_libvirt)


def _clone_file_on(base, path):
    """A linked clone's image standing on ``base``, defined by no VM of this host (as one on another CNA)."""
    rv.qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, path)
    return path


# ---------------------------------------------------------------------------- linked-clone dependants

def test_planted_delete_volume_without_dependants_check(host, monkeypatch):
    host.add_pool()
    host.add_volume("data1")
    asked = []

    def dependants_of(client, paths, exclude_vm=None):
        asked.append(list(paths))
        return {DATA1: [("/var/lib/kvmfusion/datastores/ds1/c9-vda.qcow2", "image")]} if DATA1 in paths else {}
    monkeypatch.setattr(images, "dependants_of", dependants_of)
    mgr = disks.DiskManager(Client(URI), check_mode=False)
    for force in (False, True):  # force detaches from VMs; it never breaks a clone
        with pytest.raises(ValueError) as err:
            mgr.delete_volume(disks.desired_state(opts(state="absent")), force=force)
        assert str(err.value).startswith("disk 'data1' cannot be deleted: ") and "c9-vda.qcow2" in str(err.value)
    assert asked == [[DATA1], [DATA1]]
    assert host.mutating_calls() == [] and mgr.actions == []


def test_planted_vm_delete_with_disks_without_dependants_check(tmp_path):
    lab = rv.Lab(tmp_path)
    clone = _clone_file_on(lab.base, lab.path("c9-vda.qcow2"))
    mgr = domains.VmManager(lab.client, check_mode=False)
    with pytest.raises(ValueError) as err:
        mgr.absent("vm1", delete_disks=True)
    assert str(err.value) == ("VM 'vm1' cannot be deleted with its disks: linked clones stand on them (%s is the base of "
                              "%s (image)); delete the clones first" % (lab.base, clone))
    assert "vm1" in lab.client.domains and os.path.exists(lab.base) and lab.client.log == []


@pytest.fixture
def template_vm(fake_libvirt, tmp_path):
    """A stopped template VM whose one disk is a real image file."""
    disk = str(tmp_path / "golden-vda.qcow2")
    rv.qemu_img("create", "-q", "-f", "qcow2", disk, "1M")
    os.chmod(disk, 0o444)
    root = xmlutil.parse(as_libvirt_would(vmspec.build_xml(spec(template=True), "kvm")))
    devices = root.find("devices")
    devices.append(xmlutil.parse(rv.disk_xml(disk, "vda")))
    # a block disk is no image a clone stands on: never looked up
    devices.append(xmlutil.parse("<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
                                 "<source dev='/dev/vg0/lv1'/><target dev='vdb' bus='virtio'/><readonly/></disk>"))
    dom = fake_dom(5, xml=xmlutil.tostring(root))
    fake_libvirt.conn.lookupByName.return_value = dom
    return disk


def test_planted_template_to_vm_without_dependants_check(fake_libvirt, template_vm, monkeypatch):
    asked = []

    def dependants_of(client, paths, exclude_vm=None):
        asked.append(list(paths))
        return {template_vm: [("web-01", "vda")]} if template_vm in paths else {}
    monkeypatch.setattr(images, "dependants_of", dependants_of)
    mgr = domains.VmManager(Client(URI), check_mode=False)
    with pytest.raises(ValueError) as err:
        mgr.present(spec(template=False), "kvm", [], "present")
    assert str(err.value) == ("VM 'vm1' cannot stop being a template: linked clones stand on its disks "
                              "(%s is the base of web-01 (vda))" % template_vm)
    assert asked == [[template_vm]]
    assert fake_libvirt.conn.defineXMLFlags.call_count == 0 and fake_libvirt.conn.defineXML.call_count == 0
    assert os.stat(template_vm).st_mode & 0o777 == 0o444


def test_planted_snapshot_delete_without_dependants_check(tmp_path):
    lab = rv.Lab(tmp_path)
    lab.take("s1")  # freezes sys.qcow2; the VM writes sys.qcow2~s1.qcow2
    rv.write_data(lab.overlay("s1"), "0xcc")
    clone = _clone_file_on(lab.base, lab.path("c9-vda.qcow2"))
    mgr = SnapshotManager(lab.client, check_mode=False, run_command=lab.runner)
    with pytest.raises(ValueError) as err:
        mgr.absent("vm1", "s1")
    assert str(err.value).startswith("snapshot 's1' of VM 'vm1' cannot be deleted: ") and clone in str(err.value)
    assert "s1" in lab.vm.snaps and lab.calls("snapshot.delete") == [] and lab.runner.commands == []
    assert os.path.exists(lab.overlay("s1"))


# ---------------------------------------------------------------------------- eager zeroing, measured on the file

class Datastore(object):
    """A dir datastore on a real directory, its volumes real files, libvirt faked at the client boundary."""

    def __init__(self, host, path):
        self.host, self.path = host, str(path)
        self.pool = host.add_pool("ds1")
        self.pool.XMLDesc.return_value = ("<pool type='dir'><name>ds1</name><target><path>%s</path></target></pool>"
                                          % self.path)

    def manager(self):
        return disks.DiskManager(Client(URI), check_mode=False)

    def register(self, name, size, fmt):
        """Show the file the manager made as libvirt would after a refresh."""
        vol = self.host.add_volume(name, capacity=size, fmt=fmt)
        path = os.path.join(self.path, name)
        vol.path.return_value = path
        vol.XMLDesc.return_value = volume_desc(name, path, size, os.stat(path).st_blocks * 512, fmt)
        return path

    def make(self, name, size, fmt, provisioning):
        self.manager().converge(opts(name=name, size=size, format=fmt, provisioning=provisioning))
        return self.register(name, size, fmt)


@pytest.fixture
def ds(host, fsdir):  # pylint: disable=redefined-outer-name
    return Datastore(host, fsdir)


def measured(path, fmt, size=None):
    """What the extents say (labels ignored), and whether any range is unwritten."""
    unwritten = any(ext.unwritten for ext in fileops.extent_map(path))
    return fileops.detect_provisioning(path, size, fmt=fmt), unwritten


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_planted_create_eager_without_zeroing(ds, fmt):
    path = ds.make("d1", 4 * MiB, fmt, "thick_eager_zeroed")
    assert measured(path, fmt) == ("thick_eager_zeroed", False)


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_planted_grow_offline_eager_without_zeroing(ds, fmt):
    path = ds.make("d1", 4 * MiB, fmt, "thick_eager_zeroed")
    ds.manager().converge(opts(name="d1", size=8 * MiB))
    assert os.path.getsize(path) >= 8 * MiB
    assert measured(path, fmt) == ("thick_eager_zeroed", False)


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_planted_convert_to_eager_without_zeroing(ds, fmt):
    path = ds.make("d1", 4 * MiB, fmt, "thick_lazy_zeroed")
    assert measured(path, fmt)[1] is True  # lazy: unwritten extents to zero
    ds.register("d1", 4 * MiB, fmt)
    ds.manager().converge(opts(name="d1", provisioning="thick_eager_zeroed"))
    assert measured(path, fmt) == ("thick_eager_zeroed", False)


def test_a_disk_labelled_eager_with_punched_holes_reads_thin_and_converges(ds):
    """disk_info tells the truth about a file someone punched holes into, and the disk module converges it."""
    path = ds.make("d1", 4 * MiB, "raw", "thick_eager_zeroed")
    fileops.punch_zeroes(path)  # someone else's doing: the label still says eager
    assert fileops.get_intent(path) == "thick_eager_zeroed"
    ds.register("d1", 4 * MiB, "raw")
    facts = disks.inventory(Client(URI), True, datastore="ds1", name="d1")[0]
    assert (facts["provisioning"], facts["provisioning_measured"], facts["provisioning_source"]) == (
        "thin", "thin", "extents")
    mgr = ds.manager()
    result = mgr.converge(opts(name="d1", provisioning="thick_eager_zeroed")).as_dict()
    assert result["changed"] is True and mgr.actions == ["convert thin -> thick_eager_zeroed"]
    assert measured(path, "raw") == ("thick_eager_zeroed", False)
    ds.register("d1", 4 * MiB, "raw")
    again = ds.manager()
    assert again.converge(opts(name="d1", provisioning="thick_eager_zeroed")).as_dict()["changed"] is False


# ---------------------------------------------------------------------------- power states

def test_planted_libvirt_revert_not_powering_off_for_stopped(tmp_path):
    lab = rv.with_libvirt(rv.Lab(tmp_path), 9009000)
    lab.take("s1")
    rv.write_data(lab.overlay("s1"), "0xcc")
    lab.vm.running = True  # running on the disk-only snapshot; libvirt's revert leaves it running
    changed, plan = lab.manager().revert("vm1", "s1", state="stopped")
    assert changed and plan["engine"] == "libvirt"
    assert lab.calls("destroy") == [("destroy", "vm1")]
    assert lab.vm.isActive() == 0


def test_planted_guest_suspended_vm_never_woken(fake_libvirt):
    from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_domains import converge
    actions, dom = converge(Client(URI), "pmsuspended", "running", check_mode=False)
    dom.pMWakeup.assert_called_once_with(0)
    dom.resume.assert_not_called()
    assert actions[0] == "wake up"


# ---------------------------------------------------------------------------- gaps the mutation score showed
# (tools/mutation.py score: mutants of this code that no unit test killed)

def _deletable_lab(tmp_path, monkeypatch, running=False):
    """vm1 on sys.qcow2 with snapshot s1; the base is a datastore volume, the overlay a plain file."""
    lab = rv.Lab(tmp_path, running=running)
    lab.take("s1")
    copy = images.definition_copy_path(lab.vm.xml)
    with open(copy, "w") as f:
        f.write(lab.vm.xml)
    # the overlay is a datastore volume, the base a plain file (sorted first): every file is visited
    over_vol = mock.MagicMock(name="volume sys.qcow2~s1.qcow2")
    over_vol.delete.side_effect = lambda flags: os.unlink(lab.overlay("s1"))
    lab.client.volume_by_path = lambda path: over_vol if path == lab.overlay("s1") else None
    undefined = []
    lab.vm.undefineFlags = lambda flags: undefined.append(flags) or 0
    return lab, over_vol, copy, undefined


@pytest.mark.parametrize("running", [False, True])
def test_vm_delete_with_disks_removes_volumes_files_and_the_definition_copy(tmp_path, monkeypatch, running):
    lab, over_vol, copy, undefined = _deletable_lab(tmp_path, monkeypatch, running)
    overlay = lab.overlay("s1")
    mgr = domains.VmManager(lab.client, check_mode=False)
    assert mgr.absent("vm1", delete_disks=True) == {"name": "vm1"}
    assert mgr.actions == (["power off"] if running else []) + [
        "undefine", "delete %s" % lab.base, "delete disk %s" % overlay, "remove definition copy %s" % copy]
    assert undefined == [constants.UNDEFINE_MANAGED_SAVE | constants.UNDEFINE_SNAPSHOTS_METADATA | constants.UNDEFINE_NVRAM]
    over_vol.delete.assert_called_once_with(0)
    assert not os.path.exists(lab.base) and not os.path.exists(overlay) and not os.path.exists(copy)
    assert lab.calls("destroy") == ([("destroy", "vm1")] if running else [])


@pytest.mark.parametrize("running", [False, True])
def test_vm_delete_with_disks_refuses_files_another_cna_holds_open(tmp_path, monkeypatch, running):
    """A lease on a stopped VM's disk is another CNA's VM; on a running VM it is the VM's own QEMU."""
    lab, _vol, copy, undefined = _deletable_lab(tmp_path, monkeypatch, running)
    monkeypatch.setattr(fileops, "lease_held", lambda path: path == lab.base)
    mgr = domains.VmManager(lab.client, check_mode=False)
    if running:
        mgr.absent("vm1", delete_disks=True)
        assert undefined
        return
    with pytest.raises(ValueError) as err:
        mgr.absent("vm1", delete_disks=True)
    assert str(err.value) == ("VM 'vm1': disk(s) %s are open by a running VM on another CNA (lease held); nothing "
                              "was deleted" % lab.base)
    assert undefined == [] and os.path.exists(lab.base) and os.path.exists(copy)


def test_vm_delete_with_disks_refuses_a_disk_another_vm_of_this_cna_uses(tmp_path):
    lab = rv.Lab(tmp_path)
    lab.client.add_domain("other", rv.vm_xml("other", [rv.disk_xml(lab.base, "vdb")]))
    with pytest.raises(ValueError) as err:
        domains.VmManager(lab.client, check_mode=False).absent("vm1", delete_disks=True)
    assert str(err.value) == ("VM 'vm1': disk %s is also used by other; detach it there or keep the disks" % lab.base)


def test_a_label_equal_to_the_extents_reading_is_the_extents_reading(ds):
    path = ds.make("d1", 4 * MiB, "raw", "thick_lazy_zeroed")
    assert fileops.measure_provisioning(path) == {
        "provisioning": "thick_lazy_zeroed", "measured": "thick_lazy_zeroed", "label": "thick_lazy_zeroed",
        "source": "extents"}


@pytest.mark.parametrize("label, expected", [
    (None, {"provisioning": "thick", "measured": None, "label": None, "source": "allocation"}),
    ("thin", {"provisioning": "thin", "measured": None, "label": "thin", "source": "label"}),
    ("thick_lazy_zeroed", {"provisioning": "thick_lazy_zeroed", "measured": None, "label": "thick_lazy_zeroed",
                           "source": "label"}),
])
def test_without_fiemap_a_file_without_holes_is_what_its_label_says(fsdir, monkeypatch, label, expected):
    path = str(fsdir / "disk")
    with open(path, "wb") as f:
        f.write(b"\x01" * MiB)
    if label:
        fileops.set_intent(path, label)

    def no_fiemap(path, size=None, fmt=None):
        raise fileops.FileOpsError(path, "FIEMAP is not supported")
    monkeypatch.setattr(fileops, "detect_provisioning", no_fiemap)
    assert fileops.measure_provisioning(path) == expected


def test_a_qcow2_file_exactly_its_virtual_size_is_not_thin_for_being_short(fsdir):
    """detect_provisioning: a qcow2 file shorter than its virtual size is thin; one as long is read by extents."""
    path = str(fsdir / "d.qcow2")
    rv.qemu_img("create", "-q", "-f", "qcow2", "-o", "preallocation=full", path, "1M")
    assert os.path.getsize(path) >= MiB
    assert fileops.detect_provisioning(path, fmt="qcow2") == "thick_eager_zeroed"


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_growing_a_thin_disk_offline_asks_libvirt_without_allocating(ds, fmt):
    ds.make("d1", 4 * MiB, fmt, "thin")
    vol = ds.host.volumes[("ds1", "d1")]
    ds.manager().converge(opts(name="d1", size=8 * MiB))
    vol.resize.assert_called_once_with(8 * MiB, 0)


def test_growing_a_thick_disk_read_remotely_asks_libvirt_to_allocate(host):
    host.add_pool()
    vol = host.add_volume("data1", capacity=4 * MiB, allocation=4 * MiB, fmt="raw")
    mgr = disks.DiskManager(Client("qemu+ssh://root@cna2/system"), check_mode=False)
    mgr.converge(opts(name="data1", size=8 * MiB))
    vol.resize.assert_called_once_with(8 * MiB, constants.VOL_RESIZE_ALLOCATE)


def test_converting_eager_to_lazy_releases_the_zeroes_then_reserves(ds):
    path = ds.make("d1", 4 * MiB, "raw", "thick_eager_zeroed")
    ds.register("d1", 4 * MiB, "raw")
    ds.manager().converge(opts(name="d1", provisioning="thick_lazy_zeroed"))
    assert measured(path, "raw") == ("thick_lazy_zeroed", True)


def test_a_converted_qcow2_keeps_the_files_mode(ds):
    path = ds.make("d1", 4 * MiB, "qcow2", "thin")
    os.chmod(path, 0o640)
    ds.register("d1", 4 * MiB, "qcow2")
    ds.manager().converge(opts(name="d1", provisioning="thick_lazy_zeroed"))
    assert os.stat(path).st_mode & 0o7777 == 0o640


def test_new_disk_files_are_private(ds):
    for fmt in ("raw", "qcow2"):
        path = ds.make("d-" + fmt, 4 * MiB, fmt, "thin")
        assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_disk_in_only_one_of_the_definitions_is_still_in_use(tmp_path):
    """users_of reads the persistent and the live definition: a disk hot-plugged live only, or defined only."""
    lab = rv.Lab(tmp_path, running=True)
    other = lab.path("hot.qcow2")
    rv.qemu_img("create", "-q", "-f", "qcow2", other, "1M")
    live = rv.vm_xml("vm1", [rv.disk_xml(lab.base, "vda"), rv.disk_xml(other, "vdb")])
    real_xml = lab.client.domain_xml
    lab.client.domain_xml = lambda name, inactive=True, secure=False: (
        live if name == "vm1" and not inactive else real_xml(name, inactive, secure))
    assert images.users_of(lab.client, other) == [("vm1", "vdb")]
    lab.client.domain_xml = lambda name, inactive=True, secure=False: (
        rv.vm_xml("vm1", [rv.disk_xml(lab.base, "vda")]) if name == "vm1" and not inactive else real_xml(name, inactive, secure))
    lab.vm.xml = live
    assert images.users_of(lab.client, other) == [("vm1", "vdb")]


def test_a_guest_suspended_vm_asked_to_stop_is_woken_then_shut_down(fake_libvirt):
    from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_domains import converge
    actions, dom = converge(Client(URI), "pmsuspended", "stopped", check_mode=True)
    assert actions[0] == "wake up" and len(actions) > 1 and "shut" in " ".join(actions[1:])


@pytest.mark.parametrize("current, want, method", [("running", "restarted", "reboot"), ("paused", "restarted", "reset")])
def test_restart_calls_libvirt_with_flags_0(fake_libvirt, current, want, method):
    from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_domains import converge
    _actions, dom = converge(Client(URI), current, want, check_mode=False, force=(method == "reset"))
    getattr(dom, method).assert_called_once_with(0)


def test_a_vm_without_file_disks_is_deleted_without_a_definition_copy(tmp_path):
    lab = rv.Lab(tmp_path)
    dom = lab.client.add_domain("nodisk", rv.vm_xml("nodisk", []))
    dom.undefineFlags = lambda flags: 0
    mgr = domains.VmManager(lab.client, check_mode=False)
    assert mgr.absent("nodisk") == {"name": "nodisk"} and mgr.actions == ["undefine"]


def test_a_disk_file_another_cna_holds_open_is_not_deleted(host, monkeypatch):
    host.add_pool()
    vol = host.add_volume("data1")
    monkeypatch.setattr(fileops, "lease_held", lambda path: path == DATA1)
    monkeypatch.setattr(images, "dependants_of", lambda client, paths, exclude_vm=None: {})
    with pytest.raises(ValueError) as err:
        disks.DiskManager(Client(URI), check_mode=False).delete_volume(disks.desired_state(opts(state="absent")))
    assert "is open read-write by a running VM on another CNA" in str(err.value)
    assert vol.delete.call_count == 0


def test_zeroing_refuses_a_zero_chunk(fsdir):
    path = str(fsdir / "f")
    fileops.reserve(path, MiB)
    with pytest.raises(ValueError):
        fileops.zero_unwritten(path, chunk=0)


def test_zeroing_progress_counts_only_the_ranges_to_write(fsdir):
    """Data first, unwritten after: the total is what is zeroed, not the end offset of the ranges."""
    path = str(fsdir / "f")
    with open(path, "wb") as f:
        f.write(b"\x01" * MiB)
    fileops.reserve(path, 4 * MiB)
    seen = []
    written = fileops.zero_unwritten(path, progress=lambda done, total: seen.append((done, total)))
    assert written == 3 * MiB and seen[-1] == (3 * MiB, 3 * MiB)
    assert all(total == 3 * MiB for _done, total in seen)


def test_owned_files_are_file_disks_only(tmp_path):
    block = "<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg0/lv1'/>" \
            "<target dev='vdb' bus='virtio'/></disk>"
    lab = rv.Lab(tmp_path, extra_disks=[block])
    files, _mem = images.owned_files(lab.client, "vm1")
    assert files == set([lab.base])


def test_what_stands_on_an_image_is_found_past_other_entries_of_the_datastore(tmp_path):
    """Directories, small files, symlinks and unreadable entries sorted before a clone never hide it."""
    ds = tmp_path / "ds"
    ds.mkdir()
    base = str(ds / "base.qcow2")
    rv.qemu_img("create", "-q", "-f", "qcow2", base, "1M")
    (ds / "a-dir").mkdir()
    (ds / "a-small").write_bytes(b"x" * 100)
    clone = str(ds / "z-clone.qcow2")
    _clone_file_on(base, clone)
    os.symlink(clone, str(ds / "b-link.qcow2"))
    # a datastore directory that is gone (sorted first) does not end the search either
    found = images.images_standing_on([str(tmp_path / "a-missing"), str(ds)])
    assert found == {base: [clone]}


def test_deleting_a_missing_snapshot_is_no_change_and_an_existing_one_is(tmp_path):
    lab = rv.Lab(tmp_path)
    lab.take("s1")
    mgr = SnapshotManager(lab.client, check_mode=True, run_command=lab.runner)
    assert mgr.absent("vm1", "nope") == (False, None)
    changed, facts = mgr.absent("vm1", "s1")
    assert changed is True and facts["name"] == "s1"


def test_a_paused_vm_restarted_is_resumed_then_rebooted_with_flags_0(fake_libvirt):
    from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_domains import converge
    _actions, dom = converge(Client(URI), "paused", "restarted", check_mode=False)
    dom.resume.assert_called_once_with()
    dom.reboot.assert_called_once_with(0)


def test_save_current_as_an_existing_name_is_refused_even_with_nothing_to_save(tmp_path):
    lab = rv.Lab(tmp_path)
    lab.take("s1")
    rv.write_data(lab.overlay("s1"))
    lab.take("s2")  # nothing written since s2: nothing would be saved
    rv.refused(lab, "snapshot 's2' already exists: choose another save_current_as", discard_newer=False,
               save_current_as="s2")


def test_a_differencing_disk_is_not_converted(host):
    host.add_pool()
    vol = host.add_volume("data1")
    vol.XMLDesc.return_value = vol.XMLDesc.return_value.replace(
        "</target>", "</target><backingStore><path>/var/lib/kvmfusion/datastores/ds1/base.qcow2</path>"
                     "<format type='qcow2'/></backingStore>")
    with pytest.raises(ValueError) as err:
        disks.DiskManager(Client(URI), check_mode=True).converge(opts(provisioning="thick_eager_zeroed"))
    assert "is a differencing disk (backing file /var/lib/kvmfusion/datastores/ds1/base.qcow2)" in str(err.value)


def test_a_disk_read_remotely_is_never_measured_from_a_local_file_of_the_same_path(host, fsdir):
    """The controller may have a file at the path the CNA's disk has: it is not that disk."""
    host.add_pool()
    vol = host.add_volume("data1", capacity=MiB, allocation=MiB, fmt="raw")
    local = str(fsdir / "data1")
    with open(local, "wb") as f:
        f.truncate(MiB)  # a hole here; the CNA's disk is fully allocated
    vol.path.return_value = local
    facts = disks.volume_facts(Client("qemu+ssh://root@cna2/system"), vol, local=False)
    assert (facts["provisioning"], facts["provisioning_source"]) == ("thick", "allocation")


def test_a_vm_owns_the_layers_of_every_branch_of_its_snapshot_tree(tmp_path):
    """After a revert that kept the newer snapshots, their layers are on another branch than the active chain."""
    lab = rv.Lab(tmp_path)
    lab.take("s1")
    rv.write_data(lab.overlay("s1"))
    lab.take("s2")
    rv.write_data(lab.overlay("s2"))
    lab.manager().revert("vm1", "s1", discard_newer=False, save_current_as="keep")
    files, _mem = images.owned_files(lab.client, "vm1")
    active = fileops.backing_chain(lab.source())
    assert lab.overlay("s2") not in active  # s2's layer is on the other branch
    assert set([lab.base, lab.overlay("s1"), lab.overlay("s2")]) <= files
