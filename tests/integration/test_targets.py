# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run every integration target (tests/integration/targets/*) with ansible-playbook on the lab."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# setup_* folders are shared set-up included by targets, not targets (as in ansible-test).
TARGETS = sorted(d for d in os.listdir(os.path.join(HERE, "targets"))
                 if os.path.isfile(os.path.join(HERE, "targets", d, "tasks", "main.yml")) and not d.startswith("setup_"))


# ansible-core 2.19 keeps a failed module's traceback (its `exception`) only when the controller asks for it
# (display_traceback); host_info checks that failures carry it apart from their one-line message.
TARGET_ENV = {"host_info": {"ANSIBLE_DISPLAY_TRACEBACK": "error"}}


# Targets that run on more than the CNAs: ha forms the HA cluster with the VRM's arbiter.
TARGET_HOSTS = {"ha": "cna:vrm", "console": "cna:vrm"}


@pytest.mark.parametrize("target", TARGETS)
def test_target(lab, target):
    res = subprocess.run(
        ["ansible-playbook", "-i", lab.inventory, os.path.join(HERE, "target.yml"), "-e", "target=" + target,
         "-e", "target_hosts=" + TARGET_HOSTS.get(target, "cna")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800, check=False,
        env=dict(os.environ, **TARGET_ENV.get(target, {})))
    print(res.stdout[-20000:])
    assert res.returncode == 0, "target %s failed:\n%s" % (target, res.stdout[-6000:])
    assert "failed=0" in res.stdout and "unreachable=0" in res.stdout
