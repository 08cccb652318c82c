# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import sys
from unittest import mock

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import client as client_mod
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import (
    DEFAULT_URI,
    Client,
    LibvirtClientError,
    resolve_uri,
    version_tuple,
)

REMOTE = "qemu+ssh://root@cna2/system"

# virsh capabilities of a Debian 12 CNA: libvirt 9.0.0, QEMU 7.2 with KVM
# (trimmed: fewer CPU features, cpus and machine types). As in real output the
# guest arches list domain type 'qemu' before 'kvm', and aarch64 is TCG only.
CAPABILITIES_KVM = """<capabilities>

  <host>
    <uuid>4c4c4544-0051-3410-8058-b4c04f4e4d32</uuid>
    <cpu>
      <arch>x86_64</arch>
      <model>Skylake-Client-noTSX-IBRS</model>
      <vendor>Intel</vendor>
      <microcode version='240'/>
      <signature family='6' model='158' stepping='10'/>
      <counter name='tsc' frequency='3192000000' scaling='no'/>
      <topology sockets='1' dies='1' cores='4' threads='2'/>
      <maxphysaddr mode='emulate' bits='39'/>
      <feature name='ds'/>
      <feature name='acpi'/>
      <feature name='ss'/>
      <feature name='vmx'/>
      <feature name='pdcm'/>
      <feature name='invtsc'/>
      <pages unit='KiB' size='4'/>
      <pages unit='KiB' size='2048'/>
      <pages unit='KiB' size='1048576'/>
    </cpu>
    <power_management>
      <suspend_mem/>
      <suspend_disk/>
      <suspend_hybrid/>
    </power_management>
    <iommu support='yes'/>
    <migration_features>
      <live/>
      <uri_transports>
        <uri_transport>tcp</uri_transport>
        <uri_transport>rdma</uri_transport>
      </uri_transports>
    </migration_features>
    <topology>
      <cells num='2'>
        <cell id='0'>
          <memory unit='KiB'>16338176</memory>
          <pages unit='KiB' size='4'>4084544</pages>
          <pages unit='KiB' size='2048'>0</pages>
          <pages unit='KiB' size='1048576'>0</pages>
          <distances>
            <sibling id='0' value='10'/>
            <sibling id='1' value='21'/>
          </distances>
          <cpus num='4'>
            <cpu id='0' socket_id='0' die_id='0' core_id='0' siblings='0,4'/>
            <cpu id='1' socket_id='0' die_id='0' core_id='1' siblings='1,5'/>
            <cpu id='4' socket_id='0' die_id='0' core_id='0' siblings='0,4'/>
            <cpu id='5' socket_id='0' die_id='0' core_id='1' siblings='1,5'/>
          </cpus>
        </cell>
        <cell id='1'>
          <memory unit='KiB'>16338176</memory>
          <pages unit='KiB' size='4'>4084544</pages>
          <pages unit='KiB' size='2048'>0</pages>
          <pages unit='KiB' size='1048576'>0</pages>
          <distances>
            <sibling id='0' value='21'/>
            <sibling id='1' value='10'/>
          </distances>
          <cpus num='4'>
            <cpu id='2' socket_id='0' die_id='0' core_id='2' siblings='2,6'/>
            <cpu id='3' socket_id='0' die_id='0' core_id='3' siblings='3,7'/>
            <cpu id='6' socket_id='0' die_id='0' core_id='2' siblings='2,6'/>
            <cpu id='7' socket_id='0' die_id='0' core_id='3' siblings='3,7'/>
          </cpus>
        </cell>
      </cells>
    </topology>
    <cache>
      <bank id='0' level='3' type='both' size='8' unit='MiB' cpus='0-7'/>
    </cache>
    <secmodel>
      <model>apparmor</model>
      <doi>0</doi>
    </secmodel>
    <secmodel>
      <model>dac</model>
      <doi>0</doi>
      <baselabel type='kvm'>+64055:+994</baselabel>
      <baselabel type='qemu'>+64055:+994</baselabel>
    </secmodel>
  </host>

  <guest>
    <os_type>hvm</os_type>
    <arch name='aarch64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-aarch64</emulator>
      <machine maxCpus='512'>virt-7.2</machine>
      <machine canonical='virt-7.2' maxCpus='512'>virt</machine>
      <domain type='qemu'/>
    </arch>
    <features>
      <acpi default='on' toggle='yes'/>
      <cpuselection/>
      <deviceboot/>
      <disksnapshot default='on' toggle='no'/>
    </features>
  </guest>

  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <wordsize>32</wordsize>
      <emulator>/usr/bin/qemu-system-i386</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
    <features>
      <pae/>
      <nonpae/>
      <acpi default='on' toggle='yes'/>
      <apic default='on' toggle='no'/>
      <cpuselection/>
      <deviceboot/>
      <disksnapshot default='on' toggle='no'/>
    </features>
  </guest>

  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <machine maxCpus='1'>isapc</machine>
      <machine maxCpus='1'>microvm</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
    <features>
      <acpi default='on' toggle='yes'/>
      <apic default='on' toggle='no'/>
      <cpuselection/>
      <deviceboot/>
      <disksnapshot default='on' toggle='no'/>
    </features>
  </guest>

</capabilities>
"""

