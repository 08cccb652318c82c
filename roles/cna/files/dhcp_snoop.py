# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# kvmfusion-dhcp-snoop.service (the kvmfusion.compute.cna role installs it): binds the addresses guests lease by
# DHCP to their DVS ports, for NICs declared with ``bound_ips: dhcp``; and puts every running VM's port rules
# back when ovs-vswitchd restarts (it starts with an empty flow table, and the libvirt hook does not run then).
#
# It watches the tap device of each such NIC of a running VM for DHCPACKs that Open vSwitch delivers TO the guest
# (never what the guest sends: a guest cannot grant itself an address), records the leased address with its
# expiry in the VM's live metadata (so it travels with the VM through a live migration), and reprograms the
# port's rules the way the libvirt hook does (the hook's own code). Expired leases are unbound.
import ctypes
import select
import socket
import struct
import sys
import time
import xml.etree.ElementTree as ET

import libvirt

sys.path.insert(0, "/etc/libvirt/hooks/kvmfusion")
import kvmf_portsec as portsec  # noqa: E402
import portsec_hook as hook  # noqa: E402
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
# classic BPF: IPv4, UDP, not a fragment, source port 67 (what tcpdump compiles "udp src port 67" to)
FILTER = [(0x28, 0, 0, 12), (0x15, 0, 8, 0x0800), (0x30, 0, 0, 23), (0x15, 0, 6, 17), (0x28, 0, 0, 20),
          (0x45, 4, 0, 0x1FFF), (0xB1, 0, 0, 14), (0x48, 0, 0, 14), (0x15, 0, 1, 67), (0x06, 0, 0, 0xFFFF),
          (0x06, 0, 0, 0)]
METADATA_ELEMENT, AFFECT_LIVE = 2, 1
OVS_PID = "/run/openvswitch/ovs-vswitchd.pid"
# After Open vSwitch (re)starts, every scan in this window checks that each running VM's ports hold their rules and
# programs again those that do not: rules programmed while ovs-vswitchd was still setting its bridges up may be
# refused or lost (CI runs ci28 and t219: the rules were not back 20 s after a restart).
VERIFY_WINDOW = 30


def log(msg):
    sys.stdout.write("%s\n" % msg)
    sys.stdout.flush()


def open_socket(dev):
    # protocol 0 receives nothing until bound: the filter is in place before the first frame, and only this
    # device's frames arrive
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    prog = b"".join(struct.pack("HBBI", *insn) for insn in FILTER)
    buf = ctypes.create_string_buffer(prog)
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(FILTER), ctypes.addressof(buf)))
    s.bind((dev, ETH_P_ALL))  # Python puts the protocol of an AF_PACKET address in network order itself
    s.setblocking(False)
    return s, buf


def learning_ports(conn):
    """{dev: (vm, mac)} of the running VMs' NICs that learn their addresses from DHCP."""
    out = {}
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            root = ET.fromstring(dom.XMLDesc(0))
        except (libvirt.libvirtError, ET.ParseError):
            continue
        for p in portsec.domain_ports(root):
            if p.get("learn") == "dhcp" and p.get("dev"):
                out[p["dev"]] = (dom.name(), p["mac"])
    return out


def update(conn, vm, change):
    """Apply ``change(meta) -> new meta or None`` to VM ``vm``'s live port metadata; reprogram its ports."""
    dom = conn.lookupByName(vm)
    root = ET.fromstring(dom.XMLDesc(0))
    meta = change(portsec.ports_meta(root))
    if meta is None:
        return False
    el = portsec.ports_element(meta, namespaced=False)
    dom.setMetadata(METADATA_ELEMENT, ET.tostring(el, encoding="unicode") if el is not None else None,
                    portsec.PORTS_KEY if el is not None else None, portsec.PORTS_NS, AFFECT_LIVE)
    ports = portsec.domain_ports(ET.fromstring(dom.XMLDesc(0)), now=time.time())
    hook.program(vm, ports)
    return True


def vswitchd():
    """The running ovs-vswitchd's process id (None when it is not running): a new one starts with no rules."""
    try:
        with open(OVS_PID) as f:
            return f.read().strip() or None
    except OSError:
        return None


