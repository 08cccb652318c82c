# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Open vSwitch through ``ovs-vsctl``: the one place that reads and writes the local OVS database.

Reads use ``--format=json --data=json`` and decode OVSDB's typed values (sets, maps, UUIDs) into
Python lists and dicts. Writes are built as one ``ovs-vsctl`` transaction (commands joined by
``--``), so a change of uplinks, for example, is atomic: the database never holds half of it.
Commands run through a Manager's runner (``run`` / ``probe``): check mode never writes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

VSCTL = ["ovs-vsctl", "--timeout=10"]
# external_ids key marking the ports this collection made (uplinks): never a VM's port.
OWNER_KEY = "kvmfusion"


def decode(value):
    """An OVSDB JSON value as Python: ["set", [...]] -> list, ["map", [[k, v]...]] -> dict, ["uuid", u] -> u."""
    if isinstance(value, list) and len(value) == 2 and value[0] in ("set", "map", "uuid", "named-uuid"):
        kind, data = value
        if kind == "set":
            return [decode(v) for v in data]
        if kind == "map":
            return dict((decode(k), decode(v)) for k, v in data)
        return data
    return value


def as_list(value):
    """A column that OVSDB gives as a scalar when it holds one value and a set otherwise."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Ovs(object):
    """The local OVS database, read and written through ``mgr.run`` (a Manager's one command runner)."""

    def __init__(self, mgr):
        self.mgr = mgr

    def _read(self, args):
        return self.mgr.run(VSCTL + args)

    def records(self, table, columns, names=()):
        """[{column: value}] of ``table`` (all rows, or the rows named ``names``)."""
        out = self._read(["--format=json", "--data=json", "--columns=%s" % ",".join(columns), "list", table]
                         + list(names))
        data = json.loads(out or '{"data": [], "headings": []}')
        heads = data.get("headings", [])
        return [dict(zip(heads, [decode(v) for v in row])) for row in data.get("data", [])]

    def bridge_exists(self, name):
        rc, _out = self.mgr.probe(VSCTL + ["br-exists", name])
        if rc not in (0, 2):  # 2: no such bridge; anything else: OVS is not answering
            self._read(["show"])  # the error, as one line
            raise ValueError("ovs-vsctl br-exists %s failed (exit %d)" % (name, rc))
        return rc == 0

    def ports(self, bridge):
        return [p for p in self._read(["list-ports", bridge]).splitlines() if p]

    def bridge(self, name):
        """{"name", "datapath_type", "ports": {port: {...}}} or None."""
        if not self.bridge_exists(name):
            return None
        br = self.records("Bridge", ["name", "datapath_type"], [name])[0]
        names = self.ports(name)
        ports = {}
        if names:
            by_uuid = dict((i["_uuid"], i) for i in self.records("Interface", ["_uuid", "name", "mtu_request", "type"]))
            for p in self.records("Port", ["name", "interfaces", "bond_mode", "lacp", "external_ids", "tag", "trunks",
                                           "vlan_mode"], names):
                members = [by_uuid[u] for u in as_list(p["interfaces"]) if u in by_uuid]
                p["interfaces"] = sorted(i["name"] for i in members)
                p["mtu"] = sorted(set(m for i in members for m in as_list(i["mtu_request"])))
                ports[p["name"]] = p
        return {"name": br["name"], "datapath_type": br["datapath_type"] or "system", "ports": ports}

    def run(self, *commands):
        """One transaction of ovs-vsctl commands (each a list of words)."""
        cmd = list(VSCTL)
        for c in commands:
            cmd += ["--"] + list(c)
        return self.mgr.run(cmd)
