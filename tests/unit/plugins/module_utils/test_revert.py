# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""SnapshotManager.revert and its helpers on real qcow2 chains.

libvirt is replaced by a small fake at the client boundary (FakeClient and its domains and
snapshots); the images are real: qemu-img builds the chains in tmp_path and the code under
test creates, reads and deletes them for real.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import hashlib
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, images
from ansible_collections.kvmfusion.compute.plugins.module_utils import client as client_mod
from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops, power, reverts, snapshots

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None or shutil.which("qemu-io") is None,
                                reason="qemu-img and qemu-io are needed to build real qcow2 chains")

URI = "qemu:///system"
DISKS_NS = "https://kvmfusion.compute/xmlns/disks/1"


# ---------------------------------------------------------------------------- real images
def run(args):
    """A real run_command: (rc, stdout, stderr)."""
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def qemu_img(*args):
    rc, out, err = run(["qemu-img"] + list(args))
    assert rc == 0, err or out


def write_data(path, pattern="0xbb"):
    rc, out, err = run(["qemu-io", "-f", "qcow2", "-c", "write -P %s 0 64k" % pattern, path])
    assert rc == 0, err or out
    assert fileops.qcow2_has_data(path)


def read_pattern(path, fmt, pattern):
    """Whether the first 64k of the image (through its backing chain) read as ``pattern``."""
    rc, out, err = run(["qemu-io", "-r", "-f", fmt, "-c", "read -P %s 0 64k" % pattern, path])
    return rc == 0 and "Pattern verification failed" not in out + err


def tree(directory):
    """{file name: (size, sha256)} of every file in ``directory``: what a run may change."""
    out = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = (os.path.getsize(os.path.join(directory, name)), hashlib.sha256(f.read()).hexdigest())
    return out


class Runner(object):
    """run_command that records what it ran."""

    def __init__(self):
        self.commands = []

    def __call__(self, args):
        self.commands.append(list(args))
        return run(args)


# ---------------------------------------------------------------------------- the fake libvirt client
class FakeLibvirtError(Exception):
    pass


class FakeSnapshot(object):

    def __init__(self, dom, name, xml):
        self.dom, self.name, self.xml = dom, name, xml

    def getName(self):
        return self.name

    def getXMLDesc(self, flags=0):
        return self.xml

    def parent(self):
        return ET.fromstring(self.xml).findtext("parent/name")

    def listAllChildren(self, flags=0):
        found, todo = [], [self.name]
        while todo:
            cur = todo.pop(0)
            for snap in self.dom.snaps.values():
                if snap.parent() == cur and snap not in found:
                    found.append(snap)
                    if flags & 1:
                        todo.append(snap.name)
        return found

    def delete(self, flags=0):
        self.dom.host.log.append(("snapshot.delete", self.name, flags))
        assert flags & constants.DELETE_METADATA_ONLY, "the fake only drops metadata"
        mine = self.parent()
        for child in self.listAllChildren(0):  # libvirt hands the children to the deleted one's parent
            root = ET.fromstring(child.xml)
            par = root.find("parent")
            if mine is None:
                root.remove(par)
            else:
                par.find("name").text = mine
            child.xml = ET.tostring(root, encoding="unicode")
        del self.dom.snaps[self.name]
        if self.dom.current == self.name:
            self.dom.current = mine


