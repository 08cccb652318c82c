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
