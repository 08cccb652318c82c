# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tiny test guest (tools/build-test-guest, tests/guest/README.md) on plain QEMU.

Builds the guest if it is missing or stale (the builder is idempotent), boots it
with qemu-system-x86_64 under TCG (a Linux guest does not boot under KVM on these
machines), and checks over the guest agent socket that: the agent answers
guest-ping (the time from QEMU start is printed); guest-exec runs /bin/sh, whose
dd writes a random pattern over the 16 MiB virtio disk and whose sha256 of
/dev/vda (after sync and dropping the page cache) equals the host's sha256 of the
disk file; guest-shutdown powers the guest off and QEMU exits by itself. A second
boot checks that the ACPI power button (QMP system_powerdown) powers it off too.
No libvirt, no lab: only QEMU, a temporary directory and the agent protocol.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(ROOT, "tools", "build-test-guest")
GUEST_DIR = os.environ.get("KVMF_TEST_GUEST_DIR", "/var/cache/kvmfusion/test-guest")
QEMU = "qemu-system-x86_64"
DISK_SIZE = 16 * 1024 * 1024
MARKER = "KVMF-GUEST READY"
BOOT_TIMEOUT = 90  # seconds until the agent must answer guest-ping
EXIT_TIMEOUT = 30  # seconds QEMU gets to exit after a shutdown request


@pytest.fixture(scope="module")
def guest():
    """guest.json of the built test guest (built here if missing or stale)."""
    if shutil.which(QEMU) is None:
        pytest.fail("%s is missing: apt-get install qemu-system-x86" % QEMU)
    meta = os.path.join(GUEST_DIR, "guest.json")
    if os.geteuid() == 0:
        res = subprocess.run([BUILDER, "--out", GUEST_DIR], check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=600)
        print("\n" + res.stdout.strip())
        assert res.returncode == 0, "build-test-guest failed (%d):\n%s" % (res.returncode, res.stdout)
    elif not os.path.exists(meta):
        pytest.fail("the test guest is not built and building it needs root: run %s as root" % BUILDER)
    with open(meta) as handle:
        info = json.load(handle)
    for key in ("kernel", "initrd"):
        with open(info[key], "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        assert digest == info["sha256"][os.path.basename(info[key])], "%s does not match guest.json" % info[key]
    return info


class Agent(object):
    """A minimal QEMU guest agent client (newline-delimited JSON over a UNIX socket)."""

    def __init__(self, path, timeout=10.0):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def connect(self, deadline):
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                self.sock = sock
                return
            except (OSError, IOError):
                sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, execute, arguments=None, prefix=b""):
        msg = {"execute": execute}
        if arguments is not None:
            msg["arguments"] = arguments
        self.sock.sendall(prefix + json.dumps(msg).encode("utf-8") + b"\n")

    def read(self, timeout):
        """The next JSON message, or None when nothing complete arrived within timeout."""
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not data:
                raise AssertionError("the agent socket was closed by QEMU")
            # 0xff is the sentinel guest-sync-delimited puts before its answer.
            self.buf += data.replace(b"\xff", b"")
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.strip()
        return json.loads(line.decode("utf-8")) if line else self.read(max(deadline - time.time(), 0.01))

    def sync(self, deadline):
        """guest-sync-delimited until the agent answers our id (earlier attempts may be answered first); None on timeout."""
        while time.time() < deadline:
            ident = random.randint(1, 2 ** 31)
            # A leading 0xff makes the agent drop any partial input it holds.
            self.send("guest-sync-delimited", {"id": ident}, prefix=b"\xff")
            wait_until = min(time.time() + 1.0, deadline)
            while time.time() < wait_until:
                msg = self.read(max(wait_until - time.time(), 0.01))
                if msg is not None and msg.get("return") == ident:
                    return ident
        return None

    def call(self, execute, arguments=None, timeout=None):
        self.send(execute, arguments)
        msg = self.read(timeout or self.timeout)
        assert msg is not None, "no answer to %s within %s s" % (execute, timeout or self.timeout)
        assert "error" not in msg, "%s failed: %s" % (execute, msg["error"])
        return msg["return"]

    def shell(self, script, timeout=60.0):
        """Run /bin/sh -c SCRIPT with guest-exec; return (exit code, stdout, stderr)."""
        pid = self.call("guest-exec", {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True})["pid"]
        deadline = time.time() + timeout
        while True:
            status = self.call("guest-exec-status", {"pid": pid})
            if status["exited"]:
                break
            assert time.time() < deadline, "guest-exec %r still running after %s s" % (script, timeout)
            time.sleep(0.2)
        out = base64.b64decode(status.get("out-data", "")).decode("utf-8", "replace")
        err = base64.b64decode(status.get("err-data", "")).decode("utf-8", "replace")
        return status.get("exitcode", status.get("signal", -1)), out, err


