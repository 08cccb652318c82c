# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests run against the local lab (tools/lab up), never against mocks."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "tools", "lab")


class Lab(object):
    def __init__(self, status):
        self.status = status
        self.inventory = status["inventory"]
        self.hosts = {h["name"]: h for h in status["hosts"]}
        self.key = os.path.join(status["lab_dir"], "ssh", "id_ed25519")
        self.known_hosts = os.path.join(status["lab_dir"], "ssh", "known_hosts")

    def group(self, name):
        return sorted(n for n, h in self.hosts.items() if h["group"] == name)

    def ssh(self, host, command, check=True):
        res = subprocess.run([LAB, "ssh", host, command], check=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError("%s: %r failed (%d): %s" % (host, command, res.returncode, res.stderr.strip()))
        return res

    def uri(self, host):
        """A qemu+ssh URI the controller can use to reach a lab host's libvirt."""
        return "qemu+ssh://root@%s/system?keyfile=%s&no_verify=1" % (self.hosts[host]["ip"], self.key)


@pytest.fixture(scope="session")
def lab():
    res = subprocess.run([LAB, "status", "--json"], check=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        pytest.fail("the lab is not up: run 'tools/lab up' (./dev test does it for you)\n" + res.stdout + res.stderr)
    return Lab(json.loads(res.stdout))
