# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host maintenance mode: evacuate a CNA by live migration, keep new VMs off it, return it.

The plan is made before anything moves: every running VM gets a destination among the peers
(not in maintenance, every migration precheck passed, memory counted for the VMs already placed
there, largest VMs first). A VM with no destination blocks the maintenance with its reason unless
the user allows it to be shut down. Then the host is marked (nothing new starts or lands there),
and the VMs move, ``parallel`` at a time. A failed move leaves that VM running here and the host
marked: the task fails naming what moved and what did not, and a re-run goes on from there.

On a node of the CNAs' HA cluster, the VMs under HA that the cluster manages are the cluster's to move: the node
is put in standby (``crm_attribute --node NODE --name standby --update on --lifetime forever``), the cluster moves
them, and the task waits for it to settle; only the other VMs are evacuated by live migration. A standby that
would leave an HA VM nowhere to run (every other node offline or in standby, the others forbidden for it, no room
under utilization placement) is refused before any change. Ending the maintenance takes the node out of standby.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

from ansible_collections.kvmfusion.compute.plugins.module_utils import hosts, migration, names, power, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.cluster import (
    Cluster, node_state, placement, usable, vm_resources)
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import PowerManager
from ansible_collections.kvmfusion.compute.plugins.module_utils.vmspec import kib