class FakeDomain(object):

    def __init__(self, host, name, xml, running=False):
        self.host, self._name, self.xml = host, name, xml
        self.running, self.paused = running, False
        self.snaps = {}
        self.current = None

    def name(self):
        return self._name

    def isActive(self):
        return 1 if self.running else 0

    def state(self, flags=0):
        return [(3 if self.paused else 1) if self.running else 5, 0]

    def destroy(self):
        self.host.log.append(("destroy", self._name))
        self.running = self.paused = False
        return 0

    def createWithFlags(self, flags):
        self.host.log.append(("createWithFlags", self._name, flags))
        self.running, self.paused = True, bool(flags & 1)
        return 0

    def hasCurrentSnapshot(self, flags=0):
        return 1 if self.current else 0

    def snapshotCurrent(self, flags=0):
        if not self.current:
            raise FakeLibvirtError("the domain has no current snapshot")
        return self.snaps[self.current]

    def listAllSnapshots(self, flags=0):
        if flags & 1:  # VIR_DOMAIN_SNAPSHOT_LIST_ROOTS, as libvirt does
            return [s for s in self.snaps.values() if s.parent() is None]
        return list(self.snaps.values())

    def setMetadata(self, mtype, xml, key, uri, flags):
        self.host.log.append(("setMetadata", self._name, key, uri, xml, flags))
        # as libvirt does: the element replaces the one of its namespace in <metadata>
        root = ET.fromstring(self.xml)
        meta = root.find("metadata")
        if meta is None:
            meta = ET.SubElement(root, "metadata")
        for old in [el for el in meta if el.tag.startswith("{%s}" % uri)]:
            meta.remove(old)
        el = ET.fromstring(xml)
        for node in el.iter():
            node.tag = "{%s}%s" % (uri, node.tag)
        meta.append(el)
        self.xml = ET.tostring(root, encoding="unicode")
        return 0

    def snapshotCreateXML(self, xml, flags):
        root = ET.fromstring(xml)
        name = root.findtext("name")
        self.host.log.append(("snapshotCreateXML", name, flags))
        if flags & constants.CREATE_REDEFINE:
            if name in self.snaps:
                self.snaps[name].xml = xml
            else:
                self.snaps[name] = FakeSnapshot(self, name, xml)
            if flags & constants.CREATE_CURRENT:
                self.current = name
            return self.snaps[name]
        return self._take(root, name)

    def _take(self, root, name):
        """What libvirt 9.0 does for an external snapshot: new overlays on the current sources, domain repointed."""
        if name in self.snaps:
            raise FakeLibvirtError("snapshot '%s' already exists" % name)
        dom_root = ET.fromstring(self.xml)
        frozen = copy.deepcopy(dom_root)
        for d in root.findall("disks/disk"):
            if d.get("snapshot") != "external":
                continue
            ov = d.find("source").get("file")
            el = [e for e in dom_root.findall("devices/disk") if e.find("target").get("dev") == d.get("name")][0]
            if os.path.exists(ov):
                raise FakeLibvirtError("external snapshot file %s already exists" % ov)
            qemu_img("create", "-q", "-f", "qcow2", "-F", el.find("driver").get("type"), "-b", el.find("source").get("file"), ov)
            el.find("source").set("file", ov)
            el.find("driver").set("type", "qcow2")
        mem = root.find("memory")
        if mem is not None and mem.get("snapshot") == "external":
            assert self.running, "a memory snapshot needs a running domain"
            with open(mem.get("file"), "wb") as f:
                f.write(b"LibvirtQemudSave" + b"\0" * 64)
            self.host.conn.saved[mem.get("file")] = self.xml
        if self.current:
            par = ET.Element("parent")
            ET.SubElement(par, "name").text = self.current
            root.insert(1, par)
        ET.SubElement(root, "state").text = "running" if self.running else "shutoff"
        root.append(frozen)
        self.xml = ET.tostring(dom_root, encoding="unicode")
        self.snaps[name] = FakeSnapshot(self, name, ET.tostring(root, encoding="unicode"))
        self.current = name
        return self.snaps[name]


class FakeConn(object):

    def __init__(self, host):
        self.host = host
        self.saved = {}
        self.free_memory = 64 << 30

    def getFreeMemory(self):
        return self.free_memory

    def saveImageGetXMLDesc(self, path, flags):
        # without SECURE the XML lacks the console password, and the restored domain would lose it
        assert flags & constants.SAVE_IMAGE_XML_SECURE, "saved domain XML read without its secrets"
        if not os.path.exists(path):
            raise FakeLibvirtError("cannot open %s: No such file or directory" % path)
        return self.saved[path]

    def restoreFlags(self, path, xml, flags):
        self.host.log.append(("restoreFlags", path, xml, flags))
        dom = self.host.domains[ET.fromstring(xml).findtext("name")]
        dom.running, dom.paused = True, bool(flags & constants.SAVE_PAUSED)
        return 0


class FakeClient(object):
    """The part of plugins/module_utils/client.Client that snapshots and disks use."""

    def __init__(self, uri="qemu:///system"):
        self.uri = uri
        self.domains = {}
        self.defined = []
        self.log = []
        self.conn = FakeConn(self)

    def add_domain(self, name, xml, running=False):
        self.domains[name] = FakeDomain(self, name, xml, running)
        return self.domains[name]

    @property
    def is_local(self):
        return client_mod.is_local_uri(self.uri)

    def domain(self, name):
        return self.domains.get(name)

    def snapshot(self, vm, name):
        dom = self.domains.get(vm)
        return dom.snaps.get(name) if dom else None

    def domain_xml(self, name, inactive=True, secure=False):
        dom = self.domains.get(name)
        return dom.xml if dom else None

    def call(self, action, obj, fn, *args):
        return fn(*args)

    def domain_names(self):
        return sorted(self.domains)

    def pool_names(self):
        return []

    def pool(self, name):
        return None

    def define_domain(self, xml, flags=0):
        self.log.append(("define", flags))
        self.defined.append(xml)
        self.domains[ET.fromstring(xml).findtext("name")].xml = xml


def disk_xml(path, target, fmt="qcow2", device="disk", extra=""):
    if device == "lun":
        return ("<disk type='block' device='lun'><driver name='qemu' type='raw'/><source dev='%s'/>"
                "<target dev='%s' bus='scsi'/></disk>" % (path, target))
    return ("<disk type='file' device='%s'><driver name='qemu' type='%s'/><source file='%s'/>"
            "<target dev='%s' bus='virtio'/>%s</disk>" % (device, fmt, path, target, extra))


def vm_xml(name, disks, metadata=""):
    return "<domain type='kvm'><name>%s</name><metadata>%s</metadata><devices>%s</devices></domain>" % (
        name, metadata, "".join(disks))


def independent_meta(path):
    return "<kvmf:disks xmlns:kvmf='%s'><kvmf:disk source='%s' mode='independent_persistent'/></kvmf:disks>" % (
        DISKS_NS, path)


