# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""qcow2 header helpers of fileops (backing files, own data) and the linked-clone dependants of disks.

Images are real qcow2 files made by qemu-img in tmp_path; the libvirt side is a small fake client.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import subprocess
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import images as images_mod
from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops

QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")

pytestmark = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img is not installed")


def _run(args, cwd=None):
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, check=False)
    assert proc.returncode == 0, "%s failed: %s" % (" ".join(args), proc.stderr.decode("utf-8", "replace"))
    return proc.stdout.decode("utf-8", "replace")


def qcow2(path, backing=None, backing_fmt="qcow2", size="1M", cwd=None):
    """Create a qcow2 image (an overlay when ``backing`` is given) and return its path as a str."""
    path = str(path)
    args = [QEMU_IMG, "create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-F", backing_fmt, "-b", str(backing)]
    args.append(path)
    if backing is None:
        args.append(size)
    _run(args, cwd=None if cwd is None else str(cwd))
    return path


def raw(path, data=b"\0" * 65536):
    with open(str(path), "wb") as f:
        f.write(data)
    return str(path)


def write_data(path):
    """Write 64 KiB of 0xaa at offset 0 through qemu-io (skips the test without qemu-io)."""
    if QEMU_IO is None:
        pytest.skip("qemu-io is not installed")
    _run([QEMU_IO, "-f", "qcow2", "-c", "write -P 0xaa 0 64k", str(path)])


def qemu_img_info(path):
    return json.loads(_run([QEMU_IMG, "info", "-U", "--output=json", str(path)]))


# ------------------------------------------------------------------------------------ qcow2_backing

