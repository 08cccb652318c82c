# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""storage_migration: refusals before any change, a stopped VM's disk converted with real qemu-img, a running
VM's block copy and its failure, the recorded move the vm and disk modules follow."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import (
    constants, diskspec, disks, fileops, images, power, storagemove, xmlutil)

MIB = 1024 ** 2


# ---------------------------------------------------------------- the recorded moves
def test_moves_round_trip_and_follow_a_chain_of_moves():
    moves = {("ds1", "a.qcow2"): ("ds2", "a.qcow2"), ("ds2", "a.qcow2"): ("ds3", "a.qcow2")}
    root = xmlutil.parse("<domain><metadata>%s</metadata></domain>" % diskspec.moves_xml(moves).replace(
        "<moves>", "<moves xmlns='%s'>" % diskspec.MOVES_NS))
    assert diskspec.moves_of(root) == moves
    assert diskspec.follow(moves, "ds1", "a.qcow2") == ("ds3", "a.qcow2")
    assert diskspec.follow(moves, "ds9", "b.qcow2") == ("ds9", "b.qcow2")
    loop = {("a", "x"): ("b", "x"), ("b", "x"): ("a", "x")}
    assert diskspec.follow(loop, "a", "x") in (("a", "x"), ("b", "x"))  # a loop ends, it does not hang


@pytest.mark.parametrize("kw, fragment", [
    (dict(provisioning="thickest"), "provisioning must be one of"),
    (dict(format="vmdk"), "format must be one of qcow2, raw"),
    (dict(bandwidth=0), "bandwidth must be between 1"),
    (dict(vm="a/b"), "invalid VM name"),
])
def test_bad_options(kw, fragment):
    p = dict(vm="vm1", datastore="ds2")
    p.update(kw)
    with pytest.raises(ValueError) as err:
        storagemove.desired_state(p)
    assert fragment in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- a CNA with two datastores, real image files
class Pool(object):
    def __init__(self, name, path):
        self.n, self.path = name, path
        self.refresh = mock.MagicMock()

    def isActive(self):
        return 1


class Cna(object):
    """The client boundary: a VM whose disk is a real image file in ds1; libvirt calls are recorded."""

    is_local = True
    uri = "qemu:///system"

    def __init__(self, tmp, running=False, fmt="qcow2"):
        self.ds1, self.ds2 = str(tmp / "ds1"), str(tmp / "ds2")
        os.makedirs(self.ds1)
        os.makedirs(self.ds2)
        self.pools = {"ds1": Pool("ds1", self.ds1), "ds2": Pool("ds2", self.ds2)}
        self.disk = os.path.join(self.ds1, "data.%s" % fmt)
        subprocess.check_call(["qemu-img", "create", "-q", "-f", fmt, self.disk, "64M"])
        subprocess.check_call(["qemu-io", "-f", fmt, "-c", "write -P 0x5a 1M 2M", self.disk], stdout=subprocess.DEVNULL)
        self.fmt = fmt
        self.dom = mock.MagicMock(name="dom")
        self.dom.listAllSnapshots.return_value = []
        self.dom.state.return_value = (1 if running else 5, 0)
        self.dom.hasManagedSaveImage.return_value = 0
        self.running = running
        self.defined = []
        self.xml = self._xml(self.disk, fmt)

    @staticmethod
    def _xml(path, fmt, extra=""):
        return ("<domain type='kvm'><name>vm1</name><metadata>%s</metadata><devices><disk type='file' device='disk'>"
                "<driver name='qemu' type='%s'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>"
                "</devices></domain>" % (extra, fmt, path))

    def domain(self, name):
        return self.dom if name == "vm1" else None

    live = None  # the running VM's XML where it differs from its definition (a block copy in progress)

    def domain_xml(self, name, inactive=False, secure=False):
        return self.live if self.live is not None and not inactive else self.xml

    def call(self, action, obj, fn, *args):
        return fn(*args)

    def pool(self, name):
        return self.pools.get(name)

    def pool_names(self):
        return sorted(self.pools)

    def volume_by_path(self, path):
        return None

    def define_domain(self, xml, flags=0):
        self.defined.append(xml)
        self.xml = xml