class Guest(object):
    """One boot of the test guest in plain QEMU (TCG), with a temporary directory for sockets, disk and console."""

    def __init__(self, info, qmp=False):
        self.info = info
        self.tmp = tempfile.mkdtemp(prefix="kvmf-guest-")
        self.disk = os.path.join(self.tmp, "disk.raw")
        self.agent_sock = os.path.join(self.tmp, "qga.sock")
        self.qmp_sock = os.path.join(self.tmp, "qmp.sock") if qmp else None
        self.console = os.path.join(self.tmp, "console.log")
        self.proc = None
        self.started = None
        with open(self.disk, "wb") as handle:
            handle.truncate(DISK_SIZE)

    def start(self):
        cmd = [QEMU, "-accel", "tcg", "-m", "128", "-nographic",
               # no default NIC: the guest has no e1000 driver and its iPXE ROM costs a second or two under TCG
               "-nic", "none",
               "-kernel", self.info["kernel"], "-initrd", self.info["initrd"], "-append", self.info["cmdline"],
               "-device", "virtio-serial",
               "-chardev", "socket,path=%s,server=on,wait=off,id=qga0" % self.agent_sock,
               "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
               "-drive", "file=%s,format=raw,if=virtio" % self.disk]
        if self.qmp_sock:
            cmd += ["-qmp", "unix:%s,server=on,wait=off" % self.qmp_sock]
        with open(self.console, "wb") as out:
            self.started = time.time()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)  # pylint: disable=consider-using-with

    def console_text(self):
        try:
            with open(self.console, "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except (OSError, IOError):
            return ""

    def wait_console(self, text, timeout):
        """True when text appeared on the serial console within timeout seconds."""
        deadline = time.time() + timeout
        while text not in self.console_text():
            if time.time() > deadline:
                return False
            time.sleep(0.1)
        return True

    def wait_exit(self, timeout):
        """True when QEMU exited within timeout seconds."""
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def wait_for_socket(self, path, deadline):
        while not os.path.exists(path):
            assert self.proc.poll() is None, "QEMU exited early (%s):\n%s" % (self.proc.returncode, self.console_text())
            assert time.time() < deadline, "QEMU did not create %s" % path
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def boot_until_ping(vm):
    """Start QEMU and return (agent, seconds from QEMU start until guest-ping answered)."""
    vm.start()
    deadline = vm.started + BOOT_TIMEOUT
    vm.wait_for_socket(vm.agent_sock, deadline)
    agent = Agent(vm.agent_sock)
    agent.connect(deadline)
    assert agent.sync(deadline) is not None, "no agent after %s s; console:\n%s" % (BOOT_TIMEOUT, vm.console_text())
    assert agent.call("guest-ping") == {}
    return agent, time.time() - vm.started


def test_guest_boots_agent_writes_disk_and_shuts_down(guest):
    vm = Guest(guest)
    agent = None
    try:
        agent, seconds = boot_until_ping(vm)
        print("\ntest guest (TCG, kernel %s): guest-ping answered %.1f s after QEMU started" % (guest["kernel_version"], seconds))
        assert vm.wait_console(MARKER, 10), "no %r on the console:\n%s" % (MARKER, vm.console_text())

        info = agent.call("guest-info")
        enabled = set(c["name"] for c in info["supported_commands"] if c["enabled"])
        assert {"guest-exec", "guest-exec-status", "guest-shutdown", "guest-ping"} <= enabled

        script = ("dd if=/dev/urandom of=/dev/vda bs=1M count=%d conv=fsync 2>/dev/null && sync && "
                  "echo 3 > /proc/sys/vm/drop_caches && sha256sum /dev/vda" % (DISK_SIZE // (1024 * 1024)))
        code, out, err = agent.shell(script)
        assert code == 0, "guest shell failed (%s): %s %s" % (code, out, err)
        guest_sum = out.split()[0]
        with open(vm.disk, "rb") as handle:
            data = handle.read()
        assert len(data) == DISK_SIZE
        assert data != b"\0" * DISK_SIZE, "the guest did not write to the disk"
        assert hashlib.sha256(data).hexdigest() == guest_sum, "guest and host see different disk contents"

        t0 = time.time()
        agent.send("guest-shutdown")  # no answer on success: the guest powers off
        assert vm.wait_exit(EXIT_TIMEOUT), "QEMU still running %d s after guest-shutdown; console:\n%s" % (EXIT_TIMEOUT, vm.console_text())
        print("guest-shutdown: QEMU exited after %.1f s (status %s)" % (time.time() - t0, vm.proc.returncode))
        assert vm.proc.returncode == 0
        assert vm.wait_console("KVMF-GUEST SHUTDOWN poweroff", 1), "no shutdown line on the console:\n%s" % vm.console_text()
        with open(vm.disk, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == guest_sum
    finally:
        if agent is not None:
            agent.close()
        vm.stop()


def qmp(path, commands, timeout=10.0):
    """Run QMP commands (after qmp_capabilities) and return their answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        stream = sock.makefile("rwb")
        greeting = json.loads(stream.readline().decode("utf-8"))
        assert "QMP" in greeting
        answers = []
        for execute in ["qmp_capabilities"] + list(commands):
            stream.write(json.dumps({"execute": execute}).encode("utf-8") + b"\n")
            stream.flush()
            while True:
                msg = json.loads(stream.readline().decode("utf-8"))
                if "event" not in msg:
                    break
            assert "error" not in msg, "%s failed: %s" % (execute, msg["error"])
            answers.append(msg["return"])
        return answers[1:]
    finally:
        sock.close()


def test_guest_powers_off_on_acpi_power_button(guest):
    vm = Guest(guest, qmp=True)
    agent = None
    try:
        agent, seconds = boot_until_ping(vm)
        print("\nsecond boot: guest-ping answered %.1f s after QEMU started" % seconds)
        t0 = time.time()
        qmp(vm.qmp_sock, ["system_powerdown"])
        assert vm.wait_exit(EXIT_TIMEOUT), "QEMU still running %d s after the ACPI power button; console:\n%s" % (EXIT_TIMEOUT, vm.console_text())
        print("ACPI power button: QEMU exited after %.1f s (status %s)" % (time.time() - t0, vm.proc.returncode))
        assert vm.proc.returncode == 0
        assert vm.wait_console("ACPI power button", 1), "no power button line on the console:\n%s" % vm.console_text()
    finally:
        if agent is not None:
            agent.close()
        vm.stop()
