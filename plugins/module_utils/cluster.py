# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The HA cluster as pacemaker and corosync report it, read through their command-line tools on a cluster node.

The one place that runs and parses ``crm_mon``, ``cibadmin`` and ``corosync-quorumtool``: modules get plain
dicts. Commands go through the module base's runner (``run_command(argv)`` -> ``(rc, stdout, stderr)``).
No Ansible imports.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil

from ansible_collections.kvmfusion.compute.plugins.module_utils import xmlutil

# crm_mon's exit code when pacemaker does not run here (CRM_EX_NOT_CONNECTED)
NOT_CONNECTED = 102
# The resource agent of a VM under HA
VM_AGENT = "ocf:heartbeat:VirtualDomain"
FENCE_PREFIX = "stonith:"
PRIORITIES = {"high": 30, "medium": 20, "low": 10}
VM_PREFIX = "kvmfusion-vm-"


def id_part(text):
    """``text`` as part of a CIB id: letters, digits and '-' kept, anything else as _xx (hex). The result never
    holds '.', which joins the parts of the ids the ha module derives, so no VM or host name forges another's."""
    return "".join(c if (c.isascii() and c.isalnum()) or c == "-" else "_%02x" % ord(c) for c in text)


def vm_resource_id(vm):
    """The cluster resource of a VM under HA."""
    return VM_PREFIX + id_part(vm)


class ClusterError(ValueError):
    """A cluster tool failed: one line, naming the tool."""


def _bool(v):
    return str(v).lower() == "true"


def _int(v, default=0):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def priority_name(value):
    """A resource's numeric priority as high/medium/low (the nearest at or below), or its number as a string."""
    n = _int(value, None)
    if n is None:
        return None
    for name, floor in sorted(PRIORITIES.items(), key=lambda kv: -kv[1]):
        if n >= floor:
            return name
    return str(n)


class Cluster(object):
    def __init__(self, run_command):
        self._run = run_command

    @staticmethod
    def which(name):
        """The tool's path (pacemaker's and corosync's live in /usr/sbin, which a task's PATH may lack), or None."""
        return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))

    def _tool(self, argv, ok=(0,)):
        path = self.which(argv[0])
        if path is None:
            raise ClusterError("%s is not installed on this host: is it a CNA of the HA cluster?" % argv[0])
        rc, out, err = self._run([path] + list(argv[1:]))
        if rc not in ok:
            raise ClusterError("%s failed (rc=%s): %s" % (argv[0], rc, " ".join((err or out or "").split())[:300]))
        return rc, out

    def status(self):
        """crm_mon's view: None when pacemaker is not installed or does not run on this node, else a dict (see
        parse_status)."""
        if self.which("crm_mon") is None:
            return None
        rc, out = self._tool(["crm_mon", "--one-shot", "--output-as=xml", "--include=all"], ok=(0, NOT_CONNECTED))
        if rc == NOT_CONNECTED:
            return None
        return parse_status(out)

    def resources_config(self):
        """The CIB's resources section: {id: {agent, params, meta}} for every primitive."""
        _rc, out = self._tool(["cibadmin", "--query", "--scope", "resources"])
        return parse_resources(out)

    def cib(self):
        """The whole configuration (see parse_cib)."""
        _rc, out = self._tool(["cibadmin", "--query", "--scope", "configuration"])
        return parse_cib(out)

    def local_node(self):
        """This node's name in the cluster."""
        _rc, out = self._tool(["crm_node", "--name"])
        return out.strip()

    def quorum(self):
        """corosync-quorumtool's view: votes, flags and whether a quorum device votes."""
        _rc, out = self._tool(["corosync-quorumtool", "-s"], ok=(0, 2))  # 2: not quorate (1 is an error)
        return parse_quorum(out)