@pytest.fixture
def cna(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "datastore_dir", lambda client, pool, name, who: pool.path)
    monkeypatch.setattr(images, "dependants_of", lambda client, paths, exclude_vm=None: {})
    monkeypatch.setattr(images, "own_chains", lambda client, vm, inactive=True, local=True: [
        (el, src, mode, [src]) for el, src, mode in diskspec.attached_disks(client, vm, inactive)])
    monkeypatch.setattr(storagemove, "write_definition_copy", mock.MagicMock())
    return lambda **kw: Cna(tmp_path, **kw)


def move(c, check_mode=False, **kw):
    p = dict(vm="vm1", datastore="ds2")
    p.update(kw)
    mgr = storagemove.StorageMigrationManager(c, check_mode=check_mode)
    return mgr, mgr.converge(p)


def refused(c, *fragments, **kw):
    with pytest.raises(ValueError) as err:
        move(c, **kw)
    for f in fragments:
        assert f in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    assert c.defined == [] and os.listdir(c.ds2) == []


def test_a_stopped_vms_disk_is_converted_checked_renamed_and_recorded(cna):
    c = cna()
    mgr, res = move(c, provisioning="thick_eager_zeroed", format="raw")
    dest = os.path.join(c.ds2, "data.qcow2")
    assert res.actions == ["copy vda to %s (raw thick_eager_zeroed)" % dest]
    assert os.path.exists(dest) and not os.path.exists(c.disk)  # the old image went
    assert sorted(os.listdir(c.ds2)) == ["data.qcow2"]  # no temporary file left
    assert oct(os.stat(dest).st_mode & 0o777) == "0o600"
    # the data, byte for byte, and every block reserved and written (eager)
    subprocess.check_call(["qemu-io", "-f", "raw", "-c", "read -P 0x5a 1M 2M", "-c", "read -P 0 3M 61M", dest],
                          stdout=subprocess.DEVNULL)
    assert fileops.measure_provisioning(dest, 64 * MIB, fmt="raw")["provisioning"] == "thick_eager_zeroed"
    root = xmlutil.parse(c.defined[-1])
    assert xmlutil.find_attr(root, "devices/disk/source", "file") == dest
    assert xmlutil.find_attr(root, "devices/disk/driver", "type") == "raw"
    assert diskspec.moves_of(root) == {("ds1", "data.qcow2"): ("ds2", "data.qcow2")}
    rep = res.values["disks"][0]
    assert rep["moved"] and rep["mode"] == "cold" and rep["from"] == {"datastore": "ds1", "name": "data.qcow2"}
    # again: it is there as asked, nothing to do
    mgr, res = move(c, provisioning="thick_eager_zeroed", format="raw")
    assert not res.changed and res.actions == []


def test_a_thin_disk_moves_only_its_data(cna):
    c = cna()
    move(c)
    dest = os.path.join(c.ds2, "data.qcow2")
    assert fileops.allocated_bytes(dest) < 8 * MIB  # 2 MiB written of 64 MiB


def test_check_mode_moves_nothing(cna):
    c = cna()
    mgr, res = move(c, check_mode=True)
    assert res.changed and res.actions and c.defined == [] and os.listdir(c.ds2) == [] and os.path.exists(c.disk)


def test_a_vm_under_ha_keeps_its_disks_where_its_definition_copy_says(cna, monkeypatch):
    # the cluster starts it from its definition copy: disks moved behind it would start from the old images
    c = cna()
    monkeypatch.setattr(power, "ha_resource", lambda run, local, name: "kvmfusion-vm-" + name)
    refused(c, "VM 'vm1' is under HA (cluster resource kvmfusion-vm-vm1): moving its disks is refused")
    assert os.path.exists(c.disk)


