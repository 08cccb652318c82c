# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_migration: options, prechecks (each refusal one line, nothing moved), snapshots travelling, failures."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.machinery
import importlib.util
import os
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, migration, storage, xmlutil

SHARED = "/var/lib/kvmfusion/shared"
LOCAL = "/var/lib/kvmfusion/datastores/local"
MIB = 1024 ** 2


def domain_xml(name="vm1", disks=None, nics="", cpu="", vcpus=1, memory_mib=128, dtype="kvm", machine="pc-q35-7.2"):
    disks = disks if disks is not None else [("file", SHARED + "/vm1.qcow2", "vda", "")]
    dx = "".join("<disk type='%s' device='disk'><source %s='%s'/><target dev='%s'/>%s</disk>"
                 % (kind, "dev" if kind == "block" else "file", path, target, extra)
                 for kind, path, target, extra in disks)
    return ("<domain type='%s'><name>%s</name><vcpu>%d</vcpu><currentMemory unit='KiB'>%d</currentMemory>"
            "<memory unit='KiB'>%d</memory><os><type arch='x86_64' machine='%s'>hvm</type></os>%s"
            "<devices>%s%s</devices></domain>"
            % (dtype, name, vcpus, memory_mib * 1024, memory_mib * 1024, machine, cpu, dx, nics))


class FakePool(object):
    def __init__(self, name, path, shared, active=True, uuid=None):
        self.n, self.path, self.shared, self.active = name, path, shared, active
        self.uuid_ = uuid or (storage.shared_uuid(name) if shared else "0000-%s" % name)
        self.created = []
        self.vols = {}

    def name(self):
        return self.n

    def isActive(self):
        return self.active

    def UUIDString(self):
        return self.uuid_

    def refresh(self, flags):
        self.refreshed = True

    def createXML(self, xml, flags):
        self.created.append(xml)
        name = xmlutil.find_text(xmlutil.parse(xml), "name")
        vol = mock.MagicMock(name="vol-" + name)
        vol.delete.side_effect = lambda flags: self.vols.pop(name)
        self.vols[name] = vol
        return vol


class FakeStream(object):
    """A libvirt stream between a volume and the caller: chunks are bytes (data) or ints (a hole's length)."""

    def __init__(self):
        self.chunks, self.sink, self.finished, self.aborted = [], None, False, False

    def sparseRecvAll(self, data, hole, opaque):
        for chunk in self.chunks:
            if isinstance(chunk, int):
                hole(self, chunk, opaque)
            else:
                data(self, chunk, opaque)

    def send(self, buf):
        n = min(len(buf), 7000)  # a partial send: the caller sends the rest
        self.sink.write(bytes(buf[:n]))
        return n

    def sendHole(self, length, flags):
        self.sink.hole(length)

    def finish(self):
        self.finished = True

    def abort(self):
        self.aborted = True


class ImageFile(object):
    """A volume's file: bytes, with holes read back as zeros (a preallocated copy)."""

    def __init__(self, corrupt=False):
        self.content, self.corrupt = bytearray(), corrupt

    def write(self, buf):
        if self.corrupt and buf:
            buf = b"X" + buf[1:]
            self.corrupt = False
        self.content += buf

    def hole(self, length):
        self.content += bytes(length)


class FakeClient(object):
    """A CNA at the client boundary."""

    def __init__(self, host, domains=None, pools=None, networks=None, cpus=4, free=8 * 1024 * MIB, local=True,
                 devices=(), cpu_ok=True, machines=("pc-q35-7.2", "q35", "pc-i440fx-7.2", "pc")):
        self.host, self.uri = host, "qemu+ssh://root@%s/system" % host if not local else "qemu:///system"
        self.is_local = local
        self.domains = dict(domains or {})
        self.pools = dict((p.n, p) for p in (pools or []))
        self.networks = dict(networks or {})
        self.cpus, self.free, self.devices, self.cpu_ok = cpus, free, set(devices), cpu_ok
        self.machines = set(machines)
        self.conn = mock.MagicMock()
        self.conn.getFreeMemory.return_value = free
        self.conn.listAllDevices.return_value = []
        self.volumes = {}
        self.secrets = {}

    def host_info(self):
        return {"hostname": self.host, "host_uuid": "uuid-" + self.host, "cpus": self.cpus, "arch": "x86_64",
                "domain_types": ["kvm", "qemu"], "hypervisor_version": "7.2.0", "libvirt_version": "9.0.0"}

    def machine_types(self, arch, virttype="kvm"):
        return self.machines

    def call(self, action, obj, fn, *args):
        return fn(*args)

    def domain(self, name):
        return self.domains.get(name)

    def domain_xml(self, name, inactive=False, secure=False):
        dom = self.domains.get(name)
        return dom.xml if dom is not None else None

    def domain_names(self):
        return sorted(self.domains)

    def compare_cpu(self, xml, virttype):
        return None if self.cpu_ok else "Host CPU does not provide required features: avx512f"

    def network(self, name):
        return self.networks.get(name)

    def pool(self, name):
        return self.pools.get(name)

    def pool_names(self):
        return sorted(self.pools)

    def volume_by_path(self, path):
        for pool in self.pools.values():
            if os.path.dirname(path) == pool.path and os.path.basename(path) in pool.vols:
                return pool.vols[os.path.basename(path)]
        return self.volumes.get(path)

    def new_stream(self):
        return FakeStream()

    def volume(self, pool, name):
        if pool not in self.pools:
            return None
        return self.pools[pool].vols.get(name) or self.volumes.get(self.pools[pool].path + "/" + name)

    def secret_by_uuid(self, uuid):
        return self.secrets.get(uuid)