def test_qcow2_backing_is_none_for_a_qcow2_without_backing_file(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    assert fileops.qcow2_backing(base) is None


@pytest.mark.parametrize("data", [b"", b"QFI", b"\0" * 65536, b"not an image at all, just text\n" * 100,
                                  b"QFI\xfa" + b"\0" * 60])
def test_qcow2_backing_is_none_for_raw_and_short_files(tmp_path, data):
    path = raw(tmp_path / "disk.raw", data)
    assert fileops.qcow2_backing(path) is None


def test_qcow2_backing_returns_an_absolute_backing_name_as_is(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    (tmp_path / "vms").mkdir()
    overlay = qcow2(tmp_path / "vms" / "ov.qcow2", backing=base)
    assert fileops.qcow2_backing(overlay) == base


def test_qcow2_backing_agrees_with_qemu_img_info(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    overlay = qcow2(tmp_path / "ov.qcow2", backing=base)
    info = qemu_img_info(overlay)
    assert fileops.qcow2_backing(overlay) == info["full-backing-filename"]


def test_qcow2_backing_resolves_a_relative_name_against_the_image_directory(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    (tmp_path / "ov").mkdir()
    qcow2(tmp_path / "base" / "t.qcow2")
    overlay = qcow2(tmp_path / "ov" / "o.qcow2", backing="../base/t.qcow2", cwd=tmp_path / "ov")
    # the header really holds the relative name
    assert qemu_img_info(overlay)["backing-filename"] == "../base/t.qcow2"
    # and the result does not depend on the current directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(str(elsewhere))
    result = fileops.qcow2_backing(overlay)
    assert result == str(tmp_path / "base" / "t.qcow2")
    assert os.path.isabs(result)
    assert os.path.exists(result)


def test_qcow2_backing_with_a_name_in_the_same_directory(tmp_path):
    qcow2(tmp_path / "base.qcow2")
    overlay = qcow2(tmp_path / "ov.qcow2", backing="base.qcow2", cwd=tmp_path)
    assert fileops.qcow2_backing(overlay) == str(tmp_path / "base.qcow2")


def test_qcow2_backing_is_absolute_for_a_relative_image_path(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    (tmp_path / "ov").mkdir()
    qcow2(tmp_path / "base" / "t.qcow2")
    qcow2(tmp_path / "ov" / "o.qcow2", backing="../base/t.qcow2", cwd=tmp_path / "ov")
    monkeypatch.chdir(str(tmp_path))
    assert fileops.qcow2_backing(os.path.join("ov", "o.qcow2")) == str(tmp_path / "base" / "t.qcow2")


def test_qcow2_backing_of_an_overlay_on_a_raw_image(tmp_path):
    base = raw(tmp_path / "base.raw")
    overlay = qcow2(tmp_path / "ov.qcow2", backing=base, backing_fmt="raw")
    assert fileops.qcow2_backing(overlay) == base
    assert fileops.qcow2_backing(base) is None


def test_qcow2_backing_names_a_backing_file_that_no_longer_exists(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    overlay = qcow2(tmp_path / "ov.qcow2", backing=base)
    os.unlink(base)
    assert fileops.qcow2_backing(overlay) == base


def test_qcow2_backing_of_a_missing_file_raises_a_one_line_fileops_error(tmp_path):
    missing = str(tmp_path / "missing.qcow2")
    with pytest.raises(fileops.FileOpsError) as err:
        fileops.qcow2_backing(missing)
    assert err.value.path == missing
    assert str(err.value).startswith(missing + ": ")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ backing_chain

def test_backing_chain_of_a_standalone_image_is_the_image_alone(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    assert fileops.backing_chain(base) == [base]
    plain = raw(tmp_path / "plain.raw")
    assert fileops.backing_chain(plain) == [plain]


def test_backing_chain_lists_the_images_from_the_top_down(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    mid = qcow2(tmp_path / "mid.qcow2", backing=base)
    top = qcow2(tmp_path / "top.qcow2", backing=mid)
    assert fileops.backing_chain(top) == [top, mid, base]
    assert fileops.backing_chain(mid) == [mid, base]


def test_backing_chain_ends_at_a_raw_bottom_image(tmp_path):
    base = raw(tmp_path / "base.raw")
    mid = qcow2(tmp_path / "mid.qcow2", backing=base, backing_fmt="raw")
    top = qcow2(tmp_path / "top.qcow2", backing=mid)
    assert fileops.backing_chain(top) == [top, mid, base]


def test_backing_chain_follows_relative_names_to_absolute_paths(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "ov").mkdir()
    base = qcow2(tmp_path / "base" / "t.qcow2")
    mid = qcow2(tmp_path / "ov" / "mid.qcow2", backing="../base/t.qcow2", cwd=tmp_path / "ov")
    top = qcow2(tmp_path / "ov" / "top.qcow2", backing="mid.qcow2", cwd=tmp_path / "ov")
    assert fileops.backing_chain(top) == [top, mid, base]


def test_backing_chain_stops_at_a_missing_backing_file(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    top = qcow2(tmp_path / "top.qcow2", backing=base)
    os.unlink(base)
    assert fileops.backing_chain(top) == [top, base]


def test_backing_chain_of_a_missing_file_is_that_path(tmp_path):
    missing = str(tmp_path / "missing.qcow2")
    assert fileops.backing_chain(missing) == [missing]


def test_backing_chain_stops_at_a_loop(tmp_path):
    first = qcow2(tmp_path / "a.qcow2")
    second = qcow2(tmp_path / "b.qcow2", backing=first)
    # make a.qcow2 stand on b.qcow2: a loop no sane tool would create, but a header can say so
    _run([QEMU_IMG, "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", second, first])
    assert fileops.qcow2_backing(first) == second
    assert fileops.backing_chain(first) == [first, second]
    assert fileops.backing_chain(second) == [second, first]


def test_backing_chain_is_cut_at_the_limit(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    mid = qcow2(tmp_path / "mid.qcow2", backing=base)
    top = qcow2(tmp_path / "top.qcow2", backing=mid)
    assert fileops.backing_chain(top, limit=2) == [top, mid]
    assert fileops.backing_chain(top, limit=1) == [top]


# ----------------------------------------------------------------------------------- qcow2_has_data

def test_a_fresh_qcow2_has_no_data(tmp_path):
    assert fileops.qcow2_has_data(qcow2(tmp_path / "base.qcow2")) is False


def test_a_fresh_overlay_has_no_data_even_on_a_base_with_data(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    write_data(base)
    overlay = qcow2(tmp_path / "ov.qcow2", backing=base)
    assert fileops.qcow2_has_data(base) is True
    assert fileops.qcow2_has_data(overlay) is False


def test_a_qcow2_has_data_after_a_write(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    write_data(base)
    assert fileops.qcow2_has_data(base) is True


def test_an_overlay_has_data_after_a_write_and_its_base_does_not(tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    overlay = qcow2(tmp_path / "ov.qcow2", backing=base)
    write_data(overlay)
    assert fileops.qcow2_has_data(overlay) is True
    assert fileops.qcow2_has_data(base) is False


def test_a_large_qcow2_with_one_write_far_out_has_data(tmp_path):
    big = qcow2(tmp_path / "big.qcow2", size="64G")
    assert fileops.qcow2_has_data(big) is False
    if QEMU_IO is None:
        pytest.skip("qemu-io is not installed")
    _run([QEMU_IO, "-f", "qcow2", "-c", "write -P 0x55 60G 4k", big])
    assert fileops.qcow2_has_data(big) is True


@pytest.mark.parametrize("data", [b"", b"QFI\xfb", b"\0" * 65536, b"QFI\xfa" + b"\0" * 60])
def test_qcow2_has_data_refuses_a_file_that_is_not_qcow2(tmp_path, data):
    path = raw(tmp_path / "disk.raw", data)
    with pytest.raises(fileops.FileOpsError) as err:
        fileops.qcow2_has_data(path)
    assert err.value.path == path
    assert "not a qcow2 image" in str(err.value)


def test_qcow2_has_data_of_a_missing_file_raises_fileops_error(tmp_path):
    missing = str(tmp_path / "missing.qcow2")
    with pytest.raises(fileops.FileOpsError) as err:
        fileops.qcow2_has_data(missing)
    assert err.value.path == missing
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------ images_mod.dependants_of

def domain_xml(name, sources):
    """A persistent domain definition with one file disk per (path, target)."""
    devices = "".join(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>"
        "<target dev='%s' bus='virtio'/></disk>" % (path, target) for path, target in sources)
    return ("<domain type='kvm'><name>%s</name><memory unit='KiB'>1048576</memory>"
            "<os><type arch='x86_64'>hvm</type></os><devices>%s</devices></domain>" % (name, devices))


class FakeDom(object):
    def listAllSnapshots(self, flags):
        return []


class FakeClient(object):
    """The client calls dependants_of uses; ``live`` holds the XML of running VMs. No datastores: the
    images scanned are those in the directories of the images asked about."""

    def __init__(self, persistent, live=None):
        self.persistent = persistent
        self.live = live or {}
        self.calls = []

    def pool_names(self):
        return []

    def domain(self, name):
        return FakeDom() if name in self.persistent else None

    def call(self, action, obj, fn, *args):
        return fn(*args)

    def domain_names(self):
        self.calls.append(("domain_names",))
        return sorted(set(self.persistent) | set(self.live))

    def domain_xml(self, name, inactive=False):
        self.calls.append(("domain_xml", name, inactive))
        if inactive:
            return self.persistent.get(name)
        return self.live.get(name)


@pytest.fixture
def estate(tmp_path):
    """A template image, two linked clones c1 and c2 on it, an unrelated VM and the template VM itself."""
    images = {
        "template": qcow2(tmp_path / "template.qcow2"),
        "other": qcow2(tmp_path / "other.qcow2"),
        "unused": qcow2(tmp_path / "unused.qcow2"),
    }
    images["c1"] = qcow2(tmp_path / "c1-vda.qcow2", backing=images["template"])
    images["c2"] = qcow2(tmp_path / "c2-vda.qcow2", backing=images["template"])
    persistent = {
        "tpl": domain_xml("tpl", [(images["template"], "vda")]),
        "c1": domain_xml("c1", [(images["c1"], "vda")]),
        "c2": domain_xml("c2", [(images["c2"], "vda")]),
        "other": domain_xml("other", [(images["other"], "vda")]),
    }
    return images, persistent


def test_dependants_of_the_template_are_both_linked_clones(estate):
    images, persistent = estate
    found = images_mod.dependants_of(FakeClient(persistent), [images["template"]])
    # the template VM itself only uses the image, it does not stand on it
    assert found == {images["template"]: [("c1", "vda"), ("c2", "vda")]}


def test_dependants_of_excludes_the_given_vm(estate):
    images, persistent = estate
    found = images_mod.dependants_of(FakeClient(persistent), [images["template"]], exclude_vm="c1")
    assert found == {images["template"]: [("c2", "vda")]}
    assert images_mod.dependants_of(FakeClient(persistent), [images["c1"]], exclude_vm="c2") == {}


def test_dependants_of_a_path_nobody_stands_on_is_empty(estate):
    images, persistent = estate
    client = FakeClient(persistent)
    assert images_mod.dependants_of(client, [images["unused"]]) == {}
    # a disk in use as a VM's top image is not a backing file either
    assert images_mod.dependants_of(client, [images["c1"], images["other"]]) == {}


def test_dependants_of_reports_only_the_paths_that_have_dependants(estate):
    images, persistent = estate
    found = images_mod.dependants_of(FakeClient(persistent), [images["unused"], images["template"], None])
    assert sorted(found) == [images["template"]]


def test_dependants_of_nothing_asks_libvirt_nothing(estate):
    persistent = estate[1]
    client = FakeClient(persistent)
    assert images_mod.dependants_of(client, []) == {}
    assert images_mod.dependants_of(client, [None, ""]) == {}
    assert client.calls == []


def test_dependants_of_reads_the_whole_chain_below_a_vm(estate, tmp_path):
    images, persistent = estate
    # c1 has a snapshot: it now writes to an overlay on its clone overlay
    snap = qcow2(tmp_path / "c1-vda.s1.qcow2", backing=images["c1"])
    persistent["c1"] = domain_xml("c1", [(snap, "vda")])
    found = images_mod.dependants_of(FakeClient(persistent), [images["template"], images["c1"], snap])
    assert found == {images["template"]: [("c1", "vda"), ("c2", "vda")], images["c1"]: [("c1", "vda")]}


def test_dependants_of_finds_relative_backing_names(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "vms").mkdir()
    template = qcow2(tmp_path / "base" / "template.qcow2")
    overlay = qcow2(tmp_path / "vms" / "c1-vda.qcow2", backing="../base/template.qcow2", cwd=tmp_path / "vms")
    client = FakeClient({"c1": domain_xml("c1", [(overlay, "vda")])})
    assert images_mod.dependants_of(client, [template]) == {template: [("c1", "vda")]}


def test_dependants_of_lists_each_disk_of_a_vm_once(estate, tmp_path):
    images, persistent = estate
    second = qcow2(tmp_path / "c1-vdb.qcow2", backing=images["template"])
    persistent["c1"] = domain_xml("c1", [(images["c1"], "vda"), (second, "vdb")])
    # c1 runs: its live definition names the same disks again
    client = FakeClient(persistent, live={"c1": persistent["c1"]})
    found = images_mod.dependants_of(client, [images["template"]])
    assert found == {images["template"]: [("c1", "vda"), ("c1", "vdb"), ("c2", "vda")]}


def test_dependants_of_sees_disks_only_in_the_live_definition(estate, tmp_path):
    images, persistent = estate
    hotplugged = qcow2(tmp_path / "other-vdb.qcow2", backing=images["template"])
    live = {"other": domain_xml("other", [(images["other"], "vda"), (hotplugged, "vdb")])}
    found = images_mod.dependants_of(FakeClient(persistent, live=live), [images["template"]])
    assert found == {images["template"]: [("c1", "vda"), ("c2", "vda"), ("other", "vdb")]}


def test_dependants_of_ignores_block_disks_and_missing_files(estate, tmp_path):
    images, persistent = estate
    persistent["blk"] = ("<domain type='kvm'><name>blk</name><devices>"
                         "<disk type='block' device='disk'><source dev='%s'/><target dev='vda'/></disk>"
                         "<disk type='file' device='disk'><source file='%s'/><target dev='vdb'/></disk>"
                         "</devices></domain>" % (images["c1"], tmp_path / "gone.qcow2"))
    found = images_mod.dependants_of(FakeClient(persistent), [images["template"]])
    assert found == {images["template"]: [("c1", "vda"), ("c2", "vda")]}


# --------------------------------------------------------------------------- images_mod.describe_dependants

def test_describe_dependants_of_nothing_is_empty():
    assert images_mod.describe_dependants({}) == ""


def test_describe_dependants_names_each_base_and_its_users_sorted_by_path():
    found = {
        "/ds/web.qcow2": [("web-01", "vda")],
        "/ds/template.qcow2": [("c1", "vda"), ("c2", "vdb")],
    }
    assert images_mod.describe_dependants(found) == (
        "/ds/template.qcow2 is the base of c1 (vda), c2 (vdb); /ds/web.qcow2 is the base of web-01 (vda)")


def test_describe_dependants_of_a_real_estate(estate):
    images, persistent = estate
    text = images_mod.describe_dependants(images_mod.dependants_of(FakeClient(persistent), [images["template"]]))
    assert text == "%s is the base of c1 (vda), c2 (vda)" % images["template"]


def test_dependants_of_sees_clones_no_vm_of_this_host_uses(estate, tmp_path):
    """A linked clone defined on (or migrated to) another CNA of a shared datastore: its overlay is on the
    datastore every CNA sees, its VM is not in this host's list. The image itself tells."""
    images, persistent = estate
    elsewhere = qcow2(tmp_path / "c3-vda.qcow2", backing=images["template"])
    on_it = qcow2(tmp_path / "c3-vda.qcow2~s1.qcow2", backing=elsewhere)
    found = images_mod.dependants_of(FakeClient(persistent), [images["template"]])
    assert found == {images["template"]: sorted([("c1", "vda"), ("c2", "vda"), (elsewhere, "image"),
                                                 (on_it, "image")])}


def test_dependants_of_scans_every_datastore_of_the_host(estate, tmp_path):
    images, persistent = estate
    other_ds = tmp_path / "other-ds"
    other_ds.mkdir()
    far = qcow2(other_ds / "far-vda.qcow2", backing=images["template"])

    class WithDatastore(FakeClient):
        def pool_names(self):
            return ["other-ds"]

        def pool(self, name):
            pool = mock.MagicMock()
            pool.isActive.return_value = 1
            pool.XMLDesc.return_value = "<pool type='dir'><target><path>%s</path></target></pool>" % other_ds
            return pool

    found = images_mod.dependants_of(WithDatastore(persistent), [images["template"]])
    assert (far, "image") in found[images["template"]]
    assert images_mod.dependants_of(FakeClient(persistent), [images["template"]])[images["template"]] == \
        [("c1", "vda"), ("c2", "vda")]