def test_refusals_before_any_change(cna, monkeypatch):
    c = cna()
    refused(c, "unknown datastore 'ds9'", datastore="ds9")
    refused(c, "VM 'vm1' has no disk vdz", disks=["vdz"])
    refused(c, "disk vda is on datastore ds1 already", datastore="ds1", format="raw")
    refused(c, "snapshot_layers must be one of keep, flatten, got 'merge'", snapshot_layers="merge")
    monkeypatch.setattr(images, "dependants_of", lambda client, paths, exclude_vm=None: {c.disk: [("clone1", "vda")]})
    refused(c, "is the base of clone1 (vda)")
    monkeypatch.setattr(images, "dependants_of", lambda client, paths, exclude_vm=None: {})
    with open(os.path.join(c.ds2, "data.qcow2"), "w") as f:
        f.write("someone else's")
    with pytest.raises(ValueError) as err:
        move(c)
    assert "a file of that name is there already" in str(err.value)
    os.unlink(os.path.join(c.ds2, "data.qcow2"))
    monkeypatch.setattr(os, "statvfs", lambda path: mock.MagicMock(f_bavail=1, f_frsize=4096))
    refused(c, "needs 64 MiB on datastore ds2, which has 0 MiB free", provisioning="thick_lazy_zeroed")


def test_a_remote_uri_is_refused(cna):
    c = cna()
    c.is_local = False
    refused(c, "works on files or devices of the CNA")


