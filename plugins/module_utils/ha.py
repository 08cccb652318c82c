# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""VM high availability on the CNAs' pacemaker cluster: the ``ha`` module's manager.

A VM under HA is an ``ocf:heartbeat:VirtualDomain`` resource whose ``config`` is the VM's definition copy beside
its system disk on a shared datastore (``images.definition_copy_path``), so every CNA can start it. Cluster
settings are pacemaker's own properties (``maintenance-mode``, ``no-quorum-policy``, ``placement-strategy``) plus
a property set of ours holding the admission control policy; capacities are node utilization attributes.

Reads go through ``cluster.Cluster``; writes are ``cibadmin``/``crm_attribute``/``crm_resource`` commands made
through ``Manager.act`` (so check mode makes none).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import os
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import images, names, storage, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.cluster import (
    Cluster, PRIORITIES, VM_AGENT, id_part, vm_resource_id)
from ansible_collections.kvmfusion.compute.plugins.module_utils.domains import write_definition_copy
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import state_of

# What the cna role installs on every cluster CNA: pings the guest agent of the VM whose definition is in
# OCF_RESKEY_config (VirtualDomain runs monitor scripts with no arguments, that variable set).
GUEST_PING = "/etc/libvirt/hooks/kvmfusion/ha-guest-ping"
BOOTSTRAP = "cib-bootstrap-options"
# A CNA's memory, as its kernel and libvirt report it, moves by a few MiB to a few percent while it runs (a balloon,
# memory hot-plug, memory the kernel reserves or frees): the capacity stored in the cluster is kept while the reading
# stays within this fraction of it and within MEMORY_TOLERANCE_MIB, so that a re-run changes nothing. A larger change
# (a DIMM added or lost, even on a large host) is stored.
MEMORY_TOLERANCE = 0.05
MEMORY_TOLERANCE_MIB = 512
OWN_SET = "kvmfusion-ha"
ADMISSION = "kvmfusion-admission-control"
VCPU_RATIO = "kvmfusion-vcpu-ratio"
NAME_META = "kvmfusion-vm"
# A VM stays where it runs unless a preferred host is up (preferred scores beat stickiness: the seed's DRS rule
# "should run on" moves it there, live).
STICKINESS = "100"
PREFERRED_SCORE = "200"
# is-managed: left "false" by a parameter change that failed half way, it is a difference (HA off for the VM)
COMPARED_META = ("allow-migrate", "priority", "migration-threshold", "failure-timeout", "resource-stickiness",
                 NAME_META, "is-managed")


resource_id = vm_resource_id


def location_id(vm, kind, host):
    return "%s.%s.%s" % (resource_id(vm), kind, id_part(host))


def _nv(parent, rid, block, name, value):
    ET.SubElement(parent, "nvpair", {"id": "%s.%s.%s" % (rid, block, name), "name": name,
                                     "value": str(value)})


def primitive_xml(rid, want, target_role):
    """The resource as cibadmin takes it: ``want`` = {params, meta, utilization, ops}."""
    p = ET.Element("primitive", {"id": rid, "class": "ocf", "provider": "heartbeat", "type": "VirtualDomain"})
    for tag, block, values in (("instance_attributes", "ia", want["params"]),
                               ("meta_attributes", "meta", dict(want["meta"], **{"target-role": target_role})),
                               ("utilization", "util", want["utilization"])):
        el = ET.SubElement(p, tag, {"id": "%s.%s" % (rid, block)})
        for k in sorted(values):
            _nv(el, rid, block, k, values[k])
    ops = ET.SubElement(p, "operations")
    for name in sorted(want["ops"]):
        attrs = {"id": "%s.op.%s" % (rid, name), "name": name}
        attrs.update(want["ops"][name])
        ET.SubElement(ops, "op", attrs)
    return xmlutil.tostring(p)