def fake_dom(xml, state=1, snapshots=()):
    dom = mock.MagicMock(name="dom")
    dom.xml = xml
    dom.name.return_value = xmlutil.find_text(xmlutil.parse(xml), "name")
    dom.UUIDString.return_value = "6f1c0c2e-0000-4000-8000-00000000beef"
    dom.state.return_value = (state, 0)
    dom.hasManagedSaveImage.return_value = 0
    dom.listAllSnapshots.return_value = list(snapshots)
    dom.jobStats.return_value = {"downtime": 25, "time_elapsed": 790, "data_processed": 623738,
                                 "memory_processed": 623738, "memory_iteration": 2, "setup_time": 1}
    return dom


@pytest.fixture(autouse=True)
def _pool_facts(monkeypatch):
    """storage.facts reads a libvirt pool; here the fake pools say what they are."""
    def facts(client, pool):
        return {"name": pool.n, "type": "dir", "path": pool.path, "shared": pool.shared,
                "uuid": pool.uuid_ if pool.shared else None}
    monkeypatch.setattr(storage, "facts", facts)
    monkeypatch.setattr(migration, "write_definition_copy", mock.MagicMock())


def cnas(xml=None, state=1, snapshots=(), dst_pools=None, src_pools=None, **dst_kw):
    src_pools = src_pools or [FakePool("shared", SHARED, True), FakePool("local", LOCAL, False)]
    dst_pools = dst_pools if dst_pools is not None else [FakePool("shared", SHARED, True),
                                                         FakePool("local", LOCAL, False)]
    dom = fake_dom(xml or domain_xml(), state=state, snapshots=snapshots)
    src = FakeClient("cna1", domains={"vm1": dom}, pools=src_pools)
    dst = FakeClient("cna2", pools=dst_pools, local=False, **dst_kw)
    return src, dst, dom


def params(**kw):
    p = dict(name="vm1", mode="auto", storage="auto", compression="none", auto_converge=False, post_copy=False)
    p.update(kw)
    return p


def run(src, dst, check_mode=False, **kw):
    mgr = migration.MigrationManager(src, dst, check_mode=check_mode)
    return mgr, mgr.converge(params(**kw))