def parse_status(text):
    root = xmlutil.parse(text)
    summary = root.find("summary")  # absent while pacemakerd is still starting its daemons
    dc = summary.find("current_dc") if summary is not None else None
    opts = summary.find("cluster_options") if summary is not None else None
    nodes = []
    for n in root.findall("nodes/node"):
        nodes.append({
            "name": n.get("name"),
            "online": _bool(n.get("online")),
            "standby": _bool(n.get("standby")),
            "pending": _bool(n.get("pending")),
            "maintenance": _bool(n.get("maintenance")),
            "unclean": _bool(n.get("unclean")),
            "is_dc": _bool(n.get("is_dc")),
            "resources_running": _int(n.get("resources_running")),
        })
    resources = {}
    for r in root.iter("resource"):
        resources[r.get("id")] = {
            "agent": r.get("resource_agent"),
            "role": r.get("role"),
            "active": _bool(r.get("active")),
            "failed": _bool(r.get("failed")),
            "managed": _bool(r.get("managed")),
            "nodes": [n.get("name") for n in r.findall("node")],
        }
    failcounts = {}
    for n in root.findall("node_history/node"):
        for h in n.findall("resource_history"):
            count = _int(h.get("fail-count"))
            if count:
                failcounts.setdefault(h.get("id"), {})[n.get("name")] = count
    fencing = []
    for e in root.findall("fence_history/fence_event"):
        fencing.append({
            "target": e.get("target"),
            "action": e.get("action"),
            "status": e.get("status"),
            "delegate": e.get("delegate"),
            "origin": e.get("origin"),
            "completed": e.get("completed") or e.get("last-pending"),
        })
    return {
        "ready": summary is not None,
        "dc": dc.get("name") if dc is not None and _bool(dc.get("present")) else None,
        "quorate": dc is not None and _bool(dc.get("with_quorum")),
        "stonith_enabled": opts is not None and _bool(opts.get("stonith-enabled")),
        "no_quorum_policy": opts.get("no-quorum-policy") if opts is not None else None,
        "maintenance_mode": opts is not None and _bool(opts.get("maintenance-mode")),
        "nodes": nodes,
        "resources": resources,
        "failcounts": failcounts,
        "fence_history": fencing,
    }


def _nvpairs(el, section):
    out = {}
    for block in el.findall(section):
        for nv in block.findall("nvpair"):
            out[nv.get("name")] = nv.get("value")
    return out


def parse_resources(text):
    root = xmlutil.parse(text)
    out = {}
    for p in root.iter("primitive"):
        cls, provider, typ = p.get("class"), p.get("provider"), p.get("type")
        agent = ":".join(x for x in (cls, provider, typ) if x)
        out[p.get("id")] = {
            "agent": agent,
            "params": _nvpairs(p, "instance_attributes"),
            "meta": _nvpairs(p, "meta_attributes"),
        }
    return out


def _block(el, tag):
    block = el.find(tag)
    return {nv.get("name"): nv.get("value") for nv in block.findall("nvpair")} if block is not None else {}


def parse_cib(text):
    """The CIB's configuration: {properties: {set id: {name: value}}, nodes: {name: {utilization}},
    resources: {id: {agent, params, meta, utilization, ops}}, locations: [{id, rsc, node, score}]}."""
    root = xmlutil.parse(text)
    conf = root if root.tag == "configuration" else root.find("configuration")
    if conf is None:
        raise ClusterError("cibadmin printed no configuration")
    props = {}
    for ps in conf.findall("crm_config/cluster_property_set"):
        props[ps.get("id")] = {nv.get("name"): nv.get("value") for nv in ps.findall("nvpair")}
    nodes = {}
    for n in conf.findall("nodes/node"):
        nodes[n.get("uname")] = {"utilization": _block(n, "utilization")}
    resources = {}
    for p in conf.iter("primitive"):
        agent = ":".join(x for x in (p.get("class"), p.get("provider"), p.get("type")) if x)
        ops = {}
        for op in p.findall("operations/op"):
            ops[op.get("name")] = {k: v for k, v in op.attrib.items() if k not in ("id", "name")}
        resources[p.get("id")] = {
            "agent": agent,
            "params": _block(p, "instance_attributes"),
            "meta": _block(p, "meta_attributes"),
            "utilization": _block(p, "utilization"),
            "ops": ops,
        }
    locations = []
    for c in conf.findall("constraints/rsc_location"):
        locations.append({"id": c.get("id"), "rsc": c.get("rsc"), "node": c.get("node"), "score": c.get("score")})
    return {"properties": props, "nodes": nodes, "resources": resources, "locations": locations}


_QUORUM_FIELDS = {
    "Expected votes": "expected_votes",
    "Total votes": "total_votes",
    "Quorum": "quorum",
}


def parse_quorum(text):
    out = {"expected_votes": None, "total_votes": None, "quorum": None, "flags": [], "device": None}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z ]+):\s+(.*?)\s*$", line)
        if m and m.group(1) in _QUORUM_FIELDS:
            num = re.match(r"\d+", m.group(2))
            out[_QUORUM_FIELDS[m.group(1)]] = int(num.group(0)) if num else None
        elif m and m.group(1) == "Flags":
            out["flags"] = m.group(2).split()
        else:
            # "0  1  Qdevice" when this node holds the device's vote; "0  0  Qdevice (votes 1)" when it does not
            # (the arbiter unreachable): votes now, and the votes the device is configured with
            dev = re.match(r"^\s*0\s+(\d+)\s+Qdevice(?:\s+\(votes (\d+)\))?\s*$", line)
            if dev:
                out["device"] = {"votes": int(dev.group(1)),
                                 "configured_votes": int(dev.group(2) if dev.group(2) else dev.group(1))}
    return out


