# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/extract_vmlinux.py: finds the PVH-bootable ELF kernel inside a bzImage, and nothing else."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import bz2
import gzip
import importlib.util
import lzma
import os
import struct

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_spec = importlib.util.spec_from_file_location("extract_vmlinux", os.path.join(ROOT, "tools", "extract_vmlinux.py"))
extract_vmlinux = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(extract_vmlinux)


def pad(data):
    return data + b"\x00" * (-len(data) % 4)


def note(name, ntype, desc):
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def elf(notes):
    """A 64-bit little-endian ELF with one PT_NOTE segment holding NOTES (enough for the reader)."""
    phoff, phentsize = 64, 56
    body_off = phoff + phentsize
    header = b"\x7fELF\x02\x01\x01" + b"\x00" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, phoff, 0, 0, 64, phentsize, 1, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 4, body_off, 0, 0, len(notes), len(notes), 4)
    return header + ph + notes


PVH = elf(note(b"Xen\x00", 6, b"linux\x00") + note(b"Xen\x00", 18, struct.pack("<Q", 0x1000850)))
NO_PVH = elf(note(b"Xen\x00", 6, b"linux\x00") + note(b"GNU\x00", 18, b"\x00" * 8))
SETUP = b"MZ" + b"\x00" * 500 + b"HdrS" + b"\x00" * 300  # what precedes the payload in a bzImage


@pytest.mark.parametrize("name,compress", [
    ("xz", lambda d: lzma.compress(d, format=lzma.FORMAT_XZ)),
    ("gzip", lambda d: gzip.compress(d, mtime=0)),
    ("bzip2", bz2.compress),
])
def test_a_compressed_pvh_kernel_is_found(name, compress):
    found, kernel = extract_vmlinux.extract(SETUP + compress(PVH) + b"\x00" * 64)
    assert (found, kernel) == (name, PVH)


def test_an_elf_without_the_pvh_note_is_not_taken():
    assert extract_vmlinux.extract(SETUP + lzma.compress(NO_PVH, format=lzma.FORMAT_XZ)) == (None, None)


def test_main_writes_nothing_for_an_image_without_a_kernel(tmp_path, capsys):
    image = tmp_path / "vmlinuz"
    image.write_bytes(SETUP + gzip.compress(b"not a kernel"))
    out = tmp_path / "vmlinux"
    assert extract_vmlinux.main(["x", str(image), str(out)]) == 1
    assert sorted(os.listdir(str(tmp_path))) == ["vmlinuz"]
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no ELF kernel with a PVH entry point" in err


def test_main_writes_the_kernel_readable_by_qemu(tmp_path):
    image = tmp_path / "vmlinuz"
    image.write_bytes(SETUP + lzma.compress(PVH, format=lzma.FORMAT_XZ))
    out = tmp_path / "vmlinux"
    assert extract_vmlinux.main(["x", str(image), str(out)]) == 0
    assert out.read_bytes() == PVH
    assert os.stat(str(out)).st_mode & 0o777 == 0o644
    assert sorted(os.listdir(str(tmp_path))) == ["vmlinux", "vmlinuz"]
