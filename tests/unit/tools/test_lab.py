# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/lab.py: what a lab host's /etc masks of the machine's units."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_spec = importlib.util.spec_from_file_location("lab", os.path.join(ROOT, "tools", "lab.py"))
lab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lab)


def masked(d, unit):
    p = os.path.join(d, "etc.upper", "systemd/system", unit)
    return os.path.islink(p) and os.readlink(p) == "/dev/null"


def test_cluster_units_masked_when_the_host_is_made(tmp_path):
    lab.mask_units(str(tmp_path))
    for unit in lab.MASKED_UNITS + lab.ROLE_UNITS:
        assert masked(str(tmp_path), unit), unit


def test_a_role_unmasked_cluster_unit_stays_unmasked_at_the_next_boot(tmp_path):
    d = str(tmp_path)
    lab.mask_units(d)
    os.unlink(os.path.join(d, "etc.upper", "systemd/system", "corosync.service"))  # the cna role: masked: false
    lab.mask_units(d)  # the host boots again (its BMC powered it on)
    assert not os.path.lexists(os.path.join(d, "etc.upper", "systemd/system", "corosync.service"))
    assert masked(d, "pacemaker.service")
    assert masked(d, "systemd-udevd.service")


def test_hardware_units_are_masked_again_at_every_boot(tmp_path):
    d = str(tmp_path)
    lab.mask_units(d)
    os.unlink(os.path.join(d, "etc.upper", "systemd/system", "systemd-udevd.service"))
    lab.mask_units(d)
    assert masked(d, "systemd-udevd.service")


def test_no_unit_is_in_both_lists():
    assert not set(lab.MASKED_UNITS) & set(lab.ROLE_UNITS)
