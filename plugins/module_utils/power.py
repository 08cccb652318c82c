# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""VM power states: what state a domain is in, and moving it to another one."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.kvmfusion.compute.plugins.module_utils.cluster import Cluster, vm_resource_id
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    DOMAIN_STATE,
    SHUTDOWN_ACPI,
    SHUTDOWN_AGENT,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.hosts import refuse_in_maintenance
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager


# Where the cna role writes corosync's configuration: this CNA is a node of an HA cluster.
COROSYNC_CONF = "/etc/corosync/corosync.conf"
COROSYNC_MARK = "# Written by kvmfusion.compute.cna"
# The states a wanted state ends in.
_ENDS = {"running": ("running",), "paused": ("paused",), "suspended": ("suspended",),
         "stopped": ("shutoff", "crashed", "nostate")}


def _cluster_node():
    """Whether this host is a node of an HA cluster the cna role formed (its corosync.conf)."""
    try:
        with open(COROSYNC_CONF) as f:
            return f.readline().startswith(COROSYNC_MARK)
    except (IOError, OSError):
        return False


def cluster_here(run_command, local, obj):
    """(Cluster, its status) when the host this code runs on is a node of a running HA cluster; None when it is not
    one, or when the client is remote (the cluster of the CNA it reaches is not known here). Fails closed, naming
    ``obj``, on a node of a cluster the cna role formed whose pacemaker does not answer: what runs where, and what is
    under HA, cannot be told there."""
    if not local:
        return None
    cl = Cluster(run_command)
    if cl.which("crm_mon") is None:
        return None
    st = cl.status()
    if st is None or not st["ready"]:
        if _cluster_node():
            raise ValueError("%s: this CNA is a node of an HA cluster whose pacemaker is not running here (yet), so "
                             "what the cluster runs where cannot be told; start pacemaker first (systemctl start "
                             "pacemaker)" % obj)
        return None
    return cl, st


def ha_resource(run_command, local, name):
    """The cluster resource of VM ``name`` when it is under HA on the cluster of this CNA (whether or not the cluster
    manages it right now), else None (cluster_here: None for a remote client, fails closed)."""
    here = cluster_here(run_command, local, "VM '%s'" % name)
    if here is None:
        return None
    rid = vm_resource_id(name)
    return rid if rid in here[0].resources_config() else None


def refuse_under_ha(run_command, local, name, what):
    """Refuse ``what`` (a change of the VM's disks or their chain) on a VM under HA. The cluster starts such a VM
    from its definition copy as a transient domain (VirtualDomain), where snapshot metadata does not survive a
    restart or a failover, and the copy is the cluster's: a disk chain changed behind it would have the VM start
    from the wrong image after a failover."""
    rid = ha_resource(run_command, local, name)
    if rid is not None:
        raise ValueError("VM '%s' is under HA (cluster resource %s): %s is refused, because the cluster restarts it "
                         "from its definition copy, where snapshots and disk changes made behind it are not kept; take "
                         "it out of HA first (kvmfusion.compute.ha state=absent), then put it back" % (name, rid, what))


def state_of(client, dom, name):
    st, _reason = client.call("read state of", "VM '%s'" % name, dom.state, 0)
    state = DOMAIN_STATE.get(st, str(st))
    if state == "shutoff" and client.call("read saved state of", "VM '%s'" % name, dom.hasManagedSaveImage, 0):
        return "suspended"
    return {"blocked": "running", "shutdown": "running"}.get(state, state)