def reprogram_all(conn, only=None):
    """Every running VM's DVS ports (or those of the VMs named in ``only``) get their rules again (after Open
    vSwitch restarted with an empty table)."""
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        if only is not None and dom.name() not in only:
            continue
        try:
            ports = portsec.domain_ports(ET.fromstring(dom.XMLDesc(0)), now=time.time())
            if ports:
                hook.program(dom.name(), ports)
        except (libvirt.libvirtError, ET.ParseError, ValueError, OSError) as e:
            log("%s: cannot reprogram its ports: %s" % (dom.name(), " ".join(str(e).split())))


def lost_rules(conn):
    """The running VMs one of whose DVS ports holds no rule of its own (its cookie has no flow), or is not in
    Open vSwitch yet."""
    state = portsec.ovs_state(hook.run(portsec.VSCTL_STATE))
    lost = []
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            ports = portsec.domain_ports(ET.fromstring(dom.XMLDesc(0)), now=time.time())
            todo = portsec.batches(ports, state) if ports else []
        except portsec.NotReady:
            lost.append(dom.name())
            continue
        except (libvirt.libvirtError, ET.ParseError):
            continue  # gone meanwhile
        for bridge, port, _lines in todo:
            flows = hook.run(["ovs-ofctl", "-O", "OpenFlow14", "dump-flows", bridge,
                              "cookie=0x%x/-1" % portsec.cookie(port["mac"])])
            if "table=" not in flows:
                lost.append(dom.name())
                break
    return lost


def main():
    conn = None
    ovs = None
    socks = {}  # dev -> (socket, filter buffer, vm, mac)
    last_scan = 0.0
    verify_until = 0.0
    while True:
        try:
            if conn is None or not conn.isAlive():
                conn = libvirt.open("qemu:///system")
            now = time.time()
            if now - last_scan >= 1.0:
                last_scan = now
                pid = vswitchd()
                if pid and pid != ovs:
                    # (re)started, or this service just started: OVS flows do not outlive ovs-vswitchd
                    if ovs is not None:
                        log("Open vSwitch restarted (pid %s): reprogramming every running VM's ports" % pid)
                    ovs = pid
                    verify_until = now + VERIFY_WINDOW
                    reprogram_all(conn)
                elif pid and now < verify_until:
                    lost = lost_rules(conn)
                    if lost:
                        log("rules missing after the Open vSwitch restart on %s: programming them again"
                            % ", ".join(sorted(lost)))
                        reprogram_all(conn, only=set(lost))
                want = learning_ports(conn)
                for dev in list(socks):
                    if dev not in want or socks[dev][2:] != want[dev]:
                        socks.pop(dev)[0].close()
                for dev, (vm, mac) in want.items():
                    if dev not in socks:
                        try:
                            s, buf = open_socket(dev)
                        except OSError as e:
                            log("cannot watch %s of %s: %s" % (dev, vm, e))
                            continue
                        socks[dev] = (s, buf, vm, mac)
                for vm in sorted(set(v for v, _m in want.values())):
                    if update(conn, vm, lambda meta, now=now: portsec.expire(meta, now)):
                        log("%s: expired leases unbound" % vm)
            ready, _w, _x = select.select([v[0] for v in socks.values()], [], [], 0.5)
            for s in ready:
                dev = [d for d, v in socks.items() if v[0] is s][0]
                _sock, _buf, vm, mac = socks[dev]
                while True:
                    try:
                        frame, addr = s.recvfrom(65535)
                    except BlockingIOError:
                        break
                    except OSError as e:
                        # the tap went down (Open vSwitch restarting, the VM leaving): this socket goes, the
                        # next scan opens it again; the loop must not stall on it (it delayed the rules'
                        # return after an Open vSwitch restart by over 10 s)
                        log("%s of %s: %s; watching it again at the next scan" % (dev, vm, e))
                        socks.pop(dev)[0].close()
                        break
                    if addr[0] != dev or addr[2] != socket.PACKET_OUTGOING:
                        continue  # sent by the guest itself: never trusted
                    ack = portsec.parse_dhcp_ack(frame)
                    if not ack or ack[0] != mac:
                        continue
                    _mac, ip, lease = ack
                    if update(conn, vm, lambda meta, ip=ip, lease=lease, mac=mac: portsec.learn(
                            meta, mac, ip, lease, time.time())):
                        log("%s: %s leased %s for %ds: bound" % (vm, mac, ip, lease))
        except (libvirt.libvirtError, OSError, ValueError) as e:
            log("error: %s" % " ".join(str(e).split()))
            conn = None if isinstance(e, libvirt.libvirtError) else conn
            time.sleep(1)


if __name__ == "__main__":
    main()