def domain_demand(xml):
    """(vCPUs, memory in MiB rounded up) of a domain definition."""
    root = xmlutil.parse(xml)
    vcpus = int(xmlutil.find_text(root, "vcpu", "1") or 1)
    mem = root.find("memory")
    kib = int(mem.text) * {"KiB": 1, "k": 1, "K": 1, "MiB": 1024, "M": 1024, "GiB": 1024 ** 2, "G": 1024 ** 2}.get(
        mem.get("unit", "KiB"), 1) if mem is not None else 0
    return vcpus, int(math.ceil(kib / 1024.0))


def admission_policy(value):
    """A stored policy ("hosts:N", "percent:P", "off" or None) as (kind, number)."""
    if not value or value == "off":
        return None, 0
    kind, _sep, num = value.partition(":")
    try:
        return kind, int(num)
    except ValueError:
        return None, 0


def memory_close(stored, reading):
    """True when a node's stored memory capacity (MiB, as the CIB holds it) still stands for the reading."""
    try:
        stored, reading = int(stored), int(reading)
    except (TypeError, ValueError):
        return False
    return stored > 0 and abs(reading - stored) <= min(stored * MEMORY_TOLERANCE, MEMORY_TOLERANCE_MIB)


def allowance(capacities, policy):
    """{cpu, hv_memory} the HA VMs may use in all: the nodes' capacity less what the policy keeps free."""
    kind, num = policy
    out = {}
    for key in ("cpu", "hv_memory"):
        values = sorted((int(c.get(key) or 0) for c in capacities.values()), reverse=True)
        total = sum(values)
        if kind == "hosts":
            out[key] = total - sum(values[:num])
        elif kind == "percent":
            out[key] = total * (100 - num) // 100
        else:
            out[key] = total
    return out


