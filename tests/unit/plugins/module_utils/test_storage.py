# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import storage, xmlutil


def spec(**kw):
    base = dict(name="ds1", type="dir", shared=False, autostart=True)
    base.update(kw)
    return base


ROUNDTRIP = [
    spec(path="/var/lib/kvmfusion/datastores/ds1"),
    spec(path="/srv/shared//x/", shared=True),
    spec(type="nfs", server="nas1.example.com", export="/export/vms", mount_options=["vers=4.2", "hard"], shared=True),
    spec(type="nfs", server="192.0.2.7", export="/e"),
    spec(type="iscsi", portal="192.0.2.10:3261", iqn="iqn.2024-01.com.example:san1"),
    spec(type="iscsi", portal="san.example.com", iqn="iqn.2024-01.com.example:san1", initiator_iqn="iqn.2024-01.com.example:cna1",
         chap_username="cna", chap_password="secret"),
    spec(type="iscsi_direct", portal="[2001:db8::1]:3260", iqn="iqn.2024-01.com.example:t", initiator_iqn="iqn.2024-01.com.example:i",
         shared=True),
    spec(type="logical", devices=["/dev/sdc", "/dev/sdb", "/dev/sdb"], vg_name="vg_vms"),
    spec(type="logical", devices=[]),
    spec(type="scsi", adapter="scsi_host3"),
    spec(type="fc", wwnn="20000000C9831B4B", wwpn="10000000C9831B4B", parent="scsi_host5", shared=True),
]


@pytest.mark.parametrize("options", ROUNDTRIP, ids=lambda o: o["type"])
def test_pool_xml_reads_back_as_the_same_managed_state(options):
    desired = storage.desired_state(options)
    xml = storage.pool_xml(desired)
    assert storage.parse_pool_xml(xml, autostart=True) == desired
    # well-formed, no templating artefacts
    root = xmlutil.parse(xml)
    assert root.tag == "pool" and root.get("type") == storage.POOL_TYPE[options["type"]]


def test_shared_uuid_is_stable_and_name_bound():
    a = storage.desired_state(spec(path="/a", shared=True))
    b = storage.desired_state(spec(path="/b", shared=True))
    assert a["uuid"] == b["uuid"] == storage.shared_uuid("ds1")
    assert storage.shared_uuid("ds2") != a["uuid"]
    assert storage.desired_state(spec(path="/a"))["uuid"] is None


def test_a_pool_with_another_uuid_is_not_shared():
    xml = storage.pool_xml(storage.desired_state(spec(path="/a")))
    root = xmlutil.parse(xml)
    xmlutil.set_text(root, "uuid", "11111111-2222-3333-4444-555555555555")
    assert storage.parse_pool_xml(xmlutil.tostring(root), autostart=False)["shared"] is False


def test_nfs_defaults_path_and_options_use_the_fs_namespace():
    desired = storage.desired_state(spec(type="nfs", server="nas", export="/e", mount_options=["hard"]))
    assert desired["path"] == "/var/lib/kvmfusion/datastores/ds1"
    assert "http://libvirt.org/schemas/storagepool/fs/1.0" in storage.pool_xml(desired)


def test_chap_password_never_reaches_the_pool_xml():
    xml = storage.pool_xml(storage.desired_state(spec(type="iscsi_direct", portal="h", iqn="iqn.2024-01.a:b",
                                                      initiator_iqn="iqn.2024-01.a:c", chap_username="u",
                                                      chap_password="topsecret")))
    assert "topsecret" not in xml
    assert storage.secret_usage("ds1") in xml


@pytest.mark.parametrize("options, message", [
    (spec(), "needs path"),
    (spec(path="rel"), "absolute path"),
    (spec(path="/a/../b"), "'..'"),
    (spec(path="/a<b"), "XML metacharacters"),
    (spec(name="a/b", path="/a"), "must not contain '/'"),
    (spec(name="..", path="/a"), "invalid datastore name"),
    (spec(type="zfs", path="/a"), "unknown datastore type"),
    (spec(type="nfs", server="nas"), "needs export"),
    (spec(type="nfs", server="bad host", export="/e"), "invalid NFS server"),
    (spec(type="iscsi", portal="h:99999", iqn="iqn.2024-01.a:b"), "port out of range"),
    (spec(type="iscsi", portal="h", iqn="iqn.2024-01.a:b", chap_password="x"), "needs chap_username"),
    (spec(type="iscsi_direct", portal="h", iqn="iqn.2024-01.a:b", initiator_iqn="iqn.2024-01.a:c", path="/x"),
     "no target path"),
    (spec(type="logical", devices=["/dev/sdb"], path="/dev/other"), "/dev/ds1"),
    (spec(type="scsi", adapter="sda"), "invalid SCSI adapter"),
    (spec(type="fc", wwnn="xyz", wwpn="10000000C9831B4B"), "invalid wwnn"),
    (spec(type="dir", path="/a", portal="h"), "does not take portal"),
])
def test_bad_input_is_one_clear_line(options, message):
    with pytest.raises(ValueError) as err:
        storage.desired_state(options)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_immutable_diff_allows_growing_a_volume_group_only():
    cur = storage.desired_state(spec(type="logical", devices=["/dev/sdb"]))
    grown = storage.desired_state(spec(type="logical", devices=["/dev/sdb", "/dev/sdc"]))
    shrunk = storage.desired_state(spec(type="logical", devices=[]))
    assert storage._immutable_diff(cur, grown) == []
    assert storage._immutable_diff(cur, shrunk)
    moved = storage.desired_state(spec(path="/b"))
    assert storage._immutable_diff(storage.desired_state(spec(path="/a")), moved) == ["path /a -> /b"]


