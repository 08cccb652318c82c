# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/lab_bmc.py: the Redfish subset fence_redfish uses, per-host accounts, a log of every power change."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import importlib.util
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_spec = importlib.util.spec_from_file_location("lab_bmc", os.path.join(ROOT, "tools", "lab_bmc.py"))
lab_bmc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lab_bmc)

USERS = {"cna1": {"user": "bmc-cna1", "password": "s1"}, "cna2": {"user": "bmc-cna2", "password": "s2"}}


class FakePower(object):
    def __init__(self):
        self.on_hosts = {"cna1", "cna2"}
        self.calls = []

    def state(self, host):
        return "On" if host in self.on_hosts else "Off"

    def off(self, host):
        self.calls.append(("off", host))
        self.on_hosts.discard(host)

    def on(self, host):
        self.calls.append(("on", host))
        self.on_hosts.add(host)


@pytest.fixture
def bmc(tmp_path):
    power = FakePower()
    service = lab_bmc.Bmc(USERS, power, str(tmp_path / "bmc.log"))
    server = lab_bmc.make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1], power, tmp_path / "bmc.log"
    server.shutdown()
    server.server_close()


def call(base, path, user=None, password=None, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST", headers={"Content-Type": "application/json"})
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            data = res.read()
            return res.status, json.loads(data) if data else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def log_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_discovery_finds_only_the_accounts_own_system(bmc):
    base, _power, _log = bmc
    status, root = call(base, "/redfish/v1", "bmc-cna2", "s2")
    assert status == 200
    status, systems = call(base, root["Systems"]["@odata.id"], "bmc-cna2", "s2")
    assert status == 200 and systems["Members"] == [{"@odata.id": "/redfish/v1/Systems/cna2"}]
    status, system = call(base, "/redfish/v1/Systems/cna2", "bmc-cna2", "s2")
    assert status == 200 and system["PowerState"] == "On"
    assert system["Actions"]["#ComputerSystem.Reset"]["target"] == "/redfish/v1/Systems/cna2/Actions/ComputerSystem.Reset"


def test_force_off_then_on_powers_the_host_and_is_logged(bmc):
    base, power, log = bmc
    target = "/redfish/v1/Systems/cna2/Actions/ComputerSystem.Reset"
    assert call(base, target, "bmc-cna2", "s2", {"ResetType": "ForceOff"})[0] == 204
    assert call(base, "/redfish/v1/Systems/cna2", "bmc-cna2", "s2")[1]["PowerState"] == "Off"
    assert call(base, target, "bmc-cna2", "s2", {"ResetType": "On"})[0] == 204
    assert power.calls == [("off", "cna2"), ("on", "cna2")]
    assert [(e["host"], e["action"], e["result"]) for e in log_lines(log)] == \
        [("cna2", "ForceOff", "done"), ("cna2", "On", "done")]
    assert os.stat(str(log)).st_mode & 0o777 == 0o600


def test_one_hosts_account_cannot_power_another_host(bmc):
    base, power, log = bmc
    status, _body = call(base, "/redfish/v1/Systems/cna2/Actions/ComputerSystem.Reset", "bmc-cna1", "s1",
                         {"ResetType": "ForceOff"})
    assert status == 404
    assert call(base, "/redfish/v1/Systems/cna2", "bmc-cna1", "s1")[0] == 404
    assert power.calls == [] and power.on_hosts == {"cna1", "cna2"}
    assert [(e["user_host"], e["path"], e["result"]) for e in log_lines(log)] == [
        ("cna1", "/redfish/v1/Systems/cna2/Actions/ComputerSystem.Reset", "refused: not this account's system"),
        ("cna1", "/redfish/v1/Systems/cna2", "refused: not this account's system")]


def test_force_restart_is_off_then_on(bmc):
    base, power, log = bmc
    target = "/redfish/v1/Systems/cna1/Actions/ComputerSystem.Reset"
    assert call(base, target, "bmc-cna1", "s1", {"ResetType": "ForceRestart"})[0] == 204
    assert power.calls == [("off", "cna1"), ("on", "cna1")] and power.on_hosts == {"cna1", "cna2"}
    assert [(e["host"], e["action"], e["result"]) for e in log_lines(log)] == [("cna1", "ForceRestart", "done")]


@pytest.mark.parametrize("header", ["Basic !!!not-base64", "Basic " + base64.b64encode(b"\xfc\xdf:\xff").decode(),
                                    "Basic " + base64.b64encode("bmc-cna1:s1\u00e9".encode()).decode(), "Bearer x"])
def test_malformed_or_non_ascii_credentials_are_refused_not_crashed(bmc, header):
    base, power, log = bmc
    req = urllib.request.Request(base + "/redfish/v1/Systems/cna1", headers={"Authorization": header})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401
    assert power.calls == [] and log_lines(log)[-1]["result"] == "refused: bad credentials"


def test_a_stalled_client_does_not_block_the_others(tmp_path):
    """Over TLS: a client that connects and says nothing holds its own thread, not the service."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    power = FakePower()
    server = lab_bmc.make_server(lab_bmc.Bmc(USERS, power, str(tmp_path / "bmc.log")), "127.0.0.1", 0, cert, key)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port)):  # connected, no TLS handshake, nothing sent
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            req = urllib.request.Request("https://127.0.0.1:%d/redfish/v1/Systems/cna1" % port)
            req.add_header("Authorization", "Basic " + base64.b64encode(b"bmc-cna1:s1").decode())
            with urllib.request.urlopen(req, timeout=10, context=ctx) as res:
                assert res.status == 200 and json.loads(res.read())["PowerState"] == "On"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("user,password", [(None, None), ("bmc-cna1", "s2"), ("nobody", "s1")])
def test_bad_credentials_are_refused_and_logged(bmc, user, password):
    base, power, log = bmc
    status, body = call(base, "/redfish/v1/Systems/cna1/Actions/ComputerSystem.Reset", user, password,
                        {"ResetType": "ForceOff"})
    assert status == 401 and body["error"]["message"] == "bad credentials"
    assert power.calls == []
    assert log_lines(log)[-1]["result"] == "refused: bad credentials"


@pytest.mark.parametrize("body", [{"ResetType": "PushPowerButton"}, {}, ["ForceOff"]])
def test_an_unknown_reset_type_changes_nothing(bmc, body):
    base, power, _log = bmc
    status, reply = call(base, "/redfish/v1/Systems/cna1/Actions/ComputerSystem.Reset", "bmc-cna1", "s1", body)
    assert status == 400 and "ResetType must be one of On, ForceOff, ForceRestart" in reply["error"]["message"]
    assert power.calls == []


def test_a_failed_power_change_is_reported_and_logged(bmc):
    base, power, log = bmc

    def broken(host):
        raise RuntimeError("lab: no lab host 'cna1'")
    power.off = broken
    status, reply = call(base, "/redfish/v1/Systems/cna1/Actions/ComputerSystem.Reset", "bmc-cna1", "s1",
                         {"ResetType": "ForceOff"})
    assert status == 500 and "no lab host" in reply["error"]["message"]
    assert log_lines(log)[-1]["result"].startswith("failed: ")


def test_lab_power_on_boots_that_host_only_and_off_kills_it(monkeypatch):
    """LabPower drives tools/lab: On is 'up --only HOST' with the lab's layout (never a plain 'up', which would
    boot every host that is off), ForceOff is 'kill HOST'; a failure of tools/lab surfaces as its last line."""
    power = lab_bmc.LabPower("/x/lab.py")

    class FakeLab(object):
        @staticmethod
        def load_state():
            return {"layout": {"cna": 2, "vrm": 1}}

    monkeypatch.setattr(power, "_lab", lambda: FakeLab)
    runs = []

    class Done(object):
        def __init__(self, code, out):
            self.returncode, self.stdout = code, out

    monkeypatch.setattr(lab_bmc.subprocess, "run", lambda argv, **kw: runs.append(argv) or Done(0, ""))
    power.on("cna2")
    power.off("cna1")
    assert [argv[1:] for argv in runs] == [["/x/lab.py", "up", "--cna", "2", "--vrm", "1", "--only", "cna2"],
                                           ["/x/lab.py", "kill", "cna1"]]
    monkeypatch.setattr(lab_bmc.subprocess, "run", lambda argv, **kw: Done(1, "booting\nlab: cna2 did not boot"))
    with pytest.raises(RuntimeError, match="^lab: cna2 did not boot$"):
        power.on("cna2")


def test_lab_power_on_answers_at_once_and_boots_after_the_firmware_time(monkeypatch):
    """With post_seconds, On returns at once with PowerState On and the host boots later (a fenced host's cluster
    stack must not join before its fence is reported done); a ForceOff during that time cancels the boot; a failed
    delayed boot is reported to on_error."""
    errors = []
    power = lab_bmc.LabPower("/x/lab.py", post_seconds=0.2, on_error=lambda host, msg: errors.append((host, msg)))

    class FakeLab(object):
        @staticmethod
        def load_state():
            return {"layout": {"cna": 2, "vrm": 1}}

        @staticmethod
        def host_plan(cna, vrm):
            return [{"name": "cna1"}, {"name": "cna2"}]

        @staticmethod
        def host_pid1(h, st):
            return None  # off

    monkeypatch.setattr(power, "_lab", lambda: FakeLab)
    runs = []

    class Done(object):
        def __init__(self, code, out):
            self.returncode, self.stdout = code, out

    monkeypatch.setattr(lab_bmc.subprocess, "run", lambda argv, **kw: runs.append(argv[2:]) or Done(0, ""))
    t0 = time.time()
    power.on("cna2")
    assert time.time() - t0 < 0.1 and runs == [] and power.state("cna2") == "On"
    power.on("cna1")
    power.off("cna1")  # during its firmware time: the boot is cancelled
    deadline = time.time() + 5
    while power.posting and time.time() < deadline:
        time.sleep(0.05)
    assert runs == [["kill", "cna1"], ["up", "--cna", "2", "--vrm", "1", "--only", "cna2"]]
    assert power.state("cna2") == "Off"  # FakeLab: nothing really booted
    monkeypatch.setattr(lab_bmc.subprocess, "run", lambda argv, **kw: Done(1, "lab: cna2 did not boot"))
    power.on("cna2")
    deadline = time.time() + 5
    while not errors and time.time() < deadline:
        time.sleep(0.05)
    assert errors == [("cna2", "lab: cna2 did not boot")] and not power.posting