# ---------------------------------------------------------------------------- the lab
class Lab(object):
    """VM vm1 with one disk vda on a real base image; snapshots are taken the way libvirt takes them."""

    def __init__(self, tmp_path, base_fmt="qcow2", template=False, running=False, extra_disks=(), metadata=""):
        self.dir = str(tmp_path)
        self.client = FakeClient()
        self.runner = Runner()
        self.fmt = base_fmt
        self.base = self.path("sys.qcow2" if base_fmt == "qcow2" else "sys.img")
        self.template = self.path("template.qcow2") if template else None
        if template:
            qemu_img("create", "-q", "-f", "qcow2", self.template, "1M")
            qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", self.template, self.base)
        else:
            qemu_img("create", "-q", "-f", base_fmt, self.base, "1M")
        self.vm = self.client.add_domain("vm1", vm_xml("vm1", [disk_xml(self.base, "vda", base_fmt)] + list(extra_disks),
                                                       metadata), running)

    def path(self, name):
        return os.path.join(self.dir, name)

    def overlay(self, snap):
        return images.overlay_path(self.base, snap)

    def mem(self, snap):
        return images.memory_path(self.dir, "vm1", snap)

    def take(self, name, memory=False):
        mem = "<memory snapshot='external' file='%s'/>" % self.mem(name) if memory else "<memory snapshot='no'/>"
        xml = ("<domainsnapshot><name>%s</name>%s<disks><disk name='vda' snapshot='external'><driver type='qcow2'/>"
               "<source file='%s'/></disk></disks></domainsnapshot>" % (name, mem, self.overlay(name)))
        self.vm.snapshotCreateXML(xml, constants.CREATE_ATOMIC | (constants.CREATE_LIVE if memory else constants.CREATE_DISK_ONLY))
        self.client.log[:] = []
        return self.overlay(name)

    def add_backing_store(self):
        """libvirt's live XML shows the chain: revert must not copy it into the definition."""
        root = ET.fromstring(self.vm.xml)
        el = root.find("devices/disk")
        bs = ET.SubElement(el, "backingStore", type="file")
        ET.SubElement(bs, "format", type=self.fmt)
        ET.SubElement(bs, "source", file=self.base)
        self.vm.xml = ET.tostring(root, encoding="unicode")

    def manager(self, check_mode=False, uri=URI):
        self.client.uri = uri
        mgr = reverts.RevertManager(self.client, check_mode=check_mode, run_command=self.runner)
        mgr.native_revert = getattr(self, "native", False)
        return mgr

    def source(self, target="vda", xml=None):
        root = ET.fromstring(xml or self.vm.xml)
        for el in root.findall("devices/disk"):
            if el.find("target").get("dev") == target:
                return el.find("source").get("file") or el.find("source").get("dev")
        return None

    def calls(self, kind):
        return [c for c in self.client.log if c[0] == kind]


def two_snapshots(tmp_path, **kw):
    """sys <- sys.s1 (s1) <- sys.s2 (s2) <- the VM writes into sys.s2, which holds data."""
    lab = Lab(tmp_path, **kw)
    write_data(lab.base, "0xaa")
    lab.take("s1")
    write_data(lab.overlay("s1"), "0xcc")
    lab.take("s2", memory=kw.get("running", False))
    write_data(lab.overlay("s2"), "0xbb")
    lab.add_backing_store()
    return lab


# ---------------------------------------------------------------------------- 1. check mode
@pytest.mark.parametrize("running", [False, True])
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(discard_newer=False, save_current_as="keep"),
    dict(state="running"),
])
def test_check_mode_plans_exactly_the_real_run_and_changes_nothing(tmp_path, kwargs, running):
    lab = two_snapshots(tmp_path, running=running)
    before, xml_before = tree(lab.dir), lab.vm.xml
    mgr = lab.manager(check_mode=True)
    changed, plan = mgr.revert("vm1", "s1", **kwargs)
    assert changed and plan["snapshot"] == "s1"
    assert mgr.actions and mgr.actions[-1] == "refresh datastores"
    assert tree(lab.dir) == before
    assert lab.client.log == [] and lab.client.defined == [] and lab.runner.commands == []
    assert lab.vm.xml == xml_before and sorted(lab.vm.snaps) == ["s1", "s2"] and lab.vm.current == "s2"
    assert lab.vm.running == running

    real = lab.manager()
    changed_real, plan_real = real.revert("vm1", "s1", **kwargs)
    assert changed_real
    assert real.actions == mgr.actions
    assert plan_real == plan
    assert tree(lab.dir) != before and lab.client.defined


def test_check_mode_names_the_default_saved_snapshot(tmp_path):
    lab = two_snapshots(tmp_path)
    mgr = lab.manager(check_mode=True)
    changed, plan = mgr.revert("vm1", "s1", discard_newer=False)
    assert changed
    assert plan["saved_as"].startswith("s1-before-revert-") and plan["saved_as"][len("s1-before-revert-"):].isdigit()
    assert mgr.actions[1] == "save the current state as snapshot %s" % plan["saved_as"]
    assert lab.client.log == []