def refused(src, dst, *fragments, **kw):
    with pytest.raises(ValueError) as err:
        run(src, dst, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def assert_nothing_moved(dom, dst):
    assert not dom.migrateToURI3.called
    assert not dom.listAllSnapshots.return_value or not any(s.delete.called for s in dom.listAllSnapshots.return_value)
    for pool in dst.pools.values():
        assert pool.created == []


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("kw, fragment", [
    (dict(mode="warp"), "mode must be one of auto, live, cold"),
    (dict(max_downtime=0), "max_downtime must be between 1 and 600000"),
    (dict(bandwidth="fast"), "bandwidth must be a whole number"),
    (dict(parallel_connections=1), "parallel_connections must be between 2 and 255"),
    (dict(post_copy_after=3), "post_copy_after needs post_copy: true"),
    (dict(compression="zstd"), "compression zstd works with parallel connections only"),
    (dict(name="../etc"), "invalid VM name"),
])
def test_bad_options_are_one_line(kw, fragment):
    with pytest.raises(ValueError) as err:
        migration.desired_state(params(**kw))
    assert fragment in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- where the VM is
def test_a_vm_already_on_the_destination_is_no_change():
    src, dst, dom = cnas()
    dst.domains["vm1"], src.domains = dom, {}
    mgr, res = run(src, dst)
    assert not res.changed and res.actions == [] and res.values["host"] == "cna2"
    assert res.values["migration"] is None


def test_a_vm_on_both_hosts_or_neither_is_refused():
    src, dst, dom = cnas()
    dst.domains["vm1"] = fake_dom(domain_xml())
    refused(src, dst, "VM 'vm1' is defined on both cna1 and cna2")
    src.domains, dst.domains = {}, {}
    refused(src, dst, "unknown VM 'vm1': it is on neither cna1 nor cna2")


def test_the_same_host_as_destination_is_refused():
    src, dst, dom = cnas()
    dst.host_info = src.host_info
    refused(src, dst, "are the same host")
    assert_nothing_moved(dom, dst)


@pytest.mark.parametrize("state, mode, fragment", [
    (5, "live", "VM 'vm1' is shutoff on cna1: live migration needs it running"),
    (1, "cold", "VM 'vm1' is running on cna1: cold migration needs it stopped"),
])
def test_mode_must_fit_the_vms_state(state, mode, fragment):
    src, dst, dom = cnas(state=state)
    refused(src, dst, fragment, mode=mode)
    assert_nothing_moved(dom, dst)


def test_a_vm_suspended_to_disk_is_refused():
    src, dst, dom = cnas(state=5)
    dom.hasManagedSaveImage.return_value = 1
    refused(src, dst, "suspended to cna1's disk")


# ---------------------------------------------------------------- prechecks
def test_a_cpu_model_the_destination_lacks_is_refused():
    cpu = "<cpu mode='custom' match='exact'><model>Skylake-Server</model></cpu>"
    src, dst, dom = cnas(xml=domain_xml(cpu=cpu), cpu_ok=False)
    refused(src, dst, "its CPU model Skylake-Server cannot run on cna2", "avx512f")
    assert_nothing_moved(dom, dst)


def test_a_machine_type_of_a_newer_qemu_is_refused_before_anything_moves():
    # a VM made under QEMU 10 (libvirt 11) cannot go back to a QEMU 7.2 CNA
    src, dst, dom = cnas(xml=domain_xml(machine="pc-q35-10.0"))
    refused(src, dst, "machine type pc-q35-10.0", "QEMU 7.2.0 (libvirt 9.0.0) on cna2", "newer QEMU")
    assert_nothing_moved(dom, dst)


def test_an_older_machine_type_moves_to_a_newer_qemu():
    # 9.0 -> 11: QEMU 10 still provides the 7.2 machine type, so the guest keeps what it sees
    src, dst, dom = cnas(machines=("pc-q35-10.0", "pc-q35-7.2", "q35"))

    def arrive(uri, params, flags):
        dst.domains["vm1"] = dom
        src.domains.pop("vm1")
    dom.migrateToURI3.side_effect = arrive
    mgr, res = run(src, dst)
    assert res.values["migration"]["destination"] == "cna2"
    assert "machine='pc-q35-7.2'" in dom.migrateToURI3.call_args[0][1]["persistent_xml"]


def test_host_passthrough_is_refused_with_the_way_out():
    src, dst, dom = cnas(xml=domain_xml(cpu="<cpu mode='host-passthrough'/>"))
    refused(src, dst, "host-passthrough", "cpu_model: cluster")


def test_tcg_vms_need_no_cpu_check():
    src, dst, dom = cnas(xml=domain_xml(dtype="qemu", cpu="<cpu mode='custom'><model>qemu64</model></cpu>"),
                         cpu_ok=False)
    mgr, res = run(src, dst, check_mode=True)
    assert res.changed and res.actions == ["live-migrate to cna2 (shared storage)"]


def test_not_enough_memory_or_cpus_is_refused():
    src, dst, dom = cnas(xml=domain_xml(memory_mib=4096), free=2048 * MIB)
    refused(src, dst, "VM 'vm1' needs 4160 MiB; cna2 has 2048 MiB free")
    src, dst, dom = cnas(xml=domain_xml(vcpus=8), cpus=4)
    refused(src, dst, "VM 'vm1' has 8 vCPUs; cna2 has 4 CPUs")
    assert_nothing_moved(dom, dst)


def test_a_stopped_vm_needs_no_free_memory():
    src, dst, dom = cnas(xml=domain_xml(memory_mib=4096), free=2048 * MIB, state=5)
    assert run(src, dst, check_mode=True)[1].actions == ["cold-migrate to cna2 (shared storage)"]


def test_missing_switch_or_port_group_is_refused():
    nic = "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='dvs1' portgroup='web'/></interface>"
    src, dst, dom = cnas(xml=domain_xml(nics=nic))
    refused(src, dst, "network dvs1 of NIC 52:54:00:00:00:01 is not active on cna2")
    net = mock.MagicMock()
    net.isActive.return_value = 1
    net.XMLDesc.return_value = "<network><name>dvs1</name><portgroup name='db'/></network>"
    dst.networks["dvs1"] = net
    refused(src, dst, "port group web of switch dvs1 is not on cna2")
    net.XMLDesc.return_value = "<network><name>dvs1</name><portgroup name='web'/></network>"
    assert run(src, dst, check_mode=True)[1].changed


def test_a_raw_device_mapping_the_destination_cannot_see_is_refused():
    disks = [("file", SHARED + "/vm1.qcow2", "vda", ""), ("block", "/dev/disk/by-id/wwn-0x600a", "vdb", "")]
    src, dst, dom = cnas(xml=domain_xml(disks=disks))
    refused(src, dst, "raw device mapping /dev/disk/by-id/wwn-0x600a (disk vdb) is not visible on cna2")
    dev = mock.MagicMock()
    dev.XMLDesc.return_value = ("<device><devnode type='dev'>/dev/sdb</devnode>"
                                "<devnode type='link'>/dev/disk/by-id/wwn-0x600a</devnode></device>")
    dst.conn.listAllDevices.return_value = [dev]
    assert run(src, dst, check_mode=True)[1].changed
    dst.conn.listAllDevices.assert_called_with(constants.NODEDEV_CAP_STORAGE)


def test_an_independent_nonpersistent_disk_blocks_a_live_move_only():
    disks = [("file", SHARED + "/vm1.qcow2", "vda", "<transient/>")]
    src, dst, dom = cnas(xml=domain_xml(disks=disks))
    refused(src, dst, "disk vda is independent-nonpersistent")
    src, dst, dom = cnas(xml=domain_xml(disks=disks), state=5)
    assert run(src, dst, check_mode=True)[1].changed


def test_a_disk_on_no_datastore_is_refused():
    src, dst, dom = cnas(xml=domain_xml(disks=[("file", "/srv/elsewhere/x.qcow2", "vda", "")]))
    refused(src, dst, "image /srv/elsewhere/x.qcow2 of disk vda is on no running datastore of cna1")


def test_a_datastore_the_destination_does_not_share():
    src, dst, dom = cnas(xml=domain_xml(disks=[("file", LOCAL + "/vm1.qcow2", "vda", "")]))
    refused(src, dst, "disk vda is on datastore local, which cna2 does not share", storage="shared")
    # a shared datastore of the same name but another UUID is not the same storage
    src, dst, dom = cnas(dst_pools=[FakePool("shared", SHARED, True, uuid="other")])
    refused(src, dst, "datastore shared, which cna2 does not share", storage="shared")


def test_a_copied_chain_would_flatten_and_is_refused(monkeypatch):
    src, dst, dom = cnas(xml=domain_xml(disks=[("file", LOCAL + "/vm1.qcow2~s1", "vda", "")]))
    monkeypatch.setattr(migration.images, "disk_chain", lambda el, local: [LOCAL + "/vm1.qcow2~s1", LOCAL + "/vm1.qcow2"])
    refused(src, dst, "disk vda is a chain of 2 images", "would flatten it")


# ---------------------------------------------------------------- moving
def test_check_mode_moves_nothing():
    src, dst, dom = cnas()
    mgr, res = run(src, dst, check_mode=True)
    assert res.changed and res.before == {"host": "cna1", "state": "running"}
    assert res.after == {"host": "cna2", "state": "running"}
    assert_nothing_moved(dom, dst)
    assert not dom.migrateSetMaxDowntime.called


def test_live_migration_flags_params_and_result():
    src, dst, dom = cnas()

    def arrive(uri, params, flags):
        dst.domains["vm1"] = dom
        src.domains.pop("vm1")
    dom.migrateToURI3.side_effect = arrive
    mgr, res = run(src, dst, max_downtime=100, bandwidth=200, auto_converge=True, parallel_connections=4,
                   compression="zstd")
    uri, params, flags = dom.migrateToURI3.call_args[0]
    assert uri == dst.uri
    for f in ("MIGRATE_LIVE", "MIGRATE_PEER2PEER", "MIGRATE_PERSIST_DEST", "MIGRATE_UNDEFINE_SOURCE",
              "MIGRATE_ABORT_ON_ERROR", "MIGRATE_AUTO_CONVERGE", "MIGRATE_PARALLEL", "MIGRATE_COMPRESSED",
              "MIGRATE_UNSAFE"):
        assert flags & getattr(constants, f), f
    assert not flags & (constants.MIGRATE_NON_SHARED_DISK | constants.MIGRATE_POSTCOPY | constants.MIGRATE_TLS)
    assert params["bandwidth"] == 200 and params["parallel.connections"] == 4 and params["compression"] == "zstd"
    assert "migrate_disks" not in params and "<domain" in params["persistent_xml"]
    dom.migrateSetMaxDowntime.assert_called_once_with(100, 0)
    m = res.values["migration"]
    assert (m["downtime_ms"], m["total_time_ms"], m["transferred_bytes"], m["memory_iterations"]) == (25, 790, 623738, 2)
    assert (m["mode"], m["storage"], m["source"], m["destination"]) == ("live", "shared", "cna1", "cna2")
    assert m["options"]["max_downtime"] == 100 and m["options"]["unsafe"] is True
    dom.jobStats.assert_called_with(constants.JOB_STATS_COMPLETED)
    # no cluster on this host (the autouse _no_host_cluster): libvirt moved it, and the result says so
    assert res.values["through_cluster"] is False and m["through_cluster"] is False


def test_cold_migration_is_an_offline_move_of_the_definition():
    src, dst, dom = cnas(state=5)
    dom.migrateToURI3.side_effect = lambda *a: (dst.domains.update(vm1=dom), src.domains.pop("vm1"))
    mgr, res = run(src, dst)
    flags = dom.migrateToURI3.call_args[0][2]
    assert flags & constants.MIGRATE_OFFLINE and not flags & constants.MIGRATE_LIVE
    assert res.values["migration"]["mode"] == "cold" and res.values["migration"]["downtime_ms"] is None


def snap(name, parent, current=False):
    s = mock.MagicMock(name="snap-" + name)
    s.getName.return_value = name
    s.getXMLDesc.return_value = "<domainsnapshot><name>%s</name>%s</domainsnapshot>" % (
        name, "<parent><name>%s</name></parent>" % parent if parent else "")
    return s


def test_snapshots_move_as_metadata_parents_first_current_marked():
    snaps = [snap("c", "b"), snap("a", None), snap("b", "a")]
    src, dst, dom = cnas(snapshots=snaps)
    dom.snapshotCurrent.return_value = snaps[2]
    src.snapshot = lambda vm, name: [s for s in snaps if s.getName() == name][0]
    new_dom = fake_dom(domain_xml())

    def arrive(*a):
        dst.domains["vm1"] = new_dom
        src.domains.pop("vm1")
    dom.migrateToURI3.side_effect = arrive
    mgr, res = run(src, dst)
    for s in snaps:
        s.delete.assert_called_once_with(constants.DELETE_METADATA_ONLY)
        s.getXMLDesc.assert_called_once_with(constants.SNAPSHOT_XML_SECURE)
    redefined = [(xmlutil.find_text(xmlutil.parse(c[0][0]), "name"), c[0][1]) for c in new_dom.snapshotCreateXML.call_args_list]
    assert redefined == [("a", constants.CREATE_REDEFINE), ("b", constants.CREATE_REDEFINE | constants.CREATE_CURRENT),
                         ("c", constants.CREATE_REDEFINE)]
    assert res.values["migration"]["snapshots"] == ["a", "b", "c"]


def test_a_failed_migration_leaves_the_vm_and_its_snapshots_on_the_source():
    snaps = [snap("a", None)]
    src, dst, dom = cnas(snapshots=snaps)
    src.snapshot = lambda vm, name: snaps[0]
    dom.migrateToURI3.side_effect = RuntimeError("connection to cna2 lost")
    with pytest.raises(ValueError) as err:
        run(src, dst)
    assert "live migration of VM 'vm1' to cna2 failed (connection to cna2 lost); it still runs on cna1" in str(err.value)
    snaps[0].delete.assert_called_once_with(constants.DELETE_METADATA_ONLY)
    dom.snapshotCreateXML.assert_called_once_with(snaps[0].getXMLDesc.return_value, constants.CREATE_REDEFINE)


def copy_setup(thick=False, dst_vol=None, users=()):
    path = LOCAL + "/vm1.qcow2"
    src, dst, dom = cnas(xml=domain_xml(disks=[("file", path, "vda", "")]))
    vol = mock.MagicMock()
    vol.XMLDesc.return_value = "<volume><target><format type='qcow2'/></target></volume>"
    vol.info.return_value = (0, 1024 * MIB, 1024 * MIB if thick else 10 * MIB)
    vol.infoFlags.return_value = (0, 1025 * MIB if thick else 11 * MIB, 1024 * MIB if thick else 10 * MIB)
    src.volumes[path] = vol
    if dst_vol is not None:
        dst.volumes[path] = dst_vol
    src_client_dirs = {"local": LOCAL}
    return src, dst, dom, path, vol, src_client_dirs


@pytest.fixture
def dirs(monkeypatch):
    monkeypatch.setattr(migration.images, "datastore_dir", lambda client, pool, name, who: pool.path)
    monkeypatch.setattr(migration.images, "users_of", lambda client, path, local=True: [])


def test_copied_disks_get_a_thin_target_made_first_and_only_they_are_copied(dirs):
    src, dst, dom, path, vol, _dirs = copy_setup()

    def arrive(uri, params, flags):
        assert len(dst.pools["local"].created) == 2  # marker and target made before the copy starts
        dst.domains["vm1"] = dom
        src.domains.pop("vm1")
    dom.migrateToURI3.side_effect = arrive
    mgr, res = run(src, dst)
    uri, params, flags = dom.migrateToURI3.call_args[0]
    assert flags & constants.MIGRATE_NON_SHARED_DISK and params["migrate_disks"] == ["vda"]
    # the marker announcing the copy came first, and went once the VM had arrived
    marker = xmlutil.parse(dst.pools["local"].created[0])
    assert xmlutil.find_text(marker, "name") == ".vm1.qcow2~incoming~" + dom.UUIDString()
    assert xmlutil.find_text(marker, "capacity") == "0" and dst.pools["local"].vols.keys() == {"vm1.qcow2", ".vm1~vm.xml"}
    created = xmlutil.parse(dst.pools["local"].created[1])
    assert xmlutil.find_text(created, "allocation") == "0" and xmlutil.find_attr(created, "target/format", "type") == "qcow2"
    vol.delete.assert_called_once_with(0)  # the source's image goes once the VM runs on the destination
    assert res.actions == ["live-migrate to cna2 (copy storage)", "create the copy of %s on cna2" % path]


def test_a_failed_copy_removes_the_partial_target(dirs):
    src, dst, dom, path, vol, _dirs = copy_setup()

    def fail(*a):
        assert list(dst.pools["local"].vols) == [".vm1.qcow2~incoming~" + dom.UUIDString(), "vm1.qcow2"]
        raise RuntimeError("cna2 went away")
    dom.migrateToURI3.side_effect = fail
    with pytest.raises(ValueError):
        run(src, dst)
    assert not vol.delete.called
    assert dst.pools["local"].vols == {}  # the partial copy and its marker went


def test_a_partial_copy_is_replaced_only_when_its_marker_says_so(dirs):
    stale = mock.MagicMock()
    stale.info.return_value = (0, 1024 * MIB, 900 * MIB)
    stale.XMLDesc.return_value = "<volume><target><format type='qcow2'/></target></volume>"
    src, dst, dom, path, vol, _dirs = copy_setup(dst_vol=stale)
    refused(src, dst, "cna2 already has %s (another image of that name)" % path)
    # a marker of another VM does not count
    dst.pools["local"].vols[".vm1.qcow2~incoming~0000"] = mock.MagicMock()
    refused(src, dst, "cna2 already has %s (another image of that name)" % path)
    assert not stale.delete.called


def test_a_stale_partial_copy_is_replaced_and_anything_else_refused(dirs, monkeypatch):
    stale = mock.MagicMock()
    stale.info.return_value = (0, 1024 * MIB, 900 * MIB)
    stale.XMLDesc.return_value = "<volume><target><format type='qcow2'/></target></volume>"
    src, dst, dom, path, vol, _dirs = copy_setup(dst_vol=stale)
    dst.pools["local"].vols[".vm1.qcow2~incoming~" + dom.UUIDString()] = mock.MagicMock()  # left by a dead destination
    mgr, res = run(src, dst, check_mode=True)
    assert "replace the partial copy of %s on cna2" % path in res.actions
    stale.info.return_value = (0, 2048 * MIB, 900 * MIB)  # a partial byte copy (cold) has another size: still ours
    mgr, res = run(src, dst, check_mode=True)
    assert "replace the partial copy of %s on cna2" % path in res.actions
    monkeypatch.setattr(migration.images, "users_of", lambda client, p, local=True: [("db9", "vda")])
    refused(src, dst, "cna2 already has %s (used by db9)" % path)
    assert not stale.delete.called


def slow_migration(monkeypatch):
    """A migration that runs until aborted; returns the VM and the event its abort sets."""
    import threading
    src, dst, dom = cnas()
    monkeypatch.setattr(migration, "POLL", 0.01)
    release = threading.Event()

    def slow(*a):
        release.wait(5)
        raise RuntimeError("operation aborted: migration out job: canceled by client")
    dom.migrateToURI3.side_effect = slow
    return src, dst, dom, release


def test_a_timeout_aborts_and_the_vm_stays(monkeypatch):
    src, dst, dom, release = slow_migration(monkeypatch)
    dom.abortJob.side_effect = release.set
    with pytest.raises(ValueError) as err:
        run(src, dst, timeout=1)
    assert "failed (aborted after the 1 s timeout); it still runs on cna1" in str(err.value)
    dom.abortJob.assert_called_once_with()


def test_an_abort_refused_while_the_job_is_set_up_is_tried_again(monkeypatch):
    src, dst, dom, release = slow_migration(monkeypatch)
    answers = [RuntimeError("Requested operation is not valid: no job is active on the domain"), None]

    def abort():
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        release.set()
    dom.abortJob.side_effect = abort
    with pytest.raises(ValueError) as err:
        run(src, dst, timeout=1)
    assert "failed (aborted after the 1 s timeout); it still runs on cna1" in str(err.value)
    assert dom.abortJob.call_count == 2


def test_the_destination_as_source_is_refused_even_with_the_vm_there():
    src, dst, dom = cnas()
    dst.host_info = src.host_info
    dst.domains["vm1"] = dom
    refused(src, dst, "are the same host")


def test_a_datastore_the_destination_lacks_is_named():
    src, dst, dom = cnas(xml=domain_xml(disks=[("file", LOCAL + "/vm1.qcow2", "vda", "")]),
                         dst_pools=[FakePool("shared", SHARED, True)])
    refused(src, dst, "datastore local of disk vda is not on cna2")


# ---------------------------------------------------------------- the vm module and a VM defined elsewhere
def test_the_vm_module_does_not_define_a_vm_another_cna_has(tmp_path, monkeypatch):
    from ansible_collections.kvmfusion.compute.plugins.module_utils import domains, images
    pool = FakePool("shared", str(tmp_path), True)
    client = FakeClient("cna1", pools=[pool])
    monkeypatch.setattr(images, "datastore_dir", lambda c, p, n, who: p.path)
    mgr = domains.VmManager(client, check_mode=True)
    specs = [{"datastore": "shared", "name": "vm1.qcow2"}]
    mgr._refuse_if_defined_elsewhere("vm1", specs)  # no copy: a new VM
    (tmp_path / ".vm1~vm.xml").write_text("<domain/>")
    with pytest.raises(ValueError) as err:
        mgr._refuse_if_defined_elsewhere("vm1", specs)
    assert "VM 'vm1' is not on cna1 but its definition copy" in str(err.value) and "another CNA" in str(err.value)


# ---------------------------------------------------------------- host maintenance
from ansible_collections.kvmfusion.compute.plugins.module_utils import hosts, maintenance  # noqa: E402


def evac_setup(vms, peers_free, peer_maint=()):
    """cna1 running ``vms`` ({name: MiB}), peers cna2.. with ``peers_free`` MiB free each."""
    src = FakeClient("cna1", pools=[FakePool("shared", SHARED, True)])
    for name, mib in vms.items():
        dom = fake_dom(domain_xml(name=name, memory_mib=mib,
                                  disks=[("file", "%s/%s.qcow2" % (SHARED, name), "vda", "")]))
        dom.isActive.return_value = 1
        src.domains[name] = dom
    peers = []
    for i, free in enumerate(peers_free):
        peer = FakeClient("cna%d" % (i + 2), pools=[FakePool("shared", SHARED, True)], free=free * MIB, local=False)
        if peer.host in peer_maint:
            secret = mock.MagicMock()
            secret.XMLDesc.return_value = hosts.maintenance_xml("patching")
            peer.secrets[hosts.MAINTENANCE_UUID] = secret
        peers.append(peer)
    src.secret_by_uuid = lambda uuid: None
    src.conn.secretDefineXML = mock.MagicMock()
    return src, peers


def evacuate(src, peers, check_mode=True, **kw):
    p = dict(state="maintenance", parallel=1, auto_converge=False)
    p.update(kw)
    mgr = maintenance.MaintenanceManager(src, peers, check_mode=check_mode)
    return mgr, mgr.converge(p)


def test_the_plan_puts_the_largest_vm_first_where_most_memory_is_left():
    src, peers = evac_setup({"small": 64, "big": 1024, "mid": 512}, [1400, 900])
    mgr, res = evacuate(src, peers)
    # big (1024+64) to cna2 (1400 -> 312 left); mid (512+64) to cna3 (900 -> 324); small to cna3 (324 > 312)
    assert res.actions == ["mark cna1 in maintenance", "migrate big to cna2", "migrate mid to cna3",
                           "migrate small to cna3"]
    assert res.before == {"maintenance": False, "running": ["big", "mid", "small"]}
    assert not src.conn.secretDefineXML.called  # check mode
    assert not any(d.migrateToURI3.called for d in src.domains.values())


def test_a_vm_that_fits_nowhere_blocks_before_any_change():
    src, peers = evac_setup({"big": 4096, "small": 64}, [1024], peer_maint=())
    with pytest.raises(ValueError) as err:
        evacuate(src, peers, check_mode=False)
    msg = str(err.value)
    assert "maintenance of cna1 is blocked: VM 'big': cna2 has 1024 MiB free for it" in msg and "\n" not in msg
    assert not src.conn.secretDefineXML.called
    assert not any(d.migrateToURI3.called for d in src.domains.values())


def test_peers_in_maintenance_are_not_used_and_say_so():
    src, peers = evac_setup({"vm1": 64}, [4096], peer_maint=("cna2",))
    with pytest.raises(ValueError) as err:
        evacuate(src, peers)
    assert "VM 'vm1': cna2 is in maintenance" in str(err.value)


def test_unmovable_vms_are_shut_down_when_allowed(monkeypatch):
    src, peers = evac_setup({"vm1": 64}, [], peer_maint=())
    stopped = []
    monkeypatch.setattr(maintenance.PowerManager, "ensure", lambda self, name, dom, want: stopped.append((name, want)))
    mgr, res = evacuate(src, peers, check_mode=False, shutdown_unmovable=True)
    assert res.actions == ["mark cna1 in maintenance", "shut down vm1 (no other CNA was given (peers))"]
    assert stopped == [("vm1", "stopped")] and res.values["shut_down"] == ["vm1"]
    assert hosts.MAINTENANCE_UUID in src.conn.secretDefineXML.call_args[0][0]


def test_a_failed_move_leaves_the_host_marked_and_names_what_moved():
    src, peers = evac_setup({"a": 64, "b": 64}, [4096])
    src.domains["a"].migrateToURI3.side_effect = RuntimeError("network unreachable")

    def arrive(*args):
        peers[0].domains["b"] = src.domains.pop("b")
    src.domains["b"].migrateToURI3.side_effect = arrive
    with pytest.raises(ValueError) as err:
        evacuate(src, peers, check_mode=False)
    msg = str(err.value)
    assert "maintenance of cna1 is incomplete: a could not move" in msg and "b to cna2 moved" in msg
    assert src.conn.secretDefineXML.called


def test_a_host_in_maintenance_with_nothing_running_is_no_change_and_active_ends_it():
    src, peers = evac_setup({}, [4096])
    secret = mock.MagicMock()
    secret.XMLDesc.return_value = hosts.maintenance_xml("patching")
    src.secret_by_uuid = lambda uuid: secret
    mgr, res = evacuate(src, peers, check_mode=False)
    assert not res.changed and res.actions == []
    mgr, res = evacuate(src, peers, check_mode=False, state="active")
    assert res.changed and res.actions == ["end the maintenance of cna1"]
    secret.undefine.assert_called_once_with()


def test_a_start_is_refused_on_a_host_in_maintenance():
    client = FakeClient("cna1")
    secret = mock.MagicMock()
    secret.XMLDesc.return_value = hosts.maintenance_xml("patching")
    hosts.refuse_in_maintenance(client, "VM 'vm1' cannot start")  # in service: nothing to say
    client.secrets[hosts.MAINTENANCE_UUID] = secret
    with pytest.raises(ValueError) as err:
        hosts.refuse_in_maintenance(client, "VM 'vm1' cannot start")
    assert "VM 'vm1' cannot start: cna1 is in maintenance (since " in str(err.value)
    assert ", patching); end it with host_maintenance state=active" in str(err.value)


def test_no_migration_lands_on_a_host_in_maintenance():
    src, dst, dom = cnas()
    secret = mock.MagicMock()
    secret.XMLDesc.return_value = hosts.maintenance_xml("")
    dst.secrets[hosts.MAINTENANCE_UUID] = secret
    refused(src, dst, "VM 'vm1' cannot move there: cna2 is in maintenance")
    assert_nothing_moved(dom, dst)


# ---------------------------------------------------------------- the destination's boot-time cleanup
CLEANUP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(migration.__file__)))),
                       "roles", "cna", "files", "incoming_cleanup.py")