def test_chap_hash_tells_the_password_without_holding_it():
    record = storage.chap_hash("itest-secret-123")
    assert "itest-secret-123" not in record and record.startswith("kvmfusion-chap:pbkdf2-sha256:")
    assert storage.chap_hash_matches("CHAP password of datastore x (%s)" % record, "itest-secret-123")
    assert not storage.chap_hash_matches(record, "itest-secret-124")
    assert not storage.chap_hash_matches("CHAP password of datastore x", "itest-secret-123")
    assert storage.chap_hash("same") != storage.chap_hash("same")  # salted


CHAP = dict(name="ds1", type="iscsi_direct", portal="192.0.2.10", iqn="iqn.2024-01.com.example:t",
            initiator_iqn="iqn.2024-01.com.example:i", chap_username="cna", chap_password="pw-1")


def _secret_manager(fake_libvirt, secret_xml=None, check_mode=False):
    from unittest import mock
    from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
    conn = fake_libvirt.conn
    if secret_xml is None:
        conn.secretLookupByUsage.side_effect = fake_libvirt.libvirtError("no secret", 66)
        old = None
    else:
        old = mock.MagicMock(name="virSecret")
        old.XMLDesc.return_value = secret_xml
        conn.secretLookupByUsage.return_value = old
    return storage.DatastoreManager(Client("qemu:///system"), check_mode=check_mode), old, conn


def test_a_new_chap_secret_is_private_with_a_salted_hash(fake_libvirt):
    mgr, _old, conn = _secret_manager(fake_libvirt)
    assert mgr._ensure_secret(storage.desired_state(CHAP), "pw-1") is True
    xml = xmlutil.parse(conn.secretDefineXML.call_args[0][0])
    assert xml.get("private") == "yes" and xml.get("ephemeral") == "no"
    assert storage.chap_hash_matches(xmlutil.find_text(xml, "description"), "pw-1")
    assert "pw-1" not in conn.secretDefineXML.call_args[0][0]
    conn.secretDefineXML.return_value.setValue.assert_called_once_with(b"pw-1", 0)


def test_a_private_secret_with_the_same_password_is_left_alone(fake_libvirt):
    desc = "CHAP password of datastore ds1 (%s)" % storage.chap_hash("pw-1")
    mgr, old, conn = _secret_manager(fake_libvirt, "<secret private='yes'><description>%s</description></secret>" % desc)
    assert mgr._ensure_secret(storage.desired_state(CHAP), "pw-1") is False
    assert mgr.actions == [] and not old.value.called and not conn.secretDefineXML.called


def test_an_old_readable_secret_is_replaced_by_a_private_one(fake_libvirt):
    mgr, old, conn = _secret_manager(fake_libvirt, "<secret private='no'><description>CHAP of ds1</description></secret>")
    assert mgr._ensure_secret(storage.desired_state(CHAP), "pw-1") is True
    assert mgr.actions == ["replace the CHAP secret by a private one"]
    old.undefine.assert_called_once_with()
    assert xmlutil.parse(conn.secretDefineXML.call_args[0][0]).get("private") == "yes"
    assert not old.value.called  # never read back


def test_a_changed_password_in_check_mode_changes_nothing(fake_libvirt):
    desc = "(%s)" % storage.chap_hash("pw-0")
    mgr, old, conn = _secret_manager(fake_libvirt, "<secret private='yes'><description>%s</description></secret>" % desc,
                                     check_mode=True)
    assert mgr._ensure_secret(storage.desired_state(CHAP), "pw-1") is True
    assert mgr.actions == ["set CHAP secret"]
    assert not old.undefine.called and not conn.secretDefineXML.called


def _logical_pool(fake_libvirt, devices):
    from unittest import mock
    pool = mock.MagicMock(name="virStoragePool")
    pool.XMLDesc.return_value = storage.pool_xml(storage.desired_state(spec(type="logical", devices=devices,
                                                                            vg_name="vg1")))
    pool.isActive.return_value = 1
    pool.autostart.return_value = 1
    pool.info.return_value = [2, 10, 0, 10]
    fake_libvirt.conn.storagePoolLookupByName.return_value = pool
    return pool


