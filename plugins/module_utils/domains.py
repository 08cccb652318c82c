# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""VMs: the manager that converges one VM (definition, online changes, disks, power state)
and what vm_info reports. The spec and its XML are in vmspec, power states in power; disks
are converged by disks.DiskManager, the one implementation the disk module uses too.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.kvmfusion.compute.plugins.module_utils import (
    cpumodel, diskspec, disks, fileops, images, names, portsec, xmlutil)
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    AFFECT_LIVE,
    INTERFACE_ADDRESSES_SRC_AGENT,
    METADATA_ELEMENT,
    UNDEFINE_MANAGED_SAVE,
    UNDEFINE_NVRAM,
    UNDEFINE_SNAPSHOTS_METADATA,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import LibvirtClientError
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import attached_disks
from ansible_collections.kvmfusion.compute.plugins.module_utils.hosts import local_facts, refuse_in_maintenance
from ansible_collections.kvmfusion.compute.plugins.module_utils.images import write_definition_copy  # noqa: F401 (imported from here too)
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Manager
from ansible_collections.kvmfusion.compute.plugins.module_utils.network import guest_checksums, program_ports, security_state
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import PowerManager, state_of
from ansible_collections.kvmfusion.compute.plugins.module_utils.vmspec import (
    build_xml,
    clone_of,
    desired_state,
    effective_shares,
    is_template,
    kib,
    managed_view,
    nic_element,
    nic_view,
    qos_view,
)


def _hardware(nic):
    """What of a NIC needs a restart to change (its port security does not)."""
    return dict(nic, mac=None, security_group=None, bound_ips=None)