# A nested lab host without /dev/kvm: TCG only, and no NUMA topology reported.
CAPABILITIES_TCG = """<capabilities>
  <host>
    <uuid>0b6c3e4a-8d7f-4c2e-9a55-3f1d2e6b7c80</uuid>
    <cpu>
      <arch>x86_64</arch>
    </cpu>
  </host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <domain type='qemu'/>
    </arch>
  </guest>
</capabilities>
"""


def error(fake, code, message="error"):
    return fake.libvirtError(message, code)


# ---------------------------------------------------------------- uri, versions


class TestResolveUri:
    def test_option_wins_over_environment(self, monkeypatch):
        monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu+tls://cna1/system")
        assert resolve_uri(REMOTE) == REMOTE

    @pytest.mark.parametrize("option", [None, ""])
    def test_environment_used_when_option_unset(self, monkeypatch, option):
        monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu+tls://cna1/system")
        assert resolve_uri(option) == "qemu+tls://cna1/system"

    def test_empty_environment_falls_back_to_default(self, monkeypatch):
        monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "")
        assert resolve_uri(None) == "qemu:///system"

    def test_default_without_option_or_environment(self, monkeypatch):
        monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
        assert resolve_uri() == DEFAULT_URI == "qemu:///system"


@pytest.mark.parametrize("packed, expected", [
    (9000000, (9, 0, 0)),
    (7002000, (7, 2, 0)),
    (11010000, (11, 10, 0)),
    (1002003, (1, 2, 3)),
    (0, (0, 0, 0)),
])
def test_version_tuple(packed, expected):
    assert version_tuple(packed) == expected


# ---------------------------------------------------------------- error type


class TestLibvirtClientError:
    def test_message_names_action_object_and_uri(self):
        e = LibvirtClientError("look up", "domain 'vm1'", REMOTE, 1, "internal error: oops")
        assert str(e) == "failed to look up domain 'vm1' on qemu+ssh://root@cna2/system: internal error: oops"
        assert (e.action, e.obj, e.uri, e.code, e.detail) == (
            "look up", "domain 'vm1'", REMOTE, 1, "internal error: oops")

    def test_message_without_object(self):
        e = LibvirtClientError("list domains", None, "qemu:///system", None, "broken pipe")
        assert str(e) == "failed to list domains on qemu:///system: broken pipe"
        assert e.obj is None and e.code is None

    def test_connect_message(self):
        e = LibvirtClientError("connect", uri=REMOTE, detail="Cannot recv data")
        assert str(e) == "cannot connect to qemu+ssh://root@cna2/system: Cannot recv data"

    def test_multiline_detail_collapsed_to_one_line(self):
        e = LibvirtClientError("define", "domain 'vm1'", "qemu:///system", 27,
                               "XML error:\n  bad value\r\n\tfor 'memory'  ")
        assert "\n" not in str(e) and "\r" not in str(e)
        assert str(e).endswith(": XML error: bad value for 'memory'")
        assert e.detail == "XML error: bad value for 'memory'"

    def test_password_in_uri_is_not_shown(self):
        e = LibvirtClientError("connect", uri="qemu+tcp://admin:s3cret@cna2/system", detail="denied")
        assert "s3cret" not in str(e)
        assert str(e) == "cannot connect to qemu+tcp://admin:********@cna2/system: denied"
        assert e.uri == "qemu+tcp://admin:s3cret@cna2/system"

    def test_is_an_exception(self):
        assert issubclass(LibvirtClientError, Exception)


