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
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

from ansible_collections.kvmfusion.compute.plugins.module_utils import hosts, migration, names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import PowerManager
from ansible_collections.kvmfusion.compute.plugins.module_utils.vmspec import kib

STATES = ("maintenance", "active")


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
        before = {"maintenance": mark is not None, "running": sorted(running)}
        if p["state"] == "active":
            if mark is not None:
                self.act("end the maintenance of %s" % host, hosts.clear_maintenance, self.client)
            return self.result(before, dict(before, maintenance=False), host=host, maintenance=None, moves=[],
                               shut_down=[], total_time_ms=0)
        opts = migration.desired_state({
            "name": "placeholder", "mode": "live", "storage": "auto", "compression": "none",
            "max_downtime": p.get("max_downtime"), "bandwidth": p.get("bandwidth"),
            "auto_converge": p.get("auto_converge"), "timeout": p.get("timeout"), "tls": p.get("tls")})
        plan, blocked = self.plan(running, opts)
        if blocked and not p.get("shutdown_unmovable"):
            raise ValueError("maintenance of %s is blocked: %s (or allow shutdown_unmovable)"
                             % (host, "; ".join("VM '%s': %s" % (vm, why) for vm, why in blocked)))
        if mark is None:
            self.act("mark %s in maintenance" % host, hosts.set_maintenance, self.client, p.get("reason"))
        for vm, peer, peer_host in plan:
            self.record("migrate %s to %s" % (vm, peer_host))
        for vm, why in blocked:
            self.record("shut down %s (%s)" % (vm, why))
        after = {"maintenance": True, "running": []}
        if self.check_mode:
            return self.result(before, after, host=host, maintenance=None, moves=[], shut_down=[], total_time_ms=0)
        start = time.time()
        moves, failures = self._move(plan, opts, parallel)
        shut = []
        for vm, _why in blocked:
            dom = self.client.domain(vm)
            if dom is not None:
                PowerManager(self.client, check_mode=False, run_command=self._run_command,
                             shutdown_timeout=int(p.get("shutdown_timeout") or 120), force=True).ensure(vm, dom, "stopped")
                shut.append(vm)
        if failures:
            raise ValueError("maintenance of %s is incomplete: %s could not move (%s); %s moved; the host stays in "
                             "maintenance, run the task again" % (
                                 host, ", ".join(vm for vm, _e in failures), "; ".join(e for _vm, e in failures),
                                 ", ".join("%s to %s" % (m["vm"], m["to"]) for m in moves) or "nothing"))
        return self.result(before, after, host=host, maintenance=hosts.maintenance(self.client), moves=moves,
                           shut_down=shut, total_time_ms=int((time.time() - start) * 1000))

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
