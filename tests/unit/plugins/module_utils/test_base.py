# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

import pytest

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kvmfusion.compute.plugins.module_utils import base
from ansible_collections.kvmfusion.compute.plugins.module_utils.base import COMMON_ARGSPEC, KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client, LibvirtClientError
from ansible_collections.kvmfusion.compute.plugins.module_utils.fileops import FileOpsError
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import CommandError, Manager, Result

REMOTE = "qemu+ssh://root@cna2/system"
SPEC = dict(name=dict(type="str", required=True), state=dict(type="str", default="present"))


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch):
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)


@pytest.fixture
def make(set_module_args, fake_libvirt):
    """Build a KvmfModule from task arguments, libvirt faked at the client boundary."""
    def _make(args=None, spec=None, check_mode=False, diff=False, **kwargs):
        set_module_args(dict(dict(name="vm1"), **(args or {})), check_mode=check_mode, diff=diff)
        return KvmfModule(copy.deepcopy(SPEC) if spec is None else spec, **kwargs)
    return _make


class TestConstruction:
    def test_common_argspec(self):
        assert COMMON_ARGSPEC == dict(uri=dict(type="str", aliases=["libvirt_uri"]))

    def test_merges_common_and_module_options(self, make):
        m = make(dict(uri=REMOTE, state="absent"))
        assert m.params["name"] == "vm1"
        assert m.params["state"] == "absent"
        assert m.params["uri"] == REMOTE
        assert m.uri == REMOTE

    def test_alias(self, make):
        assert make(dict(libvirt_uri=REMOTE)).uri == REMOTE

    def test_uri_from_environment(self, make, monkeypatch):
        monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu+tls://cna1/system")
        m = make()
        assert m.params["uri"] is None
        assert m.uri == "qemu+tls://cna1/system"

    def test_uri_default(self, make):
        assert make().uri == "qemu:///system"

    def test_specs_are_not_mutated(self, make):
        spec = copy.deepcopy(SPEC)
        common = copy.deepcopy(COMMON_ARGSPEC)
        make(dict(uri=REMOTE), spec=spec)
        assert spec == SPEC
        assert COMMON_ARGSPEC == common

    def test_unknown_option_rejected(self, make, module_result):
        rc, result = module_result(make, dict(bogus=1))
        assert rc == 1 and result["failed"] is True
        assert "bogus" in result["msg"]

    def test_modes(self, make):
        m = make()
        assert (m.check_mode, m.diff_mode) == (False, False)
        m = make(check_mode=True, diff=True)
        assert (m.check_mode, m.diff_mode) == (True, True)

    def test_check_mode_unsupported_is_skipped(self, make, module_result):
        rc, result = module_result(make, check_mode=True, supports_check_mode=False)
        assert rc == 0 and result["skipped"] is True

    def test_extra_ansible_module_arguments(self, make, module_result):
        spec = dict(SPEC, path=dict(type="path"), pool=dict(type="str"))
        rc, result = module_result(make, dict(path="/x", pool="ds1"), spec=spec,
                                   mutually_exclusive=[("path", "pool")])
        assert rc == 1 and "mutually exclusive" in result["msg"]

    def test_missing_libvirt(self, make, module_result, monkeypatch):
        monkeypatch.setattr(base, "HAS_LIBVIRT", False)
        monkeypatch.setattr(base, "LIBVIRT_IMPORT_ERROR", "Traceback ...\nModuleNotFoundError: No module named 'libvirt'")
        rc, result = module_result(make)
        assert rc == 1
        assert result["failed"] is True
        assert result["msg"] == missing_required_lib("libvirt-python")
        assert "libvirt-python" in result["msg"]
        assert result["exception"].endswith("No module named 'libvirt'")


class TestClient:
    def test_lazy_and_cached(self, make, fake_libvirt):
        m = make(dict(uri=REMOTE))
        fake_libvirt.open.assert_not_called()
        c = m.client
        assert isinstance(c, Client) and c is m.client
        assert c.uri == REMOTE
        assert c.conn is fake_libvirt.conn
        fake_libvirt.open.assert_called_once_with(REMOTE)

    def test_readonly(self, make, fake_libvirt):
        make(readonly=True).client.conn
        fake_libvirt.openReadOnly.assert_called_once_with("qemu:///system")
        fake_libvirt.open.assert_not_called()


