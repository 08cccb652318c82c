# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Central validation of object names and sizes.

Names end up in file paths on shared datastores and in libvirt XML, so they are
checked once here, before anything changes. No Ansible imports.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import re
from decimal import Decimal

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")
_XML_META = "<>&'\""

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")
# Single-letter suffixes are binary, as in qemu-img and libvirt: 10G == 10GiB.
SIZE_UNITS = {
    "": 1, "B": 1,
    "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4, "P": 1024 ** 5,
    "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "TiB": 1024 ** 4, "PiB": 1024 ** 5,
    "KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "TB": 1000 ** 4, "PB": 1000 ** 5,
}
_UNIT_LIST = "B, K, M, G, T, P, KiB, MiB, GiB, TiB, PiB, KB, MB, GB, TB or PB"


def _label(kind):
    return kind if kind.endswith("name") else "%s name" % kind


def validate_name(value, kind="name", max_len=64):
    """Return ``value`` if it is a safe object name, else raise a one-line ValueError.

    Allowed: ASCII letters, digits and ``_ - . : +``, starting with a letter or
    digit, without '..', at most ``max_len`` characters.
    """
    label = _label(kind)
    if not isinstance(value, str):
        raise ValueError("invalid %s %r: must be a string" % (label, value))

    def bad(reason):
        return ValueError("invalid %s %r: %s" % (label, value, reason))

    if not value:
        raise bad("must not be empty")
    if len(value) > max_len:
        raise bad("must be at most %d characters long" % max_len)
    if value != value.strip():
        raise bad("must not start or end with whitespace")
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in value):
        raise bad("must not contain control characters")
    if "/" in value:
        raise bad("must not contain '/'")
    if ".." in value:
        raise bad("must not contain '..'")
    for char in _XML_META:
        if char in value:
            raise bad("must not contain %r" % char)
    if any(char.isspace() for char in value):
        raise bad("must not contain whitespace")
    if value[0] in "-.":
        raise bad("must not start with '%s'" % value[0])
    if not _NAME.match(value):
        raise bad("may only contain letters, digits and '_', '-', '.', ':', '+', starting with a letter or digit")
    return value


def parse_size(value, kind="size"):
    """Return a size in bytes from an int, an integral float or a string such as '10GiB'.

    Strings: a number with an optional unit. Single-letter units (K M G T P) are
    binary like qemu-img; KiB..PiB are binary; KB..PB are decimal; B or no unit is
    bytes. A fraction needs a unit and must come to a whole number of bytes
    ('1.5GiB' is fine, '1.5' and '0.5B' are not). Raises a one-line ValueError.
    """
    def bad(reason):
        return ValueError("invalid %s %r: %s" % (kind, value, reason))

    if isinstance(value, bool):
        raise bad("must be a number of bytes or a string such as '10GiB'")
    if isinstance(value, int):
        if value < 0:
            raise bad("must not be negative")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise bad("must be a whole number of bytes")
        if value < 0:
            raise bad("must not be negative")
        return int(value)
    if not isinstance(value, str):
        raise bad("must be a number of bytes or a string such as '10GiB'")

    text = value.strip()
    if not text:
        raise bad("must not be empty")
    if text.startswith("-"):
        raise bad("must not be negative")
    match = _SIZE.match(text)
    if not match:
        raise bad("must be a number with an optional unit, such as '10GiB'")
    number, unit = match.groups()
    if unit not in SIZE_UNITS:
        raise bad("unknown unit '%s'; use %s" % (unit, _UNIT_LIST))
    if "." in number and not unit:
        raise bad("a fractional size needs a unit, such as '1.5GiB'")
    size = Decimal(number) * SIZE_UNITS[unit]
    if size != size.to_integral_value():
        raise bad("must be a whole number of bytes")
    return int(size)
