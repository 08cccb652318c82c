# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every condition in the collection's YAML (tests, roles, playbooks) is a string.

An unquoted condition holding ``": "`` (``- x is search('a: b')``) is a YAML mapping, not an expression:
ansible-core 2.18 takes it as true and asserts nothing (two clone checks and a migration check did). This
reads every task file the way Ansible does and names each such condition."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONDITIONS = ("when", "failed_when", "changed_when", "until")
ASSERTS = ("ansible.builtin.assert", "assert")


def _bad(node, where, out):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ASSERTS and isinstance(value, dict):
                that = value.get("that")
                out.extend("%s: assert %r" % (where, t) for t in (that if isinstance(that, list) else [that])
                           if not isinstance(t, str))
            if key in CONDITIONS:
                out.extend("%s: %s %r" % (where, key, t) for t in (value if isinstance(value, list) else [value])
                           if isinstance(t, (dict, list)))
            _bad(value, where, out)
    elif isinstance(node, list):
        for item in node:
            _bad(item, where, out)


def yaml_files():
    for part in ("tests", "roles", "playbooks"):
        for path in glob.glob(os.path.join(ROOT, part, "**", "*.yml"), recursive=True):
            if "/.cache/" not in path:
                yield path


def test_every_condition_is_an_expression_not_a_mapping():
    files = list(yaml_files())
    assert len(files) > 50
    out = []
    for path in files:
        with open(path) as f:
            _bad(yaml.safe_load(f), os.path.relpath(path, ROOT), out)
    assert out == []


def test_the_check_finds_an_unquoted_colon():
    out = []
    _bad(yaml.safe_load("- ansible.builtin.assert:\n    that:\n      - x is search('a: b')\n"), "f", out)
    _bad(yaml.safe_load("- debug: {}\n  when:\n    - y is search('c: d')\n"), "f", out)
    assert len(out) == 2