# ---------------------------------------------------------------------------- 2. discard_newer=True
def test_discard_newer_drops_s2_and_recreates_s1_overlay_empty(tmp_path):
    lab = two_snapshots(tmp_path)
    base, s1, s2 = lab.base, lab.overlay("s1"), lab.overlay("s2")
    base_sum = tree(lab.dir)[os.path.basename(base)]
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1")
    assert changed
    assert plan == {"snapshot": "s1", "state": "stopped", "saved_as": None, "discarded": ["s2"], "disks": {"vda": s1},
                    "engine": "kvmfusion"}
    # created first, switched, then the old files deleted
    assert mgr.actions == [
        "new overlay %s on %s for vda" % (s1, base),
        "discard snapshot s2",
        "note the files to delete after the switch",
        "point vda at the new overlay(s)",
        "make s1 the current snapshot",
        "delete %s" % s2,
        "clear the note",
        "refresh datastores",
    ]
    # s2: metadata only (flag 2), its overlay gone
    assert lab.calls("snapshot.delete") == [("snapshot.delete", "s2", constants.DELETE_METADATA_ONLY)]
    assert sorted(lab.vm.snaps) == ["s1"]
    assert not os.path.exists(s2)
    records = [r for r in lab.calls("setMetadata") if r[2] == snapshots.SNAP_KEY]
    assert len(records) == 1 and records[0][3] == snapshots.SNAP_NS and "s2" not in records[0][4]
    # the delete was noted before the switch and the note cleared after it
    notes = [r[4] for r in lab.calls("setMetadata") if r[2] == reverts.REVERT_KEY]
    assert notes == ['<pending><file path="%s" /></pending>' % s2, "<pending />"]
    assert reverts.pending_deletes(lab.client, "vm1") == []
    # the s1 overlay is back at its own path, empty, on the base
    assert os.path.exists(s1) and not fileops.qcow2_has_data(s1)
    assert fileops.qcow2_backing(s1) == base
    assert fileops.backing_chain(s1) == [s1, base]
    assert read_pattern(s1, "qcow2", "0xaa")  # the data of the moment s1 was taken
    assert sorted(os.listdir(lab.dir)) == sorted(os.path.basename(p) for p in (base, s1))
    # the base is never deleted nor written
    assert tree(lab.dir)[os.path.basename(base)] == base_sum
    # the definition points vda at the new overlay, as qcow2, without a stale chain
    assert len(lab.client.defined) == 1 and lab.calls("define") == [("define", constants.DEFINE_VALIDATE)]
    disk = ET.fromstring(lab.client.defined[0]).find("devices/disk")
    assert disk.find("source").get("file") == s1 and disk.get("type") == "file"
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("backingStore") is None
    # s1 is current again, redefined from its own XML with REDEFINE|CURRENT
    assert ("snapshotCreateXML", "s1", 3) in lab.client.log and lab.vm.current == "s1"
    # stopped by default: not started
    assert lab.calls("createWithFlags") == [] and lab.calls("destroy") == [] and not lab.vm.running
    assert [c[0] for c in lab.runner.commands] == ["qemu-img"]


def test_discard_newer_removes_the_memory_files_of_discarded_snapshots(tmp_path):
    lab = two_snapshots(tmp_path, running=True)
    mem = lab.mem("s2")
    assert os.path.exists(mem)
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1")
    assert changed and plan["state"] == "stopped"
    assert not os.path.exists(mem)
    assert lab.calls("destroy") == [("destroy", "vm1")] and not lab.vm.running
    assert mgr.actions[1] == "power off (the current state is discarded)"
    assert lab.calls("restoreFlags") == [] and lab.calls("createWithFlags") == []


@pytest.mark.parametrize("state, flags", [("running", 0), ("paused", 1)])
def test_disk_only_snapshot_starts_the_vm_when_asked(tmp_path, state, flags):
    lab = two_snapshots(tmp_path)
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1", state=state)
    assert changed and plan["state"] == state
    assert mgr.actions[-2:] == ["start", "refresh datastores"]
    assert lab.calls("createWithFlags") == [("createWithFlags", "vm1", flags)]
    # started only after the definition points at the new overlay
    kinds = [c[0] for c in lab.client.log]
    assert kinds.index("define") < kinds.index("createWithFlags")


def test_revert_on_another_branch_discards_only_the_targets_descendants(tmp_path):
    lab = two_snapshots(tmp_path)
    lab.manager().revert("vm1", "s1", discard_newer=False, save_current_as="keep")
    # now: s1 <- s2 <- keep, and the VM on sys.qcow2~s1~1.qcow2 (branch from s1)
    lab.client.log[:] = []
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s2")
    assert changed and plan["discarded"] == ["keep"]
    assert sorted(lab.vm.snaps) == ["s1", "s2"] and lab.vm.current == "s2"
    assert not os.path.exists(lab.overlay("keep"))
    assert not os.path.exists(lab.path("sys.qcow2~s1~1.qcow2"))  # the abandoned branch's active layer
    new = plan["disks"]["vda"]
    assert fileops.qcow2_backing(new) == lab.overlay("s1") and not fileops.qcow2_has_data(new)
    assert read_pattern(new, "qcow2", "0xcc")
    assert os.path.exists(lab.overlay("s1")) and os.path.exists(lab.base)