class HaManager(Manager):
    """Converges the cluster's HA settings, or one VM's HA."""

    def __init__(self, client, check_mode=False, run_command=None, journal=None, peers=None, timeout=120):
        super(HaManager, self).__init__(client, check_mode=check_mode, run_command=run_command, journal=journal)
        self.cluster = Cluster(self._run_command)
        self._peers = peers  # fn(host names) -> clients of those CNAs
        self.timeout = timeout

    def _tool(self, argv):
        path = Cluster.which(argv[0])
        if path is None:
            raise ValueError("%s is not installed on this host: is it a CNA of the HA cluster?" % argv[0])
        return self.run([path] + list(argv[1:]))

    def _refresh(self, rid):
        """Forget the resource's history and failure counts on every node (none is not an error)."""
        path = Cluster.which("crm_resource")
        rc, _out, err = self._run_command([path, "--refresh", "--resource", rid])
        if rc not in (0, 105):  # 105: no such resource, configured or in the history
            raise ValueError("crm_resource --refresh --resource %s failed (rc=%s): %s" % (rid, rc, " ".join(err.split())))

    def _settle(self):
        """Wait for the cluster to carry out what was just changed (the VM started, moved or left alone)."""
        if self.actions:
            self._wait_now()

    def _wait_now(self):
        """Wait for the cluster to settle (none in check mode, which changed nothing)."""
        if not self.check_mode:
            self._tool(["crm_resource", "--wait", "--timeout=%ds" % self.timeout])

    def converge(self, params):
        st = self.cluster.status()
        if st is None or not st["ready"]:
            raise ValueError("pacemaker does not run on this host: run ha on a CNA of the HA cluster "
                             "(the cna role with cna_ha_cluster: true)")
        if not st["quorate"]:
            raise ValueError("this CNA's partition of the cluster has no quorum: nothing is changed from here")
        cib = self.cluster.cib()
        if params.get("name"):
            return self._vm(params, st, cib)
        return self._cluster(params.get("cluster") or {}, st, cib)

    # the cluster --------------------------------------------------------------------------
    def _capacities(self, st, ratio):
        """{node: {cpu, hv_memory}} of the online nodes, read from each CNA's libvirt."""
        local = self.cluster.local_node()
        online = [n["name"] for n in st["nodes"] if n["online"] and not n["pending"]]
        others = [n for n in online if n != local]
        clients = dict(zip(others, self._peers(others))) if others else {}
        clients[local] = self.client
        out = {}
        for node in online:
            info = clients[node].host_info()
            out[node] = {"cpu": str(int(info["cpus"] * ratio)), "hv_memory": str(info["memory_bytes"] // 1024 ** 2)}
        for n in st["nodes"]:
            if not n["online"]:
                self.warn("node %s is offline: its capacity is left as it was" % n["name"])
        return out

    def _cluster(self, c, st, cib):
        props = cib["properties"]
        boot, own = props.get(BOOTSTRAP, {}), props.get(OWN_SET, {})
        before = {
            "enabled": boot.get("maintenance-mode", "false") != "true",
            "isolation_response": boot.get("no-quorum-policy", "stop"),
            "placement": "balanced" if boot.get("placement-strategy") == "balanced" else "default",
            "admission_control": self._admission_view(own),
            "capacity": {n: v["utilization"] for n, v in sorted(cib["nodes"].items()) if v["utilization"]},
        }
        want_boot, want_own = {}, {}
        if c.get("enabled") is not None:
            want_boot["maintenance-mode"] = "false" if c["enabled"] else "true"
        if c.get("isolation_response"):
            want_boot["no-quorum-policy"] = c["isolation_response"]
        ac = c.get("admission_control")
        if ac is not None:
            if not ac.get("enabled", True):
                want_own[ADMISSION] = "off"
            elif ac.get("percentage") is not None:
                if not 0 < ac["percentage"] < 100:
                    raise ValueError("admission_control.percentage must be between 1 and 99, not %s"
                                     % ac["percentage"])
                want_own[ADMISSION] = "percent:%d" % ac["percentage"]
            elif ac.get("host_failures") is not None or admission_policy(own.get(ADMISSION))[0] is None:
                # a policy left out keeps the stored one; none stored: room for one host failure
                hosts = 1 if ac.get("host_failures") is None else ac["host_failures"]
                if hosts < 1 or hosts >= len(st["nodes"]):
                    raise ValueError("admission_control.host_failures must be at least 1 and less than the cluster's "
                                     "%d nodes, not %s" % (len(st["nodes"]), hosts))
                want_own[ADMISSION] = "hosts:%d" % hosts
            if ac.get("vcpu_ratio") is not None:  # left out: the stored ratio (4 when none is)
                if ac["vcpu_ratio"] <= 0:
                    raise ValueError("admission_control.vcpu_ratio must be positive, not %s" % ac["vcpu_ratio"])
                want_own[VCPU_RATIO] = "%g" % ac["vcpu_ratio"]
        admission_on = admission_policy(want_own.get(ADMISSION, own.get(ADMISSION)))[0] is not None
        placement = c.get("placement") or before["placement"]
        strategy = "balanced" if placement == "balanced" else ("utilization" if admission_on else "default")
        if c.get("placement") is not None or ac is not None:
            want_boot["placement-strategy"] = strategy
        capacity = None
        if strategy != "default":
            ratio = float(want_own.get(VCPU_RATIO, own.get(VCPU_RATIO)) or 4.0)
            capacity = self._capacities(st, ratio)
        for key, value in sorted(want_boot.items()):
            if boot.get(key) != value:
                self.act("set cluster property %s=%s" % (key, value), self._tool,
                         ["crm_attribute", "--type", "crm_config", "--name", key, "--update", value])
        for key, value in sorted(want_own.items()):
            if own.get(key) != value:
                self.act("set %s=%s" % (key, value), self._tool,
                         ["crm_attribute", "--type", "crm_config", "--set-name", OWN_SET, "--name", key,
                          "--update", value])
        for node, util in sorted((capacity or {}).items()):
            have = cib["nodes"].get(node, {}).get("utilization", {})
            for key, value in sorted(util.items()):
                if key == "hv_memory" and memory_close(have.get(key), value):
                    util[key] = have[key]  # the stored capacity stands (see MEMORY_TOLERANCE)
                elif have.get(key) != value:
                    self.act("set capacity of node %s: %s=%s" % (node, key, value), self._tool,
                             ["crm_attribute", "--node", node, "--utilization", "--name", key, "--update", value])
        after_boot, after_own = dict(boot, **want_boot), dict(own, **want_own)
        after = {
            "enabled": after_boot.get("maintenance-mode", "false") != "true",
            "isolation_response": after_boot.get("no-quorum-policy", "stop"),
            "placement": "balanced" if after_boot.get("placement-strategy") == "balanced" else "default",
            "admission_control": self._admission_view(after_own),
            "capacity": dict(before["capacity"], **(capacity or {})),
        }
        if after["admission_control"]["enabled"]:
            self._warn_reserve(cib, after_own, after["capacity"])
        self._settle()
        return self.result(before=before, after=after, cluster=after)

    @staticmethod
    def _admission_view(own):
        kind, num = admission_policy(own.get(ADMISSION))
        return {"enabled": kind is not None, "host_failures": num if kind == "hosts" else None,
                "percentage": num if kind == "percent" else None,
                "vcpu_ratio": float(own.get(VCPU_RATIO) or 4.0)}

    def _warn_reserve(self, cib, own, capacity):
        used = self._demand(cib["resources"])
        allowed = allowance(capacity, admission_policy(own.get(ADMISSION)))
        for key in ("cpu", "hv_memory"):
            if used[key] > allowed[key]:
                self.warn("admission control: the HA VMs already use %d %s, more than the %d the reserve "
                          "leaves: a host failure may leave some of them stopped (lowest priority first)"
                          % (used[key], "vCPUs" if key == "cpu" else "MiB", allowed[key]))

    @staticmethod
    def _demand(resources, skip=None):
        out = {"cpu": 0, "hv_memory": 0}
        for rid, r in resources.items():
            if r["agent"] != VM_AGENT or rid == skip:
                continue
            for key in out:
                out[key] += int(r["utilization"].get(key) or 0)
        return out

    # one VM -------------------------------------------------------------------------------
    def _vm(self, p, st, cib):
        name = names.validate_name(p["name"], kind="VM")
        rid = resource_id(name)
        cur = cib["resources"].get(rid)
        if cur is not None and cur["agent"] != VM_AGENT:
            raise ValueError("resource %s of the cluster is a %s, not a VM's" % (rid, cur["agent"]))
        ours = sorted((c for c in cib["locations"] if c["rsc"] == rid and c["id"].startswith(rid + ".")),
                      key=lambda c: c["id"])
        before = self._vm_view(name, cur, ours)
        if p["state"] == "absent":
            if cur is not None:
                self._remove(name, rid, cur, st, cib, ours)
            self._settle()
            gone = {"name": name, "ha": False}
            return self.result(before=before, after=gone, vm=dict(gone, resource=rid))
        hosts = {n["name"] for n in st["nodes"]}
        for h in (p.get("preferred_hosts") or []) + (p.get("forbidden_hosts") or []):
            if h not in hosts:
                raise ValueError("host %s is not a node of the cluster (%s)" % (h, ", ".join(sorted(hosts))))
        both = set(p.get("preferred_hosts") or []) & set(p.get("forbidden_hosts") or [])
        if both:
            raise ValueError("host(s) %s both preferred and forbidden for VM %s" % (", ".join(sorted(both)), name))
        if hosts and hosts <= set(p.get("forbidden_hosts") or []):
            raise ValueError("VM %s: every node of the cluster is forbidden, so it could run nowhere" % name)
        # Once under HA, the definition copy is the VM: this CNA's own definition is read only while the VM runs
        # here (a definition a failover or a move left behind may be older).
        local = cur is None or self.cluster.local_node() in st["resources"].get(rid, {}).get("nodes", [])
        want, domain_running, pending = self._desired(name, p, cur, not local)
        target_role = cur["meta"].get("target-role", "Started") if cur else ("Started" if domain_running else "Stopped")
        self._admit(name, rid, cib, want, target_role, cur)
        # every check passed: only now the changes of the VM itself (its definition copy, its autostart)
        for what, fn, args in pending:
            self.act(what, fn, *args)
        compared = self._compared(want)
        if cur is None:
            # an earlier resource of this name may have left failure counts that would keep the VM off a CNA
            self.act("clear what the cluster recorded of an earlier resource %s" % rid, self._refresh, rid)
            self.act("put VM %s under HA (resource %s, %s)" % (name, rid, target_role.lower()), self._tool,
                     ["cibadmin", "--create", "--scope", "resources", "--xml-text",
                      primitive_xml(rid, want, target_role)])
        elif self._compared(cur) != compared:
            self._update(name, rid, cur, want, target_role, st)
        self._locations(name, rid, ours, p)
        self._settle()
        after = dict(self._vm_view(name, dict(want, meta=dict(want["meta"], **{"target-role": target_role})),
                                   [{"id": location_id(name, "prefer", h), "score": PREFERRED_SCORE, "node": h}
                                    for h in p.get("preferred_hosts") or []]
                                   + [{"id": location_id(name, "avoid", h), "score": "-INFINITY", "node": h}
                                      for h in p.get("forbidden_hosts") or []]))
        return self.result(before=before, after=after, vm=dict(after, resource=rid))

    def _update(self, name, rid, cur, want, target_role, st):
        """Replace the resource's settings. The agent has no reload: pacemaker restarts a resource whose parameters
        change. A running VM is therefore unmanaged for the change, its history refreshed (probed again with the new
        parameters, found running) and then managed again: it keeps running."""
        active = bool(st["resources"].get(rid, {}).get("nodes"))
        if cur["params"] == want["params"] or not active:
            self.act("update the HA settings of VM %s" % name, self._tool,
                     ["cibadmin", "--replace", "--scope", "resources", "--xml-text",
                      primitive_xml(rid, want, target_role)])
            return
        unmanaged = dict(want, meta=dict(want["meta"], **{"is-managed": "false"}))
        self.act("update the HA settings of VM %s, unmanaged meanwhile so that it keeps running" % name,
                 self._tool, ["cibadmin", "--replace", "--scope", "resources", "--xml-text",
                              primitive_xml(rid, unmanaged, target_role)])
        self.act("probe VM %s again with its new settings" % name, self._tool,
                 ["crm_resource", "--refresh", "--resource", rid])
        self._wait_now()
        self.act("manage VM %s again" % name, self._tool,
                 ["crm_resource", "--resource", rid, "--meta", "--delete-parameter", "is-managed"])

    @staticmethod
    def _compared(r):
        return {"params": r["params"], "utilization": r["utilization"], "ops": r["ops"],
                "meta": {k: v for k, v in r["meta"].items() if k in COMPARED_META}}

    @staticmethod
    def _vm_view(name, r, locations):
        if r is None:
            return {"name": name, "ha": False}
        meta = r["meta"]
        prio = meta.get("priority")
        return {
            "name": name, "ha": True,
            "priority": next((k for k, v in PRIORITIES.items() if str(v) == prio), prio),
            "max_restarts": int(meta.get("migration-threshold") or 0),
            "failure_timeout": int((meta.get("failure-timeout") or "0").rstrip("s") or 0),
            "guest_monitor": bool(r["params"].get("monitor_scripts")),
            "preferred_hosts": sorted(c["node"] for c in locations if c["score"] != "-INFINITY"),
            "forbidden_hosts": sorted(c["node"] for c in locations if c["score"] == "-INFINITY"),
            "definition": r["params"].get("config"),
            "vcpus": int(r["utilization"].get("cpu") or 0),
            "memory_mib": int(r["utilization"].get("hv_memory") or 0),
            "target_role": meta.get("target-role"),
        }

    def _desired(self, name, p, cur, elsewhere):
        """The resource as wanted, and whether the VM runs on this CNA now. While the cluster runs it on another
        CNA, what this CNA may still have defined (left by a failover) is not the VM: its definition copy is."""
        dom = None if elsewhere else self.client.domain(name)
        running = False
        pending = []
        if dom is not None:
            self.need_local("ha for a VM (its definition copy is written beside its system disk)")
            running = bool(self.client.call("read state of", "VM '%s'" % name, dom.isActive))
            state = state_of(self.client, dom, name)
            if state in ("paused", "suspended", "pmsuspended"):
                raise ValueError("VM %s is %s: the cluster would take it for a failed VM, or start it afresh and lose "
                                 "its saved memory; resume or stop it before putting it under HA" % (name, state))
            snaps = self.client.call("list snapshots of", "VM '%s'" % name, dom.listAllSnapshots, 0)
            if snaps and cur is None:
                raise ValueError("VM %s has %d snapshot(s) (%s): the cluster restarts a VM under HA from its definition "
                                 "copy as a transient domain, where snapshots are not kept; delete them first "
                                 "(kvmfusion.compute.snapshot state=absent)" % (
                                     name, len(snaps), ", ".join(sorted(s.getName() for s in snaps))))
            xml = self.client.domain_xml(name, secure=True)
            if p["guest_monitor"] and not (cur or {}).get("params", {}).get("monitor_scripts"):
                self._need_agent(name, xml, running)
            config = images.definition_copy_path(xml)
            if config is None:
                raise ValueError("VM %s has no disk image file: HA needs its system disk on a shared datastore" % name)
            self._need_shared(name, xml)
            persistent = bool(self.client.call("read persistence of", "VM '%s'" % name, dom.isPersistent))
            if persistent:
                pending.extend(self._definition_copy(name, config))
                if self.client.call("read autostart of", "VM '%s'" % name, dom.autostart):
                    # pacemaker alone starts it: a fenced CNA that boots must not start it too
                    pending.append(("turn off libvirt autostart of VM %s (the cluster starts it)" % name,
                                    self.client.call, ("set autostart of", "VM '%s'" % name, dom.setAutostart, 0)))
            elif not os.path.exists(config):
                raise ValueError("VM %s runs as a transient domain without a definition copy at %s" % (name, config))
            vcpus, mib = domain_demand(xml)
        elif cur is not None:
            config = cur["params"].get("config")
            if not config or not os.path.isfile(config):
                raise ValueError("VM %s is not on this CNA and its definition %s is not here either: run ha on a CNA "
                                 "that sees its datastore" % (name, config))
            with open(config) as f:
                vcpus, mib = domain_demand(f.read())
        else:
            raise ValueError("VM %s is neither defined on this CNA (%s) nor under HA: run ha on the CNA that has it"
                             % (name, self.uri))
        ops = {
            "monitor": {"interval": "10s", "timeout": "30s"},
            "start": {"interval": "0s", "timeout": "%ds" % p["start_timeout"]},
            "stop": {"interval": "0s", "timeout": "%ds" % p["stop_timeout"]},
            "migrate_to": {"interval": "0s", "timeout": "%ds" % p["migrate_timeout"]},
            "migrate_from": {"interval": "0s", "timeout": "60s"},
        }
        # The VM's utilization is ours (admission control): the agent must not write its own into the CIB.
        params = {"config": config, "hypervisor": "qemu:///system", "migration_transport": "ssh",
                  "autoset_utilization_cpu": "false", "autoset_utilization_hv_memory": "false",
                  "autoset_utilization_host_memory": "false",
                  # every image is on a shared datastore (checked above); libvirt cannot tell a shared directory
                  # from a local one and refuses the live migration without this (as vm_migration does)
                  "migrate_options": "--unsafe"}
        if p["guest_monitor"]:
            params["monitor_scripts"] = GUEST_PING
        meta = {
            "allow-migrate": "true",
            "priority": str(PRIORITIES[p["priority"]]),
            "migration-threshold": str(p["max_restarts"]),
            "failure-timeout": "%ds" % p["failure_timeout"],
            "resource-stickiness": STICKINESS,
            NAME_META: name,
        }
        return {"params": params, "meta": meta, "utilization": {"cpu": str(vcpus), "hv_memory": str(mib)},
                "ops": ops}, running, pending

    def _need_agent(self, name, xml, running):
        """guest_monitor on: the VM has a guest agent channel and, running, its agent answers (else the cluster's
        first probe would fail and restart it)."""
        if not any(xmlutil.find_attr(c, "target", "name") == "org.qemu.guest_agent.0"
                   for c in xmlutil.parse(xml).findall("devices/channel")):
            raise ValueError("VM %s has no guest agent channel: guest_monitor needs one (the vm module's "
                             "guest_agent: true)" % name)
        if running:
            rc, _out = self.probe(["virsh", "-c", "qemu:///system", "qemu-agent-command", name,
                                   '{"execute":"guest-ping"}', "--timeout", "5"])
            if rc != 0:
                raise ValueError("VM %s: its guest agent does not answer, and with guest_monitor the cluster would "
                                 "restart the VM for it; start the agent in the guest first" % name)

    def _need_shared(self, name, xml):
        """Every image of every file disk on a shared datastore of this CNA (what another CNA can start it from)."""
        shared = {}
        for pname in self.client.pool_names():
            pool = self.client.pool(pname)
            if pool is None or not self.client.call("read state of", "datastore '%s'" % pname, pool.isActive):
                continue
            info = storage.facts(self.client, pool)
            if info.get("path"):
                shared[os.path.normpath(info["path"])] = (pname, bool(info["shared"]))
        for el in xmlutil.parse(xml).findall("devices/disk"):
            if el.get("type") != "file" or el.get("device", "disk") not in ("disk", "cdrom"):
                continue
            for path in images.disk_chain(el, True):
                ds, ok = shared.get(os.path.dirname(os.path.normpath(path)), (None, False))
                if not ok:
                    raise ValueError("VM %s: image %s is %s: HA restarts a VM on another CNA, so every disk must be "
                                     "on a shared datastore" % (name, path, "on datastore %s, which is not shared" % ds
                                                                if ds else "on no datastore of this CNA"))

    def _definition_copy(self, name, path):
        """[(what, fn, args)] to write the copy beside the system disk as the VM is defined now, or [] when it is
        so (the vm module keeps it so; a VM defined otherwise may lack it)."""
        want = self.client.domain_xml(name, inactive=True, secure=True)
        try:
            with open(path) as f:
                have = f.read()
        except (IOError, OSError):
            have = None
        if have != want:
            return [("write the definition copy of VM %s (%s), which the cluster starts it from" % (name, path),
                     write_definition_copy, (self.client, name, path))]
        return []

    def _admit(self, name, rid, cib, want, target_role, cur):
        """Admission control: refuse a VM that would break the capacity kept for host failures."""
        own = cib["properties"].get(OWN_SET, {})
        policy = admission_policy(own.get(ADMISSION))
        if policy[0] is None:
            return  # a stopped VM is counted too: the vm module may start it through the cluster at any time
        mine = {k: int(want["utilization"][k]) for k in ("cpu", "hv_memory")}
        had = {k: int((cur or {}).get("utilization", {}).get(k) or 0) for k in ("cpu", "hv_memory")}
        if cur is not None and all(mine[k] <= had[k] for k in mine):
            return  # asks for no more than it holds
        capacity = {n: v["utilization"] for n, v in cib["nodes"].items() if v["utilization"]}
        if not capacity:
            raise ValueError("admission control is on but no node has a capacity: apply the cluster's HA settings "
                             "(ha with cluster.admission_control) first")
        used = self._demand(cib["resources"], skip=rid)
        allowed = allowance(capacity, policy)
        for key, unit in (("cpu", "vCPUs"), ("hv_memory", "MiB")):
            if used[key] + mine[key] > allowed[key]:  # HA VMs, stopped ones included
                keep = ("%d host failure(s)" % policy[1]) if policy[0] == "hosts" else ("%d%% of the cluster" % policy[1])
                raise ValueError("admission control refuses VM %s: it needs %d %s and the HA VMs already use %d of the "
                                 "%d the cluster can give while keeping room for %s"
                                 % (name, mine[key], unit, used[key], allowed[key], keep))

    def _locations(self, name, rid, ours, p):
        want = {}
        for h in p.get("preferred_hosts") or []:
            want[location_id(name, "prefer", h)] = (h, PREFERRED_SCORE)
        for h in p.get("forbidden_hosts") or []:
            want[location_id(name, "avoid", h)] = (h, "-INFINITY")
        have = {c["id"]: (c["node"], c["score"]) for c in ours}
        for cid in sorted(have):
            if want.get(cid) != have[cid]:
                rule = xmlutil.tostring(ET.Element("rsc_location", {"id": cid}))
                self.act("remove placement rule %s of VM %s" % (cid, name), self._tool,
                         ["cibadmin", "--delete", "--xml-text", rule])
        for cid in sorted(want):
            if have.get(cid) != want[cid]:
                node, score = want[cid]
                self.act("%s host %s for VM %s" % ("forbid" if score == "-INFINITY" else "prefer", node, name),
                         self._tool,
                         ["cibadmin", "--create", "--scope", "constraints", "--xml-text", xmlutil.tostring(
                             ET.Element("rsc_location", {"id": cid, "rsc": rid, "node": node, "score": score}))])

    def _remove(self, name, rid, cur, st, cib, ours):
        """Out of HA, left as it is: a running VM keeps running where it runs, defined persistently there; a
        stopped one is defined on this CNA from its copy when no definition is here. Everything is read first; then
        the definitions (harmless while the cluster still manages the VM), then the VM unmanaged (pacemaker neither
        stops nor moves it), then its resource and rules removed."""
        where = st["resources"].get(rid, {}).get("nodes", [])
        config = cur["params"].get("config")
        local = self.cluster.local_node()
        plan = []  # (node, client, definition) to define
        for node in where:
            client = self.client if node == local else self._peers([node])[0]
            dom = client.domain(name)
            if dom is not None and not client.call("read persistence of", "VM '%s'" % name, dom.isPersistent):
                plan.append((node, client, self._definition_of(name, config, client)))
        if not where and self.client.domain(name) is None:
            if not config or not os.path.isfile(config):
                raise ValueError("VM %s is stopped and defined nowhere but in its definition copy %s, which this CNA "
                                 "does not see: run ha on a CNA that sees its datastore" % (name, config))
            self.need_local("taking VM %s out of HA (its definition is read from its copy)" % name)
            plan.append((local, self.client, self._definition_of(name, config, self.client)))
        for node, client, xml in plan:
            self.act("define VM %s persistently on %s" % (name, node), client.define_domain, xml)
        boot = cib["properties"].get(BOOTSTRAP, {})
        if boot.get("stop-orphan-resources") != "false":
            # pacemaker stops a running resource that was deleted ("orphan") unless told not to: a VM taken out of
            # HA must keep running, whatever the timing of the deletion and the refresh below
            self.act("keep deleted resources running (cluster property stop-orphan-resources=false)", self._tool,
                     ["crm_attribute", "--type", "crm_config", "--name", "stop-orphan-resources", "--update", "false"])
        self.act("stop the cluster managing VM %s" % name, self._tool,
                 ["crm_resource", "--resource", rid, "--meta", "--set-parameter", "is-managed",
                  "--parameter-value", "false"])
        for c in ours:
            rule = xmlutil.tostring(ET.Element("rsc_location", {"id": c["id"]}))
            self.act("remove placement rule %s of VM %s" % (c["id"], name), self._tool,
                     ["cibadmin", "--delete", "--xml-text", rule])
        self.act("remove VM %s from HA (resource %s)" % (name, rid), self._tool,
                 ["cibadmin", "--delete", "--xml-text", xmlutil.tostring(ET.Element("primitive", {"id": rid}))])
        # its history goes too: pacemaker would otherwise stop it as an orphan
        self.act("forget the cluster's history of VM %s" % name, self._refresh, rid)

    @staticmethod
    def _definition_of(name, config, client):
        """The VM's persistent definition: its copy (what the cluster started it from, with secrets), else what
        runs."""
        if config and os.path.isfile(config):
            with open(config) as f:
                return f.read()
        return client.domain_xml(name, secure=True)
