# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""fileops on real files in tmp_path (ext4 on the dev machine), qcow2 through the real qemu-img.

A test is skipped only when the filesystem under tmp_path lacks the feature it
exercises (FIEMAP, unwritten extents, hole punching, user xattrs).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import os
import subprocess

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops
from ansible_collections.kvmfusion.compute.plugins.module_utils.fileops import Extent, FileOpsError

KiB, MiB = 1024, 1024 * 1024
PATTERN = os.urandom(3 * 4096 + 123)


def _write(path, offset, data, sync=True):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def _read(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest(), os.path.getsize(path)


def _sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


def _qemu_img(*args):
    return subprocess.run(["qemu-img"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)


def _all_zero(path, start, end):
    return _read(path, start, end - start) == bytes(end - start)


class TestExtentMap:
    def test_sparse_file_has_no_extents(self, fsdir):
        path = _sparse(fsdir / "sparse", 8 * MiB)
        assert fileops.extent_map(path) == []

    def test_sparse_file_with_one_written_block(self, fsdir):
        path = _sparse(fsdir / "sparse", 8 * MiB)
        _write(path, 4 * MiB, b"x" * 4096)
        assert fileops.extent_map(path) == [Extent(4 * MiB, 4096, False)]

    def test_fallocated_file_is_one_unwritten_run(self, fsdir):
        path = str(fsdir / "lazy")
        fileops.reserve(path, 300 * MiB)  # longer than one ext4 extent: runs are merged
        assert fileops.extent_map(path) == [Extent(0, 300 * MiB, True)]

    def test_written_file_is_one_written_run(self, fsdir):
        path = str(fsdir / "written")
        with open(path, "wb") as f:
            f.write(os.urandom(8 * MiB))
        assert fileops.extent_map(path) == [Extent(0, 8 * MiB, False)]

    def test_mixed_file(self, fsdir):
        path = str(fsdir / "mixed")
        fileops.reserve(path, 8 * MiB)
        _write(path, 2 * MiB, b"y" * MiB)
        assert fileops.extent_map(path) == [Extent(0, 2 * MiB, True), Extent(2 * MiB, MiB, False), Extent(3 * MiB, 5 * MiB, True)]

    def test_missing_file_is_a_one_line_error_naming_the_path(self, tmp_path):
        path = str(tmp_path / "absent")
        with pytest.raises(FileOpsError) as err:
            fileops.extent_map(path)
        assert str(err.value).startswith(path + ": open failed")
        assert "\n" not in str(err.value)
        assert err.value.path == path

    def test_fiemap_unsupported(self, tmp_path, monkeypatch):
        path = _sparse(tmp_path / "f", MiB)

        def refuse(*args):
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        monkeypatch.setattr(fileops.fcntl, "ioctl", refuse)
        with pytest.raises(FileOpsError, match="does not support FIEMAP"):
            fileops.extent_map(path)

    def test_fiemap_unsupported_on_a_real_tmpfs(self):
        shm = "/dev/shm"
        if not os.path.isdir(shm) or os.statvfs(shm).f_fsid == os.statvfs("/").f_fsid:
            pytest.skip("no separate /dev/shm filesystem to try")
        path = os.path.join(shm, "kvmfusion-fileops-test-%d" % os.getpid())
        try:
            _sparse(path, MiB)
            try:
                fileops.extent_map(path)
            except FileOpsError as exc:
                assert "does not support FIEMAP" in str(exc)
            else:
                pytest.skip("the filesystem of /dev/shm supports FIEMAP")
        finally:
            os.unlink(path)


class TestDetect:
    def test_thin(self, fsdir):
        assert fileops.detect_provisioning(_sparse(fsdir / "thin", 8 * MiB)) == "thin"

    def test_thin_with_one_hole_block(self, fsdir):
        path = str(fsdir / "almost")
        with open(path, "wb") as f:
            f.write(b"z" * (8 * MiB))
        assert fileops.punch_zeroes(path) == 0
        _write(path, MiB, bytes(4096))
        fileops.punch_zeroes(path, block=4096)
        assert fileops.detect_provisioning(path) == "thin"

    def test_thin_beyond_the_end_of_the_file(self, fsdir):
        path = str(fsdir / "short")
        with open(path, "wb") as f:
            f.write(b"z" * MiB)
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"
        assert fileops.detect_provisioning(path, 2 * MiB) == "thin"

    def test_lazy(self, fsdir):
        path = str(fsdir / "lazy")
        fileops.reserve(path, 8 * MiB)
        assert fileops.detect_provisioning(path) == "thick_lazy_zeroed"

    def test_lazy_when_partly_written(self, fsdir):
        path = str(fsdir / "lazy")
        fileops.reserve(path, 8 * MiB)
        _write(path, 0, PATTERN)
        assert fileops.detect_provisioning(path) == "thick_lazy_zeroed"

    def test_eager(self, fsdir):
        path = str(fsdir / "eager")
        with open(path, "wb") as f:
            f.write(bytes(8 * MiB))
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"

    def test_eager_with_unaligned_size(self, fsdir):
        path = str(fsdir / "eager")
        with open(path, "wb") as f:
            f.write(bytes(8 * MiB + 1234))
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"

    def test_limit_fully_written_thin_file_reads_as_eager(self, fsdir):
        path = _sparse(fsdir / "thin", MiB)
        _write(path, 0, os.urandom(MiB))
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"

    def test_allocated_bytes(self, fsdir):
        path = _sparse(fsdir / "thin", 8 * MiB)
        assert fileops.allocated_bytes(path) == 0
        fileops.reserve(path, 8 * MiB)
        assert fileops.allocated_bytes(path) >= 8 * MiB


class TestReserve:
    def test_creates_a_private_file(self, fsdir):
        path = str(fsdir / "new")
        fileops.reserve(path, 3 * MiB + 5)
        assert os.path.getsize(path) == 3 * MiB + 5
        assert os.stat(path).st_mode & 0o077 == 0
        assert _all_zero(path, 0, 3 * MiB + 5)

    def test_keeps_existing_data_and_extends(self, fsdir):
        path = _sparse(fsdir / "old", 2 * MiB)
        _write(path, MiB + 17, PATTERN)
        fileops.reserve(path, 8 * MiB)
        assert os.path.getsize(path) == 8 * MiB
        assert _read(path, MiB + 17, len(PATTERN)) == PATTERN
        assert _all_zero(path, 0, MiB + 17)
        assert fileops.detect_provisioning(path) == "thick_lazy_zeroed"

    def test_never_shrinks(self, fsdir):
        path = _sparse(fsdir / "big", 8 * MiB)
        fileops.reserve(path, MiB)
        assert os.path.getsize(path) == 8 * MiB


class TestZeroUnwritten:
    def test_lazy_becomes_eager_without_touching_written_data(self, fsdir):
        path = str(fsdir / "disk")
        fileops.reserve(path, 16 * MiB)
        _write(path, 5 * MiB + 100, PATTERN)
        unwritten = sum(ext.length for ext in fileops.extent_map(path) if ext.unwritten)
        assert 0 < unwritten < 16 * MiB

        written = fileops.zero_unwritten(path)

        assert written == unwritten
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"
        assert fileops.extent_map(path) == [Extent(0, 16 * MiB, False)]
        assert _read(path, 5 * MiB + 100, len(PATTERN)) == PATTERN
        assert _all_zero(path, 0, 5 * MiB + 100)
        assert _all_zero(path, 5 * MiB + 100 + len(PATTERN), 16 * MiB)
        assert os.path.getsize(path) == 16 * MiB

    def test_written_data_is_not_rewritten(self, fsdir, monkeypatch):
        path = str(fsdir / "disk")
        fileops.reserve(path, 8 * MiB)
        _write(path, 2 * MiB, b"d" * (2 * MiB))
        writes = []
        real_pwrite = os.pwrite

        def spy(fd, data, offset):
            writes.append((offset, offset + len(data)))
            return real_pwrite(fd, data, offset)
        monkeypatch.setattr(fileops.os, "pwrite", spy)
        assert fileops.zero_unwritten(path) == 6 * MiB
        assert all(end <= 2 * MiB or start >= 4 * MiB for start, end in writes)
        assert _read(path, 2 * MiB, 2 * MiB) == b"d" * (2 * MiB)

    def test_thin_becomes_eager_with_same_content(self, fsdir):
        path = _sparse(fsdir / "thin", 8 * MiB)
        _write(path, 3 * MiB, PATTERN)
        before = _sha256(path)
        fileops.zero_unwritten(path)
        assert _sha256(path) == before
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"

    def test_eager_file_is_left_alone(self, fsdir):
        path = str(fsdir / "eager")
        with open(path, "wb") as f:
            f.write(bytes(4 * MiB))
        assert fileops.zero_unwritten(path) == 0

    def test_progress_is_monotone_sparse_and_ends_at_total(self, fsdir):
        path = str(fsdir / "disk")
        size = 200 * MiB
        fileops.reserve(path, size)
        calls = []
        assert fileops.zero_unwritten(path, progress=lambda done, total: calls.append((done, total))) == size
        assert calls[-1] == (size, size)
        assert all(total == size for done, total in calls)
        dones = [done for done, total in calls]
        assert dones == sorted(set(dones))
        assert len(calls) <= size // (64 * MiB) + 1
        assert all(later - earlier >= 64 * MiB for earlier, later in zip(dones, dones[1:-1]))

    def test_unaligned_size(self, fsdir):
        path = str(fsdir / "odd")
        size = 8 * MiB + 1234
        fileops.reserve(path, size)
        assert fileops.zero_unwritten(path) >= size
        assert os.path.getsize(path) == size
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"
        assert _all_zero(path, 0, size)

    def test_unaligned_range_end_is_written_buffered(self, fsdir):
        path = _sparse(fsdir / "thin", 16 * MiB)
        limit = 5 * MiB + 777
        assert fileops.zero_unwritten(path, size=limit) == limit
        assert fileops.extent_map(path) == [Extent(0, 5 * MiB + 4096, False)]
        assert os.path.getsize(path) == 16 * MiB

    def test_size_beyond_the_end_extends_the_file(self, fsdir):
        path = _sparse(fsdir / "thin", MiB)
        assert fileops.zero_unwritten(path, size=2 * MiB) == 2 * MiB
        assert os.path.getsize(path) == 2 * MiB

    def test_unaligned_head_body_and_tail(self, fsdir):
        path = str(fsdir / "raw")
        with open(path, "wb") as f:
            f.write(b"\xff" * (64 * KiB))
        fd = os.open(path, os.O_WRONLY)
        writer = fileops._ZeroWriter(path, fd, 8192, 0, None)
        try:
            writer.zero(100, 5 * 4096 + 5)
        finally:
            writer.close()
            os.close(fd)
        assert writer.done == 5 * 4096 + 5 - 100
        assert _read(path, 0, 100) == b"\xff" * 100
        assert _all_zero(path, 100, 5 * 4096 + 5)
        assert _read(path, 5 * 4096 + 5, 64 * KiB - 5 * 4096 - 5) == b"\xff" * (64 * KiB - 5 * 4096 - 5)

    @pytest.mark.parametrize("refuse", ["open", "write"])
    def test_falls_back_to_buffered_writes_when_o_direct_is_refused(self, fsdir, monkeypatch, refuse):
        import fcntl
        path = str(fsdir / "disk")
        fileops.reserve(path, 8 * MiB)
        _write(path, MiB, PATTERN)
        refused = []
        real_open, real_pwrite = os.open, os.pwrite

        def fake_open(name, flags, *args):
            if refuse == "open" and flags & os.O_DIRECT:
                refused.append(name)
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            return real_open(name, flags, *args)

        def fake_pwrite(fd, data, offset):
            if refuse == "write" and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                refused.append(offset)
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            return real_pwrite(fd, data, offset)
        monkeypatch.setattr(fileops.os, "open", fake_open)
        monkeypatch.setattr(fileops.os, "pwrite", fake_pwrite)
        written = fileops.zero_unwritten(path)
        monkeypatch.undo()

        assert len(refused) == 1
        assert written == 8 * MiB - 4 * 4096
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"
        assert _read(path, MiB, len(PATTERN)) == PATTERN

    def test_without_fiemap_holes_are_found_with_seek_hole(self, fsdir, monkeypatch):
        path = _sparse(fsdir / "thin", 8 * MiB)
        _write(path, 2 * MiB, PATTERN)
        before = _sha256(path)

        def refuse(*args):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        monkeypatch.setattr(fileops.fcntl, "ioctl", refuse)
        assert fileops.zero_unwritten(path) == 8 * MiB - 4 * 4096
        monkeypatch.undo()
        assert _sha256(path) == before
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"

    def test_chunk_must_be_aligned(self, fsdir):
        with pytest.raises(ValueError):
            fileops.zero_unwritten(_sparse(fsdir / "f", MiB), chunk=1000)


@pytest.fixture
def punch_dir(fsdir):
    probe = _sparse(fsdir / "punch-probe", 64 * KiB)
    with open(probe, "r+b") as f:
        f.write(bytes(64 * KiB))
    try:
        fileops.punch_zeroes(probe)
    except FileOpsError as exc:
        pytest.skip("filesystem of %s: %s" % (fsdir, exc))
    finally:
        os.unlink(probe)
    return fsdir


class TestPunchZeroes:
    def test_content_identical_and_space_released(self, punch_dir):
        path = str(punch_dir / "eager")
        size = 16 * MiB + 4321
        data = bytearray(size)
        data[3 * MiB + 7:3 * MiB + 7 + len(PATTERN)] = PATTERN
        data[9 * MiB:10 * MiB] = os.urandom(MiB)
        data[-10:] = b"tail-bytes"
        with open(path, "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        before, allocated = _sha256(path), fileops.allocated_bytes(path)

        released = fileops.punch_zeroes(path)

        assert _sha256(path) == before
        assert released == allocated - fileops.allocated_bytes(path)
        assert fileops.allocated_bytes(path) <= 2 * MiB
        assert released >= size - 2 * MiB
        assert fileops.detect_provisioning(path) == "thin"

    def test_unwritten_extents_are_released(self, punch_dir):
        path = str(punch_dir / "lazy")
        fileops.reserve(path, 8 * MiB)
        _write(path, 4 * MiB, PATTERN)
        before = _sha256(path)
        assert fileops.punch_zeroes(path) >= 8 * MiB - 64 * KiB
        assert _sha256(path) == before
        assert not any(ext.unwritten for ext in fileops.extent_map(path))
        assert fileops.detect_provisioning(path) == "thin"

    def test_thin_file_stays_as_it_is(self, punch_dir):
        path = _sparse(punch_dir / "thin", 8 * MiB)
        _write(path, MiB, os.urandom(MiB))
        before, extents = _sha256(path), fileops.extent_map(path)
        assert fileops.punch_zeroes(path) == 0
        assert (_sha256(path), fileops.extent_map(path)) == (before, extents)

    def test_block_must_be_aligned(self, fsdir):
        with pytest.raises(ValueError):
            fileops.punch_zeroes(_sparse(fsdir / "f", MiB), block=1000)


class TestIntent:
    def test_roundtrip_and_absent(self, xattr_dir):
        path = _sparse(xattr_dir / "disk", MiB)
        assert fileops.get_intent(path) is None
        assert fileops.set_intent(path, "thick_eager_zeroed") is True
        assert fileops.get_intent(path) == "thick_eager_zeroed"
        assert fileops.set_intent(path, "thin") is True
        assert fileops.get_intent(path) == "thin"

    def test_a_label_never_hides_holes(self, xattr_dir):
        path = _sparse(xattr_dir / "disk", MiB)
        assert fileops.provisioning_of(path) == "thin"
        for label in ("thick_lazy_zeroed", "thick_eager_zeroed", "bogus"):
            os.setxattr(path, fileops.INTENT_XATTR, label.encode())
            assert fileops.measure_provisioning(path) == {
                "provisioning": "thin", "measured": "thin", "label": None if label == "bogus" else label,
                "source": "extents"}

    def test_an_eager_label_on_holes_punched_later_reads_thin(self, xattr_dir):
        path = str(xattr_dir / "disk")
        with open(path, "wb") as f:
            f.write(b"\x01" * MiB)
        fileops.set_intent(path, "thick_eager_zeroed")
        assert fileops.measure_provisioning(path)["provisioning"] == "thick_eager_zeroed"
        fd = os.open(path, os.O_RDWR)
        try:
            fileops._punch(path, fd, 64 * 1024, 64 * 1024)
        finally:
            os.close(fd)
        assert fileops.measure_provisioning(path) == {
            "provisioning": "thin", "measured": "thin", "label": "thick_eager_zeroed", "source": "extents"}

    def test_an_eager_label_on_unwritten_extents_reads_lazy(self, xattr_dir):
        path = str(xattr_dir / "disk")
        fileops.reserve(path, MiB)
        fileops.set_intent(path, "thick_eager_zeroed")
        assert fileops.measure_provisioning(path) == {
            "provisioning": "thick_lazy_zeroed", "measured": "thick_lazy_zeroed", "label": "thick_eager_zeroed",
            "source": "extents"}

    @pytest.mark.parametrize("label", ["thin", "thick_lazy_zeroed"])
    def test_a_weaker_label_explains_a_fully_written_file(self, xattr_dir, label):
        path = str(xattr_dir / "disk")
        with open(path, "wb") as f:
            f.write(b"\x01" * MiB)
        assert fileops.measure_provisioning(path)["source"] == "extents"
        fileops.set_intent(path, label)
        assert fileops.measure_provisioning(path) == {
            "provisioning": label, "measured": "thick_eager_zeroed", "label": label, "source": "label"}

    def test_without_fiemap_holes_still_decide(self, xattr_dir, monkeypatch):
        path = _sparse(xattr_dir / "disk", MiB)
        fileops.set_intent(path, "thick_eager_zeroed")

        def no_fiemap(path, size=None, fmt=None):
            raise FileOpsError(path, "FIEMAP is not supported")
        monkeypatch.setattr(fileops, "detect_provisioning", no_fiemap)
        assert fileops.measure_provisioning(path)["provisioning"] == "thin"
        with open(path, "wb") as f:
            f.write(b"\x01" * MiB)
        assert fileops.measure_provisioning(path) == {
            "provisioning": "thick_eager_zeroed", "measured": None, "label": "thick_eager_zeroed", "source": "label"}

    def test_invalid_value(self, tmp_path):
        with pytest.raises(ValueError):
            fileops.set_intent(_sparse(tmp_path / "disk", MiB), "thick")

    def test_missing_file(self, tmp_path):
        path = str(tmp_path / "absent")
        with pytest.raises(FileOpsError, match="^%s: " % path):
            fileops.get_intent(path)
        with pytest.raises(FileOpsError, match="^%s: " % path):
            fileops.set_intent(path, "thin")

    def test_filesystem_without_user_xattrs(self, tmp_path, monkeypatch):
        path = _sparse(tmp_path / "disk", MiB)

        def unsupported(*args):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        monkeypatch.setattr(fileops.os, "getxattr", unsupported)
        monkeypatch.setattr(fileops.os, "setxattr", unsupported)
        assert fileops.get_intent(path) is None
        assert fileops.set_intent(path, "thin") is False
        with pytest.raises(FileOpsError, match="does not support user extended attributes"):
            fileops.set_intent(path, "thin", strict=True)


class TestQcow2:
    def test_thin_qcow2(self, fsdir):
        path = str(fsdir / "thin.qcow2")
        res = _qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=1.1", path, "64M")
        assert res.returncode == 0, res.stdout
        assert fileops.detect_provisioning(path) == "thin"
        assert fileops.detect_provisioning(path, fmt="raw") == "thick_eager_zeroed"

    def test_metadata_preallocated_qcow2_is_thin(self, fsdir):
        path = str(fsdir / "meta.qcow2")
        res = _qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=1.1,preallocation=metadata", path, "64M")
        assert res.returncode == 0, res.stdout
        assert os.path.getsize(path) > 64 * MiB
        assert fileops.detect_provisioning(path) == "thin"

    def test_falloc_qcow2_is_lazy_and_zeroing_makes_it_eager(self, fsdir):
        path = str(fsdir / "disk.qcow2")
        thin = str(fsdir / "thin.qcow2")
        res = _qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=1.1,preallocation=falloc", path, "64M")
        assert res.returncode == 0, res.stdout
        assert fileops.detect_provisioning(path) == "thick_lazy_zeroed"
        size = os.path.getsize(path)

        assert fileops.zero_unwritten(path) >= 64 * MiB

        assert os.path.getsize(path) == size
        assert fileops.detect_provisioning(path) == "thick_eager_zeroed"
        check = _qemu_img("check", path)
        assert check.returncode == 0, check.stdout
        assert "No errors were found" in check.stdout
        res = _qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=1.1", thin, "64M")
        assert res.returncode == 0, res.stdout
        compare = _qemu_img("compare", "-f", "qcow2", "-F", "qcow2", path, thin)
        assert compare.returncode == 0, compare.stdout
        assert "Images are identical" in compare.stdout


def test_lease_held_sees_another_process_write_lock(tmp_path):
    """virtlockd's direct lease of a running VM's disk is a write lock on byte 0, held by another process."""
    import subprocess
    import sys
    import time
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\0" * 4096)
    assert fileops.lease_held(str(path)) is False
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'r+')\n"
        "fcntl.lockf(f, fcntl.LOCK_EX, 1, 0)\n"
        "print('locked', flush=True)\n"
        "time.sleep(30)\n"), str(path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        assert fileops.lease_held(str(path)) is True
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    assert fileops.lease_held(str(path)) is False
    assert fileops.lease_held(str(tmp_path / "missing")) is None
