# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Moving a VM between CNAs (seed 001: iterative memory copy, maximum downtime, prerequisites).

Live: libvirt peer-to-peer migration (the source libvirtd drives it, so a lost controller does not
strand it), persistent on the destination, undefined on the source. Cold (a stopped VM): libvirt's
offline migration of the definition. Both check every prerequisite first (CPU model, memory and
vCPUs, datastores, raw device mappings, port groups, disk modes), each refusal one line, before
anything moves.

libvirt 9.0 refuses to migrate a VM with snapshots; their metadata moves with it: each snapshot's
XML is read (SECURE), its metadata removed on the source, the VM migrated, and the snapshots
redefined on the destination (parents first, the current one marked). A failed migration
redefines them on the source, where the VM still runs.

A VM under HA on the cluster of this CNA, which the cluster manages, is moved by the cluster instead (a move behind
its back would be taken for a failure): ``crm_resource --move`` to the destination's node, a wait for the cluster
to settle, where it runs read back, and ``crm_resource --clear`` so that no move constraint stays (the VM stays
where it is: resource-stickiness). A destination its placement rules forbid, or outside its preferred hosts (the
cluster would move it back), a disk copy, and a stopped VM (the cluster starts it where it picks) are refused.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import threading
import time

from ansible_collections.kvmfusion.compute.plugins.module_utils import images, names, power, storage, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.cluster import (
    Cluster, node_name, node_state, placement, usable, vm_resource_id, vm_resources)
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    JOB_STATS_COMPLETED,
    MIGRATE_ABORT_ON_ERROR,
    MIGRATE_AUTO_CONVERGE,
    MIGRATE_COMPRESSED,
    MIGRATE_LIVE,
    MIGRATE_NON_SHARED_DISK,
    MIGRATE_OFFLINE,
    MIGRATE_PARALLEL,
    MIGRATE_PEER2PEER,
    MIGRATE_PERSIST_DEST,
    MIGRATE_POSTCOPY,
    MIGRATE_TLS,
    MIGRATE_UNDEFINE_SOURCE,
    MIGRATE_UNSAFE,
    NODEDEV_CAP_STORAGE,
    VOL_DOWNLOAD_SPARSE_STREAM,
    VOL_GET_PHYSICAL,
    VOL_UPLOAD_SPARSE_STREAM,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import attached_disks, volume_xml
from ansible_collections.kvmfusion.compute.plugins.module_utils.domains import write_definition_copy
from ansible_collections.kvmfusion.compute.plugins.module_utils.hosts import local_facts, refuse_in_maintenance
from ansible_collections.kvmfusion.compute.plugins.module_utils.images import incoming_marker
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import TwoHostManager
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import state_of
from ansible_collections.kvmfusion.compute.plugins.module_utils.snapshots import lift_snapshots, put_snapshots
from ansible_collections.kvmfusion.compute.plugins.module_utils.vmspec import kib

MODES = ("auto", "live", "cold")
STORAGE = ("auto", "shared", "copy")
COMPRESSION = ("none", "xbzrle", "mt", "zlib", "zstd")
#: memory the destination keeps free beyond the VM's (QEMU's own overhead)
MEMORY_MARGIN = 64 * 1024 * 1024
POLL = 0.1
#: seconds the cluster gets to carry out a move or a standby when the task sets no timeout
CLUSTER_WAIT = 600
# options of libvirt's migration the cluster's own migration (the VirtualDomain agent) does not take
_NOT_THROUGH_CLUSTER = ("max_downtime", "bandwidth", "parallel_connections", "post_copy_after")


def desired_state(p):
    """Validate the vm_migration options (ValueError, one line)."""
    d = {"name": names.validate_name(p["name"], kind="VM")}
    for key, choices in (("mode", MODES), ("storage", STORAGE), ("compression", COMPRESSION)):
        value = p.get(key) or choices[0]
        if value not in choices:
            raise ValueError("%s must be one of %s, got %r" % (key, ", ".join(choices), value))
        d[key] = value
    for key, lo, hi in (("max_downtime", 1, 600000), ("bandwidth", 1, 1 << 20), ("parallel_connections", 2, 255),
                        ("timeout", 1, 86400), ("post_copy_after", 1, 1000)):
        value = p.get(key)
        if value is not None:
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError("%s must be a whole number, got %r" % (key, p[key]))
            if not lo <= value <= hi:
                raise ValueError("%s must be between %d and %d, got %d" % (key, lo, hi, value))
        d[key] = value
    d["auto_converge"] = bool(p.get("auto_converge"))
    d["post_copy"] = bool(p.get("post_copy"))
    d["tls"] = p.get("tls")
    if d["post_copy_after"] is not None and not d["post_copy"]:
        raise ValueError("post_copy_after needs post_copy: true")
    if d["compression"] in ("zlib", "zstd") and not d["parallel_connections"]:
        raise ValueError("compression %s works with parallel connections only: set parallel_connections"
                         % d["compression"])
    return d