def _blkid(signatures):
    calls = []

    def run(cmd):
        calls.append(cmd)
        if cmd[0] == "blkid":
            found = signatures.get(cmd[-1])
            return (0, "DEVNAME=%s\nTYPE=%s\n" % (cmd[-1], found), "") if found else (2, "", "")
        return 0, "", ""
    return run, calls


@pytest.mark.parametrize("uri", ["qemu:///system"])
def test_extending_a_volume_group_refuses_a_device_with_data(fake_libvirt, uri):
    from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
    pool = _logical_pool(fake_libvirt, ["/dev/sdb"])
    run, calls = _blkid({"/dev/sdc": "ext4"})
    mgr = storage.DatastoreManager(Client(uri), run_command=run)
    with pytest.raises(ValueError) as err:
        mgr.present(spec(type="logical", devices=["/dev/sdb", "/dev/sdc"], vg_name="vg1"))
    assert "/dev/sdc (ext4) hold data" in str(err.value) and "force=true" in str(err.value)
    assert [c[0] for c in calls] == ["blkid"] and mgr.actions == []
    assert not pool.refresh.called and not fake_libvirt.conn.storagePoolDefineXML.called


def test_extending_a_volume_group_wipes_only_with_force(fake_libvirt):
    from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
    _logical_pool(fake_libvirt, ["/dev/sdb"])
    run, calls = _blkid({"/dev/sdc": "ext4"})
    mgr = storage.DatastoreManager(Client("qemu:///system"), run_command=run)
    params = spec(type="logical", devices=["/dev/sdb", "/dev/sdc"], vg_name="vg1", force=True)
    changed = mgr.present(params)[0]
    assert changed and mgr.actions == ["extend volume group with /dev/sdc"]
    assert [c[:2] for c in calls] == [["blkid", "-p"], ["pvcreate", "-y"], ["vgextend", "vg1"]]


def test_extending_a_volume_group_through_a_remote_uri_is_refused(fake_libvirt):
    from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
    _logical_pool(fake_libvirt, ["/dev/sdb"])
    run, calls = _blkid({})
    mgr = storage.DatastoreManager(Client("qemu+ssh://root@cna2/system"), run_command=run)
    with pytest.raises(ValueError) as err:
        mgr.present(spec(type="logical", devices=["/dev/sdb", "/dev/sdc"], vg_name="vg1", force=True))
    assert "uri qemu+ssh://root@cna2/system is remote" in str(err.value)
    assert calls == [] and mgr.actions == []


def test_purge_is_refused_by_what_uses_the_files_datastore_wide(fake_libvirt, tmp_path):
    """Purging deletes files every CNA of a shared datastore sees: refused while an image in another datastore
    stands on a volume (a clone made elsewhere), while a volume's lease is held, or while a VM defined on another
    CNA keeps its definition copy there."""
    import subprocess
    from unittest import mock
    from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
    ds, other = tmp_path / "ds", tmp_path / "other"
    ds.mkdir()
    other.mkdir()
    base = ds / "tpl.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
                    str(other / "c9-vda.qcow2")], check=True)
    (ds / ".db9~vm.xml").write_text("<domain/>")

    def pool(name, path):
        p = mock.MagicMock(name=name)
        p.name.return_value = name
        p.isActive.return_value = 1
        p.XMLDesc.return_value = "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, path)
        vol = mock.MagicMock()
        vol.path.return_value = str(base)
        p.listAllVolumes.return_value = [vol] if name == "ds" else []
        return p
    pools = {"ds": pool("ds", ds), "other": pool("other", other)}
    conn = fake_libvirt.conn
    conn.listAllStoragePools.return_value = list(pools.values())
    conn.storagePoolLookupByName.side_effect = lambda n: pools[n]
    conn.listAllDomains.return_value = []
    mgr = storage.DatastoreManager(Client("qemu:///system"), check_mode=True)
    blockers = mgr._purge_blockers(pools["ds"], "ds")
    text = "; ".join(blockers)
    assert "images elsewhere stand on its volumes: %s (image)" % (other / "c9-vda.qcow2") in text
    assert "VMs defined on another CNA keep their definition here: db9" in text
    with pytest.raises(ValueError) as err:
        mgr.absent("ds", purge=True)
    assert "purge refused" in str(err.value) and mgr.actions == []


def test_a_shared_directory_another_cna_creates_at_the_same_moment_is_no_failure(fake_libvirt):
    """Every CNA defines a shared datastore at once: one of them can lose the race to mkdir."""
    from unittest import mock
    from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client
    pool = mock.MagicMock(name="virStoragePool")
    pool.build.side_effect = [fake_libvirt.libvirtError(
        "failed to create directory '/var/lib/kvmfusion/shared/x': File exists", 38), 0]
    fake_libvirt.conn.storagePoolLookupByName.return_value = pool
    mgr = storage.DatastoreManager(Client("qemu:///system"))
    mgr._build("x", "dir")
    assert pool.build.call_count == 2 and not pool.undefine.called
    pool.build.side_effect = fake_libvirt.libvirtError("permission denied", 38)
    with pytest.raises(Exception):
        mgr._build("x", "dir")
    assert pool.undefine.called
