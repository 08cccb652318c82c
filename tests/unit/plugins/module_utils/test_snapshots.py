# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import constants, images, names
from ansible_collections.kvmfusion.compute.plugins.module_utils import power, snapshots
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_disks import (
    DS_PATH, Host, LUN, URI, disk_xml)

INDEP = DS_PATH + "/indep.qcow2"
DATA = DS_PATH + "/data.raw"
META = ("<kvmf:disks xmlns:kvmf='https://kvmfusion.compute/xmlns/disks/1'>"
        "<kvmf:disk source='%s' mode='independent_persistent'/></kvmf:disks>" % INDEP)


@pytest.fixture
def host(fake_libvirt):
    h = Host(fake_libvirt)
    h.add_pool()
    return h


def vm(host, running=True, extra="", metadata=META):
    disks = disk_xml(DATA, "vdb") + disk_xml(INDEP, "vdc") + \
        disk_xml(DS_PATH + "/scratch.qcow2", "vdd", extra="\n      <transient/>") + extra
    dom = host.add_domain("vm1", running=running, extra_disks=disks, metadata=metadata)

    def no_snapshot(name, flags=0):
        raise host.fake.libvirtError("no snapshot %s" % name, 72)
    dom.snapshotLookupByName.side_effect = no_snapshot
    dom.listAllSnapshots.return_value = []
    return dom


def manager(check_mode=True):
    return snapshots.SnapshotManager(Client(URI), check_mode=check_mode)


def test_overlays_are_named_after_the_base_disk():
    assert images.overlay_path("/d/data.raw", "s1") == "/d/data.raw~s1.qcow2"
    assert images.overlay_path("/d/root", "before-upgrade") == "/d/root~before-upgrade.qcow2"


@pytest.mark.parametrize("a, b", [
    (("/d/web1.qcow2", "s1"), ("/d/web1.raw", "s1")),  # two disks of one VM
    (("/d/a.b", "c"), ("/d/a", "b.c")),                # a dot in a disk name or a snapshot name
])
def test_overlay_names_of_different_disks_or_snapshots_never_collide(a, b):
    assert images.overlay_path(*a) != images.overlay_path(*b)


def test_memory_files_of_different_vms_never_collide():
    # VM db, snapshot prod.daily and VM db.prod, snapshot daily used to share .db.prod.daily.mem
    assert images.memory_path("/d", "db", "prod.daily") != images.memory_path("/d", "db.prod", "daily")


@pytest.mark.parametrize("derived", [
    images.overlay_path("/d/web1.qcow2", "s1"), images.memory_path("/d", "web1", "s1"),
    images.temp_path("/d/web1.qcow2", "convert"), images.temp_path("/d/web1.qcow2", "new"),
    images.definition_copy_name("/d", "web1"),
])
def test_no_object_name_can_produce_a_derived_file_name(derived):
    with pytest.raises(ValueError):
        names.validate_name(os.path.basename(derived), kind="disk")


def test_check_mode_plans_persistent_disks_only_and_changes_nothing(host):
    vm(host)
    mgr = manager()
    changed, facts = mgr.present("vm1", "s1", quiesce="true")
    assert changed and facts is None
    # the root and the data disk; the independent and the transient disk never take part
    assert mgr.actions == ["create snapshot s1 of vda, vdb (quiesced)"]
    assert host.mutating_calls() == []
    assert not [c for c in host.domains["vm1"].mock_calls if c[0].endswith("snapshotCreateXML")]


@pytest.mark.parametrize("kwargs, running, extra, message", [
    (dict(memory=True), False, "", "is not running, so there is no memory"),
    (dict(memory=True, quiesce="true"), True, "", "quiesce applies to disk-only"),
    (dict(), True, "    <disk type='block' device='lun'><source dev='%s'/><target dev='sda' bus='scsi'/></disk>\n" % LUN,
     "raw device mapping"),
])
def test_refusals_are_one_line_and_change_nothing(host, kwargs, running, extra, message):
    vm(host, running=running, extra=extra)
    with pytest.raises(ValueError) as err:
        manager().present("vm1", "s1", **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert host.mutating_calls() == []


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_vm_under_ha_is_refused_a_snapshot_in_one_line(host, monkeypatch, check_mode):
    # the cluster restarts it from its definition copy, as a transient domain: no snapshot would survive that
    vm(host)
    monkeypatch.setattr(power, "ha_resource", lambda run, local, name: "kvmfusion-vm-" + name)
    with pytest.raises(ValueError) as err:
        manager(check_mode=check_mode).present("vm1", "s1")
    assert "VM 'vm1' is under HA (cluster resource kvmfusion-vm-vm1): taking snapshot 's1' is refused" in str(err.value)
    assert "\n" not in str(err.value)
    assert host.mutating_calls() == []


def test_unknown_vm_and_bad_names(host):
    with pytest.raises(ValueError) as err:
        manager().present("nope", "s1")
    assert "unknown VM 'nope'" in str(err.value)
    vm(host)
    with pytest.raises(ValueError) as err:
        manager().present("vm1", "a/b")
    assert "must not contain '/'" in str(err.value)


def test_best_effort_falls_back_visibly(host):
    dom = vm(host)
    calls = []

    def create(xml, flags):
        calls.append(flags)
        if flags & constants.CREATE_QUIESCE:
            raise host.fake.libvirtError("QEMU guest agent is not configured", 3)
        return None
    dom.snapshotCreateXML.side_effect = create
    mgr = manager(check_mode=False)
    changed, _facts = mgr.present("vm1", "s1", quiesce="best_effort")
    assert changed and mgr.quiesced is False
    assert calls[0] & constants.CREATE_QUIESCE and not calls[1] & constants.CREATE_QUIESCE
    assert all(f & constants.CREATE_DISK_ONLY and f & constants.CREATE_ATOMIC for f in calls)
    assert any("NOT quiesced" in w for w in mgr.warnings)
    meta = [c for c in dom.mock_calls if c[0] == "setMetadata"][-1]
    assert "quiesced=\"false\"" in meta[1][1] and "name=\"s1\"" in meta[1][1]


def test_snapshot_xml_excludes_other_disks(host):
    dom = vm(host)
    mgr = manager(check_mode=False)
    mgr.present("vm1", "s1")
    xml = ET.fromstring(dom.snapshotCreateXML.call_args[0][0])
    got = dict((d.get("name"), d.get("snapshot")) for d in xml.findall("disks/disk"))
    assert got == {"vda": "external", "vdb": "external", "vdc": "no", "vdd": "no"}
    assert xml.find("disks/disk[@name='vdb']/source").get("file") == DS_PATH + "/data.raw~s1.qcow2"
    assert xml.find("memory").get("snapshot") == "no"


def test_a_held_lease_becomes_a_clear_message(host):
    dom = vm(host)
    dom.snapshotLookupByName.side_effect = None
    snap = dom.snapshotLookupByName.return_value
    snap.getXMLDesc.return_value = ("<domainsnapshot><name>s2</name><memory snapshot='no'/><creationTime>1</creationTime>"
                                    "<disks><disk name='vda' snapshot='external'><source file='/d/r.s2.qcow2'/></disk>"
                                    "</disks></domainsnapshot>")
    dom.listAllSnapshots.return_value = [snap]
    snap.delete.side_effect = host.fake.libvirtError(
        "resource busy: Lockspace resource '/d/r.qcow2' is locked", 55)
    with pytest.raises(ValueError) as err:
        manager(check_mode=False).absent("vm1", "s2")
    assert "cannot be merged while the VM runs" in str(err.value) and "nothing was changed" in str(err.value)
