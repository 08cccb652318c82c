# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab hosts' BMC (tools/lab_bmc.py, started by 'tools/lab up'): Redfish power of real lab hosts.

Covers: 'up' serves it on the bridge address over HTTPS and writes each host's account into the (0600)
inventory; ForceOff is a power loss of that host only (its PID 1 gone, SSH down) and On boots it again
(SSH back) and no other host that is off; one host's account cannot see or power another host; bad
credentials are refused; every power change and refusal is in bmc.log; 'down' stops the service. Ends with
the lab down.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "tools", "lab")
LAB_DIR = os.environ.get("KVMF_LAB_DIR", "/srv/kvmfusion-lab")
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE  # the lab BMC's certificate is self-signed (fence_redfish --ssl-insecure)


def sh(*cmd):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)


def redfish(bmc, path, body=None):
    req = urllib.request.Request("https://%s:%d%s" % (bmc["address"], bmc["port"], path),
                                 data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST", headers={"Content-Type": "application/json"})
    token = base64.b64encode(("%s:%s" % (bmc["username"], bmc["password"])).encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    try:
        with urllib.request.urlopen(req, timeout=120, context=CTX) as res:
            data = res.read()
            return res.status, json.loads(data) if data else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def ssh_answers(ip):
    try:
        with socket.create_connection((ip, 22), timeout=1):
            return True
    except OSError:
        return False


def status():
    return {h["name"]: h for h in json.loads(sh(LAB, "status", "--json").stdout)["hosts"]}


def test_the_bmc_powers_one_lab_host_off_and_on():
    assert sh(LAB, "down").returncode == 0
    try:
        up = sh(LAB, "up")
        assert up.returncode == 0, up.stderr
        inventory_path = up.stdout.strip()
        assert os.stat(inventory_path).st_mode & 0o777 == 0o600
        with open(inventory_path) as f:
            inventory = yaml.safe_load(f)
        hosts = dict(inventory["all"]["children"]["cna"]["hosts"], **inventory["all"]["children"]["vrm"]["hosts"])
        bmc = {name: h["kvmfusion_lab_bmc"] for name, h in hosts.items()}
        assert sorted(bmc) == ["cna1", "cna2", "vrm1"]
        assert len({b["password"] for b in bmc.values()}) == 3
        cna1, cna2 = bmc["cna1"], bmc["cna2"]
        reset = "/redfish/v1/Systems/cna2/Actions/ComputerSystem.Reset"

        code, system = redfish(cna2, cna2["systems_uri"])
        assert code == 200 and system["PowerState"] == "On"
        # Another host's account neither sees nor powers cna2; a wrong password is refused.
        assert redfish(cna1, cna2["systems_uri"])[0] == 404
        assert redfish(cna1, reset, {"ResetType": "ForceOff"})[0] == 404
        assert redfish(dict(cna2, password="wrong"), reset, {"ResetType": "ForceOff"})[0] == 401
        assert status()["cna2"]["ssh"]

        assert redfish(cna2, reset, {"ResetType": "ForceOff"})[0] == 204
        st = status()
        assert st["cna2"]["pid1"] is None and not ssh_answers(hosts["cna2"]["ansible_host"])
        assert st["cna1"]["ssh"] and st["vrm1"]["ssh"], "only cna2 lost power"
        assert redfish(cna2, cna2["systems_uri"])[1]["PowerState"] == "Off"

        # On powers this host only: vrm1, off too (a power loss of its own), stays off.
        assert sh(LAB, "kill", "vrm1").returncode == 0
        assert redfish(cna2, reset, {"ResetType": "On"})[0] == 204
        deadline = time.time() + 60
        while not ssh_answers(hosts["cna2"]["ansible_host"]) and time.time() < deadline:
            time.sleep(0.5)
        assert ssh_answers(hosts["cna2"]["ansible_host"]), "cna2 did not come back within 60 s of On"
        assert redfish(cna2, cna2["systems_uri"])[1]["PowerState"] == "On"
        assert status()["vrm1"]["pid1"] is None, "On for cna2 booted vrm1 too"
        assert redfish(bmc["vrm1"], bmc["vrm1"]["systems_uri"])[1]["PowerState"] == "Off"
        bad = sh(LAB, "up", "--only", "nosuch")
        assert bad.returncode != 0 and "--only: no lab host 'nosuch'" in bad.stderr, bad.stderr
        assert status()["vrm1"]["pid1"] is None

        with open(os.path.join(LAB_DIR, "bmc", "bmc.log")) as f:
            events = [json.loads(line) for line in f]
        assert [(e.get("user_host") or e.get("host"), e.get("action") or e.get("path"), e["result"])
                for e in events if "result" in e] == [
            ("cna1", "/redfish/v1/Systems/cna2", "refused: not this account's system"),
            ("cna1", reset, "refused: not this account's system"), (None, reset, "refused: bad credentials"),
            ("cna2", "ForceOff", "done"), ("cna2", "On", "done")]
    finally:
        down = sh(LAB, "down")
    assert down.returncode == 0, down.stderr
    assert "lab_bmc.py" not in sh("ps", "-eo", "args").stdout
