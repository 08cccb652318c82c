# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.kvmfusion.compute.plugins.modules import host_info
from ansible_collections.kvmfusion.compute.tests.unit.plugins.module_utils.test_client import CAPABILITIES_KVM


def _conn(fake):
    conn = fake.conn
    conn.getCapabilities.return_value = CAPABILITIES_KVM
    conn.getInfo.return_value = ["x86_64", 24576, 2, 2000, 1, 1, 2, 1]
    conn.getHostname.return_value = "cna1"
    conn.getURI.return_value = "qemu:///system"
    conn.getLibVersion.return_value = 9000000
    conn.getType.return_value = "QEMU"
    conn.getVersion.return_value = 7002000
    conn.listAllDomains.return_value = []
    conn.numOfDomains.return_value = 0
    conn.listAllStoragePools.return_value = []
    conn.listAllNetworks.return_value = []
    return conn


def test_reports_host_read_only(fake_libvirt, set_module_args, module_result):
    _conn(fake_libvirt)
    set_module_args({"uri": "qemu:///system"}, check_mode=True)
    code, result = module_result(host_info.main)
    assert code == 0
    assert result["changed"] is False
    host = result["host"]
    assert host["hostname"] == "cna1"
    assert host["libvirt_version"] == "9.0.0"
    assert host["hypervisor_version"] == "7.2.0"
    assert host["domain_types"][0] == "kvm"
    assert host["domains"] == 0 and host["pools"] == 0 and host["networks"] == 0
    fake_libvirt.openReadOnly.assert_called_once_with("qemu:///system")
    fake_libvirt.open.assert_not_called()


def test_unreachable_uri_fails_on_one_line(fake_libvirt, set_module_args, module_result):
    fake_libvirt.openReadOnly.side_effect = fake_libvirt.libvirtError(
        "Cannot recv data: ssh: Could not resolve hostname nowhere:\nName or service not known", 38)
    set_module_args({"uri": "qemu+ssh://root@nowhere/system"})
    code, result = module_result(host_info.main)
    assert code == 1
    assert result["failed"] is True
    assert "\n" not in result["msg"]
    assert result["msg"].startswith("cannot connect to qemu+ssh://root@nowhere/system:")
    assert "Traceback" in result["exception"]