def load_cleanup():
    loader = importlib.machinery.SourceFileLoader("kvmfusion_incoming_cleanup", CLEANUP)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class Vol(object):
    def __init__(self, pool, name, backing=None):
        self.pool, self.n, self.backing = pool, name, backing

    def name(self):
        return self.n

    def XMLDesc(self, flags):
        bs = "<backingStore><path>%s</path></backingStore>" % self.backing if self.backing else ""
        return "<volume><name>%s</name>%s</volume>" % (self.n, bs)

    def delete(self, flags):
        del self.pool.vols[self.n]


class Pool(object):
    def __init__(self, path, names, kind="dir"):
        self.path, self.kind = path, kind
        self.vols = dict((n, Vol(self, n)) for n in names)
        self.refreshed = False

    def XMLDesc(self, flags):
        return "<pool type='%s'><target><path>%s</path></target></pool>" % (self.kind, self.path)

    def refresh(self, flags):
        self.refreshed = True

    def listAllVolumes(self, flags):
        return list(self.vols.values())

    def storageVolLookupByName(self, name):
        if name not in self.vols:
            raise RuntimeError("Storage volume not found: no storage vol with matching name '%s'" % name)
        return self.vols[name]


class Conn(object):
    def __init__(self, pools, domains=()):
        self.pools, self.domains = pools, list(domains)

    def listAllStoragePools(self, flags):
        return self.pools

    def listAllDomains(self, flags):
        return self.domains

    def lookupByUUIDString(self, uuid):
        for d in self.domains:
            if d.uuid == uuid:
                return d
        raise RuntimeError("Domain not found: no domain with matching uuid '%s'" % uuid)


