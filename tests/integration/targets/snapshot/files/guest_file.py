# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""guest_file.py VM PATH: print a file of the running guest, read through its agent (guest-file-*).

An independent view of the guest for the tests: what the guest itself recorded, not what a module reported.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import json
import sys

import libvirt
import libvirt_qemu


def agent(dom, cmd, **args):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(msg), 10, 0))["return"]


def main(vm, path):
    dom = libvirt.open("qemu:///system").lookupByName(vm)
    handle = agent(dom, "guest-file-open", path=path, mode="r")
    try:
        data = b""
        while True:
            r = agent(dom, "guest-file-read", handle=handle, count=65536)
            data += base64.b64decode(r.get("buf-b64", ""))
            if r.get("eof") or not r.get("count"):
                break
    finally:
        agent(dom, "guest-file-close", handle=handle)
    sys.stdout.write(data.decode("utf-8", "replace"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