class TestFail:
    def test_one_line_message(self, make, module_result):
        m = make()
        rc, result = module_result(m.fail, "cannot define\n  domain 'vm1':\r\n\tbad  XML\n")
        assert rc == 1 and result["failed"] is True
        assert result["msg"] == "cannot define domain 'vm1': bad XML"
        # no traceback was given: 2.18 adds none; 2.19, asked for error tracebacks (as -vvv does), adds the
        # stack of the call to fail_json itself
        assert "exception" not in result or "fail_json" in result["exception"]

    def test_exception_and_extra(self, make, module_result):
        m = make()
        rc, result = module_result(m.fail, "boom", exception="Traceback\n  line\n", name="vm1")
        assert result["msg"] == "boom"
        assert result["exception"] == "Traceback\n  line\n"
        assert result["name"] == "vm1"

    def test_closes_client(self, make, module_result, fake_libvirt):
        m = make()
        m.client.conn
        module_result(m.fail, "boom")
        fake_libvirt.conn.close.assert_called_once_with()


class TestExit:
    def test_result(self, make, module_result):
        rc, result = module_result(make().exit, changed=True, name="vm1", state="running")
        assert rc == 0
        assert result["changed"] is True
        assert (result["name"], result["state"]) == ("vm1", "running")
        assert "diff" not in result

    def test_default_unchanged(self, make, module_result):
        rc, result = module_result(make().exit)
        assert result["changed"] is False

    def test_no_diff_outside_diff_mode(self, make, module_result):
        rc, result = module_result(make().exit, changed=True, before={"a": 1}, after={"a": 2})
        assert "diff" not in result
        assert "before" not in result and "after" not in result

    def test_diff_in_diff_mode(self, make, module_result):
        rc, result = module_result(make(diff=True).exit, changed=True, before={"a": 1}, after={"a": 2})
        assert result["diff"] == {"before": {"a": 1}, "after": {"a": 2}}

    def test_no_diff_without_before_or_after(self, make, module_result):
        rc, result = module_result(make(diff=True).exit, changed=False)
        assert "diff" not in result

    def test_absent_side_matches_other_side_type(self, make, module_result):
        rc, result = module_result(make(diff=True).exit, changed=True, after={"domain": {"name": "vm1"}})
        assert result["diff"] == {"before": {}, "after": {"domain": {"name": "vm1"}}}
        rc, result = module_result(make(diff=True).exit, changed=True, before="<domain/>\n")
        assert result["diff"] == {"before": "<domain/>\n", "after": ""}

    def test_closes_client(self, make, module_result, fake_libvirt):
        m = make()
        m.client.conn
        module_result(m.exit)
        fake_libvirt.conn.close.assert_called_once_with()