def on_host(uuid, path):
    dom = mock.MagicMock()
    dom.uuid = uuid
    dom.isPersistent.return_value = True
    dom.XMLDesc.return_value = "<domain><devices><disk><source file='%s'/></disk></devices></domain>" % path
    return dom


def test_the_boot_cleanup_removes_only_copies_whose_migration_never_finished():
    mod = load_cleanup()
    assert mod.parse_marker(os.path.basename(migration.images.incoming_marker(LOCAL + "/a.qcow2", "u-1"))) == ("a.qcow2", "u-1")
    assert mod.parse_marker("a.qcow2") is None and mod.parse_marker(".a.qcow2~new") is None
    pool = Pool(LOCAL, ["dead.qcow2", ".dead.qcow2~incoming~u-dead",      # the host died in this copy
                        "done.qcow2", ".done.qcow2~incoming~u-done",      # arrived; its marker outlived the run
                        "base.qcow2", ".base.qcow2~incoming~u-gone",      # a clone stands on it since
                        "clone.qcow2", ".never.qcow2~incoming~u-never",   # died before the copy target existed
                        "user.qcow2"])                                    # no marker: never touched
    pool.vols["clone.qcow2"].backing = LOCAL + "/base.qcow2"
    other = Pool("/srv/iscsi", [".x~incoming~u-dead"], kind="iscsi")
    lines = []
    removed = mod.clean(Conn([pool, other], [on_host("u-done", LOCAL + "/done.qcow2")]), lines.append)
    assert removed == [LOCAL + "/dead.qcow2"]
    assert sorted(pool.vols) == ["base.qcow2", "clone.qcow2", "done.qcow2", "user.qcow2"]
    assert pool.refreshed and list(other.vols) == [".x~incoming~u-dead"]
    assert "%s/dead.qcow2: removed (the partial copy of a migration this host died in)" % LOCAL in lines
    assert "%s/done.qcow2: kept (its VM runs here)" % LOCAL in lines
    assert "%s/base.qcow2: kept (an image stands on it)" % LOCAL in lines