# ---------------------------------------------------------------------------- 3. discard_newer=False
def test_keep_newer_saves_the_current_state_first_and_branches(tmp_path):
    lab = two_snapshots(tmp_path)
    base, s1, s2 = lab.base, lab.overlay("s1"), lab.overlay("s2")
    before = tree(lab.dir)
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1", discard_newer=False, save_current_as="keep")
    assert changed
    new = lab.path("sys.qcow2~s1~1.qcow2")
    assert plan == {"snapshot": "s1", "state": "stopped", "saved_as": "keep", "discarded": [], "disks": {"vda": new},
                    "engine": "kvmfusion"}
    assert mgr.actions == [
        "new overlay %s on %s for vda" % (new, base),
        "save the current state as snapshot keep",
        "point vda at the new overlay(s)",
        "make s1 the current snapshot",
        "refresh datastores",
    ]
    # the save comes first, as a disk-only snapshot named save_current_as
    first = lab.client.log[0]
    assert first[:2] == ("snapshotCreateXML", "keep")
    assert first[2] & constants.CREATE_DISK_ONLY and not first[2] & constants.CREATE_REDEFINE
    kinds = [c[0] for c in lab.client.log]
    assert kinds.index("snapshotCreateXML") < kinds.index("define")
    # nothing deleted, nothing rewritten: every old file is as it was, s2 and its data kept
    after = tree(lab.dir)
    assert all(after[n] == before[n] for n in before)
    assert sorted(set(after) - set(before)) == ["sys.qcow2~keep.qcow2", "sys.qcow2~s1~1.qcow2"]
    assert lab.calls("snapshot.delete") == []
    assert sorted(lab.vm.snaps) == ["keep", "s1", "s2"]
    assert fileops.qcow2_has_data(s2) and fileops.qcow2_has_data(s1)
    keep = ET.fromstring(lab.vm.snaps["keep"].xml)
    assert keep.findtext("parent/name") == "s2"
    assert keep.find("domain/devices/disk/source").get("file") == s2
    # the new active layer: empty, on s1's frozen image
    assert fileops.qcow2_backing(new) == base and not fileops.qcow2_has_data(new)
    assert lab.source(xml=lab.client.defined[-1]) == new
    assert lab.vm.current == "s1"


def test_keep_newer_without_new_data_saves_nothing(tmp_path):
    lab = Lab(tmp_path)
    lab.take("s1")
    write_data(lab.overlay("s1"))
    lab.take("s2")  # sys.s2.qcow2 is empty: nothing written since s2
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1", discard_newer=False, save_current_as="keep")
    assert changed and plan["saved_as"] is None
    assert not [a for a in mgr.actions if a.startswith("save")]
    assert "keep" not in lab.vm.snaps and not os.path.exists(lab.overlay("keep"))
    assert plan["disks"]["vda"] == lab.path("sys.qcow2~s1~1.qcow2")
    assert os.path.exists(lab.overlay("s2")) and fileops.qcow2_has_data(lab.overlay("s1"))


# ---------------------------------------------------------------------------- 4. idempotence
def test_a_vm_sitting_on_the_snapshot_is_unchanged(tmp_path):
    lab = Lab(tmp_path)
    write_data(lab.base)
    lab.take("s1")  # current s1, active = empty sys.s1.qcow2 on the frozen base, stopped
    before = tree(lab.dir)
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1")
    assert changed is False
    assert plan == {"snapshot": "s1", "state": "stopped"}
    assert mgr.actions == [] and lab.client.log == [] and lab.runner.commands == []
    assert tree(lab.dir) == before


def test_a_second_revert_is_a_no_op_and_a_write_makes_it_act_again(tmp_path):
    lab = two_snapshots(tmp_path)
    assert lab.manager().revert("vm1", "s1")[0]
    lab.client.log[:] = []
    mgr = lab.manager()
    assert mgr.revert("vm1", "s1") == (False, {"snapshot": "s1", "state": "stopped"})
    assert mgr.actions == [] and lab.client.log == []
    # a different power state is a change
    assert lab.manager(check_mode=True).revert("vm1", "s1", state="running")[0]
    # so is data written since
    write_data(lab.overlay("s1"))
    again = lab.manager()
    assert again.revert("vm1", "s1")[0]
    assert not fileops.qcow2_has_data(lab.overlay("s1"))


# ---------------------------------------------------------------------------- 5. memory snapshots
@pytest.mark.parametrize("state, flag", [(None, constants.SAVE_RUNNING), ("running", constants.SAVE_RUNNING),
                                         ("paused", constants.SAVE_PAUSED)])
def test_memory_snapshot_resumes_on_the_new_overlay(tmp_path, state, flag):
    lab = Lab(tmp_path, base_fmt="raw", running=True)
    s1 = lab.take("s1", memory=True)
    write_data(s1)
    mem = lab.mem("s1")
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1", state=state)
    assert changed and plan["state"] == (state or "running")
    assert lab.calls("destroy") == [("destroy", "vm1")]
    assert mgr.actions == [
        "new overlay %s on %s for vda" % (s1, lab.base),
        "power off (the current state is discarded)",
        "point vda at the new overlay(s)",
        "make s1 the current snapshot",
        "restore guest memory from %s (%s)" % (mem, state or "running"),
        "refresh datastores",
    ]
    restores = lab.calls("restoreFlags")
    assert len(restores) == 1
    path, xml, flags = restores[0][1:]
    assert path == mem and flags == flag
    disk = ET.fromstring(xml).find("devices/disk")
    assert disk.find("source").get("file") == s1
    assert disk.find("driver").get("type") == "qcow2"  # the saved XML had the raw base
    assert disk.find("backingStore") is None
    # the overlay: empty, on the raw base, with the right backing format
    assert not fileops.qcow2_has_data(s1) and fileops.qcow2_backing(s1) == lab.base
    assert "backing file format: raw" in run(["qemu-img", "info", s1])[1]
    assert os.path.exists(mem)  # the target's memory file stays: it can be returned to again
    kinds = [c[0] for c in lab.client.log]
    assert kinds.index("destroy") < kinds.index("define") < kinds.index("restoreFlags")
    assert lab.calls("createWithFlags") == []
    assert lab.vm.running and lab.vm.paused == (state == "paused")