class TestRun:
    def test_result_from_exit(self, make, module_result):
        def logic(mod):
            mod.exit(changed=True, name=mod.params["name"])
        rc, result = module_result(make().run, logic)
        assert rc == 0 and result["changed"] is True and result["name"] == "vm1"

    def test_libvirt_error_becomes_failure(self, make, module_result, fake_libvirt):
        fake_libvirt.conn.lookupByName.side_effect = fake_libvirt.libvirtError(
            "internal error: client socket is closed\n", 1)

        def logic(mod):
            mod.client.domain(mod.params["name"])
            mod.exit()
        rc, result = module_result(make(dict(uri=REMOTE)).run, logic)
        assert rc == 1
        assert result["msg"] == ("failed to look up domain 'vm1' on qemu+ssh://root@cna2/system: "
                                 "internal error: client socket is closed")
        assert "Traceback" in result["exception"] and "LibvirtClientError" in result["exception"]
        fake_libvirt.conn.close.assert_called_once_with()

    def test_connect_error_becomes_failure(self, make, module_result, fake_libvirt):
        fake_libvirt.open.side_effect = fake_libvirt.libvirtError("authentication failed: no agent", 45)
        rc, result = module_result(make(dict(uri=REMOTE)).run, lambda mod: mod.client.domain_names())
        assert result["msg"] == "cannot connect to qemu+ssh://root@cna2/system: authentication failed: no agent"

    def test_value_error_becomes_failure(self, make, module_result):
        def logic(mod):
            raise ValueError("invalid size '1.5':\nneeds a unit")
        rc, result = module_result(make().run, logic)
        assert rc == 1
        assert result["msg"] == "invalid size '1.5': needs a unit"
        assert "ValueError" in result["exception"]

    @pytest.mark.parametrize("error, msg", [
        (OSError(28, "No space left on device", "/ds/x.qcow2"), "No space left on device: /ds/x.qcow2"),
        (OSError(18, "Invalid cross-device link", "/a", None, "/b"), "Invalid cross-device link: /a /b"),
        (FileOpsError("/ds/x", "fallocate: Operation not\nsupported"), "/ds/x: fallocate: Operation not supported"),
        (CommandError(["qemu-img", "convert", "a", "b"], 1, "qemu-img: error\nwhile writing"),
         "qemu-img convert failed: qemu-img: error while writing"),
    ], ids=["enospc", "exdev", "fileops", "command"])
    def test_file_and_os_errors_become_one_line_failures(self, make, module_result, error, msg):
        def logic(mod):
            raise error
        rc, result = module_result(make().run, logic)
        assert rc == 1
        assert result["msg"] == msg
        assert "Traceback" in result["exception"]

    def test_returned_result_becomes_the_module_result(self, make, module_result):
        def logic(mod):
            return Result(True, before={"a": 1}, after={"a": 2}, actions=["grow"], warnings=["slow\ndisk"],
                          reboot_required=False, values={"disk": {"name": "d"}})
        rc, result = module_result(make(diff=True).run, logic)
        assert rc == 0
        assert result["changed"] is True and result["actions"] == ["grow"] and result["reboot_required"] is False
        assert result["disk"] == {"name": "d"} and result["diff"] == {"before": {"a": 1}, "after": {"a": 2}}
        assert result["warnings"] == ["slow disk"]

    def test_manager_gets_the_task_client_check_mode_and_runner(self, make):
        m = make(check_mode=True)
        mgr = m.manager(Manager)
        assert mgr.client is m.client and mgr.check_mode is True
        assert mgr.run(["sh", "-c", "echo ok"]).strip() == "ok"

    def test_dest_options_only_for_two_host_modules(self, make, module_result):
        m = make(dict(dest_host="cna2"), two_hosts=True)
        assert m.dest_uri == "qemu+ssh://root@cna2/system"
        assert m.dest_client.uri == "qemu+ssh://root@cna2/system"
        rc, result = module_result(make, dict(dest_host="cna2"))
        assert rc == 1 and "dest_host" in result["msg"]

    def test_dest_uri_and_dest_host_are_exclusive(self, make, module_result):
        rc, result = module_result(make, dict(dest_host="cna2", dest_uri="qemu+tls://cna2/system"), two_hosts=True)
        assert rc == 1 and "mutually exclusive" in result["msg"]

    def test_returning_without_result_fails(self, make, module_result):
        def logic(mod):
            return {"changed": True}
        rc, result = module_result(make().run, logic)
        assert rc == 1
        assert result["msg"] == "internal error: logic returned without a result"

    def test_other_exceptions_propagate_and_close(self, make, fake_libvirt):
        m = make()

        def logic(mod):
            mod.client.conn
            raise KeyError("bug")
        with pytest.raises(KeyError):
            m.run(logic)
        fake_libvirt.conn.close.assert_called_once_with()

    def test_raised_client_error_fields(self, make, module_result):
        def logic(mod):
            raise LibvirtClientError("migrate", "domain 'vm1'", REMOTE, 9, "operation failed:\nmigration job")
        rc, result = module_result(make().run, logic)
        assert result["msg"] == "failed to migrate domain 'vm1' on %s: operation failed: migration job" % REMOTE


class TestHelpers:
    def test_validate_name_ok(self, make):
        assert make().validate_name("ds1", "datastore") == "ds1"

    def test_validate_name_fails_one_line(self, make, module_result):
        rc, result = module_result(make().validate_name, "a/b", "datastore")
        assert rc == 1
        assert result["msg"] == "invalid datastore name 'a/b': must not contain '/'"

    def test_validate_name_max_len(self, make, module_result):
        rc, result = module_result(make().validate_name, "abcdef", "snapshot", max_len=4)
        assert result["msg"] == "invalid snapshot name 'abcdef': must be at most 4 characters long"

    def test_warn(self, make, module_result):
        m = make()
        m.warn("volume 'a' is\nin use")
        rc, result = module_result(m.exit)
        assert result["warnings"] == ["volume 'a' is in use"]
