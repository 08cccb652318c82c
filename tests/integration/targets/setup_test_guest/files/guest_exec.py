# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""guest_exec.py VM COMMAND [TIMEOUT]: run a shell command in the running test guest through its agent.

Prints what the command printed (stdout, then stderr) and exits with its exit code (124 on a timeout). The
tests' way into the guest: what the guest itself sees (its network, its files), not what a module reports.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import json
import sys
import time

import libvirt
import libvirt_qemu


def agent(dom, cmd, **args):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(msg), 10, 0))["return"]


def wait_for_agent(dom, wait=60.0):
    """Until the guest agent answers a ping: after a live migration its channel reconnects a moment later
    ("QEMU guest agent is not connected"). Only the ping is retried, never a command."""
    end = time.time() + wait
    while True:
        try:
            return agent(dom, "guest-ping")
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_AGENT_UNRESPONSIVE or time.time() > end:
                raise
            time.sleep(0.5)


def main(vm, command, timeout=30.0):
    dom = libvirt.open("qemu:///system").lookupByName(vm)
    wait_for_agent(dom)
    pid = agent(dom, "guest-exec", path="/bin/sh", arg=["-c", command], **{"capture-output": True})["pid"]
    end = time.time() + timeout
    while True:
        st = agent(dom, "guest-exec-status", pid=pid)
        if st.get("exited"):
            break
        if time.time() > end:
            sys.stdout.write("timed out after %ss: %s\n" % (timeout, command))
            return 124
        time.sleep(0.2)
    sys.stdout.write(base64.b64decode(st.get("out-data", "")).decode("utf-8", "replace"))
    sys.stdout.write(base64.b64decode(st.get("err-data", "")).decode("utf-8", "replace"))
    return st.get("exitcode", 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 30.0))
