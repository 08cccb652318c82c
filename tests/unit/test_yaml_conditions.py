# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every condition in the collection's YAML (tests, roles, playbooks) is a string.

An unquoted condition holding ``": "`` (``- x is search('a: b')``) is a YAML mapping, not an expression:
ansible-core 2.18 takes it as true and asserts nothing (two clone checks and a migration check did). This
reads every task file the way Ansible does and names each such condition, and each condition that is (or
has an and/or/not operand that is) a string literal, always true."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import warnings

import yaml
from jinja2 import Environment, nodes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONDITIONS = ("when", "failed_when", "changed_when", "until")
ASSERTS = ("ansible.builtin.assert", "assert")


def _constant_string(cond):
    """Whether the expression ``cond``, or an operand of its and/or/not, is a string literal: always true
    (``x is failed and "'\\n' not in x.msg"`` checks nothing after the and; ansible-core 2.19 refuses it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # regex escapes in string literals ('\\d')
            tree = Environment().parse("{{ %s }}" % cond)
    except Exception:  # pylint: disable=broad-except
        return False  # not for this test to judge: Ansible reports templates it cannot parse

    def walk(node):
        if isinstance(node, nodes.Const) and isinstance(node.value, str):
            return True
        if isinstance(node, (nodes.And, nodes.Or)):
            return walk(node.left) or walk(node.right)
        if isinstance(node, nodes.Not):
            return walk(node.node)
        if isinstance(node, nodes.CondExpr):
            return walk(node.expr1) or (node.expr2 is not None and walk(node.expr2))
        return False
    return any(walk(out.nodes[0]) for out in tree.find_all(nodes.Output) if len(out.nodes) == 1)


def _bad(node, where, out):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ASSERTS and isinstance(value, dict):
                that = value.get("that")
                out.extend("%s: assert %r" % (where, t) for t in (that if isinstance(that, list) else [that])
                           if not isinstance(t, str) or _constant_string(t))
            if key in CONDITIONS:
                out.extend("%s: %s %r" % (where, key, t) for t in (value if isinstance(value, list) else [value])
                           if isinstance(t, (dict, list)) or (isinstance(t, str) and _constant_string(t)))
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


def test_the_check_finds_a_string_literal_that_is_always_true():
    out = []
    _bad(yaml.safe_load("""- assert:
    that:
      - x is failed and "'\\n' not in x.msg"
      - "'\\n' not in x.msg"
      - y if z else 'n'
      - not 'a'
- debug: {}
  when: a or "b"
"""), "f", out)
    assert len(out) == 4, out
    assert "x is failed" in out[0] and "y if z" in out[1] and "not 'a'" in out[2] and out[3].startswith("f: when")