def test_the_boot_cleanup_removes_what_a_storage_move_left_and_nothing_in_use(tmp_path):
    mod = load_cleanup()
    d = str(tmp_path)
    names = ["moving.qcow2", ".moving2.qcow2~move", "in-use.qcow2", "done.qcow2", "plain.qcow2"]
    for n in names:
        open(os.path.join(d, n), "w").close()
    for n, value in (("moving.qcow2", b"partial"), ("in-use.qcow2", b"partial"), ("done.qcow2", b"thin")):
        os.setxattr(os.path.join(d, n), "user.kvmfusion.provisioning", value)
    pool = Pool(d, names)
    lines = []
    removed = mod.clean(Conn([pool], [on_host("u-1", os.path.join(d, "in-use.qcow2"))]), lines.append)
    assert sorted(removed) == sorted([os.path.join(d, "moving.qcow2"), os.path.join(d, ".moving2.qcow2~move")])
    assert sorted(pool.vols) == ["done.qcow2", "in-use.qcow2", "plain.qcow2"]
    assert "%s/in-use.qcow2: kept (marked partial, but a VM uses it)" % d in lines


def test_a_stopped_vms_unshared_disk_is_copied_through_libvirt_and_read_back(dirs):
    src, dst, dom, path, vol, _dirs = copy_setup()
    dom.state.return_value = (5, 0)
    src_chunks = [b"QFI\xfb" + bytes(60000), 65536 * 3, b"data" * 20000, 4096, b"\x01" * 100]
    vol.download.side_effect = lambda stream, off, length, flags: stream.chunks.extend(src_chunks)
    image, copy = ImageFile(), ImageFile()

    def created(xml, flags):
        new = FakePool.createXML(dst.pools["local"], xml, flags)
        sink = copy if xmlutil.find_text(xmlutil.parse(xml), "name").endswith("~vm.xml") else image
        new.upload.side_effect = lambda stream, off, length, flags: setattr(stream, "sink", sink)
        # read back as plain data (the skipped holes of a preallocated file read as zeros)
        new.download.side_effect = lambda stream, off, length, flags: stream.chunks.append(bytes(image.content))
        return new
    dst.pools["local"].createXML = created
    dom.migrateToURI3.side_effect = lambda *a: (dst.domains.update(vm1=dom), src.domains.pop("vm1"))
    mgr, res = run(src, dst)
    target = xmlutil.parse(dst.pools["local"].created[1])
    # a byte copy of the file: raw, the file's size, thin like its source
    assert xmlutil.find_attr(target, "target/format", "type") == "raw"
    assert xmlutil.find_text(target, "capacity") == str(11 * MIB) and xmlutil.find_text(target, "allocation") == "0"
    assert bytes(image.content[:4]) == b"QFI\xfb" and len(image.content) == 60004 + 65536 * 3 + 80000 + 4096 + 100
    flags = dom.migrateToURI3.call_args[0][2]
    assert flags & constants.MIGRATE_OFFLINE and not flags & constants.MIGRATE_NON_SHARED_DISK
    assert res.values["migration"]["disk_bytes"] == 60004 + 80000 + 100
    vol.delete.assert_called_once_with(0)  # the source's image went after the VM moved
    # the marker went; the definition copy beside the system disk came along, written through libvirt
    assert sorted(dst.pools["local"].vols) == [".vm1~vm.xml", "vm1.qcow2"]
    assert bytes(copy.content) == dom.xml.encode() and "<mode>0600</mode>" in dst.pools["local"].created[-1]