class ContentHash(object):
    """sha256 of a file's content as a sparse stream delivers it: runs of data and holes. The same content
    gives the same hash whether a run of zeros arrives as a hole or as data (a preallocated copy reads back
    its skipped holes as zeros): the hash covers the non-zero blocks (64 KiB, at their offsets) and the length."""

    BLOCK = 65536
    ZERO = bytes(BLOCK)

    def __init__(self):
        self.digest = hashlib.sha256()
        self.pos = 0
        self.block = bytearray()
        self.data_bytes = 0

    def _complete(self):
        """The block being filled is complete (or the stream ended): hashed unless it is all zeros."""
        if self.block and bytes(self.block) != self.ZERO[:len(self.block)]:
            self.digest.update(b"%d:" % (self.pos - len(self.block)))
            self.digest.update(self.block)
        self.block = bytearray()

    def data(self, buf):
        self.data_bytes += len(buf)
        view, i = memoryview(buf), 0
        while i < len(view):
            piece = view[i:i + self.BLOCK - self.pos % self.BLOCK]
            self.block += piece
            self.pos += len(piece)
            i += len(piece)
            if self.pos % self.BLOCK == 0:
                self._complete()

    def hole(self, length):
        if self.block:  # zeros finish the block being filled
            n = min(length, self.BLOCK - self.pos % self.BLOCK)
            self.block += bytes(n)
            self.pos += n
            length -= n
            if self.pos % self.BLOCK == 0:
                self._complete()
        whole = length - length % self.BLOCK
        self.pos += whole  # whole zero blocks: nothing to hash
        if length % self.BLOCK:
            self.block += bytes(length % self.BLOCK)
            self.pos += length % self.BLOCK

    def hexdigest(self):
        self._complete()
        self.digest.update(b"end:%d" % self.pos)
        return self.digest.hexdigest()