def ha_summary(cluster):
    """What ha_info returns: {running: False}, or the cluster with its fencing devices and HA VMs."""
    st = cluster.status()
    if st is None or not st["ready"]:
        return {"running": False}
    config = cluster.resources_config()
    # the last fencing of each target: the latest completion time ("YYYY-MM-DD HH:MM:SSZ" sorts as text)
    last = {}
    for e in st["fence_history"]:
        prev = last.get(e["target"])
        if prev is None or (e["completed"] or "") >= (prev["completed"] or ""):
            last[e["target"]] = e
    fencing, vms = [], []
    for rid in sorted(config):
        c = config[rid]
        r = st["resources"].get(rid, {})
        if c["agent"].startswith(FENCE_PREFIX):
            target = c["params"].get("pcmk_host_list") or None
            fencing.append({
                "id": rid, "agent": c["agent"], "target": target, "role": r.get("role"),
                "running_on": r.get("nodes", []), "last": last.get(target),
            })
        elif c["agent"] == VM_AGENT:
            vms.append({
                # the ha module records the VM's name (its resource id escapes what a CIB id cannot hold)
                "name": c["meta"].get("kvmfusion-vm") or (rid[len(VM_PREFIX):] if rid.startswith(VM_PREFIX) else None),
                "resource": rid, "role": r.get("role"), "hosts": r.get("nodes", []),
                "priority": priority_name(c["meta"].get("priority")),
                "failcounts": st["failcounts"].get(rid, {}),
            })
    return {
        "running": True,
        "quorate": st["quorate"],
        "dc": st["dc"],
        "stonith_enabled": st["stonith_enabled"],
        "no_quorum_policy": st["no_quorum_policy"],
        "quorum": cluster.quorum(),
        "nodes": st["nodes"],
        "fencing": fencing,
        "vms": vms,
    }


# Moves and standby (vm_migration, host_maintenance) -------------------------------------------------------------
# What crm_resource --move leaves behind until --clear (pacemaker's own id).
MOVE_PREFIX = "cli-prefer-"


def node_name(hostname, nodes):
    """The cluster node of a CNA whose libvirt reports ``hostname`` (the node names are the CNAs' short host names:
    libvirt may report the fully qualified one), or None."""
    if hostname in nodes:
        return hostname
    short = (hostname or "").split(".")[0]
    return short if short in nodes else None


def usable(node):
    """Whether the cluster may place a resource on a node of ``parse_status``."""
    return node["online"] and not (node["standby"] or node["pending"] or node["unclean"] or node["maintenance"])


def node_state(node):
    """What keeps the cluster from placing resources on a node of ``parse_status``, in words ("usable" if nothing)."""
    says = ["offline"] if not node["online"] else []
    says += [k for k in ("standby", "pending", "unclean", "maintenance") if node[k]]
    return ", ".join(says) or "usable"


def placement(cib, rid):
    """{preferred, forbidden, moves} of a resource: the nodes of the ha module's preference rules, the nodes any
    -INFINITY rule bans it from (the ha module's or another's, such as crm_resource --ban), and the ids of the
    constraints crm_resource --move left."""
    out = {"preferred": set(), "forbidden": set(), "moves": []}
    for c in cib["locations"]:
        if c["rsc"] != rid:
            continue
        if c["id"] == MOVE_PREFIX + rid:
            out["moves"].append(c["id"])
        elif c["score"] == "-INFINITY":
            out["forbidden"].add(c["node"])
        elif c["id"].startswith(rid + "."):
            out["preferred"].add(c["node"])
    return out


def vm_resources(st, config):
    """{VM name: {resource, nodes, managed, failed}} of the VMs under HA, from ``status`` and the resources of
    ``resources_config`` or ``cib``; ``managed`` is False while the cluster is in maintenance mode (HA off)."""
    out = {}
    for rid, c in config.items():
        if c["agent"] != VM_AGENT:
            continue
        name = c["meta"].get("kvmfusion-vm") or (rid[len(VM_PREFIX):] if rid.startswith(VM_PREFIX) else rid)
        r = st["resources"].get(rid, {})
        out[name] = {"resource": rid, "nodes": list(r.get("nodes", [])), "failed": bool(r.get("failed")),
                     "managed": not st["maintenance_mode"] and r.get("managed", True)}
    return out