def test_a_cold_copy_that_reads_back_wrong_leaves_the_vm_and_removes_the_copy(dirs):
    src, dst, dom, path, vol, _dirs = copy_setup()
    dom.state.return_value = (5, 0)
    vol.download.side_effect = lambda stream, off, length, flags: stream.chunks.extend([b"abc" * 1000, 8192])
    image = ImageFile(corrupt=True)

    def created(xml, flags):
        new = FakePool.createXML(dst.pools["local"], xml, flags)
        new.upload.side_effect = lambda stream, off, length, flags: setattr(stream, "sink", image)
        new.download.side_effect = lambda stream, off, length, flags: stream.chunks.append(bytes(image.content))
        return new
    dst.pools["local"].createXML = created
    msg = refused(src, dst, "does not read back as it was sent")
    assert "it still" in msg or "vm1.qcow2" in msg
    assert not dom.migrateToURI3.called and not vol.delete.called
    assert list(dst.pools["local"].vols) == []  # the copy and its marker went


def test_the_content_hash_sees_holes_and_zeros_alike():
    def digest(chunks):
        h = migration.ContentHash()
        for c in chunks:
            if isinstance(c, int):
                h.hole(c)
            else:
                h.data(c)
        return h.hexdigest()
    a = digest([b"x" * 100, 70000, b"y" * 5])
    assert a == digest([b"x" * 100 + bytes(70000) + b"y" * 5])
    assert a == digest([b"x" * 50, b"x" * 50 + bytes(10), 69990, b"y" * 5])
    assert a != digest([b"x" * 100, 70001, b"y" * 4])
    assert a != digest([b"x" * 100, 70000, b"y" * 5, 1])  # the length counts