def test_memory_snapshot_with_state_stopped_reverts_the_disks_only(tmp_path):
    lab = Lab(tmp_path, running=True)
    s1 = lab.take("s1", memory=True)
    write_data(s1)
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1", state="stopped")
    assert changed and plan["state"] == "stopped"
    assert lab.calls("restoreFlags") == [] and lab.calls("createWithFlags") == []
    assert lab.calls("destroy") and not lab.vm.running
    assert not fileops.qcow2_has_data(s1)


def test_missing_memory_file_is_refused_for_paused_too(tmp_path):
    lab = Lab(tmp_path, running=True)
    s1 = lab.take("s1", memory=True)
    write_data(s1)
    os.unlink(lab.mem("s1"))
    before = tree(lab.dir)
    with pytest.raises(ValueError) as err:
        lab.manager().revert("vm1", "s1", state="paused")
    assert "memory file" in str(err.value) and "missing" in str(err.value)
    assert lab.client.log == [] and tree(lab.dir) == before


def test_missing_memory_file_is_refused_for_running(tmp_path):
    lab = Lab(tmp_path, running=True)
    lab.take("s1", memory=True)
    os.unlink(lab.mem("s1"))
    before = tree(lab.dir)
    with pytest.raises(ValueError) as err:
        lab.manager().revert("vm1", "s1")
    assert "memory file %s is missing" % lab.mem("s1") in str(err.value)
    assert lab.client.log == [] and tree(lab.dir) == before


# ---------------------------------------------------------------------------- 6. refusals
def refused(lab, message, vm="vm1", name="s1", uri=URI, **kwargs):
    before, xml_before = tree(lab.dir), lab.vm.xml
    snaps_before = dict((n, s.xml) for n, s in lab.vm.snaps.items())
    with pytest.raises(ValueError) as err:
        lab.manager(uri=uri).revert(vm, name, **kwargs)
    text = str(err.value)
    assert message in text, text
    assert "\n" not in text
    assert lab.client.log == [] and lab.client.defined == [] and lab.runner.commands == []
    assert tree(lab.dir) == before and lab.vm.xml == xml_before
    assert dict((n, s.xml) for n, s in lab.vm.snaps.items()) == snaps_before
    return text


def test_refuses_unknown_vm_and_snapshot(tmp_path):
    lab = two_snapshots(tmp_path)
    assert refused(lab, "unknown VM 'nope' on qemu:///system", vm="nope")
    assert refused(lab, "unknown snapshot 's9' of VM 'vm1'", name="s9")


def test_refuses_a_remote_uri(tmp_path):
    lab = two_snapshots(tmp_path)
    text = refused(lab, "is remote", uri="qemu+ssh://root@x/system")
    assert "qemu+ssh://root@x/system" in text


def test_refuses_a_raw_device_mapping(tmp_path):
    lab = Lab(tmp_path, extra_disks=[disk_xml("/dev/disk/by-id/wwn-0x5000", "sda", device="lun")])
    lab.take("s1")
    write_data(lab.overlay("s1"))
    assert "raw device mapping(s) sda" in refused(lab, "detach them first")


def test_refuses_a_disk_added_after_the_snapshot(tmp_path):
    lab = two_snapshots(tmp_path)
    data = lab.path("data.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", data, "1M")
    root = ET.fromstring(lab.vm.xml)
    root.find("devices").append(ET.fromstring(disk_xml(data, "vdb")))
    lab.vm.xml = ET.tostring(root, encoding="unicode")
    refused(lab, "VM 'vm1' has disk(s) vdb that snapshot 's1' does not contain")


def test_refuses_a_snapshotted_disk_that_is_gone(tmp_path):
    lab = two_snapshots(tmp_path)
    root = ET.fromstring(lab.vm.xml)
    devices = root.find("devices")
    devices.remove(devices.find("disk"))
    lab.vm.xml = ET.tostring(root, encoding="unicode")
    refused(lab, "snapshot 's1' has disk vda, which VM 'vm1' no longer has as a persistent disk")


def test_refuses_memory_with_an_independent_disk_unless_stopped(tmp_path):
    data = str(tmp_path / "data.qcow2")
    lab = Lab(tmp_path, running=True, extra_disks=[disk_xml(data, "vdb")], metadata=independent_meta(data))
    qemu_img("create", "-q", "-f", "qcow2", data, "1M")
    s1 = lab.take("s1", memory=True)
    write_data(s1)
    text = refused(lab, "independent disk(s) vdb cannot return to that moment")
    assert "state=stopped" in text
    refused(lab, "independent disk(s) vdb", state="paused")
    # disks only is fine, and the independent disk keeps its file
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s1", state="stopped")
    assert changed and plan["disks"] == {"vda": s1}
    assert not [a for a in mgr.actions if "vdb" in a or data in a]
    assert lab.source("vdb") == data and os.path.exists(data)
    assert lab.calls("restoreFlags") == []


def test_refuses_an_existing_save_current_as(tmp_path):
    lab = two_snapshots(tmp_path)
    refused(lab, "snapshot 's2' already exists: choose another save_current_as", discard_newer=False, save_current_as="s2")


