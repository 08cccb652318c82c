# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""python3 tools/extract_vmlinux.py BZIMAGE OUT: the uncompressed kernel (an ELF file) inside a bzImage.

QEMU boots such an ELF kernel directly through its PVH entry point (-kernel, or libvirt's <kernel>),
skipping the decompressor that the bzImage runs inside the guest, which under TCG takes several
seconds per boot. Only an ELF that carries the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, which a
kernel built with CONFIG_PVH has) is written; anything else exits 1 with one line and writes nothing.
Payloads compressed with xz, lzma, gzip or bzip2 are read with Python's standard library, zstd with
the zstd command.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import bz2
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

PVH_NOTE = 18  # XEN_ELFNOTE_PHYS32_ENTRY


def zstd(data):
    if shutil.which("zstd") is None:
        raise RuntimeError("the kernel is zstd-compressed; install with: apt-get install zstd")
    # The payload is followed by the rest of the bzImage: zstd decodes the first frame and stops there.
    res = subprocess.run(["zstd", "-qdc"], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return res.stdout


# (name, magic, decompress(bytes from the magic on) -> bytes); lzma last: its magic is short and ambiguous.
FORMATS = (
    ("xz", b"\xfd7zXZ\x00", lambda d: lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d)),
    ("zstd", b"\x28\xb5\x2f\xfd", zstd),
    ("gzip", b"\x1f\x8b\x08", lambda d: zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(d)),
    ("bzip2", b"BZh", lambda d: bz2.BZ2Decompressor().decompress(d)),
    ("lzma", b"\x5d\x00\x00", lambda d: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(d)),
)


def has_pvh_note(elf):
    """True when a 64-bit little-endian ELF has a Xen note of type PHYS32_ENTRY in a PT_NOTE segment."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\x00")
            if name == b"Xen" and ntype == PVH_NOTE:
                return True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False


def extract(image):
    for name, magic, decompress in FORMATS:
        start = image.find(magic)
        while start >= 0:
            try:
                elf = decompress(image[start:])
            except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError):
                elf = b""
            if has_pvh_note(elf):
                return name, elf
            start = image.find(magic, start + 1) if name == "lzma" else -1
    return None, None


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: python3 tools/extract_vmlinux.py BZIMAGE OUT\n")
        return 2
    with open(argv[1], "rb") as handle:
        image = handle.read()
    try:
        name, elf = extract(image)
    except RuntimeError as exc:
        sys.stderr.write("extract-vmlinux: %s\n" % exc)
        return 2
    if elf is None:
        sys.stderr.write("extract-vmlinux: %s holds no ELF kernel with a PVH entry point (a kernel without CONFIG_PVH, "
                         "or a compression this tool does not read)\n" % argv[1])
        return 1
    out = os.path.abspath(argv[2])
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), prefix=".vmlinux.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(elf)
        os.chmod(tmp, 0o644)
        os.rename(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    sys.stdout.write("extract-vmlinux: %s payload, %d bytes\n" % (name, len(elf)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