class VmManager(Manager):
    """Converges one VM: its definition, online changes, disks and power state."""

    REPORTS_REBOOT = True

    def __init__(self, client, check_mode=False, run_command=None, journal=None, shutdown_timeout=120, force=False):
        super(VmManager, self).__init__(client, check_mode=check_mode, run_command=run_command, journal=journal)
        self.power = self.helper(PowerManager, shutdown_timeout=shutdown_timeout, force=force)
        self._disk_helper = None

    def converge(self, params):
        """The vm module: the VM as declared (definition, disks, power state), or absent."""
        p = params
        name = names.validate_name(p["name"], kind="VM")
        if p["state"] == "absent":
            before = self.absent(name, delete_disks=p.get("delete_disks"))
            return self.result(before, None, vm=None, previous_state="absent" if before is None else "defined")
        d = desired_state(p)
        if "template" in d:
            # a template's disks are made read-only (writable again): files, so refused remotely up front
            self.need_local("VM '%s': keeping a template's disks %s" % (name, "read-only" if d["template"] else "writable"))
        specs = self.disk_specs(name, p.get("disks"))
        hyper = self.hypervisor(p.get("hypervisor") or "auto")
        if (p.get("hypervisor") or "auto") != "auto":
            d["hypervisor"] = hyper
        dom = self.client.domain(name)
        self.cluster_cpu_default(d, p, hyper, dom)
        self.cluster_machine_default(d, dom)
        template = d.get("template")
        if template is None and dom is not None:
            template = is_template(self.client.domain_xml(name, inactive=True))
        if template and p["state"] in ("running", "restarted", "paused", "suspended"):
            raise ValueError("VM '%s' is a template: templates cannot be started (clone it)" % name)
        previous = state_of(self.client, dom, name) if dom is not None else "undefined"
        if dom is None:
            self._refuse_if_defined_elsewhere(name, specs)
            if p["state"] in ("running", "restarted", "paused"):
                refuse_in_maintenance(self.client, "VM '%s' cannot start" % name)
        try:
            before, after = self.present(d, hyper, specs, p["state"])[:2]
            dom = self.client.domain(name)
            if dom is not None and p["state"] != "present":
                self.power.ensure(name, dom, p["state"], template=bool(template))
            elif dom is None and p["state"] in ("running", "restarted", "paused"):
                self.record("start")
        except Exception:
            if previous == "undefined" and not self.check_mode:
                # A new VM is made completely or not at all: what this task made goes, the cause is reported.
                self._undo_new_vm(name)
            raise
        info = None
        if dom is not None and not self.check_mode:
            # a VM under HA stopped through the cluster was a transient domain: gone from this CNA now
            dom = self.client.domain(name)
        if dom is not None and not self.check_mode:
            self._refresh_definition_copy(name)
            info = vm_facts(self.client, dom, self.local)
        return self.result(before, after, vm=info, previous_state=previous)

    def _refuse_if_defined_elsewhere(self, name, specs):
        """VM names are unique cluster-wide: a VM this CNA does not have, whose definition copy is on the datastore
        of its system disk, is defined on another CNA (migrated there, or made there). Defining it here too would
        make two VMs of one name on the same disks; the datastore, which every CNA sees, tells."""
        if not specs or not self.local:
            return
        pool = self.client.pool(specs[0]["datastore"])
        if pool is None or not self.client.call("read state of", "datastore '%s'" % specs[0]["datastore"],
                                                pool.isActive):
            return
        try:
            directory = images.datastore_dir(self.client, pool, specs[0]["datastore"], "definition copies")
        except ValueError:
            return
        copy = images.definition_copy_name(directory, name)
        if os.path.exists(copy):
            raise ValueError("VM '%s' is not on %s but its definition copy %s is on datastore %s: it is defined on "
                             "another CNA; run the task there (or remove the VM there first)"
                             % (name, self.client.host_info()["hostname"], copy, specs[0]["datastore"]))

    def _undo_new_vm(self, name):
        dom = self.client.domain(name)
        if dom is not None:
            if self.client.call("read state of", "VM '%s'" % name, dom.isActive):
                self.client.call("power off", "VM '%s'" % name, dom.destroy)
            self.client.call("undefine", "VM '%s'" % name, dom.undefineFlags,
                             UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS_METADATA | UNDEFINE_NVRAM)
        for path in reversed(self._disk_helper.created if self._disk_helper else []):
            vol = self.client.volume_by_path(path)
            if vol is not None:
                self.client.call("delete", "disk %s" % path, vol.delete, 0)
            elif os.path.lexists(path):
                os.unlink(path)

    def _refresh_definition_copy(self, name):
        """After a change, the copy beside the system disk says what libvirt now holds (on the local CNA only)."""
        copy = images.definition_copy_path(self.client.domain_xml(name, inactive=True))
        if copy and self.local and self.actions:
            write_definition_copy(self.client, name, copy)

    def cluster_cpu_default(self, d, p, hyper, dom):
        """Resolve the cluster CPU model (the cna role's ``cluster_cpu`` fact) into ``d``.

        New KVM VMs get it unless ``cpu_model`` is set; ``cpu_model: cluster`` asks for it on any VM. A
        VM that has it keeps its features when ``cpu_features`` is set (the user's policies go on top).
        """
        wanted = p.get("cpu_model")
        cluster = local_facts().get("cluster_cpu") if self.local else None
        if wanted == "cluster" and not cluster:
            raise ValueError("VM '%s': cpu_model cluster needs the cluster CPU model, which the cna role records in "
                             "this CNA's facts (ansible_local.kvmfusion.cluster_cpu); it has none" % d["name"])
        if not cluster:
            return
        if wanted is None:
            if dom is None:
                use = hyper == "kvm"
            else:
                have = cpumodel.parse_cpu_of_domain(self.client.domain_xml(d["name"], inactive=True))
                use = "cpu_features" in d and cpumodel.same_family(have, cluster)
            if not use:
                return
        elif wanted != "cluster":
            return
        d["cpu_model"] = cluster["model"]
        d["cpu_vendor"] = cluster.get("vendor")
        d["cpu_features"] = dict(cluster.get("features") or {}, **(d.get("cpu_features") or {}))

    def cluster_machine_default(self, d, dom):
        """A new VM's machine type alias (pc by default, or q35) becomes the newest version of it every CNA of the
        cluster provides (the cna role's ``cluster_machine_types`` fact), not the newest of this CNA's QEMU: so
        a VM made on a CNA of a newer generation can still move to the others."""
        if dom is not None or not self.local:
            return
        machines = local_facts().get("cluster_machine_types") or {}
        alias = d.get("machine", "pc")
        if machines.get(alias):
            d["machine"] = machines[alias]

    def hypervisor(self, wanted):
        offered = self.client.host_info()["domain_types"]
        if wanted == "auto":
            return offered[0]
        if wanted not in offered:
            raise ValueError("hypervisor %s is not offered by %s (it offers %s)" % (wanted, self.uri, ", ".join(offered)))
        return wanted

    def disk_specs(self, vm, disk_options):
        specs = []
        for i, opts in enumerate(disk_options or []):
            o = dict(opts or {})
            o["vm"] = vm
            o.setdefault("attached", True)
            o.setdefault("mode", "persistent")
            o.setdefault("bus", "virtio")
            if not o.get("name") or not o.get("datastore"):
                raise ValueError("VM '%s': disk %d needs datastore and name" % (vm, i))
            specs.append(diskspec.desired_state(o))
        names_seen = [(s["datastore"], s["name"]) for s in specs]
        if len(set(names_seen)) != len(names_seen):
            raise ValueError("VM '%s': the same disk is listed twice" % vm)
        return specs

    def present(self, d, hyper, disk_specs, state):
        name = d["name"]
        self._known_security_groups(d)
        dom = self.client.domain(name)
        before = after = None
        if dom is None:
            if state == "running" and d.get("template"):
                raise ValueError("VM '%s' is a template: templates cannot be started (clone it)" % name)
            xml = guest_checksums(self, build_xml(d, hyper))
            self.act("define", self.client.define_domain, xml)
            after = dict(d)
        else:
            # Read with secrets (SECURE): the redefinition keeps a VNC/SPICE password.
            existing = self.client.domain_xml(name, inactive=True, secure=True)
            before = managed_view(existing, d)
            want = dict(d)
            if "nics" in want:
                want["nics"] = [dict(n, mac=n["mac"]) for n in want["nics"]]
            after = want
            if before != want:
                running = bool(self.client.call("read state of", "VM '%s'" % name, dom.isActive))
                if running and want.get("template") and not before.get("template"):
                    raise ValueError("VM '%s' is running: stop it before making it a template" % name)
                if before.get("template") and not want.get("template"):
                    self._refuse_if_clones_stand_on(name)
                changed = sorted(k for k in want if want.get(k) != before.get(k))
                # An existing VM keeps its domain type unless the user named one (d["hypervisor"]).
                new_xml = guest_checksums(self, build_xml(d, d.get("hypervisor") or xmlutil.parse(existing).get("type"),
                                                          existing))
                self.act("update %s" % ", ".join(changed), self.client.define_domain, new_xml)
                if running:
                    self._live_changes(name, dom, before, want, changed)
        # Disks through the disk module's code: one implementation.
        mgr = self._disk_helper = self.helper(disks.DiskManager)
        system_disk = None
        # A VM this check-mode run would define does not exist yet: its disks' targets are predicted.
        planned = [] if dom is None and self.check_mode else None
        for spec in disk_specs:
            path = mgr.ensure(spec, planned_targets=planned)[4]
            system_disk = system_disk or path
        if "template" in d and self.client.domain(name) is not None:
            self._template_disks(name, d["template"])
        return before, after, system_disk

    def _template_disks(self, name, template):
        """A template's disks are read-only bases for clones: nobody writes them by accident."""
        want = 0o444 if template else 0o600
        self.need_local("VM '%s': keeping a template's disks %s" % (name, "read-only" if template else "writable"))
        paths = [src for el, src, _m in attached_disks(self.client, name, inactive=True)
                 if el.get("type") == "file" and el.get("device", "disk") == "disk" and src]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ValueError("VM '%s': disk file(s) %s not found on this host" % (name, ", ".join(missing)))
        wrong = [p for p in paths if os.stat(p).st_mode & 0o777 != want]
        if wrong and not template:
            self._refuse_if_clones_stand_on(name, wrong)
        if wrong:
            self.act("make disks %s" % ("read-only" if template else "writable"), self._chmod, wrong, want)

    def _refuse_if_clones_stand_on(self, name, paths=None):
        if paths is None:
            paths = [src for el, src, _m in attached_disks(self.client, name, inactive=True)
                     if el.get("type") == "file" and el.get("device", "disk") == "disk" and src]
        self.need_local("VM '%s': finding what stands on a template's disks" % name)
        deps = images.dependants_of(self.client, paths, exclude_vm=name)
        if deps:
            raise ValueError("VM '%s' cannot stop being a template: linked clones stand on its disks (%s)"
                             % (name, images.describe_dependants(deps)))

    @staticmethod
    def _chmod(paths, mode):
        for p in paths:
            os.chmod(p, mode)

    def _live_changes(self, name, dom, before, want, changed):
        obj = "VM '%s'" % name
        for key in changed:
            if key == "vcpus" and want.get("max_vcpus", before.get("max_vcpus")) == before.get("max_vcpus"):
                self.act("set %d vCPUs live" % want["vcpus"], self.client.call, "set vCPUs of", obj,
                         dom.setVcpusFlags, want["vcpus"], AFFECT_LIVE)
            elif key == "memory" and want.get("max_memory") == before.get("max_memory"):
                self.act("balloon memory to %d bytes live" % want["memory"], self.client.call, "set memory of", obj,
                         dom.setMemoryFlags, want["memory"] // 1024, AFFECT_LIVE)
            elif key == "qos" and want["qos"].get("memory_reservation") == before["qos"].get("memory_reservation"):
                self.act("set QoS live", self._qos_live, dom, want["qos"])
            elif key == "nics":
                self._nics_live(name, dom, before["nics"], want["nics"])
                self._ports_live(name, dom, before["nics"], want["nics"])
            elif key in ("description", "template", "name"):
                continue
            else:
                self.reboot_required = True

    def _qos_live(self, dom, qos):
        sched = {}
        shares = effective_shares(qos)
        if shares:
            sched["cpu_shares"] = shares
        sched["vcpu_period"] = 100000
        sched["vcpu_quota"] = qos["cpu_limit"] * 1000 if qos.get("cpu_limit") else -1
        self.client.call("set CPU QoS of", "VM '%s'" % dom.name(), dom.setSchedulerParametersFlags, sched, AFFECT_LIVE)
        mem = {"hard_limit": qos["memory_limit"] // 1024 if qos.get("memory_limit") else -1,
               "soft_limit": qos["memory_soft_limit"] // 1024 if qos.get("memory_soft_limit") else -1}
        # libvirt's "unlimited" is VIR_DOMAIN_MEMORY_PARAM_UNLIMITED (2^53 - 1 KiB)
        mem = dict((k, v if v >= 0 else 9007199254740991) for k, v in mem.items())
        self.client.call("set memory QoS of", "VM '%s'" % dom.name(), dom.setMemoryParameters, mem, AFFECT_LIVE)

    def _nics_live(self, name, dom, cur, want):
        obj = "VM '%s'" % name
        live = xmlutil.parse(self.client.domain_xml(name))
        live_nics = live.findall("devices/interface")
        for i, nic in enumerate(want):
            if i >= len(cur):
                self.act("hot-plug NIC %d" % i, self.client.call, "hot-plug a NIC into", obj, dom.attachDeviceFlags,
                         xmlutil.tostring(self._persistent_nic(name, i, nic)), AFFECT_LIVE)
            elif (_hardware(cur[i]) != _hardware(nic)) or (nic["mac"] and nic["mac"] != cur[i]["mac"]):
                self.reboot_required = True
        for i in range(len(want), len(cur)):
            if i < len(live_nics):
                self.act("hot-unplug NIC %d" % i, self.client.call, "hot-unplug a NIC from", obj,
                         dom.detachDeviceFlags, xmlutil.tostring(live_nics[i]), AFFECT_LIVE)
                nic = live_nics[i]
                if xmlutil.find_attr(nic, "virtualport", "type") == "openvswitch" and self.local:
                    # no hook runs on an unplug: the port's rules go with it
                    self.act("remove port security of NIC %d" % i, self.run,
                             portsec.ofctl_batch(xmlutil.find_attr(nic, "source", "bridge")),
                             "\n".join(portsec.removal([xmlutil.find_attr(nic, "mac", "address")])) + "\n")

    def _known_security_groups(self, d):
        """A NIC's security group must exist on this CNA: otherwise the hook refuses to start the VM."""
        wanted = sorted(set(n["security_group"] for n in d.get("nics") or [] if n.get("security_group")))
        if not wanted or not self.local:
            return
        have = security_state(self)["groups"]
        missing = [g for g in wanted if g not in have]
        if missing:
            raise ValueError("VM '%s': security group %s is not defined on this CNA (kvmfusion.compute.security_group "
                             "defines it)" % (d["name"], ", ".join(missing)))

    def _ports_live(self, name, dom, before_nics, want_nics):
        """The running VM takes the definition's port security: its live metadata (which a live migration
        carries) and its ports' rules on this CNA. A hot-plugged NIC gets its port group's rules too: the hook
        runs when a VM starts, not when a NIC is plugged."""
        plugged = any(n.get("network") for n in want_nics[len(before_nics):])
        if self.check_mode:
            def sec(nics):
                return [(i, n.get("security_group"), n.get("bound_ips") or []) for i, n in enumerate(nics)
                        if n.get("security_group") or n.get("bound_ips")]
            changed = sec(before_nics) != sec(want_nics)
            if changed:
                self.record("set port security of the running VM")
            if (changed or plugged) and self.local:
                self.record("program port security of the running VM's DVS ports")
            return
        want = portsec.ports_meta(xmlutil.parse(self.client.domain_xml(name, inactive=True)))
        live = portsec.ports_meta(xmlutil.parse(self.client.domain_xml(name)))
        changed = portsec.settings(want) != portsec.settings(live)
        if changed:
            for mac, v in want.items():
                if v.get("learn") and mac in live and live[mac].get("learn") == v["learn"]:
                    v["learned"] = live[mac].get("learned") or []  # what the guest leased stays bound
            el = portsec.ports_element(want, namespaced=False)
            self.act("set port security of the running VM", self.client.call, "set port metadata of", "VM '%s'" % name,
                     dom.setMetadata, METADATA_ELEMENT, xmlutil.tostring(el) if el is not None else None,
                     portsec.PORTS_KEY if el is not None else None, portsec.PORTS_NS, AFFECT_LIVE)
        if (changed or plugged) and self.local:
            self.act("program port security of the running VM's DVS ports", program_ports, self,
                     lambda vm, p: vm == name, None, False)

    def _persistent_nic(self, name, index, nic):
        """The NIC as now defined (with the MAC libvirt gave it), so live and persistent agree."""
        if self.check_mode:
            return nic_element(nic)
        root = xmlutil.parse(self.client.domain_xml(name, inactive=True))
        el = root.findall("devices/interface")[index]
        for addr in el.findall("address"):
            el.remove(addr)
        return el

    def absent(self, name, delete_disks=False):
        dom = self.client.domain(name)
        if dom is None:
            return None
        existing = self.client.domain_xml(name, inactive=True)
        before = {"name": name}
        volumes = []
        if delete_disks:
            self.need_local("VM '%s': deleting its disks (and finding what stands on them)" % name)
            # The VM's images down to each disk's own base (snapshot layers included) and its memory
            # files; below the base (a template a linked clone stands on) nothing is the VM's.
            files, mem_files = images.owned_files(self.client, name)
            for f in sorted(files):
                others = [u for u, _t in images.users_of(self.client, f) if u != name]
                if others:
                    raise ValueError("VM '%s': disk %s is also used by %s; detach it there or keep the disks"
                                     % (name, f, ", ".join(sorted(set(others)))))
            if not self.client.call("read state of", "VM '%s'" % name, dom.isActive):
                # stopped here, yet a file is open read-write: a VM on another CNA of the shared datastore uses it
                locked = sorted(f for f in files if fileops.lease_held(f))
                if locked:
                    raise ValueError("VM '%s': disk(s) %s are open by a running VM on another CNA (lease held); "
                                     "nothing was deleted" % (name, ", ".join(locked)))
            deps = images.dependants_of(self.client, sorted(files), exclude_vm=name)
            if deps:
                raise ValueError("VM '%s' cannot be deleted with its disks: linked clones stand on them (%s); "
                                 "delete the clones first" % (name, images.describe_dependants(deps)))
            for f in sorted(files):
                vol = self.client.volume_by_path(f)
                volumes.append((f, vol))
            volumes += [(f, None) for f in sorted(mem_files)]
        obj = "VM '%s'" % name
        if self.client.call("read state of", obj, dom.isActive):
            self.act("power off", self.client.call, "power off", obj, dom.destroy)
        flags = UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS_METADATA | UNDEFINE_NVRAM
        self.act("undefine", self.client.call, "undefine", obj, dom.undefineFlags, flags)
        for src, vol in volumes:
            if vol is None:
                if os.path.exists(src):
                    self.act("delete %s" % src, os.unlink, src)
                continue
            self.act("delete disk %s" % src, self.client.call, "delete disk", "%s of VM '%s'" % (src, name), vol.delete, 0)
        copy = images.definition_copy_path(existing)
        if copy and not self.local:
            self.warn("VM '%s': its definition copy %s stays on the datastore (uri %s is remote; remove it with the "
                      "task on the CNA)" % (name, copy, self.uri))
        elif copy and os.path.exists(copy):
            self.act("remove definition copy %s" % copy, os.unlink, copy)
        return before


#: virDomainJobOperation
JOB_OPERATIONS = {1: "start", 2: "save", 3: "restore", 4: "incoming_migration", 5: "outgoing_migration",
                  6: "snapshot", 7: "snapshot_revert", 8: "dump", 9: "backup", 10: "snapshot_delete"}
#: virDomainBlockJobInfoFlags: the bandwidth in bytes/s (not MiB/s)
BLOCK_JOB_INFO_BANDWIDTH_BYTES = 1
#: virDomainBlockJobType
BLOCK_JOB_TYPES = {1: "pull", 2: "copy", 3: "commit", 4: "active_commit", 5: "backup"}


def _percent(done, total):
    """Progress to one decimal, rounded down: 100 only when done (134217727 of 134217728 bytes is 99.9, not 100)."""
    if not total:
        return None
    return min(100.0, int(1000 * done // total) / 10.0)


def running_jobs(client, dom, name, root):
    """What a running VM is doing now, as QEMU counts it: its domain job (a migration, a save...) and the block
    jobs of its disks (a storage migration's copy, a commit). The progress of a vm_migration or
    storage_migration task run with ``async``, read by polling vm_info. None and [] for a VM that stopped (or
    went) since it was read as running: a listing of a busy CNA must not fail on it."""
    try:
        return _running_jobs(client, dom, name, root)
    except LibvirtClientError as e:
        if client.is_stopped_or_gone(e):
            return None, []
        raise


def _running_jobs(client, dom, name, root):
    obj = "VM '%s'" % name
    job = None
    stats = client.call("read the job of", obj, dom.jobStats, 0) or {}
    if stats.get("type"):
        total = stats.get("data_total") or 0
        job = {"operation": JOB_OPERATIONS.get(stats.get("operation"), "unknown"),
               "elapsed_ms": stats.get("time_elapsed"),
               "data_total": stats.get("data_total"), "data_processed": stats.get("data_processed"),
               "data_remaining": stats.get("data_remaining"),
               "memory_iteration": stats.get("memory_iteration"),
               "memory_dirty_rate": stats.get("memory_dirty_rate"),
               "disk_total": stats.get("disk_total"), "disk_processed": stats.get("disk_processed"),
               "percent": _percent(stats.get("data_processed") or 0, total)}
    block = []
    for el in root.findall("devices/disk"):
        target = xmlutil.find_attr(el, "target", "dev")
        if not target:
            continue
        info = client.call("read the block jobs of", obj, dom.blockJobInfo, target, BLOCK_JOB_INFO_BANDWIDTH_BYTES) or {}
        if info:
            mirror = el.find("mirror")
            block.append({"disk": target, "type": BLOCK_JOB_TYPES.get(info.get("type"), "unknown"),
                          "cur": info.get("cur"), "end": info.get("end"), "bandwidth": info.get("bandwidth"),
                          "percent": _percent(info.get("cur") or 0, info.get("end") or 0),
                          "ready": mirror is not None and mirror.get("ready") == "yes"})
    return job, block


def vm_facts(client, dom, local):
    name = client.call("read name of", "VM", dom.name)
    obj = "VM '%s'" % name
    xml = client.domain_xml(name, inactive=True)
    root = xmlutil.parse(xml)
    state = state_of(client, dom, name)
    running = state in ("running", "paused")
    live = xmlutil.parse(client.domain_xml(name)) if running else root
    vcpu = live.find("vcpu")
    nics = []
    addresses = {}
    if state == "running" and any(xmlutil.find_attr(c, "target", "name") == "org.qemu.guest_agent.0"
                                  for c in root.findall("devices/channel")):
        try:
            addresses = client.call("ask the guest agent of", obj, dom.interfaceAddresses, INTERFACE_ADDRESSES_SRC_AGENT, 0)
        except Exception:  # pylint: disable=broad-except
            addresses = {}
    by_mac = {}
    for _ifname, data in (addresses or {}).items():
        by_mac[(data.get("hwaddr") or "").lower()] = [a["addr"] for a in (data.get("addrs") or [])]
    ports = portsec.ports_meta(live)
    for el in live.findall("devices/interface"):
        n = nic_view(el, ports)
        n["ips"] = by_mac.get((n["mac"] or "").lower(), [])
        nics.append(n)
    qos = qos_view(root, {})
    job, block_jobs = running_jobs(client, dom, name, live) if running else (None, [])
    return {
        "name": name,
        "uuid": client.call("read UUID of", obj, dom.UUIDString),
        "state": state,
        "host": client.call("read host name", None, client.conn.getHostname),
        "hypervisor": root.get("type"),
        "machine": xmlutil.find_attr(root, "os/type", "machine"),
        "description": xmlutil.find_text(root, "description"),
        "vcpus": int(vcpu.get("current") or vcpu.text),
        "max_vcpus": int(vcpu.text),
        "memory": kib(live.find("currentMemory")) * 1024,
        "max_memory": kib(root.find("memory")) * 1024,
        "template": is_template(xml),
        "disks": disks.inventory(client, local, vm=name),
        "nics": nics,
        "qos": qos,
        "definition_copy": images.definition_copy_path(xml),
        "clone_of": clone_of(root),
        "job": job,
        "block_jobs": block_jobs,
    }
