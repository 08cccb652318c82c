# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils.names import parse_size, validate_name

KiB, MiB, GiB, TiB, PiB = (1024 ** n for n in range(1, 6))


class TestValidateName:
    @pytest.mark.parametrize("value", [
        "vm1", "VM-01", "a", "ds_shared", "web.example.com", "pool:ssd", "c++", "9lives",
        "snap-2024-01-01T10:00", "x" * 64,
    ])
    def test_accepted(self, value):
        assert validate_name(value) == value

    @pytest.mark.parametrize("value, reason", [
        ("", "must not be empty"),
        ("x" * 65, "must be at most 64 characters long"),
        (" vm1", "must not start or end with whitespace"),
        ("vm1\n", "must not start or end with whitespace"),
        ("vm\x001", "must not contain control characters"),
        ("vm\x1b[31m", "must not contain control characters"),
        ("vm\x7f", "must not contain control characters"),
        ("a/b", "must not contain '/'"),
        ("../etc", "must not contain '/'"),
        ("a..b", "must not contain '..'"),
        ("a<b", "must not contain '<'"),
        ("a>b", "must not contain '>'"),
        ("a&b", "must not contain '&'"),
        ("a'b", "must not contain \"'\""),
        ('a"b', "must not contain '\"'"),
        ("vm 1", "must not contain whitespace"),
        ("vm\t1", "must not contain control characters"),
        ("-vm1", "must not start with '-'"),
        (".hidden", "must not start with '.'"),
        ("_vm1", "starting with a letter or digit"),
        ("vm$1", "may only contain letters, digits and '_', '-', '.', ':', '+'"),
        ("vm*", "may only contain letters, digits"),
        ("vm;rm", "may only contain letters, digits"),
        ("vm\\1", "may only contain letters, digits"),
        ("prüf", "may only contain letters, digits"),
        ("vm\u00a0", "must not start or end with whitespace"),
    ])
    def test_rejected(self, value, reason):
        with pytest.raises(ValueError) as exc:
            validate_name(value)
        message = str(exc.value)
        assert message.startswith("invalid name %r: " % value)
        assert reason in message
        assert "\n" not in message and "\r" not in message

    def test_message_names_kind(self):
        with pytest.raises(ValueError) as exc:
            validate_name("a/b", kind="datastore")
        assert str(exc.value) == "invalid datastore name 'a/b': must not contain '/'"

    def test_kind_already_ending_in_name(self):
        with pytest.raises(ValueError, match=r"^invalid volume name 'a\.\.b': must not contain '\.\.'$"):
            validate_name("a..b", kind="volume name")

    @pytest.mark.parametrize("value", [None, 12, ["vm1"], b"vm1", True])
    def test_not_a_string(self, value):
        with pytest.raises(ValueError) as exc:
            validate_name(value, kind="domain")
        assert str(exc.value) == "invalid domain name %r: must be a string" % (value,)

    def test_max_len(self):
        assert validate_name("x" * 100, max_len=100) == "x" * 100
        with pytest.raises(ValueError, match="at most 8 characters"):
            validate_name("abcdefghi", max_len=8)


class TestParseSize:
    @pytest.mark.parametrize("value, expected", [
        (0, 0),
        (1073741824, GiB),
        ("0", 0),
        ("512", 512),
        ("512B", 512),
        ("1K", KiB),
        ("10M", 10 * MiB),
        ("10G", 10 * GiB),
        ("2T", 2 * TiB),
        ("1P", PiB),
        ("1KiB", KiB),
        ("64MiB", 64 * MiB),
        ("20GiB", 20 * GiB),
        ("3TiB", 3 * TiB),
        ("1PiB", PiB),
        ("1KB", 1000),
        ("100MB", 100 * 10 ** 6),
        ("20GB", 20 * 10 ** 9),
        ("4TB", 4 * 10 ** 12),
        ("1PB", 10 ** 15),
        ("20 GiB", 20 * GiB),
        (" 20GiB ", 20 * GiB),
        ("1.5G", 1610612736),
        ("1.5GiB", 1610612736),
        ("0.5KiB", 512),
        ("2.5GB", 2500000000),
        ("1.0G", GiB),
        ("2.0B", 2),
        (10.0, 10),
        (1e9, 10 ** 9),
    ])
    def test_accepted(self, value, expected):
        result = parse_size(value)
        assert result == expected
        assert isinstance(result, int) and not isinstance(result, bool)

    @pytest.mark.parametrize("value, reason", [
        (-1, "must not be negative"),
        ("-1G", "must not be negative"),
        (-4096.0, "must not be negative"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        (True, "must be a number of bytes or a string such as '10GiB'"),
        (False, "must be a number of bytes or a string such as '10GiB'"),
        (None, "must be a number of bytes or a string such as '10GiB'"),
        ([10], "must be a number of bytes or a string such as '10GiB'"),
        (1.5, "must be a whole number of bytes"),
        (float("inf"), "must be a whole number of bytes"),
        (float("nan"), "must be a whole number of bytes"),
        ("1.5", "a fractional size needs a unit"),
        ("1.0", "a fractional size needs a unit"),
        ("0.5B", "must be a whole number of bytes"),
        ("1.0000001KiB", "must be a whole number of bytes"),
        ("10XB", "unknown unit 'XB'"),
        ("10gib", "unknown unit 'gib'"),
        ("10GIB", "unknown unit 'GIB'"),
        ("10g", "unknown unit 'g'"),
        ("10 bytes", "unknown unit 'bytes'"),
        ("G", "must be a number with an optional unit"),
        ("1,5G", "must be a number with an optional unit"),
        (".5G", "must be a number with an optional unit"),
        ("1.G", "must be a number with an optional unit"),
        ("1e9", "must be a number with an optional unit"),
        ("10 G B", "must be a number with an optional unit"),
        ("0x10", "must be a number with an optional unit"),
    ])
    def test_rejected(self, value, reason):
        with pytest.raises(ValueError) as exc:
            parse_size(value)
        message = str(exc.value)
        assert message.startswith("invalid size %r: " % (value,))
        assert reason in message
        assert "\n" not in message

    def test_unknown_unit_lists_accepted_units(self):
        with pytest.raises(ValueError) as exc:
            parse_size("5Gb")
        assert str(exc.value) == ("invalid size '5Gb': unknown unit 'Gb'; use B, K, M, G, T, P, "
                                  "KiB, MiB, GiB, TiB, PiB, KB, MB, GB, TB or PB")

    def test_message_names_kind(self):
        with pytest.raises(ValueError, match=r"^invalid disk size '1\.5': "):
            parse_size("1.5", kind="disk size")

    def test_single_letter_units_are_binary(self):
        for letter in "KMGTP":
            assert parse_size("3" + letter) == parse_size("3%siB" % letter)
            assert parse_size("3" + letter) != parse_size("3%sB" % letter)