STATES = ("maintenance", "active")


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class MaintenanceManager(Manager):
    """host_maintenance on the CNA of ``client``; ``peers`` are clients of the CNAs VMs may go to."""

    def __init__(self, client, peers, check_mode=False, run_command=None, journal=None):
        super(MaintenanceManager, self).__init__(client, check_mode=check_mode, run_command=run_command,
                                                 journal=journal)
        self.peers = list(peers or [])

    def converge(self, params):
        p = params
        if p["state"] not in STATES:
            raise ValueError("state must be one of %s, got %r" % (", ".join(STATES), p["state"]))
        parallel = int(p.get("parallel") or 1)
        if not 1 <= parallel <= 16:
            raise ValueError("parallel must be between 1 and 16, got %d" % parallel)
        host = self.client.host_info()["hostname"]
        mark = hosts.maintenance(self.client)
        running = self._running()
        try:
            ha = self._cluster(host)
        except ValueError:
            # pacemaker stopped on a node of our cluster (patching it, say): a maintenance already in place with
            # nothing running here is no change; anything else needs to know what the cluster runs where
            if p["state"] != "maintenance" or mark is None or running:
                raise
            ha = None
        before = {"maintenance": mark is not None, "running": sorted(running)}
        if ha is not None:
            before["standby"] = ha["standby"]
        if p["state"] == "active":
            if mark is not None:
                self.act("end the maintenance of %s" % host, hosts.clear_maintenance, self.client)
            if ha is not None and ha["standby"]:
                self.act("take cluster node %s out of standby" % ha["node"], self._standby, ha["node"], "off")
            after = dict(before, maintenance=False, **({"standby": False} if ha is not None else {}))
            return self.result(before, after, host=host, maintenance=None, moves=[], shut_down=[], total_time_ms=0,
                               cluster_moves=[], standby=self._standby_now(ha, False))
        opts = migration.desired_state({
            "name": "placeholder", "mode": "live", "storage": "auto", "compression": "none",
            "max_downtime": p.get("max_downtime"), "bandwidth": p.get("bandwidth"),
            "auto_converge": p.get("auto_converge"), "timeout": p.get("timeout"), "tls": p.get("tls")})
        # the VMs under HA the cluster manages are the cluster's to move; the others are evacuated here
        by_cluster = self._by_cluster(ha)
        direct = {vm: mem for vm, mem in running.items() if not (ha and ha["vms"].get(vm, {}).get("managed"))}
        stuck = self._nowhere(ha, by_cluster)
        plan, blocked = self.plan(direct, opts)
        if stuck or (blocked and not p.get("shutdown_unmovable")):
            why = ["VM '%s' (under HA): %s" % (vm, reason) for vm, reason in stuck]
            hints = []
            if blocked and not p.get("shutdown_unmovable"):
                why += ["VM '%s': %s" % (vm, reason) for vm, reason in blocked]
                hints.append("or allow shutdown_unmovable")
            if stuck:
                hints.append("VMs under HA are not shut down for a maintenance: change their forbidden_hosts "
                             "(kvmfusion.compute.ha) or bring another node of the cluster back")
            raise ValueError("maintenance of %s is blocked: %s (%s)" % (host, "; ".join(why), "; ".join(hints)))
        if mark is None:
            self.act("mark %s in maintenance" % host, hosts.set_maintenance, self.client, p.get("reason"))
        if ha is not None and not ha["standby"]:
            self.act("put cluster node %s in standby: the cluster moves %s" % (
                ha["node"], ", ".join(sorted(by_cluster)) or "no VM under HA (none runs here)"),
                self._standby, ha["node"], "on")
        for vm, peer, peer_host in plan:
            self.record("migrate %s to %s" % (vm, peer_host))
        for vm, why in blocked:
            self.record("shut down %s (%s)" % (vm, why))
        after = {"maintenance": True, "running": []}
        if ha is not None:
            after["standby"] = True
        standby = True if ha is not None else None
        if self.check_mode:
            return self.result(before, after, host=host, maintenance=None, moves=[], shut_down=[], total_time_ms=0,
                               cluster_moves=[], standby=standby)
        start = time.time()
        cluster_moves, left = self._cluster_moves(ha, by_cluster, int(p.get("timeout") or migration.CLUSTER_WAIT))
        moves, failures = self._move(plan, opts, parallel)
        shut = []
        for vm, _why in blocked:
            dom = self.client.domain(vm)
            if dom is not None:
                PowerManager(self.client, check_mode=False, run_command=self._run_command,
                             shutdown_timeout=int(p.get("shutdown_timeout") or 120), force=True).ensure(vm, dom, "stopped")
                shut.append(vm)
        if failures or left:
            what = []
            if failures:
                what.append("%s could not move (%s)" % (", ".join(vm for vm, _e in failures),
                                                        "; ".join(e for _vm, e in failures)))
            if left:
                what.append("the cluster did not move %s" % ", ".join(left))
            raise ValueError("maintenance of %s is incomplete: %s; %s moved; the host stays in maintenance, run the "
                             "task again" % (host, "; ".join(what), ", ".join(
                                 "%s to %s" % (m["vm"], m["to"]) for m in cluster_moves + moves) or "nothing"))
        return self.result(before, after, host=host, maintenance=hosts.maintenance(self.client), moves=moves,
                           shut_down=shut, total_time_ms=int((time.time() - start) * 1000),
                           cluster_moves=cluster_moves, standby=self._standby_now(ha, True))

    # the HA cluster -----------------------------------------------------------------------
    def _cluster(self, host):
        """This CNA as a node of its HA cluster: {cluster, status, cib, node, standby, vms}, or None when it is
        not one (refused, one line, when it is one whose pacemaker does not answer)."""
        here = power.cluster_here(self._run_command, self.local, "maintenance of %s" % host)
        if here is None:
            return None
        cl, st = here
        node = cl.local_node()
        mine = [n for n in st["nodes"] if n["name"] == node]
        if not mine:
            return None
        cib = cl.cib()
        return {"cluster": cl, "status": st, "cib": cib, "node": node, "standby": mine[0]["standby"],
                "vms": vm_resources(st, cib["resources"])}

    @staticmethod
    def _by_cluster(ha):
        """{VM: its resource} of the VMs under HA the cluster manages that run here."""
        if ha is None:
            return {}
        return {vm: v["resource"] for vm, v in ha["vms"].items() if v["managed"] and ha["node"] in v["nodes"]}

    def _nowhere(self, ha, by_cluster):
        """[(VM, why)] of the VMs under HA the standby would leave with nowhere to run."""
        if not by_cluster:
            return []
        st, cib = ha["status"], ha["cib"]
        if not st["quorate"]:
            return [(vm, "this CNA's partition of the cluster has no quorum, so the cluster would move nothing")
                    for vm in sorted(by_cluster)]
        others = [n for n in st["nodes"] if n["name"] != ha["node"]]
        room = self._room(ha, [n["name"] for n in others if usable(n)])
        need = {rid: cib["resources"].get(rid, {}).get("utilization", {}) for rid in by_cluster.values()}
        out = []
        # the largest first, as room is counted down
        for vm in sorted(by_cluster, key=lambda v: (-_int(need[by_cluster[v]].get("hv_memory")), v)):
            rid = by_cluster[vm]
            forbidden = placement(cib, rid)["forbidden"]
            fits = [n for n in others if usable(n) and n["name"] not in forbidden]
            if not fits:
                out.append((vm, "the cluster would have nowhere else to run it (%s)" % ", ".join(
                    "%s %s" % (n["name"], "forbidden for it" if n["name"] in forbidden and usable(n) else
                               node_state(n)) for n in others) if others else "no other node"))
                continue
            if room is None:
                continue
            fits = [n["name"] for n in fits if all(room[n["name"]].get(k, 0) >= _int(v) for k, v in need[rid].items()
                                                   if k in room[n["name"]])]
            if not fits:
                out.append((vm, "no other node has room for it (%s)" % ", ".join(
                    "%s %s" % (k, v) for k, v in sorted(need[rid].items()))))
                continue
            best = max(fits, key=lambda n: (room[n].get("hv_memory", 0), n))
            for k, v in need[rid].items():
                if k in room[best]:
                    room[best][k] -= _int(v)
        return out

    @staticmethod
    def _room(ha, names):
        """{node: {attribute: free}} under a placement strategy that counts utilization; None when none does."""
        cib = ha["cib"]
        strategy = cib["properties"].get("cib-bootstrap-options", {}).get("placement-strategy", "default")
        if strategy == "default":
            return None
        room = {}
        for n in names:
            cap = cib["nodes"].get(n, {}).get("utilization", {})
            room[n] = {k: _int(v) for k, v in cap.items()}
        for v in ha["vms"].values():
            for n in v["nodes"]:
                if n in room:
                    used = cib["resources"].get(v["resource"], {}).get("utilization", {})
                    for k, amount in used.items():
                        if k in room[n]:
                            room[n][k] -= _int(amount)
        return room

    def _standby_now(self, ha, planned):
        """The node's standby as the cluster reports it after the task (``planned`` in check mode); None when this
        CNA is no node of a cluster."""
        if ha is None:
            return None
        if self.check_mode:
            return planned
        st = ha["cluster"].status() or {"nodes": []}
        return any(n["name"] == ha["node"] and n["standby"] for n in st["nodes"])

    def _standby(self, node, value):
        path = Cluster.which("crm_attribute")
        self.run([path, "--node", node, "--name", "standby", "--update", value, "--lifetime", "forever"])

    def _cluster_moves(self, ha, by_cluster, timeout):
        """Wait for the cluster to move the HA VMs off this node: ([{vm, to}], [VMs it did not move, and why])."""
        if not by_cluster:
            return [], []
        error = None
        try:
            self.run([Cluster.which("crm_resource"), "--wait", "--timeout=%ds" % timeout])
        except ValueError as e:
            error = str(e)
        st = ha["cluster"].status() or {"resources": {}}
        moved, left = [], []
        for vm in sorted(by_cluster):
            where = st["resources"].get(by_cluster[vm], {}).get("nodes", [])
            if where and ha["node"] not in where:
                moved.append({"vm": vm, "to": where[0]})
            else:
                left.append("%s (%s)" % (vm, "still on %s" % ha["node"] if where else "stopped"))
        if left and error:
            left[-1] += " after %d s (%s)" % (timeout, error)
        return moved, left

    def _running(self):
        out = {}
        for name in self.client.domain_names():
            dom = self.client.domain(name)
            if dom is not None and self.client.call("read state of", "VM '%s'" % name, dom.isActive):
                root = xmlutil.parse(self.client.domain_xml(name))
                out[name] = kib(root.find("currentMemory")) * 1024
        return out

    def plan(self, running, opts):
        """([(vm, peer client, peer host)], [(vm, reason)]): a destination for every running VM, or why not."""
        candidates, reasons = [], []
        for peer in self.peers:
            info = peer.host_info()
            if info.get("host_uuid") == self.client.host_info().get("host_uuid"):
                continue
            m = hosts.maintenance(peer)
            if m is not None:
                reasons.append("%s is in maintenance" % info["hostname"])
                continue
            free = peer.call("read free memory of", "the host", peer.conn.getFreeMemory)
            candidates.append([peer, info["hostname"], free])
        plan, blocked = [], []
        for vm in sorted(running, key=lambda v: (-running[v], v)):
            need = running[vm] + migration.MEMORY_MARGIN
            why = list(reasons) if (reasons or candidates) else ["no other CNA was given (peers)"]
            placed = False
            for cand in sorted(candidates, key=lambda c: (-c[2], c[1])):
                peer, peer_host, free = cand
                if need > free:
                    why.append("%s has %d MiB free for it" % (peer_host, free >> 20))
                    continue
                try:
                    mgr = migration.MigrationManager(self.client, peer, check_mode=True)
                    dom = self.client.domain(names.validate_name(vm, kind="VM"))
                    uuid = self.client.call("read the UUID of", "VM '%s'" % vm, dom.UUIDString)
                    mgr.precheck(vm, "live", dict(opts, name=vm), peer_host, uuid)
                except ValueError as e:
                    # the reason, without the VM's name (the blocked list names it)
                    why.append(str(e).replace("VM '%s': " % vm, "", 1))
                    continue
                cand[2] -= need
                plan.append((vm, peer, peer_host))
                placed = True
                break
            if not placed:
                blocked.append((vm, "; ".join(why)))
        return plan, blocked

    def _move(self, plan, opts, parallel):
        moves, failures = [], []
        lock = threading.Lock()
        queue = list(plan)

        def worker():
            while True:
                with lock:
                    if not queue:
                        return
                    vm, peer, peer_host = queue.pop(0)
                try:
                    mgr = migration.MigrationManager(self.client, peer, check_mode=False,
                                                     run_command=self._run_command)
                    res = mgr.converge(dict(opts, name=vm, mode="live"))
                    stats = res.values.get("migration") or {}
                    with lock:
                        moves.append({"vm": vm, "to": peer_host, "downtime_ms": stats.get("downtime_ms"),
                                      "total_time_ms": stats.get("total_time_ms"),
                                      "transferred_bytes": stats.get("transferred_bytes")})
                        self.warnings.extend(res.warnings)
                except Exception as e:  # pylint: disable=broad-except
                    with lock:
                        failures.append((vm, str(e)))
        threads = [threading.Thread(target=worker, name="kvmfusion-evacuate-%d" % i) for i in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(moves, key=lambda m: m["vm"]), sorted(failures)
