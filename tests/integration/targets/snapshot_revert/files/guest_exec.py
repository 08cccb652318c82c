# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper: run a shell command inside a running VM through its guest agent.

    guest_exec.py VM BASE64('echo A > /run/marker; cat /run/marker')

The command comes base64-encoded, so no shell between Ansible and here can reinterpret it.

Uses guest-exec / guest-exec-status of the real qemu-ga in the test guest. Prints JSON
{"exitcode": int, "out": str}; fails when the agent does not answer within 60 s.
"""
from __future__ import absolute_import, division, print_function

import base64
import json
import sys
import time

import libvirt
import libvirt_qemu


def agent(dom, cmd, args):
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": cmd, "arguments": args}), 10, 0))["return"]


def main():
    vm, command = sys.argv[1], base64.b64decode(sys.argv[2]).decode("utf-8")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised, not printed
    dom = libvirt.open("qemu:///system").lookupByName(vm)
    deadline = time.time() + 60
    while True:
        try:
            pid = agent(dom, "guest-exec", {"path": "/bin/sh", "arg": ["-c", command], "capture-output": True})["pid"]
            break
        except libvirt.libvirtError:
            if time.time() > deadline:
                raise
            time.sleep(1)
    while True:
        st = agent(dom, "guest-exec-status", {"pid": pid})
        if st.get("exited"):
            break
        if time.time() > deadline:
            raise SystemExit("guest command did not finish: %s" % command)
        time.sleep(0.2)
    out = base64.b64decode(st.get("out-data", "")).decode("utf-8", "replace")
    print(json.dumps({"exitcode": st.get("exitcode"), "out": out}))


if __name__ == "__main__":
    main()
