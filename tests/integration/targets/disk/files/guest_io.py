# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper: I/O through a running VM's disk device, as the guest would see it.

    guest_io.py VM TARGET 'write -P 0xab 0 64k' | 'read -P 0xab 0 64k'

Runs QEMU's qemu-io on the device's own block backend (HMP 'qemu-io -d <qdev>'), so reads
and writes go through exactly what the guest's disk TARGET (vdb, ...) goes through,
overlays included. qemu-io prints to QEMU's stdout, which libvirt writes to the domain
log; the new part of the log is the answer. Prints JSON {"ok": bool, "output": str}.
"""
from __future__ import absolute_import, division, print_function

import json
import sys
import time
import xml.etree.ElementTree as ET

import libvirt
import libvirt_qemu


def main():
    vm, target, command = sys.argv[1:4]
    conn = libvirt.open("qemu:///system")
    dom = conn.lookupByName(vm)
    root = ET.fromstring(dom.XMLDesc(0))
    alias = None
    for disk in root.findall("devices/disk"):
        if disk.find("target").get("dev") == target:
            alias = disk.find("alias").get("name")
    if alias is None:
        raise SystemExit("no disk %s in running VM %s" % (target, vm))
    blocks = json.loads(libvirt_qemu.qemuMonitorCommand(dom, '{"execute": "query-block"}', 0))["return"]
    qdev = [b["qdev"] for b in blocks if b.get("qdev", "").split("/")[-2:-1] == [alias] or b.get("qdev") == alias][0]
    log = "/var/log/libvirt/qemu/%s.log" % vm
    with open(log, "rb") as f:
        f.seek(0, 2)
        start = f.tell()
    reply = libvirt_qemu.qemuMonitorCommand(dom, 'qemu-io -d %s "%s"' % (qdev, command),
                                            libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    out = ""
    for _attempt in range(50):
        with open(log, "rb") as f:
            f.seek(start)
            out = f.read().decode(errors="replace")
        if "ops/sec" in out or "failed" in out.lower():
            break
        time.sleep(0.1)
    ok = "ops/sec" in out and "Pattern verification failed" not in out and not reply.strip()
    print(json.dumps({"ok": ok, "output": (reply + out).strip()}))


if __name__ == "__main__":
    main()
