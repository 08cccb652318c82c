# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The manager contract: journal, check mode, one command runner, one result type, two hosts."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import client as client_mod
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import (
    CommandError,
    Manager,
    Result,
    TwoHostManager,
    subprocess_runner,
)

REMOTE = "qemu+ssh://root@cna2/system"


class FakeClient(object):
    def __init__(self, uri="qemu:///system", host_uuid="u1"):
        self.uri = uri
        self.host_uuid = host_uuid

    @property
    def is_local(self):
        return client_mod.is_local_uri(self.uri)

    def host_info(self):
        return {"host_uuid": self.host_uuid}


class Rebooting(Manager):
    REPORTS_REBOOT = True


def test_real_run_records_and_calls():
    calls = []
    m = Manager(FakeClient())
    assert m.act("grow", lambda *a, **k: calls.append((a, k)) or "done", 1, 2, x=3) == "done"
    assert m.actions == ["grow"] and calls == [((1, 2), {"x": 3})]


def test_check_mode_records_the_same_action_without_calling():
    calls = []
    m = Manager(FakeClient(), check_mode=True)
    assert m.act("grow", lambda *a: calls.append(a), 1, 2) is None
    assert m.actions == ["grow"] and calls == []


def test_helpers_share_the_journal_and_check_mode():
    parent = Rebooting(FakeClient(), check_mode=True)
    child = parent.helper(Rebooting)
    assert child.check_mode is True and child.client is parent.client
    child.act("attach", lambda: None)
    child.warn("careful")
    child.reboot_required = True
    assert parent.actions == ["attach"] and parent.warnings == ["careful"] and parent.reboot_required is True


def test_result_defaults_changed_to_recorded_actions():
    m = Manager(FakeClient())
    r = m.result({"a": 1}, {"a": 2}, thing="x")
    assert isinstance(r, Result) and r.changed is False
    m.record("did it")
    r = m.result(None, None)
    assert r.changed is True and r.actions == ["did it"]
    assert r.as_dict() == {"changed": True, "actions": ["did it"]}


def test_result_reports_reboot_only_for_managers_that_can_need_one():
    assert "reboot_required" not in Manager(FakeClient()).result().as_dict()
    m = Rebooting(FakeClient())
    assert m.result().as_dict()["reboot_required"] is False
    m.reboot_required = True
    assert m.result(changed=False, vm=None).as_dict() == {"changed": False, "actions": [], "reboot_required": True,
                                                          "vm": None}


def test_run_returns_stdout():
    m = Manager(FakeClient(), run_command=lambda cmd: (0, "out:%s" % " ".join(cmd), ""))
    assert m.run(["qemu-img", "info", "x"]) == "out:qemu-img info x"


def test_a_failing_command_is_one_line_naming_it():
    m = Manager(FakeClient(), run_command=lambda cmd: (1, "", "qemu-img: /ds/x: Could not\n  open: No space left"))
    with pytest.raises(CommandError) as err:
        m.qemu_img(["create", "-q", "/ds/x", "1G"])
    assert str(err.value) == "qemu-img create failed: qemu-img: /ds/x: Could not open: No space left"
    assert isinstance(err.value, ValueError) and err.value.rc == 1


def test_a_missing_program_is_a_command_error():
    m = Manager(FakeClient())
    with pytest.raises(CommandError) as err:
        m.run(["kvmfusion-no-such-program", "x"])
    assert "kvmfusion-no-such-program x failed" in str(err.value)


def test_the_default_runner_runs_a_process():
    assert subprocess_runner(["sh", "-c", "echo hi; echo err >&2; exit 3"]) == (3, "hi\n", "err\n")


def test_need_local_refuses_a_remote_uri_on_one_line():
    Manager(FakeClient()).need_local("zeroing")
    with pytest.raises(ValueError) as err:
        Manager(FakeClient(REMOTE)).need_local("zeroing")
    assert str(err.value) == ("zeroing works on files or devices of the CNA: run the task on the CNA that has them "
                              "(uri %s is remote)" % REMOTE)


def test_locality_is_asked_of_the_client():
    assert Manager(FakeClient("qemu://localhost/system")).local is True
    assert Manager(FakeClient(REMOTE)).local is False


def test_converge_is_the_subclass_contract():
    with pytest.raises(NotImplementedError):
        Manager(FakeClient()).converge({})


def test_two_host_manager_holds_both_clients():
    src, dst = FakeClient(), FakeClient(REMOTE, host_uuid="u2")
    m = TwoHostManager(src, dst)
    assert m.source is src and m.client is src and m.dest is dst
    m.refuse_same_host("migrate VM 'a'")


def test_two_host_manager_refuses_the_same_host():
    m = TwoHostManager(FakeClient(), FakeClient(REMOTE, host_uuid="u1"))
    with pytest.raises(ValueError) as err:
        m.refuse_same_host("migrate VM 'a'")
    assert "are the same host (host UUID u1)" in str(err.value)


@pytest.mark.parametrize("like, expected", [
    (None, "qemu+ssh://root@cna2/system"),
    ("qemu:///system", "qemu+ssh://root@cna2/system"),
    ("qemu+ssh://admin@cna1/system", "qemu+ssh://admin@cna2/system"),
    ("qemu+tls://cna1/system", "qemu+tls://cna2/system"),
    ("qemu+unix:///system", "qemu+ssh://root@cna2/system"),
])
def test_uri_for_host_reaches_the_other_cna_the_same_way(like, expected, monkeypatch):
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    assert client_mod.uri_for_host("cna2", like=like) == expected


@pytest.mark.parametrize("host", ["", "cna2/system", "a b", "-x", None])
def test_uri_for_host_refuses_a_bad_host(host):
    with pytest.raises(ValueError):
        client_mod.uri_for_host(host)