# ---------------------------------------------------------------- connection


class TestConnection:
    def test_uri_resolved_at_construction(self, fake_libvirt, monkeypatch):
        monkeypatch.setenv("LIBVIRT_DEFAULT_URI", REMOTE)
        assert Client().uri == REMOTE
        assert Client("qemu:///session").uri == "qemu:///session"

    def test_connection_is_lazy_and_opened_once(self, fake_libvirt):
        c = Client(REMOTE)
        fake_libvirt.open.assert_not_called()
        assert c.conn is fake_libvirt.conn
        assert c.conn is fake_libvirt.conn
        fake_libvirt.open.assert_called_once_with(REMOTE)
        fake_libvirt.openReadOnly.assert_not_called()

    def test_readonly_uses_open_read_only(self, fake_libvirt):
        c = Client(REMOTE, readonly=True)
        assert c.conn is fake_libvirt.conn
        fake_libvirt.openReadOnly.assert_called_once_with(REMOTE)
        fake_libvirt.open.assert_not_called()

    def test_error_handler_silences_stderr(self, fake_libvirt, capsys):
        Client().conn
        fake_libvirt.registerErrorHandler.assert_called_once()
        handler, ctx = fake_libvirt.registerErrorHandler.call_args[0]
        assert ctx is None
        assert handler(None, (1, 0, "some error", 2)) is None
        assert capsys.readouterr() == ("", "")

    def test_connect_failure(self, fake_libvirt):
        fake_libvirt.open.side_effect = error(
            fake_libvirt, 38, "Cannot recv data: ssh: connect to host cna2 port 22: Connection refused\n")
        with pytest.raises(LibvirtClientError) as exc:
            Client(REMOTE).conn
        e = exc.value
        assert str(e) == ("cannot connect to qemu+ssh://root@cna2/system: Cannot recv data: "
                          "ssh: connect to host cna2 port 22: Connection refused")
        assert (e.action, e.obj, e.uri, e.code) == ("connect", None, REMOTE, 38)

    def test_connect_failure_through_any_lookup(self, fake_libvirt):
        fake_libvirt.open.side_effect = error(fake_libvirt, 45, "authentication failed")
        with pytest.raises(LibvirtClientError, match=r"^cannot connect to qemu:///system: authentication failed$"):
            Client("qemu:///system").domain("vm1")

    def test_connect_returning_none(self, fake_libvirt):
        fake_libvirt.open.return_value = None
        with pytest.raises(LibvirtClientError, match="^cannot connect to qemu:///system: "):
            Client("qemu:///system").conn

    def test_missing_bindings(self, monkeypatch):
        monkeypatch.setattr(client_mod, "libvirt", None)
        with pytest.raises(LibvirtClientError, match="^cannot connect to qemu:///system: .*libvirt-python"):
            Client("qemu:///system").conn

    def test_close_closes_once_and_reopens_on_next_use(self, fake_libvirt):
        c = Client()
        c.conn
        c.close()
        c.close()
        fake_libvirt.conn.close.assert_called_once_with()
        c.conn
        assert fake_libvirt.open.call_count == 2

    def test_close_without_connection_does_not_connect(self, fake_libvirt):
        Client().close()
        fake_libvirt.open.assert_not_called()

    def test_close_ignores_libvirt_errors(self, fake_libvirt):
        fake_libvirt.conn.close.side_effect = error(fake_libvirt, 38, "connection already closed")
        c = Client()
        c.conn
        c.close()
        assert c._conn is None

    def test_context_manager_closes(self, fake_libvirt):
        with Client(REMOTE) as c:
            assert c.conn is fake_libvirt.conn
        fake_libvirt.conn.close.assert_called_once_with()

    def test_context_manager_closes_on_error_and_propagates(self, fake_libvirt):
        with pytest.raises(RuntimeError):
            with Client(REMOTE) as c:
                c.conn
                raise RuntimeError("boom")
        fake_libvirt.conn.close.assert_called_once_with()


# ---------------------------------------------------------------- call()