class MigrationManager(TwoHostManager):
    """vm_migration: the VM on the destination CNA, running as it ran, or nothing changed."""

    def __init__(self, client, dest, check_mode=False, run_command=None, journal=None):
        super(MigrationManager, self).__init__(client, dest, check_mode=check_mode, run_command=run_command,
                                               journal=journal)
        self._places = None
        self._hosts = (None, None)

    def converge(self, params):
        d = desired_state(params)
        name = d["name"]
        obj = "VM '%s'" % name
        src_host = self.source.host_info()["hostname"]
        dst_host = self.dest.host_info()["hostname"]
        # names kept: a failure message must not need the destination (it may be the thing that died)
        self._hosts = (src_host, dst_host)
        # the destination is another CNA: a source equal to it is bad input, whatever the VM's state
        self.refuse_same_host("migrate VM '%s'" % name)
        ha = self._under_ha(name)
        if ha is not None:
            return self._through_cluster(d, name, ha)
        src_dom, dst_dom = self.source.domain(name), self.dest.domain(name)
        if dst_dom is not None and src_dom is None:
            return self.result({"host": dst_host}, {"host": dst_host}, vm=name, host=dst_host, migration=None,
                               through_cluster=False)
        if dst_dom is not None:
            raise ValueError("%s is defined on both %s and %s: remove the stale definition first"
                             % (obj, src_host, dst_host))
        if src_dom is None:
            raise ValueError("unknown %s: it is on neither %s nor %s" % (obj, src_host, dst_host))
        state = state_of(self.source, src_dom, name)
        mode = d["mode"]
        live = state in ("running", "paused")
        if mode == "auto":
            mode = "live" if live else "cold"
        if mode == "live" and not live:
            raise ValueError("%s is %s on %s: live migration needs it running (mode cold moves a stopped VM)"
                             % (obj, state, src_host))
        if mode == "cold" and live:
            raise ValueError("%s is %s on %s: cold migration needs it stopped (mode live moves it running)"
                             % (obj, state, src_host))
        if state == "suspended":
            raise ValueError("%s is suspended to %s's disk: resume it (then migrate it live) or discard the saved "
                             "state first" % (obj, src_host))
        uuid = self.source.call("read the UUID of", obj, src_dom.UUIDString)
        plan = self.precheck(name, mode, d, dst_host, uuid)
        before, after = {"host": src_host, "state": state}, {"host": dst_host, "state": state}
        self.record("%s-migrate to %s (%s storage)" % (mode, dst_host, plan["storage"]))
        for c in plan.get("create", []):
            self.record("%s copy of %s on %s" % ("replace the partial" if c["stale"] else "create the",
                                                 c["path"], dst_host))
        if self.check_mode:
            return self.result(before, after, vm=name, host=dst_host, migration=None, through_cluster=False)
        snaps = self._lift_snapshots(src_dom, name)
        made, markers = [], []
        try:
            made = self._create_copy_targets(plan, uuid, markers)
            if mode == "live":
                stats = self._live(src_dom, name, d, plan)
            else:
                began = time.time()
                sent = self._send_copies(plan)
                for ds in sorted(set(c["datastore"] for c in plan.get("create", []))):
                    # libvirt reads the copies' format (made as raw byte copies) from the files
                    self.dest.call("refresh", "datastore '%s'" % ds, self.dest.pool(ds).refresh, 0)
                stats = self._cold(src_dom, name, plan)
                stats["disk_bytes"] = stats["transferred_bytes"] = sent
                stats["total_time_ms"] = int((time.time() - began) * 1000)
        except Exception:
            if self.source.domain(name) is not None:
                if snaps:
                    self._put_snapshots(self.source, name, snaps)
                self._remove_copy_targets(made)
            self._remove_markers(markers)
            raise
        self._remove_markers(markers)
        if snaps:
            try:
                self._put_snapshots(self.dest, name, snaps)
            except Exception as e:  # pylint: disable=broad-except
                self.warn("%s runs on %s but its snapshots could not be redefined there (%s); their XML is in "
                          "migration.snapshots_xml" % (obj, dst_host, e))
                stats["snapshots_xml"] = [s[2] for s in snaps]
        if plan["storage"] == "copy":
            self._remove_source_images(name, plan)
            self._send_definition_copy(name, plan)
        else:
            self._refresh_definition_copy(name)
        stats.update(mode=mode, storage=plan["storage"], source=src_host, destination=dst_host,
                     snapshots=[s[0] for s in snaps], through_cluster=False)
        return self.result(before, after, vm=name, host=dst_host, migration=stats, through_cluster=False)

    # a VM under HA: moved by the cluster ---------------------------------------------------------
    def _under_ha(self, name):
        """{cluster, status, resource, nodes, failed} when the VM is under HA on the cluster of this CNA and the
        cluster manages it; None when it is not (or HA is off: maintenance mode, or the VM unmanaged), and the VM
        is moved directly."""
        here = power.cluster_here(self._run_command, self.local, "VM '%s'" % name)
        if here is None:
            return None
        cl, st = here
        rid = vm_resource_id(name)
        config = cl.resources_config()
        if rid not in config:
            return None
        vm = list(vm_resources(st, {rid: config[rid]}).values())[0]
        if not vm["managed"]:
            return None
        return dict(vm, cluster=cl, status=st)

    def _through_cluster(self, d, name, ha):
        """Validate (every refusal before any change), then one move by the cluster."""
        obj = "VM '%s'" % name
        src_host, dst_host = self._hosts
        cl, st, rid, where = ha["cluster"], ha["status"], ha["resource"], ha["nodes"]
        under = "%s is under HA (cluster resource %s)" % (obj, rid)
        nodes = {n["name"]: n for n in st["nodes"]}
        dst_node = node_name(dst_host, nodes)
        if dst_node is None:
            raise ValueError("%s and %s is not a node of its cluster (%s): the cluster runs it on its nodes only"
                             % (under, dst_host, ", ".join(sorted(nodes))))
        rules = placement(cl.cib(), rid)
        if where == [dst_node]:
            return self._already_there(name, ha, rules, dst_node)
        if not where:
            raise ValueError("%s and stopped: the cluster starts it on the node it picks, so there is nothing to "
                             "move; set its preferred_hosts (kvmfusion.compute.ha) to choose where it runs" % under)
        if d["mode"] == "cold":
            raise ValueError("%s is running on %s: cold migration needs it stopped (mode live moves it running)"
                             % (obj, ", ".join(where)))
        if ha["failed"] or len(where) > 1:
            raise ValueError("%s and the cluster reports it failed or active on %s: clean it up first (crm_resource "
                             "--cleanup --resource %s)" % (under, ", ".join(where), rid))
        src_node = cl.local_node()
        if where != [src_node]:
            raise ValueError("%s and runs on %s, not on %s: run the task there" % (under, where[0], src_host))
        if d["storage"] == "copy":
            raise ValueError("%s: its disks are on shared datastores and the cluster moves it without copying them; "
                             "to move its disks, take it out of HA first (kvmfusion.compute.ha state=absent)" % under)
        if not st["quorate"]:
            raise ValueError("%s and this CNA's partition of the cluster has no quorum: the cluster moves nothing "
                             "from here" % under)
        if not usable(nodes[dst_node]):
            raise ValueError("%s and the cluster cannot place it on %s: that node is %s" % (
                under, dst_node, node_state(nodes[dst_node])))
        if dst_node in rules["forbidden"]:
            raise ValueError("%s and %s is forbidden for it: change the VM's forbidden_hosts (kvmfusion.compute.ha) to "
                             "move it there" % (under, dst_node))
        if rules["preferred"] and dst_node not in rules["preferred"]:
            raise ValueError("%s and prefers %s, so the cluster would move it back from %s: add %s to the VM's "
                             "preferred_hosts (kvmfusion.compute.ha) to move it there" % (
                                 under, ", ".join(sorted(rules["preferred"])), dst_node, dst_node))
        dom = self.source.domain(name)
        if dom is None:
            raise ValueError("%s and runs on %s by the cluster's account, but its libvirt does not have it"
                             % (under, src_host))
        state = state_of(self.source, dom, name)
        snaps = self.source.call("list snapshots of", obj, dom.listAllSnapshots, 0)
        if snaps:
            raise ValueError("%s and has %d snapshot(s): libvirt refuses to migrate it, and the cluster would restart "
                             "it on %s instead; delete them first" % (under, len(snaps), dst_node))
        uuid = self.source.call("read the UUID of", obj, dom.UUIDString)
        plan = self.precheck(name, "live", dict(d, storage="auto"), dst_host, uuid)
        if plan["storage"] == "copy":
            c = plan["create"][0]
            raise ValueError("%s but its image %s is on datastore %s, which %s does not share: the cluster does not "
                             "copy disks; move it to a shared datastore first" % (under, c["path"], c["datastore"],
                                                                                  dst_host))
        unused = [k for k in _NOT_THROUGH_CLUSTER if d[k]] + [k for k in ("auto_converge", "post_copy") if d[k]]
        unused += ["compression"] if d["compression"] != "none" else []
        unused += ["tls"] if d["tls"] is not None else []
        if unused:
            self.warn("%s: %s not used: the cluster migrates a VM under HA with its own settings "
                      "(kvmfusion.compute.ha migrate_timeout; the cna role's migration transport)"
                      % (obj, ", ".join(unused)))
        before, after = {"host": src_host, "state": state}, {"host": dst_host, "state": state}
        stats = self.act("live-migrate to %s, moved by the cluster (resource %s)" % (dst_host, rid),
                         self._cluster_move, cl, name, rid, dst_node, d["timeout"] or CLUSTER_WAIT)
        if stats is not None:
            stats.update(source=src_host, destination=dst_host)
        return self.result(before, after, vm=name, host=dst_host, migration=stats, through_cluster=True)

    def _already_there(self, name, ha, rules, dst_node):
        """No move. A move constraint an interrupted run left goes, unless the VM's placement rules would then take
        it elsewhere (said in a warning)."""
        rid, dst_host = ha["resource"], self._hosts[1]
        if rules["moves"]:
            if dst_node in rules["forbidden"] or (rules["preferred"] and dst_node not in rules["preferred"]):
                self.warn("VM '%s' stays on %s only by the move constraint %s an earlier move left: its preferred_hosts "
                          "(kvmfusion.compute.ha) would take it back; clearing it (crm_resource --clear --resource "
                          "%s) moves it" % (name, dst_node, rules["moves"][0], rid))
            else:
                # by its id: crm_resource --clear would also drop the bans (cli-ban) an operator placed
                for leftover in rules["moves"]:
                    self.act("clear the move constraint an earlier move of VM '%s' left (%s)" % (name, leftover),
                             self.run, [Cluster.which("cibadmin"), "--delete", "--scope", "constraints", "--xml-text",
                                        '<rsc_location id="%s"/>' % leftover])
        same = {"host": dst_host, "state": "running"}
        return self.result(same, same, vm=name, host=dst_host, migration=None, through_cluster=True)

    def _cluster_move(self, cl, name, rid, node, timeout):
        """crm_resource --move, a wait, where the VM runs read back, and the move constraint cleared whatever
        happened (the VM stays where it runs then: resource-stickiness, and no preference elsewhere)."""
        tool = Cluster.which("crm_resource")
        start = time.time()
        self.run([tool, "--move", "--resource", rid, "--node", node])
        error, where = None, None
        try:
            try:
                self.run([tool, "--wait", "--timeout=%ds" % timeout])
            except ValueError as e:
                error = "not settled within %d s: %s" % (timeout, e)
            st = cl.status()
            where = (st or {}).get("resources", {}).get(rid, {}).get("nodes", [])
        finally:
            # this move's constraint only (on the destination node): the bans an operator placed stay
            self.run([tool, "--clear", "--resource", rid, "--node", node])
        if where != [node]:
            raise ValueError("the cluster did not move VM '%s' to %s (%s); it runs on %s, and the move constraint is "
                             "cleared" % (name, node, error or "it settled elsewhere", ", ".join(where) or "no node"))
        if error:
            self.warn("VM '%s' runs on %s, but the cluster had not settled within %d s" % (name, node, timeout))
        return {"mode": "live", "storage": "shared", "through_cluster": True,
                "total_time_ms": int((time.time() - start) * 1000), "downtime_ms": None, "setup_time_ms": None,
                "transferred_bytes": None, "memory_bytes": None, "disk_bytes": None, "memory_iterations": None,
                "post_copy_used": False, "snapshots": [], "options": {}}

    # prerequisites -------------------------------------------------------------------------
    def precheck(self, name, mode, d, dst_host, uuid):
        """Everything the destination must offer, before anything moves: a plan, or one line."""
        obj = "VM '%s'" % name
        src, dst = self.source, self.dest
        live = mode == "live"
        xml = src.domain_xml(name, inactive=not live, secure=True)
        root = xmlutil.parse(xml)
        plan = {"disks": [], "unsafe": False, "storage": "shared"}
        # CPU model
        if root.get("type") == "kvm":
            cpu = root.find("cpu")
            if cpu is not None and cpu.get("mode") == "host-passthrough":
                raise ValueError("%s has the host-passthrough CPU: it can only move between identical hosts; give it "
                                 "the cluster CPU model (vm cpu_model: cluster) to migrate it" % obj)
            if cpu is not None and cpu.get("mode", "custom") == "custom" and cpu.find("model") is not None:
                reason = dst.compare_cpu(xmlutil.tostring(cpu), "kvm")
                if reason:
                    raise ValueError("%s: its CPU model %s cannot run on %s: %s"
                                     % (obj, xmlutil.find_text(cpu, "model"), dst_host, reason))
        # machine type: QEMU runs a guest of an older machine type (so 9.0 -> 11 keeps what the guest sees) but
        # not one it does not know, like a machine type of a newer generation's QEMU
        os_type = root.find("os/type")
        machine = os_type.get("machine") if os_type is not None else None
        if machine:
            arch = os_type.get("arch") or src.host_info()["arch"]
            known = dst.machine_types(arch, root.get("type") or "kvm")
            if known and machine not in known:
                info = dst.host_info()
                raise ValueError("%s has machine type %s, which QEMU %s (libvirt %s) on %s does not provide: a VM made "
                                 "under a newer QEMU cannot move to an older one; move it to a CNA of its generation"
                                 % (obj, machine, info["hypervisor_version"], info["libvirt_version"], dst_host))
        # nothing lands on a CNA in maintenance
        refuse_in_maintenance(dst, "%s cannot move there" % obj)
        # memory and vCPUs
        host = dst.host_info()
        vcpus = int(root.find("vcpu").get("current") or root.find("vcpu").text)
        if vcpus > host["cpus"]:
            raise ValueError("%s has %d vCPUs; %s has %d CPUs" % (obj, vcpus, dst_host, host["cpus"]))
        if live:
            mem = kib(root.find("currentMemory")) * 1024
            free = dst.call("read free memory of", "the host", dst.conn.getFreeMemory)
            if mem + MEMORY_MARGIN > free:
                need = (mem + MEMORY_MARGIN) >> 20
                raise ValueError("%s needs %d MiB; %s has %d MiB free" % (obj, need, dst_host, free >> 20))
        # networks and port groups
        for el in root.findall("devices/interface"):
            if el.get("type") != "network":
                continue
            net_name = xmlutil.find_attr(el, "source", "network")
            pg = xmlutil.find_attr(el, "source", "portgroup")
            net = dst.network(net_name)
            if net is None or not dst.call("read state of", "network '%s'" % net_name, net.isActive):
                raise ValueError("%s: network %s of NIC %s is not active on %s" % (
                    obj, net_name, xmlutil.find_attr(el, "mac", "address"), dst_host))
            if pg and pg not in [g.get("name") for g in xmlutil.parse(
                    dst.call("read", "network '%s'" % net_name, net.XMLDesc, 0)).findall("portgroup")]:
                raise ValueError("%s: port group %s of switch %s is not on %s" % (obj, pg, net_name, dst_host))
        # disks
        copy = []
        for el, src_path, dmode in attached_disks(src, name, inactive=not live):
            if el.get("device", "disk") not in ("disk", "lun") or src_path is None:
                continue
            target = xmlutil.find_attr(el, "target", "dev")
            if dmode == "independent_nonpersistent" and live:
                raise ValueError("%s: disk %s is independent-nonpersistent: what the guest wrote to it since it "
                                 "started would be lost by a live migration; stop the VM to move it" % (obj, target))
            kind = el.get("type")
            if kind == "block":
                if src_path not in self._device_paths(dst):
                    raise ValueError("%s: raw device mapping %s (disk %s) is not visible on %s" % (
                        obj, src_path, target, dst_host))
            elif kind == "volume":
                pool, vol = xmlutil.find_attr(el, "source", "pool"), xmlutil.find_attr(el, "source", "volume")
                if dst.volume(pool, vol) is None:
                    raise ValueError("%s: volume %s of datastore %s (disk %s) is not on %s" % (
                        obj, vol, pool, target, dst_host))
            elif kind == "file":
                chain = images.disk_chain(el, self.local) or [src_path]
                places = [(path, self._datastore_of(path)) for path in chain]
                for path, (ds, _shared) in places:
                    if ds is None:
                        raise ValueError("%s: image %s of disk %s is on no running datastore of %s" % (
                            obj, path, target, src.host_info()["hostname"]))
                if all(shared for _p, (_ds, shared) in places):
                    plan["unsafe"] = True
                elif len(chain) > 1:
                    raise ValueError("%s: disk %s is a chain of %d images (snapshots or a linked clone) not all on a "
                                     "datastore %s shares: a copy would flatten it; delete its snapshots or move it "
                                     "to a shared datastore first" % (obj, target, len(chain), dst_host))
                else:
                    copy.append((target, src_path, places[0][1][0]))
            plan["disks"].append({"target": target, "source": src_path, "type": kind})
        want = d["storage"]
        for target, _path, ds in copy:
            if dst.pool(ds) is None:
                raise ValueError("%s: datastore %s of disk %s is not on %s" % (obj, ds, target, dst_host))
        if want == "shared" and copy:
            raise ValueError("%s: disk %s is on datastore %s, which %s does not share: storage copy moves it"
                             % (obj, copy[0][0], copy[0][2], dst_host))
        if copy and want != "shared":
            plan["storage"] = "copy"
            plan["create"] = []
            for target, path, ds in copy:
                plan["create"].append(dict(self._copy_target(obj, target, path, ds, dst_host, uuid), cold=not live))
            plan["copied"] = [c[1] for c in copy]
            plan["copy_targets"] = [c[0] for c in copy]
        return plan

    def _copy_target(self, obj, target, path, ds, dst_host, uuid):
        """What the destination gets for a copied disk: a volume of the same name, format, size and
        provisioning (thin stays thin: libvirt would make a fully allocated one) on its datastore of the
        same name and path. An unattached image already at that path with the same size and format is the
        partial copy of an interrupted migration (the source stays authoritative): it is replaced."""
        dst = self.dest
        pool = dst.pool(ds)
        if pool is None or not dst.call("read state of", "datastore '%s'" % ds, pool.isActive):
            raise ValueError("%s: datastore %s of disk %s is not running on %s" % (obj, ds, target, dst_host))
        vol = self.source.volume_by_path(path)
        if vol is None:
            raise ValueError("%s: disk %s (%s) is not a volume of datastore %s" % (obj, target, path, ds))
        src_root = xmlutil.parse(self.source.call("read", "volume '%s'" % path, vol.XMLDesc, 0))
        fmt = xmlutil.find_attr(src_root, "target/format", "type") or "raw"
        _t, capacity, allocation = self.source.call("read size of", "volume '%s'" % path, vol.info)
        dst_dir = images.datastore_dir(dst, pool, ds, "copied disks")
        if os.path.normpath(os.path.join(dst_dir, os.path.basename(path))) != os.path.normpath(path):
            raise ValueError("%s: datastore %s is at %s on %s, not at %s: libvirt copies a disk to the same path"
                             % (obj, ds, dst_dir, dst_host, os.path.dirname(path)))
        _t, physical, _a = self.source.call("read size of", "volume '%s'" % path, vol.infoFlags, VOL_GET_PHYSICAL)
        plan = {"datastore": ds, "name": os.path.basename(path), "path": path, "format": fmt,
                "capacity": capacity, "physical": physical, "thick": allocation >= capacity, "stale": False}
        old = dst.volume_by_path(path)
        if old is not None:
            # the partial copy of an interrupted migration of this VM: its marker says so, and no VM uses it
            users = [u for u, _t in images.users_of(dst, path, local=False)]
            marked = dst.volume(ds, os.path.basename(incoming_marker(path, uuid)))
            if users or marked is None:
                raise ValueError("%s: %s already has %s (%s): remove or rename it first" % (
                    obj, dst_host, path, "used by %s" % ", ".join(sorted(set(users))) if users
                    else "another image of that name"))
            plan["stale"] = True
        return plan

    def _send_copies(self, plan):
        """A stopped VM's unshared disks, copied file for file through both CNAs' libvirt (each touches only its
        own files): the source's image is read as a sparse stream and written into the destination's volume,
        holes skipped, so a thin image stays thin and a preallocated target keeps its allocation. The
        destination's image is then read back and must have the same content. Returns the bytes of data sent."""
        sent = 0
        for c in plan.get("create", []):
            src_vol = self.source.volume_by_path(c["path"])
            dst_vol = self.dest.volume_by_path(c["path"])
            what = "%s to %s" % (c["path"], self._hosts[1])
            src_stream, dst_stream = self.source.new_stream(), self.dest.new_stream()
            self.source.call("read", c["path"], src_vol.download, src_stream, 0, 0, VOL_DOWNLOAD_SPARSE_STREAM)
            self.dest.call("write the copy of", what, dst_vol.upload, dst_stream, 0, 0, VOL_UPLOAD_SPARSE_STREAM)
            content = ContentHash()

            def data(_stream, buf, _opaque):
                done = 0
                while done < len(buf):
                    done += dst_stream.send(buf[done:])
                content.data(buf)
                return len(buf)

            def hole(_stream, length, _opaque):
                dst_stream.sendHole(length, 0)
                content.hole(length)
                return 0
            try:
                self.source.call("copy", what, src_stream.sparseRecvAll, data, hole, None)
                self.source.call("finish reading", c["path"], src_stream.finish)
                self.dest.call("finish writing", what, dst_stream.finish)
            except Exception:
                for stream in (src_stream, dst_stream):
                    try:
                        stream.abort()
                    except Exception:  # pylint: disable=broad-except
                        pass
                raise
            sent += content.data_bytes
            if self._read_back(c) != content.hexdigest():
                raise ValueError("the copy of %s on %s does not read back as it was sent" % (c["path"], self._hosts[1]))
        return sent

    def _read_back(self, c):
        """The content hash of the destination's image, read back through its libvirt the way it was sent."""
        vol = self.dest.volume_by_path(c["path"])
        stream = self.dest.new_stream()
        self.dest.call("read back", c["path"], vol.download, stream, 0, 0, VOL_DOWNLOAD_SPARSE_STREAM)
        content = ContentHash()
        self.dest.call("read back", c["path"], stream.sparseRecvAll, lambda _s, buf, _o: content.data(buf) or len(buf),
                       lambda _s, length, _o: content.hole(length) or 0, None)
        self.dest.call("finish reading back", c["path"], stream.finish)
        return content.hexdigest()

    def _create_copy_targets(self, plan, uuid, markers):
        """Make the destination's volumes before the copy; returns their paths (removed again on failure).

        Each target is announced first by an empty marker beside it (``.<file>~incoming~<VM UUID>``, a name
        no object can have): if the destination dies mid-copy, the cna role's boot-time cleanup
        (kvmfusion-incoming-cleanup) finds the marker, sees that no VM of that host uses the file, and
        removes the partial copy. The markers go when the migration ends, either way."""
        made = []
        for c in plan.get("create", []):
            pool = self.dest.pool(c["datastore"])
            marker = os.path.basename(incoming_marker(c["path"], uuid))
            if self.dest.volume(c["datastore"], marker) is None:
                self.dest.call("create the marker of the incoming copy", "%s on %s" % (marker, self.dest.uri),
                               pool.createXML, volume_xml(marker, 0, "raw"), 0)
            markers.append((c["datastore"], marker))
            if c["stale"]:
                old = self.dest.volume_by_path(c["path"])
                if old is not None:
                    self.dest.call("remove the partial copy", c["path"], old.delete, 0)
            if c.get("cold"):
                # a byte copy of the image file follows: a raw volume of the file's size (libvirt reads the
                # format from the file once it is there), allocated when the source is thick
                xml = volume_xml(c["name"], c["physical"], "raw", allocation=c["physical"] if c["thick"] else 0)
            else:
                xml = volume_xml(c["name"], c["capacity"], c["format"], allocation=c["capacity"] if c["thick"] else 0)
            self.dest.call("create the copy target", "%s on %s" % (c["path"], self.dest.uri), pool.createXML, xml, 0)
            made.append(c["path"])
        return made

    def _remove_copy_targets(self, made):
        """After a failed copy: the destination's partial images go (the source is the disk)."""
        for path in made:
            try:
                vol = self.dest.volume_by_path(path)
                if vol is not None and not images.users_of(self.dest, path, local=False):
                    self.dest.call("remove the partial copy", path, vol.delete, 0)
            except Exception as e:  # pylint: disable=broad-except
                self.warn("the partial copy %s on %s could not be removed (%s): the next migration of this VM "
                          "replaces it" % (path, self.dest.uri, e))

    def _remove_markers(self, markers):
        """The migration ended (moved or not, partial copies handled): the incoming markers go."""
        for ds, marker in markers:
            try:
                vol = self.dest.volume(ds, marker)
                if vol is not None:
                    self.dest.call("remove the marker", marker, vol.delete, 0)
            except Exception as e:  # pylint: disable=broad-except
                self.warn("the incoming-copy marker %s on %s could not be removed (%s): the destination's "
                          "boot-time cleanup removes it" % (marker, self.dest.uri, e))

    def _device_paths(self, client):
        """Every block device path (and its /dev/disk links) a CNA's node devices have."""
        out = set()
        for dev in client.call("list node devices", None, client.conn.listAllDevices, NODEDEV_CAP_STORAGE):
            root = xmlutil.parse(client.call("read", "node device", dev.XMLDesc, 0))
            out.update(el.text for el in root.iter("devnode") if el.text)
            out.update(el.text for el in root.iter("block") if el.text)
        return out

    def _datastore_of(self, path):
        """(name of the running file-based datastore of this CNA holding ``path``, whether the destination has
        the same shared datastore: same name, same UUID, running); (None, False) when no datastore holds it."""
        if self._places is None:
            self._places = {}
            for pname in self.source.pool_names():
                pool = self.source.pool(pname)
                if pool is None or not self.source.call("read state of", "datastore '%s'" % pname, pool.isActive):
                    continue
                info = storage.facts(self.source, pool)
                if info["type"] not in ("dir", "nfs") or not info.get("path"):
                    continue
                other = self.dest.pool(pname)
                shared = bool(info["shared"] and other is not None
                              and self.dest.call("read UUID of", "datastore '%s'" % pname, other.UUIDString)
                              == info["uuid"]
                              and self.dest.call("read state of", "datastore '%s'" % pname, other.isActive))
                self._places[os.path.normpath(info["path"])] = (pname, shared)
        return self._places.get(os.path.dirname(os.path.normpath(path)), (None, False))

    # snapshots travel as metadata ------------------------------------------------------------
    def _lift_snapshots(self, dom, name):
        """[(name, parent, xml, current)] of the VM's snapshots, whose metadata leaves the source."""
        return lift_snapshots(self.source, dom, name)

    def _put_snapshots(self, client, name, snaps):
        put_snapshots(client, client.domain(name), name, snaps)

    # the moves ----------------------------------------------------------------------------
    def _flags(self, d, plan, live):
        flags = MIGRATE_PEER2PEER | MIGRATE_PERSIST_DEST | MIGRATE_UNDEFINE_SOURCE
        if not live:
            return flags | MIGRATE_OFFLINE
        flags |= MIGRATE_LIVE | MIGRATE_ABORT_ON_ERROR
        if plan["unsafe"]:
            # a datastore the collection knows is shared (same UUID on both CNAs) that libvirt cannot
            # recognise as shared (a plain directory): libvirt's cache-safety check does not apply
            flags |= MIGRATE_UNSAFE
        if plan["storage"] == "copy":
            flags |= MIGRATE_NON_SHARED_DISK
        if d["auto_converge"]:
            flags |= MIGRATE_AUTO_CONVERGE
        if d["post_copy"]:
            flags |= MIGRATE_POSTCOPY
        if d["parallel_connections"]:
            flags |= MIGRATE_PARALLEL
        if d["compression"] != "none":
            flags |= MIGRATE_COMPRESSED
        if self._tls(d):
            flags |= MIGRATE_TLS
        return flags

    def _tls(self, d):
        if d["tls"] is not None:
            return bool(d["tls"])
        return local_facts().get("migration_transport") == "tls" if self.local else self.dest.uri.startswith("qemu+tls")

    def options(self, d, plan):
        """What the result reports as used."""
        return {
            "max_downtime": d["max_downtime"], "bandwidth": d["bandwidth"], "auto_converge": d["auto_converge"],
            "post_copy": d["post_copy"], "parallel_connections": d["parallel_connections"],
            "compression": d["compression"], "tls": self._tls(d), "unsafe": plan["unsafe"],
        }

    def _live(self, dom, name, d, plan):
        obj = "VM '%s'" % name
        src = self.source
        params = {}
        if d["bandwidth"]:
            params["bandwidth"] = d["bandwidth"]
        if d["parallel_connections"]:
            params["parallel.connections"] = d["parallel_connections"]
        if d["compression"] != "none":
            params["compression"] = d["compression"]
        if plan["storage"] == "copy":
            # only the disks the destination does not share: a shared disk copied onto itself would be destroyed
            params["migrate_disks"] = list(plan["copy_targets"])
        # the destination keeps the VM's persistent definition (not its live one)
        params["persistent_xml"] = src.domain_xml(name, inactive=True, secure=True)
        if d["max_downtime"]:
            src.call("set the maximum downtime of", obj, dom.migrateSetMaxDowntime, d["max_downtime"], 0)
        flags = self._flags(d, plan, True)
        outcome = {}

        def migrate():
            try:
                src.call("live-migrate", obj, dom.migrateToURI3, self.dest.uri, params, flags)
            except Exception as e:  # pylint: disable=broad-except
                outcome["error"] = e
        worker = threading.Thread(target=migrate, name="kvmfusion-migrate")
        start = time.time()
        worker.start()
        aborted = switched = False
        progress = []
        while worker.is_alive():
            worker.join(POLL)
            if not worker.is_alive():
                break
            stats = self._job(dom)
            if stats:
                progress.append(stats)
            elapsed = time.time() - start
            if d["timeout"] and elapsed > d["timeout"] and not aborted and not switched:
                try:
                    src.call("abort the migration of", obj, dom.abortJob)
                    aborted = True
                except Exception:  # pylint: disable=broad-except
                    # not abortable yet (libvirt still setting the job up: CI saw a 1 s timeout ignored this
                    # way, the copy then ran 129 s to the end): again at the next poll
                    pass
            if d["post_copy"] and not switched and stats and stats.get("memory_iteration", 0) >= (
                    d["post_copy_after"] or 2):
                switched = True
                src.call("switch to post-copy", obj, dom.migrateStartPostCopy, 0)
        if "error" in outcome:
            src_host, dst_host = self._hosts
            where = "it still runs on %s" % src_host if src.domain(name) is not None else \
                "it is not on %s any more" % src_host
            why = "aborted after the %d s timeout" % d["timeout"] if aborted else str(outcome["error"])
            raise ValueError("live migration of %s to %s failed (%s); %s" % (obj, dst_host, why, where))
        total = time.time() - start
        stats = self._stats(name, d, plan, total, post_copy=switched)
        # the disk copy runs before the switch-over, driven by the source: its last progress has the figure
        if not stats["disk_bytes"] and progress:
            stats["disk_bytes"] = max(p.get("disk_processed", 0) for p in progress)
        return stats

    def _job(self, dom):
        try:
            return dom.jobStats(0)
        except Exception:  # pylint: disable=broad-except
            return {}

    def _stats(self, name, d, plan, total, post_copy=False):
        done = {}
        dest_dom = self.dest.domain(name)
        if dest_dom is not None:
            try:
                done = self.dest.call("read the migration statistics of", "VM '%s'" % name, dest_dom.jobStats,
                                      JOB_STATS_COMPLETED)
            except Exception:  # pylint: disable=broad-except
                done = {}
        return {
            "downtime_ms": done.get("downtime"),
            "total_time_ms": done.get("time_elapsed", int(total * 1000)),
            "setup_time_ms": done.get("setup_time"),
            "transferred_bytes": done.get("data_processed"),
            "memory_bytes": done.get("memory_processed"),
            "disk_bytes": done.get("disk_processed"),
            "memory_iterations": done.get("memory_iteration"),
            "post_copy_used": post_copy,
            "options": self.options(d, plan),
        }

    def _cold(self, dom, name, plan):
        start = time.time()
        self.source.call("move the definition of", "VM '%s'" % name, dom.migrateToURI3, self.dest.uri, {},
                         self._flags({}, plan, False))
        return {"downtime_ms": None, "total_time_ms": int((time.time() - start) * 1000), "setup_time_ms": None,
                "transferred_bytes": 0, "memory_bytes": 0, "disk_bytes": 0, "memory_iterations": None,
                "post_copy_used": False, "options": {}}

    def _remove_source_images(self, name, plan):
        """After a copy, the source's images go (the VM runs on the destination's copies), and with them the
        definition copy beside them on the source."""
        for path in plan.get("copied", []):
            vol = self.source.volume_by_path(path)
            if vol is not None:
                self.source.call("delete", "the source copy %s" % path, vol.delete, 0)
        if plan.get("copied") and self.local:
            stale = images.definition_copy_name(os.path.dirname(plan["copied"][0]), name)
            if os.path.lexists(stale):
                os.unlink(stale)

    def _send_definition_copy(self, name, plan):
        """After a copy, the definition copy beside the system disk, now on a destination datastore: written
        through the destination's libvirt (a 0600 volume with the definition read with SECURE)."""
        path = images.definition_copy_path(self.dest.domain_xml(name, inactive=True))
        where = [c["datastore"] for c in plan.get("create", []) if path and os.path.dirname(c["path"]) == os.path.dirname(path)]
        if not where:
            return  # the system disk is on a shared datastore: the source refreshed nothing there to move
        try:
            data = self.dest.domain_xml(name, inactive=True, secure=True).encode("utf-8")
            old = self.dest.volume_by_path(path)
            if old is not None:
                # a stale copy (derived: the definition itself is in the destination's libvirt)
                self.dest.call("replace", "the definition copy %s" % path, old.delete, 0)
            vol = self.dest.call("create", "the definition copy %s" % path, self.dest.pool(where[0]).createXML,
                                 volume_xml(os.path.basename(path), len(data), "raw"), 0)
            stream = self.dest.new_stream()
            self.dest.call("write", "the definition copy %s" % path, vol.upload, stream, 0, len(data), 0)
            done = 0
            while done < len(data):
                done += self.dest.call("write", "the definition copy %s" % path, stream.send, data[done:])
            self.dest.call("write", "the definition copy %s" % path, stream.finish)
        except Exception as e:  # pylint: disable=broad-except
            self.warn("VM '%s' runs on %s, but its definition copy %s could not be written there (%s); the next "
                      "change of the VM there writes it" % (name, self._hosts[1], path, e))

    def _refresh_definition_copy(self, name):
        """On a shared datastore, the copy beside the system disk says what the destination now holds."""
        path = images.definition_copy_path(self.dest.domain_xml(name, inactive=True))
        if path and self.local and os.path.isdir(os.path.dirname(path)):
            write_definition_copy(self.dest, name, path)
