# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""CloneManager.clone on real images: linked and full clones of templates, VMs and snapshots.

libvirt is replaced at the client boundary by the fake of test_revert (extended here with
define/undefine of new domains and datastores); the images are real: qemu-img builds the
sources in tmp_path and the code under test creates, copies and removes files for real.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import stat
import uuid
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, images, vmspec
from ansible_collections.kvmfusion.compute.plugins.module_utils import clones, fileops, power
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_revert import (
    FakeClient, FakeDomain, FakeLibvirtError, Runner, qemu_img, read_pattern, run, tree)

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None or shutil.which("qemu-io") is None,
                                reason="qemu-img and qemu-io are needed to build real images")

URI = "qemu:///system"
MIB = 1024 * 1024
SIZE = 16 * MIB
SRC_UUID = "6c2f1b7e-3d4a-4f5e-9a8b-0c1d2e3f4a5b"
SRC_MAC = "52:54:00:12:34:56"
TEMPLATE_META = '<kvmfvm:vm xmlns:kvmfvm="https://kvmfusion.compute/xmlns/vm/1" template="true"/>'
CLONE_NS = "https://kvmfusion.compute/xmlns/clone/1"


# ---------------------------------------------------------------------------- the fake libvirt client
class CloneDomain(FakeDomain):

    def create(self):
        self.host.log.append(("create", self._name))
        self.running = True
        return 0


class FakePool(object):

    def __init__(self, host, name, path, kind="dir", active=True):
        self.host, self.name, self.path, self.kind, self.active = host, name, path, kind, active

    def XMLDesc(self, flags=0):
        return "<pool type='%s'><name>%s</name><target><path>%s</path></target></pool>" % (self.kind, self.name, self.path)

    def isActive(self):
        return 1 if self.active else 0

    def refresh(self, flags=0):
        self.host.log.append(("refresh", self.name, flags))
        return 0


class CloneClient(FakeClient):
    """FakeClient plus what clones use: new domains, undefine, datastores; ``fail_define`` makes a define fail."""

    def __init__(self):
        super(CloneClient, self).__init__()
        self.pools = {}
        self.fail_define = set()

    def add_domain(self, name, xml, running=False):
        self.domains[name] = CloneDomain(self, name, xml, running)
        return self.domains[name]

    def add_pool(self, name, path, kind="dir", active=True):
        self.pools[name] = FakePool(self, name, path, kind, active)
        return self.pools[name]

    def pool_names(self):
        return sorted(self.pools)

    def pool(self, name):
        return self.pools.get(name)

    def define_domain(self, xml, flags=0):
        name = ET.fromstring(xml).findtext("name")
        self.log.append(("define", name, flags))
        if name in self.fail_define:
            raise FakeLibvirtError("injected define failure for %s" % name)
        self.defined.append(xml)
        if name in self.domains:
            self.domains[name].xml = xml
        else:
            self.add_domain(name, xml)

    def undefine_domain(self, name, flags=0):
        self.log.append(("undefine", name, flags))
        del self.domains[name]


class FailingRunner(Runner):
    """Runs every command for real, but reports the ``fail_on``-th qemu-img call (1-based) as failed."""

    def __init__(self, fail_on):
        super(FailingRunner, self).__init__()
        self.fail_on = fail_on

    def __call__(self, args):
        rc, out, err = super(FailingRunner, self).__call__(args)
        if len(self.commands) == self.fail_on:
            return 1, "", "injected failure\nsecond line"
        return rc, out, err


# ---------------------------------------------------------------------------- XML and images
@pytest.fixture(autouse=True)
def plenty_of_memory(tmp_path_factory, monkeypatch):
    """The starts' memory check reads /proc/meminfo: the tests must not depend on the machine's (a test that wants
    little memory writes its own)."""
    path = tmp_path_factory.mktemp("meminfo") / "meminfo"
    path.write_text("MemTotal: 1073741824 kB\nMemFree: 1073741824 kB\nMemAvailable: 1073741824 kB\n")
    monkeypatch.setattr(clones, "MEMINFO", str(path))


def disk_el(path, target, fmt, device="disk"):
    if device == "lun":
        return ("<disk type='block' device='lun'><driver name='qemu' type='raw'/><source dev='%s'/>"
                "<target dev='%s' bus='scsi'/></disk>" % (path, target))
    return ("<disk type='file' device='disk'><driver name='qemu' type='%s'/><source file='%s'/>"
            "<target dev='%s' bus='virtio'/></disk>" % (fmt, path, target))


def dom_xml(name, disks, metadata="", uid=SRC_UUID, memory=1048576):
    return ("<domain type='kvm'><name>%s</name><uuid>%s</uuid><metadata>%s</metadata>"
            "<memory unit='KiB'>%d</memory><vcpu placement='static'>1</vcpu>"
            "<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><smbios mode='host'/></os>"
            "<devices>%s<interface type='network'><mac address='%s'/><source network='default'/>"
            "<model type='virtio'/></interface></devices></domain>" % (name, uid, metadata, memory, "".join(disks), SRC_MAC))


def clone_meta(source, linked=True, snapshot=""):
    return "<c:clone xmlns:c='%s' source='%s' snapshot='%s' linked='%s' disks='vda'/>" % (
        CLONE_NS, source, snapshot, "true" if linked else "false")


def info(path):
    rc, out, err = run(["qemu-img", "info", "-U", "--output=json", path])
    assert rc == 0, err or out
    return json.loads(out)


def write(path, fmt, pattern, offset=0, length="64k"):
    rc, out, err = run(["qemu-io", "-f", fmt, "-c", "write -P %s %d %s" % (pattern, offset, length), path])
    assert rc == 0 and "error" not in (out + err).lower(), err or out