class TestCall:
    def test_passes_arguments_and_returns_result(self, fake_libvirt):
        fn = mock.Mock(return_value="ok")
        assert Client().call("do", None, fn, 1, flag=2) == "ok"
        fn.assert_called_once_with(1, flag=2)

    def test_converts_libvirt_error(self, fake_libvirt):
        fn = mock.Mock(side_effect=error(fake_libvirt, 55, "Requested operation is not valid:\ndomain is not running"))
        with pytest.raises(LibvirtClientError) as exc:
            Client(REMOTE).call("shut down", "domain 'vm1'", fn)
        e = exc.value
        assert str(e) == ("failed to shut down domain 'vm1' on qemu+ssh://root@cna2/system: "
                          "Requested operation is not valid: domain is not running")
        assert (e.action, e.obj, e.uri, e.code) == ("shut down", "domain 'vm1'", REMOTE, 55)
        assert isinstance(e.__cause__, fake_libvirt.libvirtError)

    def test_other_exceptions_pass_through(self, fake_libvirt):
        fn = mock.Mock(side_effect=KeyError("x"))
        with pytest.raises(KeyError):
            Client().call("do", None, fn)


# ---------------------------------------------------------------- lookups

# (method, args, libvirt call on the connection, its args, not-found code, object in messages)
LOOKUPS = [
    ("domain", ("vm1",), "lookupByName", ("vm1",), 42, "domain 'vm1'"),
    ("domain_by_uuid", ("2f6c0ad2-5a6e-4b8e-9a3a-0c8bd1c3a001",), "lookupByUUIDString",
     ("2f6c0ad2-5a6e-4b8e-9a3a-0c8bd1c3a001",), 42, "domain with UUID 2f6c0ad2-5a6e-4b8e-9a3a-0c8bd1c3a001"),
    ("pool", ("ds1",), "storagePoolLookupByName", ("ds1",), 49, "storage pool 'ds1'"),
    ("pool_by_uuid", ("8a1f9c0e-3c55-4d61-a2f2-7d9e1b6c4e10",), "storagePoolLookupByUUIDString",
     ("8a1f9c0e-3c55-4d61-a2f2-7d9e1b6c4e10",), 49, "storage pool with UUID 8a1f9c0e-3c55-4d61-a2f2-7d9e1b6c4e10"),
    ("volume_by_path", ("/srv/ds1/vm1.qcow2",), "storageVolLookupByPath", ("/srv/ds1/vm1.qcow2",), 50,
     "volume '/srv/ds1/vm1.qcow2'"),
    ("network", ("dvs0",), "networkLookupByName", ("dvs0",), 43, "network 'dvs0'"),
    ("secret_by_usage", (2, "client.libvirt"), "secretLookupByUsage", (2, "client.libvirt"), 66,
     "secret for usage 'client.libvirt'"),
]
LOOKUP_IDS = [entry[0] for entry in LOOKUPS]


class TestConnectionLookups:
    @pytest.mark.parametrize("method, args, call, call_args, code, obj", LOOKUPS, ids=LOOKUP_IDS)
    def test_found(self, fake_libvirt, method, args, call, call_args, code, obj):
        found = mock.Mock(name="found")
        getattr(fake_libvirt.conn, call).return_value = found
        assert getattr(Client(), method)(*args) is found
        getattr(fake_libvirt.conn, call).assert_called_once_with(*call_args)

    @pytest.mark.parametrize("method, args, call, call_args, code, obj", LOOKUPS, ids=LOOKUP_IDS)
    def test_not_found_is_none(self, fake_libvirt, method, args, call, call_args, code, obj):
        getattr(fake_libvirt.conn, call).side_effect = error(fake_libvirt, code, "not found")
        assert getattr(Client(), method)(*args) is None

    @pytest.mark.parametrize("method, args, call, call_args, code, obj", LOOKUPS, ids=LOOKUP_IDS)
    def test_other_error_raises(self, fake_libvirt, method, args, call, call_args, code, obj):
        getattr(fake_libvirt.conn, call).side_effect = error(
            fake_libvirt, 1, "internal error: client socket is closed\n")
        with pytest.raises(LibvirtClientError) as exc:
            getattr(Client(REMOTE), method)(*args)
        e = exc.value
        assert str(e) == "failed to look up %s on %s: internal error: client socket is closed" % (obj, REMOTE)
        assert (e.action, e.obj, e.uri, e.code) == ("look up", obj, REMOTE, 1)

    @pytest.mark.parametrize("method, args, call, call_args, code, obj", LOOKUPS, ids=LOOKUP_IDS)
    def test_not_found_code_of_another_kind_raises(self, fake_libvirt, method, args, call, call_args, code, obj):
        other = 72 if code != 72 else 42
        getattr(fake_libvirt.conn, call).side_effect = error(fake_libvirt, other, "wrong kind")
        with pytest.raises(LibvirtClientError) as exc:
            getattr(Client(), method)(*args)
        assert exc.value.code == other


