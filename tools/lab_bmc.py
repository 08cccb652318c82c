# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's BMCs: one small Redfish service on the lab controller that powers lab hosts off and on.

Real servers are fenced through their BMC (IPMI or Redfish); lab hosts are namespaces on one machine and
have none, so this gives them one. It speaks the part of Redfish that Debian's stock ``fence_redfish``
(fence-agents 4.12) uses, over HTTPS with HTTP Basic authentication:

  GET  /redfish/v1                                    the service root (Systems link)
  GET  /redfish/v1/Systems                            the systems this user may see (only its own host)
  GET  /redfish/v1/Systems/HOST                       Id, PowerState ("On"/"Off"), the Reset action
  POST /redfish/v1/Systems/HOST/Actions/ComputerSystem.Reset   {"ResetType": "On"|"ForceOff"|"ForceRestart"}

Each lab host has its own user and password (users.json in the service's directory), as each real server
has its own BMC account: a host's credentials never power another host. ForceOff is a power loss (the
host's namespace PID 1 is killed, as ``tools/lab kill`` does); On boots that host again (``tools/lab up --only
HOST``, other hosts that are off stay off);
ForceRestart is both. Every request that changes power, and every refused one, is appended to bmc.log as
one JSON line (time, client address, the host acted on or the account's host, action or path, result): the
log a test reads to see that a host was fenced.

  python3 tools/lab_bmc.py serve --dir DIR --listen ADDR --port PORT
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import base64
import hmac
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT_URI = "/redfish/v1"
SYSTEMS_URI = ROOT_URI + "/Systems"
RESET = "/Actions/ComputerSystem.Reset"
RESET_TYPES = ("On", "ForceOff", "ForceRestart")


class LabPower(object):
    """Power of lab hosts through tools/lab (one power change at a time).

    ``post_seconds`` > 0: On answers at once and the host boots that much later, as a server's power comes on and its
    firmware runs before the OS starts (PowerState is On meanwhile; a ForceOff cancels the boot). A lab host boots in
    about a second: booted synchronously, its cluster stack would join before the fence that rebooted it is reported
    done, and pacemaker stops a node told it was "just fenced". A failed delayed boot goes to ``on_error(host, msg)``.
    """

    def __init__(self, lab_py, post_seconds=0.0, on_error=None):
        self.lab_py = lab_py
        self.lock = threading.Lock()
        self.post_seconds = post_seconds
        self.on_error = on_error
        self.posting = {}  # host -> the power-on it belongs to (a ForceOff or a newer On replaces it)
        self.generation = 0

    def _lab(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("kvmf_lab", self.lab_py)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    def state(self, host):
        if host in self.posting:
            return "On"
        lab = self._lab()
        st = lab.load_state()
        layout = st.get("layout") or {}
        plan = [h for h in lab.host_plan(layout.get("cna", 0), layout.get("vrm", 0)) if h["name"] == host]
        return "On" if plan and lab.host_pid1(plan[0], st) else "Off"

    def _run(self, *args):
        res = subprocess.run([sys.executable, self.lab_py] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
        if res.returncode != 0:
            raise RuntimeError(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "tools/lab failed")

    def off(self, host):
        with self.lock:
            self.posting.pop(host, None)
            self._run("kill", host)

    def on(self, host):
        if self.post_seconds <= 0:
            with self.lock:
                self._boot(host)
            return
        with self.lock:
            self.generation += 1
            self.posting[host] = self.generation
            thread = threading.Thread(target=self._boot_later, args=(host, self.generation), daemon=True)
        thread.start()

    def _boot(self, host):
        layout = self._lab().load_state().get("layout") or {}
        # this host only: a BMC powers its own server, never another one that happens to be off too
        self._run("up", "--cna", str(layout.get("cna", 0)), "--vrm", str(layout.get("vrm", 0)), "--only", host)

    def _boot_later(self, host, generation):
        time.sleep(self.post_seconds)
        with self.lock:
            if self.posting.get(host) != generation:
                return  # powered off (or on again) meanwhile
            try:
                self._boot(host)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                if self.on_error:
                    self.on_error(host, str(e))
            finally:
                if self.posting.get(host) == generation:
                    del self.posting[host]


class Bmc(object):
    """The Redfish service: users (host -> {user, password}), a power backend, a log file."""

    def __init__(self, users, power, log_path):
        self.users = users
        self.power = power
        self.log_path = log_path
        self.log_lock = threading.Lock()

    def log(self, **event):
        now = time.time()
        event = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000),
                     **event)
        with self.log_lock:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write(json.dumps(event, sort_keys=True) + "\n")

    def host_of(self, authorization):
        """The host whose credentials these are, or None."""
        if not authorization or not authorization.startswith("Basic "):
            return None
        try:
            user, _sep, password = base64.b64decode(authorization[6:], validate=True).partition(b":")
        except ValueError:
            return None
        found = None
        for host, cred in self.users.items():  # every account compared, as bytes (any input, constant time)
            same_user = hmac.compare_digest(cred["user"].encode("utf-8"), user)
            same_password = hmac.compare_digest(cred["password"].encode("utf-8"), password)
            if same_user and same_password:
                found = host
        return found

    def system(self, host):
        uri = "%s/%s" % (SYSTEMS_URI, host)
        return {"@odata.id": uri, "@odata.type": "#ComputerSystem.v1_5_0.ComputerSystem", "Id": host, "Name": host,
                "PowerState": self.power.state(host),
                "Actions": {"#ComputerSystem.Reset": {
                    "target": uri + RESET, "ResetType@Redfish.AllowableValues": list(RESET_TYPES)}}}

    def reset(self, host, reset_type):
        if reset_type in ("ForceOff", "ForceRestart"):
            self.power.off(host)
        if reset_type in ("On", "ForceRestart"):
            self.power.on(host)


class Handler(BaseHTTPRequestHandler):
    server_version = "kvmfusion-lab-bmc/1"
    bmc = None  # set by make_server
    timeout = 30  # a client that stalls (in the TLS handshake or a request) holds its own thread only, this long

    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in this request's thread: never in the accepting one

    def log_message(self, fmt, *args):  # requests are logged by Bmc.log, not on stderr
        return

    def _send(self, code, body=None):
        data = b"" if body is None else json.dumps(body).encode("utf-8")
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="lab BMC"')
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code, message):
        self._send(code, {"error": {"code": "Base.1.0.GeneralError", "message": message}})

    def _authorized_host(self):
        host = self.bmc.host_of(self.headers.get("Authorization"))
        if host is None:
            self.bmc.log(client=self.client_address[0], path=self.path, result="refused: bad credentials")
            self._error(401, "bad credentials")
        return host

    def do_GET(self):
        host = self._authorized_host()
        if host is None:
            return
        path = self.path.rstrip("/")
        if path == ROOT_URI:
            self._send(200, {"@odata.id": ROOT_URI, "Id": "RootService", "RedfishVersion": "1.6.0",
                             "Systems": {"@odata.id": SYSTEMS_URI}})
        elif path == SYSTEMS_URI:
            self._send(200, {"@odata.id": SYSTEMS_URI, "Members@odata.count": 1,
                             "Members": [{"@odata.id": "%s/%s" % (SYSTEMS_URI, host)}]})
        elif path == "%s/%s" % (SYSTEMS_URI, host):
            self._send(200, self.bmc.system(host))
        elif path.startswith(SYSTEMS_URI + "/"):
            # Another host's system does not exist for this account (no hint that it does elsewhere).
            self.bmc.log(client=self.client_address[0], user_host=host, path=self.path,
                         result="refused: not this account's system")
            self._error(404, "no such resource")
        else:
            self._error(404, "no such resource")

    def do_POST(self):
        host = self._authorized_host()
        if host is None:
            return
        if self.path.rstrip("/") != "%s/%s%s" % (SYSTEMS_URI, host, RESET):
            self.bmc.log(client=self.client_address[0], user_host=host, path=self.path, result="refused: not this account's system")
            self._error(404, "no such resource")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            reset_type = json.loads(self.rfile.read(length).decode("utf-8") or "{}").get("ResetType")
        except (ValueError, AttributeError):
            reset_type = None
        if reset_type not in RESET_TYPES:
            self.bmc.log(client=self.client_address[0], host=host, action=reset_type, result="refused: unknown ResetType")
            self._error(400, "ResetType must be one of %s" % ", ".join(RESET_TYPES))
            return
        try:
            self.bmc.reset(host, reset_type)
        except Exception as exc:  # pylint: disable=broad-except
            self.bmc.log(client=self.client_address[0], host=host, action=reset_type, result="failed: %s" % exc)
            self._error(500, "%s failed: %s" % (reset_type, exc))
            return
        self.bmc.log(client=self.client_address[0], host=host, action=reset_type, result="done")
        self._send(204)