def reads(path, fmt, pattern, offset=0, length="64k"):
    """Whether [offset, offset+length) of the image (through its backing chain) reads as ``pattern``."""
    if offset == 0 and length == "64k":
        return read_pattern(path, fmt, pattern)
    rc, out, err = run(["qemu-io", "-r", "-f", fmt, "-c", "read -P %s %d %s" % (pattern, offset, length), path])
    return rc == 0 and "Pattern verification failed" not in out + err


def disks_of(xml):
    """{target: (source file, driver type)} of a domain XML."""
    out = {}
    for el in ET.fromstring(xml).findall("devices/disk"):
        out[el.find("target").get("dev")] = (el.find("source").get("file") or el.find("source").get("dev"),
                                             el.find("driver").get("type"))
    return out


def subset(before, after):
    """The entries of ``after`` for the files in ``before``: unchanged files compare equal."""
    return dict((n, after.get(n)) for n in before)


# ---------------------------------------------------------------------------- the lab
class Lab(object):
    """Template (or VM) tpl with a qcow2 disk vda and a raw disk vdb in tmp_path, a datastore ds1 on that directory."""

    def __init__(self, tmp_path, template=True, running=False, extra_disks=(), name="tpl"):
        self.dir = str(tmp_path)
        self.name = name
        self.client = CloneClient()
        self.runner = Runner()
        self.vda = self.path("%s-sys.qcow2" % name)
        self.vdb = self.path("%s-data.img" % name)
        qemu_img("create", "-q", "-f", "qcow2", self.vda, str(SIZE))
        qemu_img("create", "-q", "-f", "raw", self.vdb, str(SIZE))
        self.src = self.client.add_domain(name, dom_xml(name, [disk_el(self.vda, "vda", "qcow2"), disk_el(self.vdb, "vdb", "raw")]
                                                        + list(extra_disks), TEMPLATE_META if template else ""), running)
        self.client.add_pool("ds1", self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def manager(self, check_mode=False, uri=URI, run_command=None):
        self.client.uri = uri
        return clones.CloneManager(self.client, check_mode=check_mode, run_command=run_command or self.runner)

    def calls(self, kind):
        return [c for c in self.client.log if c[0] == kind]

    def defined(self, name):
        """The clone's definition as it is now: defined once (incomplete), then marked complete."""
        found = [x for x in self.client.defined if ET.fromstring(x).findtext("name") == name]
        assert len(found) == 1, found
        assert clones.clone_record(found[0])["complete"] is False
        return self.client.domains[name].xml


def overlay_actions(lab, names, extra=()):
    """Every clone made, the datastores refreshed, then the starts (all clones of a task start together)."""
    out = []
    for n in names:
        out += ["%s: overlay %s on %s" % (n, lab.path("%s-vda.qcow2" % n), lab.vda),
                "%s: overlay %s on %s" % (n, lab.path("%s-vdb.qcow2" % n), lab.vdb),
                "%s: define (new UUID and MACs)" % n]
    return out + ["refresh datastores"] + ["%s: %s" % (n, e) for n in names for e in extra]


def linked_facts(lab, names, created=True):
    return [{"name": n, "created": created, "linked": True,
             "disks": {"vda": lab.path("%s-vda.qcow2" % n), "vdb": lab.path("%s-vdb.qcow2" % n)}} for n in names]


# ---------------------------------------------------------------------------- 1. linked clones of a template
def test_linked_clones_of_a_template(tmp_path):
    lab = Lab(tmp_path)
    write(lab.vda, "qcow2", "0xaa")
    write(lab.vdb, "raw", "0xbb")
    before = tree(lab.dir)
    src_xml = lab.src.xml
    mgr = lab.manager()
    changed, facts = mgr.clone("tpl", ["a", "b"], hostname="{name}.lab", metadata={"role": "web", "owner": "pool-{name}"})
    assert changed is True
    assert facts == linked_facts(lab, ["a", "b"])
    assert mgr.actions == overlay_actions(lab, ["a", "b"])
    assert mgr.made == ["a", "b"] and mgr.warnings == []

    # the template is untouched: same files, same definition
    assert subset(before, tree(lab.dir)) == before
    assert lab.src.xml == src_xml and lab.src.snaps == {}

    # only overlays were made: one qemu-img create per disk, no copy
    assert [c[:2] for c in lab.runner.commands] == [["qemu-img", "create"]] * 4
    new_files = sorted(set(os.listdir(lab.dir)) - set(before))
    assert new_files == [".a~vm.xml", ".b~vm.xml", "a-vda.qcow2", "a-vdb.qcow2", "b-vda.qcow2", "b-vdb.qcow2"]
    for n in ("a", "b"):
        for t, base, bfmt, pattern in (("vda", lab.vda, "qcow2", "0xbb"), ("vdb", lab.vdb, "raw", "0xbb")):
            ov = lab.path("%s-%s.qcow2" % (n, t))
            assert fileops.qcow2_backing(ov) == base
            meta = info(ov)
            assert meta["format"] == "qcow2" and meta["virtual-size"] == SIZE
            assert meta["backing-filename-format"] == bfmt
            assert os.path.getsize(ov) < MIB and fileops.allocated_bytes(ov) < MIB
            assert not fileops.qcow2_has_data(ov)
            assert stat.S_IMODE(os.stat(ov).st_mode) == 0o600
        assert reads(lab.path("%s-vda.qcow2" % n), "qcow2", "0xaa")
        assert reads(lab.path("%s-vdb.qcow2" % n), "qcow2", "0xbb")

    # the definitions
    assert [c for c in lab.client.log if c[0] in ("define", "undefine")] == [
        ("define", "a", constants.DEFINE_VALIDATE), ("define", "b", constants.DEFINE_VALIDATE)]
    uuids = set()
    for n in ("a", "b"):
        xml = lab.defined(n)
        root = ET.fromstring(xml)
        assert root.findtext("name") == n
        uid = root.findtext("uuid")
        assert str(uuid.UUID(uid)) == uid and uid != SRC_UUID
        uuids.add(uid)
        assert len(root.findall("uuid")) == 1
        assert not vmspec.is_template(xml)
        ifaces = root.findall("devices/interface")
        assert len(ifaces) == 1 and ifaces[0].find("mac") is None and SRC_MAC not in xml
        assert ifaces[0].find("source").get("network") == "default"
        assert disks_of(xml) == {"vda": (lab.path("%s-vda.qcow2" % n), "qcow2"), "vdb": (lab.path("%s-vdb.qcow2" % n), "qcow2")}
        assert root.find("devices/disk/backingStore") is None
        assert clones.clone_record(xml) == {"source": "tpl", "snapshot": None, "linked": True, "complete": True}
        assert root.find("metadata/{%s}clone" % CLONE_NS).get("disks") == "vda,vdb"
        assert root.find("os/smbios").get("mode") == "sysinfo"
        entries = root.findall("sysinfo/system/entry")
        assert [(e.get("name"), e.text) for e in entries] == [("serial", "ds=nocloud;h=%s.lab;i=%s" % (n, uid))]
        assert [e.text for e in root.findall("sysinfo/oemStrings/entry")] == [
            "kvmfusion:owner=pool-%s" % n, "kvmfusion:role=web"]
        # the definition copy beside the first disk is the domain as defined
        copy_path = lab.path(".%s~vm.xml" % n)
        with open(copy_path) as f:
            assert f.read() == lab.client.domains[n].xml == xml
        assert stat.S_IMODE(os.stat(copy_path).st_mode) == 0o600
        assert not lab.client.domains[n].running
    assert len(uuids) == 2
    # the datastores are refreshed once, after the clones
    assert lab.calls("refresh") == [("refresh", "ds1", 0)]
    assert lab.client.log[-1] == ("refresh", "ds1", 0)


def test_linked_clones_default_hostname_and_running(tmp_path):
    lab = Lab(tmp_path)
    mgr = lab.manager()
    changed, facts = mgr.clone("tpl", ["web-01"], state="running")
    assert changed and facts == linked_facts(lab, ["web-01"])
    assert mgr.actions == overlay_actions(lab, ["web-01"], extra=["start"])
    root = ET.fromstring(lab.defined("web-01"))
    assert root.find("sysinfo/system/entry").text == "ds=nocloud;h=web-01;i=%s" % root.findtext("uuid")
    assert root.find("sysinfo/oemStrings") is None
    assert lab.client.domains["web-01"].running
    kinds = [c[0] for c in lab.client.log]
    assert kinds == ["define", "setMetadata", "refresh", "create"]


def test_linked_clones_on_another_datastore(tmp_path):
    lab = Lab(tmp_path)
    other = tmp_path / "ds2"
    other.mkdir()
    lab.client.add_pool("ds2", str(other))
    mgr = lab.manager()
    changed, facts = mgr.clone("tpl", ["a"], datastore="ds2")
    assert changed
    vda, vdb = str(other / "a-vda.qcow2"), str(other / "a-vdb.qcow2")
    assert facts == [{"name": "a", "created": True, "linked": True, "disks": {"vda": vda, "vdb": vdb}}]
    assert fileops.qcow2_backing(vda) == lab.vda and fileops.qcow2_backing(vdb) == lab.vdb
    assert sorted(os.listdir(str(other))) == [".a~vm.xml", "a-vda.qcow2", "a-vdb.qcow2"]
    assert disks_of(lab.defined("a")) == {"vda": (vda, "qcow2"), "vdb": (vdb, "qcow2")}
    assert sorted(lab.calls("refresh")) == [("refresh", "ds1", 0), ("refresh", "ds2", 0)]


# ---------------------------------------------------------------------------- 2. check mode
@pytest.mark.parametrize("state", ["present", "running"])
def test_check_mode_plans_the_real_run_and_changes_nothing(tmp_path, state):
    lab = Lab(tmp_path)
    before = tree(lab.dir)
    mgr = lab.manager(check_mode=True)
    changed, facts = mgr.clone("tpl", ["a", "b"], state=state, metadata={"k": "{name}"})
    assert changed is True
    assert facts == linked_facts(lab, ["a", "b"])
    assert mgr.actions == overlay_actions(lab, ["a", "b"], extra=["start"] if state == "running" else [])
    assert tree(lab.dir) == before
    assert lab.client.log == [] and lab.client.defined == [] and lab.runner.commands == []
    assert sorted(lab.client.domains) == ["tpl"]

    real = lab.manager()
    assert real.clone("tpl", ["a", "b"], state=state, metadata={"k": "{name}"}) == (True, facts)
    assert real.actions == mgr.actions
    assert sorted(lab.client.domains) == ["a", "b", "tpl"]
    assert all(os.path.exists(p) for f in facts for p in f["disks"].values())


# ---------------------------------------------------------------------------- 3. idempotence
def test_a_second_run_is_a_no_op_and_running_starts_only_the_stopped_ones(tmp_path):
    lab = Lab(tmp_path)
    assert lab.manager().clone("tpl", ["a", "b"])[0]
    lab.client.log[:] = []
    del lab.runner.commands[:]
    before = tree(lab.dir)
    defined = list(lab.client.defined)

    mgr = lab.manager()
    changed, facts = mgr.clone("tpl", ["a", "b"])
    assert changed is False
    assert facts == linked_facts(lab, ["a", "b"], created=False)
    assert mgr.actions == [] and lab.client.log == [] and lab.runner.commands == []
    assert tree(lab.dir) == before and lab.client.defined == defined

    # check mode of state=running plans the starts only
    lab.client.domains["a"].running = True
    check = lab.manager(check_mode=True)
    assert check.clone("tpl", ["a", "b"], state="running") == (True, facts)
    assert check.actions == ["b: start"] and lab.client.log == []

    mgr = lab.manager()
    assert mgr.clone("tpl", ["a", "b"], state="running") == (True, facts)
    assert mgr.actions == ["b: start"]
    assert lab.client.log == [("create", "b")]
    assert lab.client.domains["b"].running and lab.client.domains["a"].running
    assert tree(lab.dir) == before and lab.runner.commands == [] and lab.client.defined == defined

    again = lab.manager()
    assert again.clone("tpl", ["a", "b"], state="running") == (False, facts)
    assert again.actions == []


def test_starts_run_concurrently_and_every_one_is_tried(tmp_path):
    lab = Lab(tmp_path)
    names_ = ["c%02d" % i for i in range(10)]
    assert lab.manager().clone("tpl", names_)[0]
    # one start fails: the others still start, and its error is the task's

    def refuse():
        raise RuntimeError("c03 cannot start")
    lab.client.domains["c03"].create = refuse
    lab.client.domains["c07"].create = refuse
    with pytest.raises(ValueError, match=r"^2 of 10 clone\(s\) did not start \(c03, c07; the others run\): c03: c03 cannot start"):
        lab.manager().clone("tpl", names_, state="running", parallel=4)
    assert [n for n in names_ if not lab.client.domains[n].running] == ["c03", "c07"]


@pytest.mark.parametrize("parallel", [0, -1])
def test_parallel_below_one_is_refused(tmp_path, parallel):
    lab = Lab(tmp_path)
    before = tree(lab.dir)
    with pytest.raises(ValueError, match="parallel must be at least 1"):
        lab.manager().clone("tpl", ["a"], state="running", parallel=parallel)
    assert tree(lab.dir) == before


def test_starting_more_than_the_free_memory_is_refused_before_any_clone(tmp_path, monkeypatch):
    lab = Lab(tmp_path)
    before = tree(lab.dir)
    meminfo = tmp_path.parent / (tmp_path.name + "-meminfo")
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:          50000 kB\nMemAvailable:     102400 kB\n")
    monkeypatch.setattr(clones, "MEMINFO", str(meminfo))
    mgr = lab.manager()
    with pytest.raises(ValueError, match=r"starting 2 clone\(s\) of .* MiB each needs .* MiB; .* has 100 MiB available"):
        mgr.clone("tpl", ["a", "b"], state="running")
    assert mgr.actions == [] and tree(lab.dir) == before and "a" not in lab.client.domains
    # without starting them, they are made
    assert lab.manager().clone("tpl", ["a", "b"])[0]


def test_a_grown_batch_makes_only_the_new_clones(tmp_path):
    lab = Lab(tmp_path)
    lab.manager().clone("tpl", ["a", "b"])
    uuids = dict((n, ET.fromstring(lab.defined(n)).findtext("uuid")) for n in ("a", "b"))
    mgr = lab.manager()
    changed, facts = mgr.clone("tpl", ["a", "b", "c"])
    assert changed
    assert facts == linked_facts(lab, ["a", "b"], created=False) + linked_facts(lab, ["c"])
    assert mgr.actions == overlay_actions(lab, ["c"])
    assert mgr.made == ["c"]
    assert [c[1] for c in lab.calls("define")] == ["a", "b", "c"]
    assert dict((n, ET.fromstring(lab.client.domains[n].xml).findtext("uuid")) for n in ("a", "b")) == uuids


# ---------------------------------------------------------------------------- 4. collisions and bad input
def refused(lab, message, source="tpl", names=("a", "b"), uri=URI, **kwargs):
    before = tree(lab.dir)
    xmls = dict((n, d.xml) for n, d in lab.client.domains.items())
    with pytest.raises(ValueError) as err:
        lab.manager(uri=uri).clone(source, list(names), **kwargs)
    text = str(err.value)
    assert message in text, text
    assert "\n" not in text
    assert lab.client.log == [] and lab.client.defined == [] and lab.runner.commands == []
    assert tree(lab.dir) == before
    assert dict((n, d.xml) for n, d in lab.client.domains.items()) == xmls
    return text


def test_refuses_a_name_taken_by_a_vm_that_is_no_clone(tmp_path):
    lab = Lab(tmp_path)
    lab.client.add_domain("b", dom_xml("b", [], uid=str(uuid.uuid4())))
    text = refused(lab, "VM 'b' already exists and is not a linked clone of tpl")
    assert "choose another name" in text


def test_refuses_a_name_taken_by_a_clone_of_another_source(tmp_path):
    lab = Lab(tmp_path)
    lab.client.add_domain("b", dom_xml("b", [], clone_meta("tpl2"), uid=str(uuid.uuid4())))
    refused(lab, "VM 'b' already exists and is not a linked clone of tpl")


def test_refuses_a_name_taken_by_a_clone_of_a_snapshot_of_the_source(tmp_path):
    lab = Lab(tmp_path)
    lab.client.add_domain("b", dom_xml("b", [], clone_meta("tpl", snapshot="s1"), uid=str(uuid.uuid4())))
    refused(lab, "VM 'b' already exists and is not a linked clone of tpl")


@pytest.mark.parametrize("existing_linked", [True, False])
def test_refuses_a_name_taken_by_a_clone_of_the_other_kind(tmp_path, existing_linked):
    lab = Lab(tmp_path)
    lab.client.add_domain("b", dom_xml("b", [], clone_meta("tpl", linked=existing_linked), uid=str(uuid.uuid4())))
    kind = "full" if existing_linked else "linked"
    refused(lab, "VM 'b' already exists and is not a %s clone of tpl" % kind, linked=not existing_linked)


def test_refuses_a_clone_named_like_its_source(tmp_path):
    lab = Lab(tmp_path)
    refused(lab, "a clone cannot be named like its source 'tpl'", names=["a", "tpl"])


def test_refuses_unknown_source_snapshot_and_datastore(tmp_path):
    lab = Lab(tmp_path)
    refused(lab, "unknown source VM 'nope' on qemu:///system", source="nope")
    refused(lab, "unknown snapshot 's9' of VM 'tpl'", snapshot="s9")
    refused(lab, "unknown datastore 'nope' on qemu:///system", datastore="nope")


def test_refuses_a_datastore_that_is_not_file_based_or_not_running(tmp_path):
    lab = Lab(tmp_path)
    lab.client.add_pool("lvm", "/dev/vg0", kind="logical")
    lab.client.add_pool("off", lab.dir, active=False)
    refused(lab, "datastore 'lvm' is not file based", datastore="lvm")
    refused(lab, "datastore 'off' on qemu:///system is not running", datastore="off")


def test_refuses_a_remote_uri(tmp_path):
    lab = Lab(tmp_path)
    refused(lab, "uri qemu+ssh://root@cna2/system is remote", uri="qemu+ssh://root@cna2/system")


def test_refuses_a_raw_device_mapping(tmp_path):
    lab = Lab(tmp_path, extra_disks=[disk_el("/dev/disk/by-id/wwn-0x5000", "sda", "raw", device="lun")])
    refused(lab, "VM 'tpl' has raw device mapping(s) sda, which cannot be cloned")


def test_a_writable_block_disk_is_not_shared_with_the_clones(tmp_path):
    lab = Lab(tmp_path, extra_disks=["<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
                                     "<source dev='/dev/vg0/lv1'/><target dev='vdc' bus='virtio'/></disk>"])
    before = tree(lab.dir)
    # refused before anything is made: the clones would write the same device
    refused(lab, "VM 'tpl' has writable disk(s) vdc that are not files (block or network devices): clones would "
                 "share them; detach them or make them read-only or shareable first")
    assert lab.client.defined == [] and tree(lab.dir) == before


def test_refuses_an_existing_destination_file_before_making_any_clone(tmp_path):
    lab = Lab(tmp_path)
    with open(lab.path("b-vdb.qcow2"), "wb") as f:
        f.write(b"someone else's data")
    refused(lab, "clone 'b': %s already exists" % lab.path("b-vdb.qcow2"))
    assert not os.path.exists(lab.path("a-vda.qcow2"))
    with open(lab.path("b-vdb.qcow2"), "rb") as f:
        assert f.read() == b"someone else's data"


def test_refuses_bad_metadata_keys(tmp_path):
    lab = Lab(tmp_path)
    refused(lab, "invalid metadata key 'a b'", metadata={"a b": "x"})


@pytest.mark.parametrize("option, kwargs", [("hostname", dict(hostname="{index}")), ("hostname", dict(hostname="host-{0}")),
                                            ("metadata", dict(metadata={"owner": "pool-{nme}"}))],
                         ids=["hostname-unknown-field", "hostname-positional", "metadata-unknown-field"])
def test_refuses_a_bad_hostname_or_metadata_pattern_before_any_change(tmp_path, option, kwargs):
    lab = Lab(tmp_path)
    refused(lab, option, **kwargs)
    check = lab.manager(check_mode=True)
    with pytest.raises(ValueError):
        check.clone("tpl", ["a", "b"], **kwargs)
    assert check.actions == []


# ---------------------------------------------------------------------------- 5. full clones
@pytest.mark.parametrize("provisioning", ["thick_lazy_zeroed", "thick_eager_zeroed"])
def test_full_thick_raw_clone_of_a_template(tmp_path, provisioning):
    lab = Lab(tmp_path)
    write(lab.vda, "qcow2", "0xaa")
    write(lab.vda, "qcow2", "0xcc", offset=8 * MIB)
    write(lab.vdb, "raw", "0xbb", offset=MIB)
    before = tree(lab.dir)
    mgr = lab.manager()
    changed, facts = mgr.clone("tpl", ["a"], linked=False, fmt="raw", provisioning=provisioning)
    assert changed
    vda, vdb = lab.path("a-vda.raw"), lab.path("a-vdb.raw")
    assert facts == [{"name": "a", "created": True, "linked": False, "disks": {"vda": vda, "vdb": vdb}}]
    assert mgr.actions == ["a: copy vda (%s) to %s as %s raw" % (lab.vda, vda, provisioning),
                           "a: copy vdb (%s) to %s as %s raw" % (lab.vdb, vdb, provisioning),
                           "a: define (new UUID and MACs)", "refresh datastores"]
    assert [c[:2] for c in lab.runner.commands] == [["qemu-img", "convert"]] * 2
    for dest in (vda, vdb):
        assert fileops.qcow2_backing(dest) is None
        with open(dest, "rb") as f:
            assert f.read(4) != b"QFI\xfb"
        assert info(dest)["format"] == "raw"
        assert os.path.getsize(dest) == SIZE
        # every byte is reserved (the filesystem may add a block of its own for the extent tree)
        assert SIZE <= fileops.allocated_bytes(dest) <= SIZE + 64 * 1024
        assert fileops.get_intent(dest) == provisioning
        assert fileops.detect_provisioning(dest, fmt="raw") == provisioning
        assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert reads(vda, "raw", "0xaa") and reads(vda, "raw", "0xcc", offset=8 * MIB)
    assert reads(vda, "raw", "0x00", offset=MIB, length="1M")
    assert reads(vdb, "raw", "0xbb", offset=MIB) and reads(vdb, "raw", "0x00")
    xml = lab.defined("a")
    assert disks_of(xml) == {"vda": (vda, "raw"), "vdb": (vdb, "raw")}
    assert clones.clone_record(xml) == {"source": "tpl", "snapshot": None, "linked": False, "complete": True}
    assert ET.fromstring(xml).find("metadata/{%s}clone" % CLONE_NS).get("disks") == ""
    assert subset(before, tree(lab.dir)) == before


def test_full_thin_clone_copies_only_the_allocated_data(tmp_path):
    lab = Lab(tmp_path)
    write(lab.vda, "qcow2", "0xaa", offset=4 * MIB)
    write(lab.vdb, "raw", "0xbb", offset=12 * MIB)
    mgr = lab.manager()
    changed, facts = mgr.clone("tpl", ["a"], linked=False)
    assert changed
    vda, vdb = lab.path("a-vda.qcow2"), lab.path("a-vdb.raw")
    assert facts[0]["disks"] == {"vda": vda, "vdb": vdb}
    assert mgr.actions[:2] == ["a: copy vda (%s) to %s as thin qcow2" % (lab.vda, vda),
                               "a: copy vdb (%s) to %s as thin raw" % (lab.vdb, vdb)]
    assert info(vda)["format"] == "qcow2" and fileops.qcow2_backing(vda) is None
    assert "backing-filename" not in info(vda)
    assert fileops.qcow2_has_data(vda)
    assert info(vda)["virtual-size"] == SIZE and os.path.getsize(vdb) == SIZE
    for dest in (vda, vdb):
        assert fileops.allocated_bytes(dest) < MIB, (dest, fileops.allocated_bytes(dest))
        assert fileops.get_intent(dest) == "thin"
    assert reads(vda, "qcow2", "0xaa", offset=4 * MIB) and reads(vda, "qcow2", "0x00")
    assert reads(vdb, "raw", "0xbb", offset=12 * MIB) and reads(vdb, "raw", "0x00")
    assert disks_of(lab.defined("a")) == {"vda": (vda, "qcow2"), "vdb": (vdb, "raw")}


def test_full_thick_qcow2_clone_is_preallocated(tmp_path):
    lab = Lab(tmp_path)
    write(lab.vdb, "raw", "0xbb")
    changed, facts = lab.manager().clone("tpl", ["a"], linked=False, fmt="qcow2", provisioning="thick_lazy_zeroed")
    assert changed
    vdb = lab.path("a-vdb.qcow2")
    assert facts[0]["disks"]["vdb"] == vdb
    assert info(vdb)["format"] == "qcow2" and fileops.qcow2_backing(vdb) is None
    assert fileops.allocated_bytes(vdb) >= SIZE
    assert reads(vdb, "qcow2", "0xbb")


def test_full_clone_of_a_stopped_vm_copies_its_disks_without_a_snapshot(tmp_path):
    lab = Lab(tmp_path, template=False, name="vm1")
    write(lab.vda, "qcow2", "0xaa")
    changed, facts = lab.manager().clone("vm1", ["a"], linked=False)
    assert changed
    assert lab.src.snaps == {} and lab.calls("snapshotCreateXML") == []
    assert disks_of(lab.src.xml) == {"vda": (lab.vda, "qcow2"), "vdb": (lab.vdb, "raw")}
    vda = lab.path("a-vda.qcow2")
    assert facts[0]["disks"] == {"vda": vda, "vdb": lab.path("a-vdb.raw")}
    assert fileops.qcow2_backing(vda) is None and reads(vda, "qcow2", "0xaa")


# ---------------------------------------------------------------------------- 6. partial failure
def assert_complete(lab, n):
    assert n in lab.client.domains
    assert clones.clone_record(lab.client.domains[n].xml)["source"] == "tpl"
    for t, base in (("vda", lab.vda), ("vdb", lab.vdb)):
        assert fileops.qcow2_backing(lab.path("%s-%s.qcow2" % (n, t))) == base
    assert os.path.exists(lab.path(".%s~vm.xml" % n))


def assert_gone(lab, n):
    assert n not in lab.client.domains
    assert [f for f in os.listdir(lab.dir) if f.startswith(n + "-") or f.startswith("." + n + ".")] == []


@pytest.mark.parametrize("fail_on, failed, made", [(2, "a", []), (4, "b", ["a"])])
def test_a_failed_disk_removes_that_clone_only(tmp_path, fail_on, failed, made):
    """qemu-img calls: a-vda, a-vdb, b-vda, b-vdb; the failing one has made its file before it reports failure."""
    lab = Lab(tmp_path)
    before = tree(lab.dir)
    runner = FailingRunner(fail_on=fail_on)
    mgr = lab.manager(run_command=runner)
    with pytest.raises(ValueError) as err:
        mgr.clone("tpl", ["a", "b", "c"])
    assert str(err.value) == "qemu-img create failed: injected failure second line"
    assert len(runner.commands) == fail_on
    assert os.path.basename(runner.commands[-1][-1]) == ".%s-vdb.qcow2~new" % failed  # made under a temporary name
    for n in made:
        assert_complete(lab, n)
    for n in sorted(set("abc") - set(made)):
        assert_gone(lab, n)
    assert mgr.made == made
    assert [c[1] for c in lab.calls("define")] == made and lab.calls("undefine") == []
    assert mgr.actions == overlay_actions(lab, made + [failed])
    assert subset(before, tree(lab.dir)) == before

    # a new run makes the rest
    again = lab.manager()
    changed, facts = again.clone("tpl", ["a", "b", "c"])
    assert changed and [f["created"] for f in facts] == [n not in made for n in ("a", "b", "c")]
    for n in ("a", "b", "c"):
        assert_complete(lab, n)


def test_a_failed_define_removes_that_clones_files(tmp_path):
    lab = Lab(tmp_path)
    lab.client.fail_define.add("b")
    mgr = lab.manager()
    with pytest.raises(FakeLibvirtError) as err:
        mgr.clone("tpl", ["a", "b", "c"])
    assert "injected define failure for b" in str(err.value)
    assert_complete(lab, "a")
    assert_gone(lab, "b")
    assert_gone(lab, "c")
    assert len(lab.runner.commands) == 4
    assert [c[1] for c in lab.calls("define")] == ["a", "b"]
    assert lab.calls("undefine") == []
    assert mgr.made == ["a"]
    assert lab.client.log[-1] == ("refresh", "ds1", 0)


def test_a_failed_definition_copy_undefines_the_clone(tmp_path):
    lab = Lab(tmp_path)
    os.mkdir(lab.path(".b~vm.xml"))  # the copy cannot replace a directory
    mgr = lab.manager()
    with pytest.raises(OSError):
        mgr.clone("tpl", ["a", "b"])
    assert_complete(lab, "a")
    assert "b" not in lab.client.domains
    assert lab.calls("undefine") == [("undefine", "b", constants.UNDEFINE_NVRAM)]
    assert not os.path.exists(lab.path("b-vda.qcow2")) and not os.path.exists(lab.path("b-vdb.qcow2"))
    assert mgr.made == ["a"]


def test_a_failed_definition_copy_leaves_no_temporary_file(tmp_path):
    lab = Lab(tmp_path)
    os.mkdir(lab.path(".b~vm.xml"))
    with pytest.raises(OSError):
        lab.manager().clone("tpl", ["b"])
    assert sorted(os.listdir(lab.dir)) == [".b~vm.xml", "tpl-data.img", "tpl-sys.qcow2"]


# ---------------------------------------------------------------------------- 7. clones of a snapshot
def snapshot_lab(tmp_path):
    """vm1: vda (qcow2, data 0xaa) frozen by snapshot s1, then written (0xcc) in its overlay; vdb left out of s1."""
    lab = Lab(tmp_path, template=False, name="vm1")
    write(lab.vda, "qcow2", "0xaa")
    write(lab.vdb, "raw", "0xbb")
    ov = images.overlay_path(lab.vda, "s1")
    lab.src.snapshotCreateXML(
        "<domainsnapshot><name>s1</name><memory snapshot='no'/><disks><disk name='vda' snapshot='external'>"
        "<driver type='qcow2'/><source file='%s'/></disk><disk name='vdb' snapshot='no'/></disks></domainsnapshot>" % ov,
        constants.CREATE_ATOMIC | constants.CREATE_DISK_ONLY)
    write(ov, "qcow2", "0xcc")
    # the VM's configuration changed since s1
    root = ET.fromstring(lab.src.xml)
    root.find("memory").text = "2097152"
    lab.src.xml = ET.tostring(root, encoding="unicode")
    lab.client.log[:] = []
    return lab, ov


def test_linked_clone_of_a_snapshot_stands_on_the_frozen_image(tmp_path):
    lab, ov = snapshot_lab(tmp_path)
    assert disks_of(lab.src.xml)["vda"] == (ov, "qcow2")
    src_xml = lab.src.xml
    before = tree(lab.dir)
    mgr = lab.manager()
    changed, facts = mgr.clone("vm1", ["a"], snapshot="s1")
    assert changed
    vda, vdb = lab.path("a-vda.qcow2"), lab.path("a-vdb.raw")
    assert facts == [{"name": "a", "created": True, "linked": True, "disks": {"vda": vda, "vdb": vdb}}]
    assert mgr.actions == ["a: overlay %s on %s" % (vda, lab.vda),
                           "a: copy vdb (%s) to %s as thin raw" % (lab.vdb, vdb),
                           "a: define (new UUID and MACs)", "refresh datastores"]
    # vda: an overlay on the frozen image, not on the VM's current disk
    assert fileops.qcow2_backing(vda) == lab.vda != ov
    assert fileops.backing_chain(vda) == [vda, lab.vda]
    assert not fileops.qcow2_has_data(vda)
    assert reads(vda, "qcow2", "0xaa") and not reads(vda, "qcow2", "0xcc")
    # vdb is not frozen by s1: copied in full even for a linked clone
    assert fileops.qcow2_backing(vdb) is None and reads(vdb, "raw", "0xbb")
    # the definition is the snapshot's (memory as then), recorded as a clone of s1
    xml = lab.defined("a")
    assert disks_of(xml) == {"vda": (vda, "qcow2"), "vdb": (vdb, "raw")}
    assert ET.fromstring(xml).findtext("memory") == "1048576"
    assert clones.clone_record(xml) == {"source": "vm1", "snapshot": "s1", "linked": True, "complete": True}
    assert ET.fromstring(xml).find("metadata/{%s}clone" % CLONE_NS).get("disks") == "vda"
    # the VM and its snapshot stay as they were
    assert lab.src.xml == src_xml and sorted(lab.src.snaps) == ["s1"]
    assert lab.calls("snapshotCreateXML") == [] and lab.calls("snapshot.delete") == []
    assert subset(before, tree(lab.dir)) == before

    # idempotent against the same snapshot; a plain clone of vm1 of that name is a collision
    again = lab.manager()
    assert again.clone("vm1", ["a"], snapshot="s1")[0] is False and again.actions == []
    with pytest.raises(ValueError) as err:
        lab.manager().clone("vm1", ["a"])
    assert "VM 'a' already exists and is not a linked clone of vm1: choose another name" in str(err.value)


# ---------------------------------------------------------------------------- 8. linked clones of a plain VM
def test_linked_clone_of_a_stopped_vm_freezes_its_disks_first(tmp_path):
    lab = Lab(tmp_path, template=False, name="vm1")
    write(lab.vda, "qcow2", "0xaa")
    before, src_xml = tree(lab.dir), lab.src.xml
    check = lab.manager(check_mode=True)
    assert check.clone("vm1", ["a"])[0] is True
    assert tree(lab.dir) == before and lab.src.xml == src_xml and lab.src.snaps == {}
    assert lab.client.log == [] and lab.runner.commands == []
    mgr = lab.manager()
    changed, facts = mgr.clone("vm1", ["a"])
    assert changed
    vda, vdb = lab.path("a-vda.qcow2"), lab.path("a-vdb.qcow2")
    assert facts[0]["disks"] == {"vda": vda, "vdb": vdb}
    assert mgr.actions == ["freeze the disks of vm1 (snapshot clone-base-a, kept as the clones' base)",
                           "a: overlay %s on %s" % (vda, lab.vda), "a: overlay %s on %s" % (vdb, lab.vdb),
                           "a: define (new UUID and MACs)", "refresh datastores"]
    assert sorted(lab.src.snaps) == ["clone-base-a"]
    # the VM now writes to new overlays; the clone stands on its old images
    assert disks_of(lab.src.xml) == {"vda": (images.overlay_path(lab.vda, "clone-base-a"), "qcow2"),
                                     "vdb": (images.overlay_path(lab.vdb, "clone-base-a"), "qcow2")}
    assert fileops.qcow2_backing(vda) == lab.vda and fileops.qcow2_backing(vdb) == lab.vdb
    assert info(vdb)["backing-filename-format"] == "raw"
    assert reads(vda, "qcow2", "0xaa")
    assert clones.clone_record(lab.defined("a")) == {"source": "vm1", "snapshot": None, "linked": True, "complete": True}
    assert mgr.actions == check.actions
    # a second run freezes nothing again
    again = lab.manager()
    assert again.clone("vm1", ["a"])[0] is False and again.actions == []
    assert sorted(lab.src.snaps) == ["clone-base-a"]


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_vm_under_ha_is_not_put_on_new_overlays_for_a_linked_clone(tmp_path, monkeypatch, check_mode):
    # the cluster restarts it from its definition copy: its disks moved onto overlays behind that would be lost
    lab = Lab(tmp_path, template=False, name="vm1")
    monkeypatch.setattr(power, "ha_resource", lambda run, local, name: "kvmfusion-vm-" + name)
    before, src_xml = tree(lab.dir), lab.src.xml
    with pytest.raises(ValueError) as err:
        lab.manager(check_mode=check_mode).clone("vm1", ["a"])
    assert "VM 'vm1' is under HA (cluster resource kvmfusion-vm-vm1): putting it on new overlays for linked clones" \
        in str(err.value) and "\n" not in str(err.value)
    assert tree(lab.dir) == before and lab.src.xml == src_xml and lab.src.snaps == {}
    assert lab.client.defined == [] and lab.runner.commands == []


# ---------------------------------------------------------------------------- runs killed half way
def test_a_run_killed_while_writing_a_disk_leaves_a_temporary_file_the_next_run_replaces(tmp_path):
    lab = Lab(tmp_path)
    partial = lab.path(".a-vda.qcow2~new")
    with open(partial, "wb") as f:
        f.write(b"QFI\xfb half written")
    changed, facts = lab.manager().clone("tpl", ["a"])
    assert changed and facts[0]["created"]
    assert sorted(n for n in os.listdir(lab.dir) if "a-" in n) == ["a-vda.qcow2", "a-vdb.qcow2"]
    assert fileops.qcow2_backing(lab.path("a-vda.qcow2")) == lab.vda
    assert lab.manager().clone("tpl", ["a"])[0] is False


def test_a_clone_left_incomplete_by_a_killed_run_is_made_again(tmp_path):
    lab = Lab(tmp_path)
    lab.manager().clone("tpl", ["a", "b"])
    # as if killed after the definition and one disk took its name, before the clone was marked complete
    root = ET.fromstring(lab.client.domains["a"].xml)
    root.find("metadata/{%s}clone" % CLONE_NS).set("complete", "false")
    lab.client.domains["a"].xml = ET.tostring(root, encoding="unicode")
    os.rename(lab.path("a-vdb.qcow2"), lab.path(".a-vdb.qcow2~new"))
    old_uuid = root.findtext("uuid")
    mgr = lab.manager()
    changed, facts = mgr.clone("tpl", ["a", "b"])
    assert changed and [f["created"] for f in facts] == [True, False]
    assert mgr.actions[0] == "a: remove what a killed earlier run left of it"
    xml = lab.client.domains["a"].xml
    assert clones.clone_record(xml)["complete"] is True and ET.fromstring(xml).findtext("uuid") != old_uuid
    assert not [n for n in os.listdir(lab.dir) if n.endswith("~new")]
    assert os.path.exists(lab.path("a-vda.qcow2")) and os.path.exists(lab.path("a-vdb.qcow2"))
    assert lab.manager().clone("tpl", ["a", "b"])[0] is False


def test_check_mode_predicts_redoing_an_incomplete_clone_and_touches_nothing(tmp_path):
    lab = Lab(tmp_path)
    lab.manager().clone("tpl", ["a"])
    root = ET.fromstring(lab.client.domains["a"].xml)
    root.find("metadata/{%s}clone" % CLONE_NS).set("complete", "false")
    lab.client.domains["a"].xml = ET.tostring(root, encoding="unicode")
    before, log = tree(lab.dir), list(lab.client.log)
    mgr = lab.manager(check_mode=True)
    assert mgr.clone("tpl", ["a"])[0] is True
    assert mgr.actions[0] == "a: remove what a killed earlier run left of it"
    assert tree(lab.dir) == before and lab.client.log == log