class TestVolume:
    def test_found(self, fake_libvirt):
        pool = fake_libvirt.conn.storagePoolLookupByName.return_value
        vol = pool.storageVolLookupByName.return_value
        assert Client().volume("ds1", "vm1.qcow2") is vol
        fake_libvirt.conn.storagePoolLookupByName.assert_called_once_with("ds1")
        pool.storageVolLookupByName.assert_called_once_with("vm1.qcow2")

    def test_pool_absent(self, fake_libvirt):
        fake_libvirt.conn.storagePoolLookupByName.side_effect = error(fake_libvirt, 49)
        assert Client().volume("ds1", "vm1.qcow2") is None

    def test_volume_absent(self, fake_libvirt):
        pool = fake_libvirt.conn.storagePoolLookupByName.return_value
        pool.storageVolLookupByName.side_effect = error(fake_libvirt, 50)
        assert Client().volume("ds1", "vm1.qcow2") is None

    def test_inactive_pool_raises(self, fake_libvirt):
        pool = fake_libvirt.conn.storagePoolLookupByName.return_value
        pool.storageVolLookupByName.side_effect = error(
            fake_libvirt, 55, "Requested operation is not valid: storage pool 'ds1' is not active")
        with pytest.raises(LibvirtClientError) as exc:
            Client(REMOTE).volume("ds1", "vm1.qcow2")
        assert str(exc.value) == (
            "failed to look up volume 'vm1.qcow2' in storage pool 'ds1' on qemu+ssh://root@cna2/system: "
            "Requested operation is not valid: storage pool 'ds1' is not active")


class TestSnapshot:
    def test_found(self, fake_libvirt):
        dom = fake_libvirt.conn.lookupByName.return_value
        assert Client().snapshot("vm1", "before-upgrade") is dom.snapshotLookupByName.return_value
        dom.snapshotLookupByName.assert_called_once_with("before-upgrade", 0)

    def test_domain_absent(self, fake_libvirt):
        fake_libvirt.conn.lookupByName.side_effect = error(fake_libvirt, 42)
        assert Client().snapshot("vm1", "s1") is None

    def test_snapshot_absent(self, fake_libvirt):
        dom = fake_libvirt.conn.lookupByName.return_value
        dom.snapshotLookupByName.side_effect = error(fake_libvirt, 72)
        assert Client().snapshot("vm1", "s1") is None

    def test_other_error_raises(self, fake_libvirt):
        dom = fake_libvirt.conn.lookupByName.return_value
        dom.snapshotLookupByName.side_effect = error(fake_libvirt, 1, "internal error")
        with pytest.raises(LibvirtClientError, match=r"^failed to look up snapshot 's1' of domain 'vm1' on qemu:///system: "):
            Client("qemu:///system").snapshot("vm1", "s1")