@pytest.mark.parametrize("under", ["s2", "s1"])
def test_refuses_when_a_linked_clone_stands_on_an_image_revert_would_change(tmp_path, under):
    """sys.s2.qcow2 would be deleted, sys.s1.qcow2 recreated: a clone on either must stop the revert."""
    lab = two_snapshots(tmp_path)
    clone = lab.path("clone.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", lab.overlay(under), clone)
    lab.client.add_domain("clone1", vm_xml("clone1", [disk_xml(clone, "vda")]))
    text = refused(lab, "reverting VM 'vm1' to 's1' would remove or rewrite images that others stand on")
    assert "clone1 (vda)" in text and lab.overlay(under) in text


def test_a_clone_on_the_frozen_base_does_not_stop_the_revert(tmp_path):
    lab = two_snapshots(tmp_path)
    clone = lab.path("clone.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", lab.base, clone)
    lab.client.add_domain("clone1", vm_xml("clone1", [disk_xml(clone, "vda")]))
    assert lab.manager().revert("vm1", "s1")[0]
    assert fileops.backing_chain(clone) == [clone, lab.base]
    assert os.path.exists(lab.base)


# ---------------------------------------------------------------------------- 7. disk_bases / owned_files
def test_disk_bases_come_from_the_root_snapshot(tmp_path):
    lab = Lab(tmp_path, template=True)
    assert images.disk_bases(lab.client, "vm1") == {}
    assert images.disk_bases(lab.client, "nope") == {}
    lab.take("s1")
    lab.take("s2")
    assert lab.source() == lab.overlay("s2")
    assert images.disk_bases(lab.client, "vm1") == {"vda": lab.base}
    # the base is the VM's own image, never the template below it
    assert fileops.backing_chain(lab.overlay("s2"))[-1] == lab.template


def test_owned_files_stop_at_each_disks_base(tmp_path):
    lab = Lab(tmp_path, template=True, running=True)
    lab.take("s1")
    lab.take("s2", memory=True)
    files, mems = images.owned_files(lab.client, "vm1")
    assert files == set([lab.base, lab.overlay("s1"), lab.overlay("s2")])
    assert lab.template not in files
    assert mems == set([lab.mem("s2")])
    # after a revert that keeps the newer branch, the new active layer and the saved one are owned too
    write_data(lab.overlay("s2"))
    lab.manager().revert("vm1", "s1", discard_newer=False, save_current_as="keep", state="stopped")
    files, mems = images.owned_files(lab.client, "vm1")
    assert files == set([lab.base, lab.overlay("s1"), lab.overlay("s2"), lab.overlay("keep"), lab.path("sys.qcow2~s1~1.qcow2")])
    assert mems == set([lab.mem("s2")])


def test_owned_files_without_snapshots_is_the_disk_itself(tmp_path):
    lab = Lab(tmp_path, template=True)
    assert images.owned_files(lab.client, "vm1") == (set([lab.base]), set())


def test_owned_files_of_a_replaced_disk_stop_at_that_disk(tmp_path):
    lab = Lab(tmp_path)
    lab.take("s1")
    template = lab.path("golden.qcow2")
    other = lab.path("other.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", template, "1M")
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", template, other)
    lab.vm.xml = vm_xml("vm1", [disk_xml(other, "vda")])  # vda replaced by a linked clone of golden.qcow2
    files, mems = images.owned_files(lab.client, "vm1")
    assert mems == set()
    assert template not in files
    assert files == set([lab.base, lab.overlay("s1"), other])


# ---------------------------------------------------------------------------- 8. libvirt's own revert (>= 9.9)
def test_the_collections_engine_reverts_on_libvirt_11_while_the_native_revert_is_off(tmp_path):
    # what the product does today (reverts.py: libvirt 11.3's overlays break the collection's rules)
    lab = with_libvirt(two_snapshots(tmp_path), 11003000, native=False)
    changed, plan = lab.manager().revert("vm1", "s2")
    assert changed and plan["engine"] == "kvmfusion" and lab.calls("revertToSnapshot") == []
    assert reverts.RevertManager.native_revert is False


def with_libvirt(lab, version, native=True):
    """Give the fake host a libvirt version and record revertToSnapshot calls; ``native`` turns on the use of
    libvirt's own revert (off in the product, see reverts.py)."""
    lab.client.conn.getLibVersion = lambda: version
    lab.native = native

    def revert_to_snapshot(snap, flags):
        lab.client.log.append(("revertToSnapshot", snap.getName(), flags))
        return 0
    lab.vm.revertToSnapshot = revert_to_snapshot
    return lab


@pytest.mark.parametrize("state, flags", [(None, 0), ("running", constants.REVERT_RUNNING), ("paused", constants.REVERT_PAUSED)])
def test_libvirt_9_9_reverts_itself_where_it_does_what_was_asked(tmp_path, state, flags):
    lab = with_libvirt(two_snapshots(tmp_path), 9009000)
    before = tree(lab.dir)
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s2", state=state)  # s2 has no newer snapshot: nothing to discard
    assert changed and plan["engine"] == "libvirt"
    assert mgr.actions == ["revert to s2 with libvirt's own external revert", "refresh datastores"]
    assert lab.calls("revertToSnapshot") == [("revertToSnapshot", "s2", flags)]
    assert lab.calls("destroy") == []  # powered off only for state=stopped
    # libvirt did the work: the collection itself wrote, defined and deleted nothing
    assert lab.client.defined == [] and lab.runner.commands == [] and tree(lab.dir) == before