def make_server(bmc, listen, port, certfile=None, keyfile=None):
    """An HTTPS server (HTTP when certfile is None: unit tests only) bound to listen:port."""
    handler = type("BoundHandler", (Handler,), {"bmc": bmc})
    server = ThreadingHTTPServer((listen, port), handler)
    server.daemon_threads = True
    if certfile:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        # the handshake happens in each request's thread (Handler.setup), with its timeout
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server


def main(argv=None):
    p = argparse.ArgumentParser(prog="lab_bmc", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the lab hosts' BMCs until killed")
    s.add_argument("--dir", required=True, help="users.json, cert.pem, key.pem; bmc.log is written here")
    s.add_argument("--listen", required=True)
    s.add_argument("--port", type=int, default=8443)
    s.add_argument("--lab", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab.py"))
    s.add_argument("--post-seconds", type=float, default=5.0,
                   help="how long after On a host boots (its firmware's time; On answers at once)")
    args = p.parse_args(argv)
    with open(os.path.join(args.dir, "users.json")) as handle:
        users = json.load(handle)
    power = LabPower(args.lab, post_seconds=args.post_seconds)
    bmc = Bmc(users, power, os.path.join(args.dir, "bmc.log"))
    power.on_error = lambda host, msg: bmc.log(action="boot", host=host, result="failed: " + msg)
    server = make_server(bmc, args.listen, args.port, os.path.join(args.dir, "cert.pem"), os.path.join(args.dir, "key.pem"))
    bmc.log(event="serving", listen="%s:%d" % (args.listen, args.port), hosts=sorted(users))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
