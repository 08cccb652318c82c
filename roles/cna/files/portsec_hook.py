# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# libvirt qemu hook (installed by kvmfusion.compute.cna beside its library; /etc/libvirt/hooks/qemu.d/kvmfusion-portsec
# runs it with the system's python3):
# programs a VM's DVS ports' security rules (DHCP isolation, IP-MAC binding, security groups) when the VM
# starts, arrives by live migration or libvirtd reconnects to it, and removes them when it stops.
# libvirt passes: $1 domain, $2 operation, $3 sub-operation; the domain's XML on standard input.
# It never calls libvirt (a hook must not). A failure to program a starting VM's rules exits non-zero,
# and libvirt then stops the VM: a port is never left open by accident.
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, "/etc/libvirt/hooks/kvmfusion")
import kvmf_portsec as portsec  # noqa: E402

LOG = "/var/log/libvirt/kvmfusion-portsec.log"
os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg):
    try:
        fd = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg))
    except OSError:
        pass


def run(cmd, data=None):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       check=False)
    if p.returncode != 0:
        raise ValueError("%s: %s" % (" ".join(cmd[:2]), " ".join(p.stderr.split())))
    return p.stdout


def program(vm, ports, wait=True):
    """Program ``ports``; without ``wait``, do nothing when a port is not in OVS yet (False)."""
    deadline = time.monotonic() + 10
    while True:
        state = portsec.ovs_state(run(portsec.VSCTL_STATE))
        try:
            todo = portsec.batches(ports, state)
            break
        except portsec.NotReady:
            # OVS is still adding the port; any other error (a group this CNA lacks) fails at once
            if not wait:
                return False
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    for bridge, port, lines in todo:
        meter = portsec.meter_commands(bridge, port)
        if meter:
            try:
                run(meter[0])
            except ValueError:
                run(meter[1])
        run(portsec.ofctl_batch(bridge), "\n".join(lines) + "\n")
        log("%s: %s port %s (%s): %d rules" % (vm, bridge, port["dev"], port["mac"], len(lines) - 1))
    return True


def remove(vm, ports):
    state = portsec.ovs_state(run(portsec.VSCTL_STATE))
    for p in ports:
        if p["network"] in state["bridges"]:
            run(portsec.ofctl_batch(p["network"]), "\n".join(portsec.removal([p["mac"]])) + "\n")
            log("%s: %s port of %s removed" % (vm, p["network"], p["mac"]))


def main(argv):
    vm, op = argv[1], argv[2]
    if op not in ("start", "started", "reconnect", "stopped", "release"):
        return 0
    text = sys.stdin.read()
    if not text.strip():
        return 0
    ports = portsec.domain_ports(ET.fromstring(text), now=time.time())
    if not ports:
        return 0
    try:
        if op == "start":
            # before QEMU runs: the ports libvirt has already plugged get their rules before the guest's first
            # packet (libvirt calls "started" only once the vCPUs run); the rest wait for "started"
            program(vm, ports, wait=False)
        elif op in ("started", "reconnect"):
            program(vm, ports)
        else:
            remove(vm, ports)
    except (ValueError, OSError) as e:
        log("%s %s: FAILED: %s" % (vm, op, e))
        sys.stderr.write("kvmfusion port security: %s\n" % e)
        # "started" fails closed: libvirt stops the VM. A failure on "reconnect" (libvirtd restarting) keeps the
        # VM running: its ports keep the rules OVS already holds, and the log says what failed.
        return 1 if op in ("start", "started") else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
