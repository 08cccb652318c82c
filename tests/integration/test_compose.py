# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules composed: tests/integration/compose/play.yml applied, applied again, then run in check and diff
mode on the lab. The second run and the check run must report changed=0 on every task, and show no diff."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
PLAY = os.path.join(HERE, "compose", "play.yml")
CLEANUP = os.path.join(HERE, "compose", "cleanup.yml")


def playbook(lab, path, *args):
    res = subprocess.run(["ansible-playbook", "-i", lab.inventory, path] + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=1800, check=False)
    print(res.stdout[-20000:])
    return res


def recap(output):
    return dict((m.group(1), int(m.group(2))) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M))


def test_compose(lab):
    playbook(lab, CLEANUP)
    try:
        first = playbook(lab, PLAY)
        assert first.returncode == 0, first.stdout[-6000:]
        assert sum(recap(first.stdout).values()) > 0
        second = playbook(lab, PLAY)
        assert second.returncode == 0, second.stdout[-6000:]
        assert set(recap(second.stdout).values()) == {0}, "changed on the second run: %s" % second.stdout[-8000:]
        check = playbook(lab, PLAY, "--check", "--diff")
        assert check.returncode == 0, check.stdout[-6000:]
        assert set(recap(check.stdout).values()) == {0}, "changed in check mode: %s" % check.stdout[-8000:]
        assert "--- before" not in check.stdout and "+++ after" not in check.stdout, check.stdout[-8000:]
    finally:
        cleaned = playbook(lab, CLEANUP)
        assert cleaned.returncode == 0, cleaned.stdout[-6000:]