def test_a_partial_target_a_killed_run_left_is_replaced(cna):
    c = cna()
    dest = os.path.join(c.ds2, "data.qcow2")
    subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", dest, "64M"])
    os.setxattr(dest, fileops.INTENT_XATTR, b"partial")
    mgr, res = move(c)
    subprocess.check_call(["qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 1M 2M", dest], stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------- a running VM: block copy
def live_cna(cna, fail=None):
    c = cna(running=True)
    dest = os.path.join(c.ds2, "data.qcow2")
    calls = {"info": 0}

    def copy(target, xml, params, flags):
        assert os.path.exists(dest)  # the target is made first
        assert flags == (storagemove.BLOCK_COPY_REUSE_EXT | storagemove.BLOCK_COPY_TRANSIENT_JOB
                         | storagemove.BLOCK_COPY_SYNCHRONOUS_WRITES)
        if fail == "copy":
            raise RuntimeError("No space left on device")
        c.live = c._xml(c.disk, c.fmt).replace("</disk>", "<mirror type='file' ready='yes'/></disk>")

    def info(target, flags):
        calls["info"] += 1
        if c.live is not None and "ready='yes'" in c.live:
            return {"cur": 64 * MIB, "end": 64 * MIB, "type": 2}
        return {}

    def abort(target, flags):
        if flags == storagemove.BLOCK_JOB_ABORT_PIVOT:
            # the definition already points at the copy when the switch happens
            calls["defined_at_pivot"] = [xmlutil.find_attr(xmlutil.parse(x), "devices/disk/source", "file")
                                         for x in c.defined]
            if fail == "pivot":
                raise RuntimeError("pivot refused")
            c.live = c._xml(dest, c.fmt)
        else:
            c.live = c._xml(c.disk, c.fmt)
    c.dom.blockCopy.side_effect = copy
    c.dom.blockJobInfo.side_effect = info
    c.dom.blockJobAbort.side_effect = abort
    c.calls = calls
    return c, dest


def test_a_running_vm_is_mirrored_then_switched(cna):
    c, dest = live_cna(cna)
    mgr, res = move(c, bandwidth=100)
    args = c.dom.blockCopy.call_args[0]
    assert args[0] == "vda" and args[2] == {"bandwidth": 100 * MIB, "buf-size": storagemove.BUF_SIZE}
    c.dom.blockJobAbort.assert_called_with("vda", storagemove.BLOCK_JOB_ABORT_PIVOT)
    assert res.actions == ["mirror vda to %s (qcow2 thin)" % dest]
    assert not os.path.exists(c.disk) and os.path.exists(dest)
    assert diskspec.moves_of(xmlutil.parse(c.defined[-1])) == {("ds1", "data.qcow2"): ("ds2", "data.qcow2")}
    assert c.calls["defined_at_pivot"] == [dest]


def test_a_failed_switch_puts_the_definition_back_on_the_source(cna):
    c, dest = live_cna(cna, fail="pivot")
    before = c.xml
    with pytest.raises(Exception) as err:
        move(c)
    assert "pivot refused" in str(err.value)
    assert c.xml == before and len(c.defined) == 2  # repointed for the switch, then back
    assert os.path.exists(c.disk) and not os.path.exists(dest)


def test_a_failed_copy_leaves_the_vm_on_its_disk_and_no_target(cna):
    c, dest = live_cna(cna, fail="copy")
    with pytest.raises(Exception) as err:
        move(c)
    assert "No space left" in str(err.value)
    assert os.path.exists(c.disk) and not os.path.exists(dest) and c.defined == []


# ---------------------------------------------------------------- the declared disk is found where it went
def test_the_disk_module_follows_a_recorded_move(monkeypatch):
    client = mock.MagicMock()
    client.domain.return_value = object()
    meta = diskspec.moves_xml({("ds1", "data.qcow2"): ("ds2", "data.qcow2")}).replace(
        "<moves>", "<moves xmlns='%s'>" % diskspec.MOVES_NS)
    client.domain_xml.return_value = "<domain><metadata>%s</metadata></domain>" % meta
    client.call.side_effect = lambda action, obj, fn, *a: fn(*a)
    mgr = disks.DiskManager(client, check_mode=True)
    monkeypatch.setattr(mgr, "_volume", lambda pool, d: None)
    d = {"vm": "vm1", "datastore": "ds1", "name": "data.qcow2"}
    assert mgr.follow_moves(d)["datastore"] == "ds2"
    monkeypatch.setattr(mgr, "_volume", lambda pool, d: object())  # a disk of that name is there again
    assert mgr.follow_moves(d)["datastore"] == "ds1"
    assert mgr.follow_moves(dict(d, name="other.qcow2"))["datastore"] == "ds1"


def test_a_disk_moved_there_and_back_keeps_no_move_and_its_mode(cna):
    c = cna()
    meta = ("<kvmfdisks:disks xmlns:kvmfdisks='%s'><kvmfdisks:disk source='%s' mode='independent_persistent'/>"
            "</kvmfdisks:disks>" % (diskspec.META_NS, c.disk))
    c.xml = c._xml(c.disk, c.fmt, extra=meta)
    move(c)
    root = xmlutil.parse(c.xml)
    dest = os.path.join(c.ds2, "data.qcow2")
    assert diskspec.meta_modes(root) == {dest: "independent_persistent"}
    move(c, datastore="ds1")
    root = xmlutil.parse(c.xml)
    assert diskspec.moves_of(root) == {}
    assert diskspec.meta_modes(root) == {c.disk: "independent_persistent"}
    assert os.path.exists(c.disk) and not os.path.exists(dest)


# ---------------------------------------------------------------- snapshot layers: kept, or flattened as asked
def layered(c, monkeypatch, write="write -P 0x77 8M 1M", chains=None):
    """The VM's disk with a snapshot layer on it (data written into the layer); returns the layer's path."""
    overlay = c.disk + "~s1.qcow2"
    subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", "-b", c.disk, "-F", "qcow2", overlay])
    subprocess.check_call(["qemu-io", "-f", "qcow2", "-c", write, overlay], stdout=subprocess.DEVNULL)
    c.xml = c._xml(overlay, "qcow2")
    now = chains if chains is not None else {"now": [overlay, c.disk]}
    now.setdefault("now", [overlay, c.disk])
    monkeypatch.setattr(images, "own_chains", lambda client, vm, inactive=True, local=True: [
        (el, src, mode, now["now"]) for el, src, mode in diskspec.attached_disks(client, vm, inactive)])
    return overlay


def test_a_chain_flattened_as_asked_becomes_one_image_and_the_snapshots_go(cna, monkeypatch):
    c = cna()
    overlay = layered(c, monkeypatch)
    mem = os.path.join(c.ds1, ".vm1~s1.mem")
    open(mem, "w").close()
    snap = mock.MagicMock()
    snap.getName.return_value = "s1"
    snap.getXMLDesc.return_value = ("<domainsnapshot><name>s1</name><memory snapshot='external' file='%s'/>"
                                    "</domainsnapshot>" % mem)
    c.dom.listAllSnapshots.return_value = [snap]
    c.dom.snapshotCurrent.return_value = snap
    c.snapshot = lambda vm, name: snap
    mgr, res = move(c, check_mode=True, snapshot_layers="flatten")
    assert not snap.delete.called and os.listdir(c.ds2) == []
    mgr, res = move(c, snapshot_layers="flatten")
    dest = os.path.join(c.ds2, "data.qcow2")
    assert res.actions == ["copy vda to %s (qcow2 thin, 2 layers flattened)" % dest,
                           "delete snapshots s1 (a moved disk's layers become one image)"]
    assert "backing file" not in subprocess.check_output(["qemu-img", "info", "-U", dest], text=True)
    subprocess.check_call(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5a 1M 2M", "-c", "read -P 0x77 8M 1M", dest],
                          stdout=subprocess.DEVNULL)
    assert not os.path.exists(overlay) and not os.path.exists(c.disk) and not os.path.exists(mem)
    snap.delete.assert_called_once_with(constants.DELETE_METADATA_ONLY)
    assert xmlutil.find_attr(xmlutil.parse(c.xml), "devices/disk/source", "file") == dest


def test_a_failed_flattening_move_puts_the_snapshots_back(cna, monkeypatch):
    c = cna()
    snap = mock.MagicMock()
    snap.getName.return_value = "s1"
    snap.getXMLDesc.return_value = "<domainsnapshot><name>s1</name></domainsnapshot>"
    c.dom.listAllSnapshots.return_value = [snap]
    c.dom.snapshotCurrent.return_value = snap
    c.snapshot = lambda vm, name: snap

    def full(self, vm, p):
        raise ValueError("No space left on device")
    monkeypatch.setattr(storagemove.StorageMigrationManager, "_convert", full)
    with pytest.raises(ValueError):
        move(c, snapshot_layers="flatten")
    snap.delete.assert_called_once_with(constants.DELETE_METADATA_ONLY)
    c.dom.snapshotCreateXML.assert_called_once_with(snap.getXMLDesc.return_value,
                                                    constants.CREATE_REDEFINE | constants.CREATE_CURRENT)
    assert os.path.exists(c.disk) and c.defined == []


def test_a_disk_already_moved_is_not_refused_for_layers_taken_since(cna, monkeypatch):
    c = cna()
    move(c, format="raw")
    dest = os.path.join(c.ds2, "data.qcow2")
    overlay = dest + "~s1.qcow2"
    subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", "-b", dest, "-F", "raw", overlay])
    c.xml = c._xml(overlay, "qcow2")
    monkeypatch.setattr(images, "own_chains", lambda client, vm, inactive=True, local=True: [
        (el, src, mode, [overlay, dest]) for el, src, mode in diskspec.attached_disks(client, vm, inactive)])
    snap = mock.MagicMock()
    snap.getName.return_value = "s1"
    c.dom.listAllSnapshots.return_value = [snap]
    mgr, res = move(c, format="raw")  # the play re-applied: the disk is where it was asked to be, as raw
    assert not res.changed and res.actions == []
    mgr, res = move(c, datastore="ds1", check_mode=True)  # moving it back keeps its layer
    assert res.actions == ["copy vda to %s (raw thin, 2 layers kept)" % c.disk, "redefine snapshots s1 with the moved images"]


def test_a_chain_kept_moves_layer_by_layer_and_the_snapshots_follow(cna, monkeypatch):
    c = cna()
    chains = {}
    overlay = layered(c, monkeypatch, chains=chains)
    snap = mock.MagicMock()
    snap.getName.return_value = "s1"
    snap.getXMLDesc.return_value = ("<domainsnapshot><name>s1</name><disks><disk name='vda' snapshot='external'>"
                                    "<source file='%s'/></disk></disks><domain><devices><disk><source file='%s'/>"
                                    "</disk></devices></domain></domainsnapshot>" % (overlay, c.disk))
    c.dom.listAllSnapshots.return_value = [snap]
    c.dom.snapshotCurrent.return_value = snap
    c.snapshot = lambda vm, name: snap
    mgr, res = move(c, provisioning="thick_lazy_zeroed")
    base2, top2 = os.path.join(c.ds2, "data.qcow2"), os.path.join(c.ds2, "data.qcow2~s1.qcow2")
    assert res.actions == ["copy vda to %s (qcow2 thick_lazy_zeroed, 2 layers kept)" % base2,
                           "redefine snapshots s1 with the moved images"]
    info = subprocess.check_output(["qemu-img", "info", "-U", top2], text=True)
    assert "backing file: %s" % base2 in info
    assert "backing file" not in subprocess.check_output(["qemu-img", "info", "-U", base2], text=True)
    subprocess.check_call(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5a 1M 2M", "-c", "read -P 0x77 8M 1M", top2],
                          stdout=subprocess.DEVNULL)
    # the base alone still holds what the snapshot saw (the layer's data is not in it)
    subprocess.check_call(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0 8M 1M", base2], stdout=subprocess.DEVNULL)
    assert fileops.get_intent(base2) == "thick_lazy_zeroed" and fileops.get_intent(top2) == "thin"
    assert sorted(os.listdir(c.ds1)) == [] and sorted(os.listdir(c.ds2)) == ["data.qcow2", "data.qcow2~s1.qcow2"]
    snap.delete.assert_called_once_with(constants.DELETE_METADATA_ONLY)
    redefined = xmlutil.parse(c.dom.snapshotCreateXML.call_args[0][0])
    assert [el.get("file") for el in redefined.iter("source")] == [top2, base2]
    assert xmlutil.find_attr(xmlutil.parse(c.xml), "devices/disk/source", "file") == top2
    chains["now"] = [top2, base2]
    c.dom.snapshotCreateXML.reset_mock()
    mgr, res = move(c, provisioning="thick_lazy_zeroed")
    assert not res.changed


def test_flattening_is_refused_while_another_disk_keeps_the_layers(cna, monkeypatch):
    c = cna()
    overlay = c.disk + "~s1.qcow2"
    subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", "-b", c.disk, "-F", "qcow2", overlay])
    other = os.path.join(c.ds1, "other.qcow2")
    subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", other, "16M"])
    other_top = other + "~s1.qcow2"
    subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", "-b", other, "-F", "qcow2", other_top])
    c.xml = c._xml(overlay, "qcow2").replace("</devices>", "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                                             "<source file='%s'/><target dev='vdb' bus='virtio'/></disk></devices>" % other_top)
    monkeypatch.setattr(images, "own_chains", lambda client, vm, inactive=True, local=True: [
        (el, src, mode, [src, src[:-len("~s1.qcow2")]]) for el, src, mode in diskspec.attached_disks(client, vm, inactive)])
    c.dom.listAllSnapshots.return_value = [mock.MagicMock(getName=mock.MagicMock(return_value="s1"))]
    refused(c, "flattening deletes the snapshots (s1), but disk vdb keeps their layers and does not move",
            disks=["vda"], snapshot_layers="flatten")


def test_the_space_check_counts_every_disk_and_kept_layer(cna, monkeypatch):
    c = cna()
    overlay = layered(c, monkeypatch, write="write -P 0x77 8M 4M")
    c.dom.listAllSnapshots.return_value = [mock.MagicMock(getName=mock.MagicMock(return_value="s1"))]
    # the base alone (2 MiB of data and its metadata) fits in 3 MiB; with the layer's 4 MiB it does not
    need = fileops.allocated_bytes(c.disk) + fileops.allocated_bytes(overlay)
    assert fileops.allocated_bytes(c.disk) < 3 * MIB < need
    monkeypatch.setattr(os, "statvfs", lambda path: mock.MagicMock(f_bavail=3 * 256, f_frsize=4096))
    refused(c, "disk vda needs %d MiB on datastore ds2, which has 3 MiB free" % (need >> 20))