class TestRealLibvirtError:
    """The client reads codes through libvirt-python's own libvirtError accessors."""

    def _error(self, libvirt, code, message):
        e = libvirt.libvirtError(message)
        e.err = (code, 10, message, 2, None, None, None, -1, -1)
        return e

    def test_not_found_and_other_codes(self, monkeypatch):
        libvirt = pytest.importorskip("libvirt")
        conn = mock.Mock()
        monkeypatch.setattr(client_mod, "libvirt", libvirt)
        monkeypatch.setattr(libvirt, "open", mock.Mock(return_value=conn))
        monkeypatch.setattr(libvirt, "registerErrorHandler", mock.Mock())
        conn.lookupByName.side_effect = self._error(
            libvirt, libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching name 'vm1'")
        c = Client(REMOTE)
        assert c.domain("vm1") is None
        conn.lookupByName.side_effect = self._error(
            libvirt, libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid")
        with pytest.raises(LibvirtClientError) as exc:
            c.domain("vm1")
        assert exc.value.code == libvirt.VIR_ERR_OPERATION_INVALID
        assert str(exc.value) == (
            "failed to look up domain 'vm1' on qemu+ssh://root@cna2/system: Requested operation is not valid")


# ---------------------------------------------------------------- listings


class TestListings:
    @staticmethod
    def _named(*names):
        objs = []
        for name in names:
            obj = mock.Mock()
            obj.name.return_value = name
            objs.append(obj)
        return objs

    @pytest.mark.parametrize("method, call", [
        ("domain_names", "listAllDomains"),
        ("pool_names", "listAllStoragePools"),
        ("network_names", "listAllNetworks"),
    ])
    def test_sorted_names_of_all_objects(self, fake_libvirt, method, call):
        getattr(fake_libvirt.conn, call).return_value = self._named("web2", "db1", "web10")
        assert getattr(Client(), method)() == ["db1", "web10", "web2"]
        # flags 0: active and inactive alike
        getattr(fake_libvirt.conn, call).assert_called_once_with(0)

    def test_empty(self, fake_libvirt):
        fake_libvirt.conn.listAllDomains.return_value = []
        assert Client().domain_names() == []

    @pytest.mark.parametrize("method, call, what", [
        ("domain_names", "listAllDomains", "domains"),
        ("pool_names", "listAllStoragePools", "storage pools"),
        ("network_names", "listAllNetworks", "networks"),
    ])
    def test_error(self, fake_libvirt, method, call, what):
        getattr(fake_libvirt.conn, call).side_effect = error(fake_libvirt, 1, "internal error")
        with pytest.raises(LibvirtClientError) as exc:
            getattr(Client(REMOTE), method)()
        assert str(exc.value) == "failed to list %s on %s: internal error" % (what, REMOTE)


# ---------------------------------------------------------------- host_info


def _host_conn(conn, caps):
    conn.getCapabilities.return_value = caps
    conn.getHostname.return_value = "cna1"
    conn.getURI.return_value = "qemu:///system"
    conn.getLibVersion.return_value = 9000000
    conn.getType.return_value = "QEMU"
    conn.getVersion.return_value = 7002000
    # virNodeGetInfo as returned by libvirt-python: memory in MiB
    conn.getInfo.return_value = ["x86_64", 31910, 8, 3192, 2, 1, 4, 2]


class TestHostInfo:
    def test_kvm_host(self, fake_libvirt):
        _host_conn(fake_libvirt.conn, CAPABILITIES_KVM)
        assert Client().host_info() == {
            "hostname": "cna1",
            "uri": "qemu:///system",
            "libvirt_version": "9.0.0",
            "hypervisor": "QEMU",
            "hypervisor_version": "7.2.0",
            "host_uuid": "4c4c4544-0051-3410-8058-b4c04f4e4d32",
            "arch": "x86_64",
            "cpus": 8,
            # the two NUMA cells, exact to the KiB
            "memory_bytes": 2 * 16338176 * 1024,
            "domain_types": ["kvm", "qemu"],
        }

    def test_machine_types_of_one_arch_and_virt_type_with_aliases(self, fake_libvirt):
        fake_libvirt.conn.getCapabilities.return_value = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
          <guest><os_type>hvm</os_type><arch name='x86_64'>
            <machine maxCpus='255'>pc-q35-7.2</machine><machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
            <domain type='qemu'/><domain type='kvm'><machine>pc-kvm-only</machine></domain>
            <domain type='xen'><machine>xenfv</machine></domain></arch></guest>
          <guest><os_type>hvm</os_type><arch name='aarch64'><machine>virt-7.2</machine><domain type='qemu'/></arch></guest>
        </capabilities>"""
        assert Client().machine_types("x86_64", "kvm") == {"pc-q35-7.2", "q35", "pc-kvm-only"}
        assert Client().machine_types("x86_64", "qemu") == {"pc-q35-7.2", "q35"}
        assert Client().machine_types("aarch64", "qemu") == {"virt-7.2"}

    def test_tcg_only_host_without_topology(self, fake_libvirt):
        _host_conn(fake_libvirt.conn, CAPABILITIES_TCG)
        info = Client().host_info()
        assert info["domain_types"] == ["qemu"]
        assert info["host_uuid"] == "0b6c3e4a-8d7f-4c2e-9a55-3f1d2e6b7c80"
        # no cells reported: getInfo() MiB figure
        assert info["memory_bytes"] == 31910 * 1024 * 1024

    def test_domain_types_only_for_host_arch_and_deduplicated(self, fake_libvirt):
        caps = CAPABILITIES_TCG.replace(
            "<domain type='qemu'/>", "<domain type='qemu'/><domain type='kvm'/><domain type='qemu'/>")
        caps = caps.replace("</capabilities>", """<guest><os_type>hvm</os_type>
            <arch name='x86_64'><domain type='kvm'/><domain type='xen'/></arch></guest>
            <guest><os_type>hvm</os_type><arch name='riscv64'><domain type='hvf'/></arch></guest>
            </capabilities>""")
        _host_conn(fake_libvirt.conn, caps)
        assert Client().host_info()["domain_types"] == ["kvm", "qemu", "xen"]

    def test_error_names_uri(self, fake_libvirt):
        _host_conn(fake_libvirt.conn, CAPABILITIES_KVM)
        fake_libvirt.conn.getCapabilities.side_effect = error(fake_libvirt, 1, "internal error")
        with pytest.raises(LibvirtClientError) as exc:
            Client(REMOTE).host_info()
        assert str(exc.value) == "failed to read host information on %s: internal error" % REMOTE


# ---------------------------------------------------------------- domains

DOMAIN_XML = "<domain type='kvm'><name>vm1</name><memory unit='MiB'>512</memory></domain>"


class TestDomains:
    def test_define(self, fake_libvirt):
        dom = Client().define_domain(DOMAIN_XML)
        assert dom is fake_libvirt.conn.defineXMLFlags.return_value
        fake_libvirt.conn.defineXMLFlags.assert_called_once_with(DOMAIN_XML, 0)

    def test_define_error_names_domain(self, fake_libvirt):
        fake_libvirt.conn.defineXMLFlags.side_effect = error(
            fake_libvirt, 27, "XML error: unknown OS type 'hvx'")
        with pytest.raises(LibvirtClientError) as exc:
            Client(REMOTE).define_domain(DOMAIN_XML)
        assert str(exc.value) == "failed to define domain 'vm1' on %s: XML error: unknown OS type 'hvx'" % REMOTE
        assert exc.value.code == 27

    def test_define_error_with_unparsable_xml(self, fake_libvirt):
        fake_libvirt.conn.defineXMLFlags.side_effect = error(fake_libvirt, 27, "XML error")
        with pytest.raises(LibvirtClientError, match="^failed to define domain on qemu:///system: XML error$"):
            Client("qemu:///system").define_domain("<domain")

    def test_undefine(self, fake_libvirt):
        dom = fake_libvirt.conn.lookupByName.return_value
        assert Client().undefine_domain("vm1", flags=4) is True
        dom.undefineFlags.assert_called_once_with(4)

    def test_undefine_absent(self, fake_libvirt):
        fake_libvirt.conn.lookupByName.side_effect = error(fake_libvirt, 42)
        assert Client().undefine_domain("vm1") is False

    def test_undefine_error(self, fake_libvirt):
        dom = fake_libvirt.conn.lookupByName.return_value
        dom.undefineFlags.side_effect = error(fake_libvirt, 55, "cannot undefine domain with nvram")
        with pytest.raises(LibvirtClientError, match=r"^failed to undefine domain 'vm1' on qemu:///system: cannot"):
            Client("qemu:///system").undefine_domain("vm1")

    @pytest.mark.parametrize("kwargs, flags", [
        ({}, 0),
        ({"inactive": True}, 2),
        ({"secure": True}, 1),
        ({"inactive": True, "secure": True}, 3),
    ])
    def test_domain_xml_flags(self, fake_libvirt, kwargs, flags):
        dom = fake_libvirt.conn.lookupByName.return_value
        dom.XMLDesc.return_value = DOMAIN_XML
        assert Client().domain_xml("vm1", **kwargs) == DOMAIN_XML
        dom.XMLDesc.assert_called_once_with(flags)

    def test_domain_xml_absent(self, fake_libvirt):
        fake_libvirt.conn.lookupByName.side_effect = error(fake_libvirt, 42)
        assert Client().domain_xml("vm1") is None


# ---------------------------------------------------------------- layering


@pytest.mark.parametrize("name", ["client", "xmlutil", "names"])
def test_plain_modules_do_not_import_ansible(name):
    # The inventory plugin and tests reuse these outside any AnsibleModule.
    code = (
        "import sys\n"
        "import ansible_collections.kvmfusion.compute.plugins.module_utils.%s\n"
        "bad = sorted(m for m in sys.modules if m == 'ansible' or m.startswith('ansible.'))\n"
        "print(','.join(bad))\n" % name
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