@pytest.mark.parametrize("version, kwargs, name", [
    (9008000, {}, "s2"),                                              # older libvirt
    (9009000, {}, "s1"),                                              # newer snapshots to discard
    (9009000, {"discard_newer": False, "save_current_as": "keep"}, "s2"),  # the current state is saved first
])
def test_our_own_revert_where_libvirt_cannot_do_what_was_asked(tmp_path, version, kwargs, name):
    lab = with_libvirt(two_snapshots(tmp_path), version)
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", name, **kwargs)
    assert changed and plan["engine"] == "kvmfusion"
    assert lab.calls("revertToSnapshot") == []
    assert lab.client.defined


def test_a_memory_snapshot_reverted_to_stopped_is_ours_on_libvirt_9_9(tmp_path):
    lab = with_libvirt(two_snapshots(tmp_path, running=True), 9009000)
    mgr = lab.manager()
    changed, plan = mgr.revert("vm1", "s2", state="stopped")
    assert changed and plan["engine"] == "kvmfusion"
    assert lab.calls("revertToSnapshot") == [] and lab.calls("restoreFlags") == []


# ---------------------------------------------------------------------------- 9. failures at each step
class Fail(Exception):
    pass


def failing_runner(lab):
    """qemu-img that writes a partial overlay and then fails (disk full)."""
    def runner(args):
        lab.runner.commands.append(list(args))
        with open(args[-1], "wb") as f:
            f.write(b"QFI\xfb partial")
        return 1, "", "qemu-img: %s: No space left on device" % args[-1]
    return runner


def test_a_failing_overlay_creation_changes_nothing(tmp_path):
    """Disk full while the new overlay is made: nothing was powered off, discarded, repointed or deleted."""
    lab = two_snapshots(tmp_path, running=True)
    before, xml_before, snaps_before = tree(lab.dir), lab.vm.xml, sorted(lab.vm.snaps)
    mgr = reverts.RevertManager(lab.client, run_command=failing_runner(lab))
    with pytest.raises(ValueError) as err:
        mgr.revert("vm1", "s1")
    assert "qemu-img create failed" in str(err.value) and "No space left" in str(err.value)
    assert tree(lab.dir) == before  # the partial overlay (under its temp name) is gone too
    assert lab.vm.xml == xml_before and sorted(lab.vm.snaps) == snaps_before and lab.vm.running
    assert lab.client.log == [] and lab.client.defined == []
    # the cause fixed, a re-run converges
    changed, plan = lab.manager().revert("vm1", "s1")
    assert changed and plan["disks"] == {"vda": lab.overlay("s1")}
    assert lab.manager().revert("vm1", "s1")[0] is False


@pytest.mark.parametrize("step", ["destroy", "snapshot.delete", "define", "snapshotCreateXML"])
def test_a_failure_at_any_later_step_leaves_the_vm_on_files_that_exist(tmp_path, step, monkeypatch):
    lab = two_snapshots(tmp_path)
    lab.vm.running = True
    s2 = lab.overlay("s2")
    orig_log = lab.client.log

    class FailingLog(list):
        def append(self, entry):
            list.append(self, entry)
            if entry[0] == step:
                raise Fail("libvirt failed at %s" % step)
    lab.client.log = FailingLog(orig_log)
    with pytest.raises(Fail):
        lab.manager().revert("vm1", "s1")
    lab.client.log = orig_log
    # every file the definition names exists, nothing under a temporary name is left
    for src in ET.fromstring(lab.vm.xml).iter("source"):
        if src.get("file"):
            assert os.path.exists(src.get("file")), (step, src.get("file"))
    assert not [n for n in os.listdir(lab.dir) if n.endswith("~new")]
    assert os.path.exists(s2)  # deleted only after the switch succeeded
    # and a re-run converges
    assert lab.manager().revert("vm1", "s1")[0] is True
    assert lab.manager().revert("vm1", "s1")[0] is False
    assert not os.path.exists(s2)


def test_a_vm_under_ha_is_refused_reverts_and_snapshot_deletes(tmp_path, monkeypatch):
    # both change the disk chain the cluster's definition copy starts the VM from
    lab = two_snapshots(tmp_path)
    before, xml_before = tree(lab.dir), lab.vm.xml
    monkeypatch.setattr(power, "ha_resource", lambda run, local, name: "kvmfusion-vm-" + name)
    for call, what in ((lambda: lab.manager().revert("vm1", "s1"), "reverting to snapshot 's1'"),
                       (lambda: snapshots.SnapshotManager(lab.client, run_command=lab.runner).absent("vm1", "s1"),
                        "deleting snapshot 's1'")):
        with pytest.raises(ValueError) as err:
            call()
        assert "VM 'vm1' is under HA (cluster resource kvmfusion-vm-vm1): %s is refused" % what in str(err.value)
        assert "\n" not in str(err.value)
    assert tree(lab.dir) == before and lab.vm.xml == xml_before and sorted(lab.vm.snaps) == ["s1", "s2"]
    assert lab.client.defined == [] and lab.runner.commands == []
