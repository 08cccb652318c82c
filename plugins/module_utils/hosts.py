# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host-level helpers: what a compute node's libvirt offers."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import time
import uuid
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import xmlutil


def host_summary(client):
    """client.host_info() plus object counts, as returned by host_info."""
    summary = dict(client.host_info())
    conn = client.conn
    summary["domains"] = len(client.domain_names())
    summary["running_domains"] = client.call("count running domains", None, conn.numOfDomains)
    summary["pools"] = len(client.pool_names())
    summary["networks"] = len(client.network_names())
    summary["maintenance"] = maintenance(client)
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


# ---------------------------------------------------------------------------- maintenance mode
#: A CNA in maintenance holds a value-less libvirt secret of this UUID; its description says since when and why.
#: It lives in libvirt's own configuration, so every CNA (and the controller) reads it through libvirt,
#: remotely too, and it survives reboots until host_maintenance state=active removes it.
MAINTENANCE_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kvmfusion.compute/host-maintenance"))


def maintenance(client):
    """{since, reason} when the host of ``client`` is in maintenance, else None."""
    secret = client.secret_by_uuid(MAINTENANCE_UUID)
    if secret is None:
        return None
    root = xmlutil.parse(client.call("read", "the maintenance mark", secret.XMLDesc, 0))
    try:
        info = json.loads(xmlutil.find_text(root, "description") or "{}")
    except ValueError:
        info = {}
    return {"since": info.get("since"), "reason": info.get("reason")}


def maintenance_xml(reason):
    root = ET.Element("secret", ephemeral="no", private="yes")
    ET.SubElement(root, "uuid").text = MAINTENANCE_UUID
    ET.SubElement(root, "description").text = json.dumps(
        {"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reason": reason or ""}, sort_keys=True)
    return xmlutil.tostring(root)


def set_maintenance(client, reason):
    client.call("mark in maintenance", "the host", client.conn.secretDefineXML, maintenance_xml(reason), 0)


def clear_maintenance(client):
    secret = client.secret_by_uuid(MAINTENANCE_UUID)
    if secret is not None:
        client.call("end the maintenance of", "the host", secret.undefine)


def refuse_in_maintenance(client, what):
    """One line when the host of ``client`` is in maintenance: nothing new starts or lands there."""
    m = maintenance(client)
    if m is not None:
        raise ValueError("%s: %s is in maintenance (since %s%s); end it with host_maintenance state=active"
                         % (what, client.host_info()["hostname"], m["since"],
                            ", %s" % m["reason"] if m.get("reason") else ""))