class PowerManager(Manager):
    """Moves a VM between shutoff, running, paused and suspended (saved to disk).

    A helper of the VM manager (built with ``Manager.helper``): it records into the VM
    manager's journal and returns the state it found, not a Result.
    """

    def __init__(self, client, check_mode=False, run_command=None, journal=None, shutdown_timeout=120, force=False):
        super(PowerManager, self).__init__(client, check_mode=check_mode, run_command=run_command, journal=journal)
        self.timeout = shutdown_timeout
        self.force = force

    def ensure(self, name, dom, want, template=False):
        obj = "VM '%s'" % name
        cur = state_of(self.client, dom, name)
        if want in ("running", "restarted", "paused", "suspended") and template:
            raise ValueError("VM '%s' is a template: templates cannot be started (clone it)" % name)
        if cur == "pmsuspended" and want in ("running", "restarted", "paused", "stopped", "suspended"):
            # suspended to RAM by the guest itself: wake it (resume would be refused)
            self.act("wake up", self.client.call, "wake up", obj, dom.pMWakeup, 0)
            cur = "running"
        # The cluster is asked before a change, and for "stopped" always: a VM the cluster runs on another CNA may be
        # shut off here (a definition a failover left). A paused VM under HA runs here: it is resumed here.
        if want in ("restarted", "stopped") or (cur not in _ENDS.get(want, (cur,)) and cur != "paused"):
            ha = self._under_ha(name)
            if ha is not None:
                self._through_cluster(name, ha, want)
                return cur
        if want in ("running", "restarted", "paused") and cur in ("shutoff", "crashed", "nostate", "suspended"):
            refuse_in_maintenance(self.client, "VM '%s' cannot start" % name)
        if want == "running":
            if cur in ("shutoff", "crashed", "nostate", "suspended"):
                self.act("restore from disk" if cur == "suspended" else "start", self.client.call, "start", obj, dom.create)
            elif cur == "paused":
                self.act("resume", self.client.call, "resume", obj, dom.resume)
        elif want == "restarted":
            if cur == "running":
                self.act("reboot", self.client.call, "reboot", obj, dom.reboot, 0)
            elif cur == "paused" and self.force:
                self.act("reset", self.client.call, "reset", obj, dom.reset, 0)
                self.act("resume", self.client.call, "resume", obj, dom.resume)
            elif cur == "paused":
                # The graceful path, as for a running VM: the guest closes its files (a reset is force=true).
                self.act("resume", self.client.call, "resume", obj, dom.resume)
                self.act("reboot", self.client.call, "reboot", obj, dom.reboot, 0)
            else:
                self.act("start", self.client.call, "start", obj, dom.create)
        elif want == "paused":
            if cur in ("shutoff", "crashed", "nostate", "suspended"):
                self.act("start", self.client.call, "start", obj, dom.create)
                cur = "running"
            if cur == "running":
                self.act("pause", self.client.call, "pause", obj, dom.suspend)
        elif want == "suspended":
            if cur in ("running", "paused"):
                self.act("save to disk", self.client.call, "save", obj, dom.managedSave, 0)
            elif cur != "suspended":
                raise ValueError("VM '%s' is %s: only a running or paused VM can be suspended to disk" % (name, cur))
        elif want == "stopped":
            if cur == "suspended" and not self.force:
                raise ValueError("VM '%s' is suspended to disk: stopping it discards its saved memory (what was "
                                 "running in it is lost); set force=true to do that, or state=running to resume it "
                                 "first" % name)
            if cur == "suspended":
                self.act("discard saved state", self.client.call, "discard saved state of", obj,
                         dom.managedSaveRemove, 0)
            elif cur in ("running", "paused"):
                self.act("shut down", self._shutdown, name, dom, cur)
        return cur

    def _under_ha(self, name):
        """(resource id, the nodes running it) when the VM is under HA on the cluster of this CNA, else None. Asked
        only before a power change, and only where pacemaker runs."""
        here = cluster_here(self._run_command, self.local, "VM '%s'" % name)
        if here is None:
            return None
        cl, st = here
        rid = vm_resource_id(name)
        if rid not in cl.resources_config():
            return None
        res = st["resources"].get(rid, {})
        if st["maintenance_mode"] or (res and not res.get("managed", True)):
            return None  # HA is off (or off for this VM): the VM is handled directly
        return rid, res.get("nodes", [])

    def _through_cluster(self, name, ha, want):
        """A VM under HA is started, stopped and restarted by the cluster (which may start it on another CNA); a
        change behind its back would be taken for a failure, or undone."""
        rid, nodes = ha
        if want in ("paused", "suspended"):
            raise ValueError("VM '%s' is under HA (cluster resource %s): the cluster would take a %s VM for a failed "
                             "one; take it out of HA first (kvmfusion.compute.ha state=absent)" % (name, rid, want))
        tool = Cluster.which("crm_resource")
        wait = "--timeout=%ds" % (self.timeout + 60)
        if want == "restarted":
            self.act("restart through the HA cluster (resource %s)" % rid, self.run,
                     [tool, "--restart", "--resource", rid, wait])
            return
        role = "Started" if want == "running" else "Stopped"
        if bool(nodes) == (role == "Started"):
            return  # already so, on whichever CNA the cluster runs it
        # the cluster's stop is a shutdown that ends in a power-off after the VM's HA stop_timeout (the ha module)
        self.act("%s through the HA cluster (resource %s)" % ("start" if role == "Started" else "stop", rid),
                 self.run, [tool, "--resource", rid, "--meta", "--set-parameter", "target-role",
                            "--parameter-value", role])
        if not self.check_mode:
            self.run([tool, "--wait", wait])

    def _shutdown(self, name, dom, cur):
        obj = "VM '%s'" % name
        if cur == "paused":
            self.client.call("resume", obj, dom.resume)
        # Through the guest agent when it answers, else ACPI: both let the guest close its files.
        try:
            self.client.call("shut down", obj, dom.shutdownFlags, SHUTDOWN_AGENT | SHUTDOWN_ACPI)
        except Exception:  # pylint: disable=broad-except
            self.client.call("shut down", obj, dom.shutdownFlags, SHUTDOWN_ACPI)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if not self.client.call("read state of", obj, dom.isActive):
                return
            time.sleep(0.5)
        if not self.force:
            raise ValueError("VM '%s' did not shut down within %ds (guest agent and ACPI asked); set force=true "
                             "to power it off" % (name, self.timeout))
        self.record("power off (shutdown timed out)")
        self.client.call("power off", obj, dom.destroy)
