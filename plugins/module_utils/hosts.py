# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host-level helpers: what a compute node's libvirt offers."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json


def host_summary(client):
    """client.host_info() plus object counts, as returned by host_info."""
    summary = dict(client.host_info())
    conn = client.conn
    summary["domains"] = len(client.domain_names())
    summary["running_domains"] = client.call("count running domains", None, conn.numOfDomains)
    summary["pools"] = len(client.pool_names())
    summary["networks"] = len(client.network_names())
    return summary


#: the cna role's local fact (ansible_local.kvmfusion) on every compute node
FACTS_PATH = "/etc/ansible/facts.d/kvmfusion.fact"


def local_facts(path=None):
    """The cna role's facts of the host this code runs on; {} when the role has not run (or wrote nothing usable)."""
    try:
        with open(path or FACTS_PATH) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
