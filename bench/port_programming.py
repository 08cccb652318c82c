# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: from a VM port appearing to its security rules being in place, against ovs-ofctl's floor.

Target (issue: networks): port programming for 1 and for 50 ports, timed as libvirt runs it (the cna role's
hook, kvmfusion-portsec, given the domain XML on stdin), against ``ovs-ofctl add-flows`` of the very same
rules from one file (the floor: one process, one connection, every rule). The rules go as one OpenFlow batch
per port (``ovs-ofctl --bundle``), not one process per rule: the run also times one ``ovs-ofctl add-flow``
process per rule, to show what batching saves.

    python3 bench/port_programming.py [--ports 1,50] [--rounds 5]
        (root, on a CNA with Open vSwitch running; in the lab:
         tools/lab ssh cna1 -- /usr/bin/python3 /work/main/bench/port_programming.py)

Method: a scratch OVS bridge (userspace datapath) with N internal ports, each standing for a VM NIC with IP-MAC
binding (one IPv4 address), DHCP isolation and a security group of three inbound rules: the rules of a fully
secured port. Per round and per N, interleaved: (a) the hook for one VM with N NICs ("started"), (b) the hook
run N times for N VMs of one NIC each, (c) the floor, (d) one process per rule. Before each, the bridge's rules
are cleared. Medians are printed with the ratios to the floor. The bridge is removed at the end. Never fails on
timing; exits non-zero only when a step fails.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOK = os.path.join(ROOT, "roles", "cna", "files", "portsec_hook.py")
BRIDGE = "kvmfbench"
GROUP = "kvmfbench"
RULES = [{"protocol": "tcp", "ports": [22]}, {"protocol": "tcp", "ports": [80, 443]}, {"protocol": "icmp", "icmp_type": 8}]


def sh(cmd, data=None):
    res = subprocess.run(cmd, input=data, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(cmd[:3]), res.stderr.strip()))
    return res.stdout


def import_portsec(tmp):
    base = os.path.join(tmp, "kvmf_portsec.py")
    os.symlink(os.path.join(ROOT, "plugins", "module_utils", "portsec.py"), base)
    sys.path.insert(0, tmp)
    import kvmf_portsec  # pylint: disable=import-error
    return kvmf_portsec


def mac(i):
    return "52:54:00:be:%02x:%02x" % (i // 256, i % 256)


def domain_xml(name, ports):
    nics = "".join(
        "<interface type='bridge'><mac address='%s'/><source network='%s' portgroup='pg' bridge='%s'/>"
        "<virtualport type='openvswitch'/><target dev='%s'/><model type='virtio'/></interface>" % (mac(i), BRIDGE, BRIDGE, dev)
        for i, dev in ports)
    meta = "".join("<k:port mac='%s' security_group='%s'><k:ip>10.%d.%d.%d</k:ip></k:port>"
                   % (mac(i), GROUP, 20 + i // 65536, (i // 256) % 256, i % 256 or 1) for i, _dev in ports)
    return ("<domain type='kvm'><name>%s</name><metadata><k:ports xmlns:k='https://kvmfusion.compute/xmlns/ports/1'>%s"
            "</k:ports></metadata><devices>%s</devices></domain>" % (name, meta, nics))


def setup(n_max, portsec):
    sh(["ovs-vsctl", "--may-exist", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev"])
    cmds = []
    for i in range(n_max):
        cmds += ["--", "--may-exist", "add-port", BRIDGE, "kvb%d" % i, "--", "set", "interface", "kvb%d" % i, "type=internal"]
    sh(["ovs-vsctl"] + cmds)
    pg = portsec.encode({"dhcp_isolation": True, "ip_mac_binding": True})
    sg = portsec.encode(portsec.normalize_rules(RULES, GROUP))
    sh(["ovs-vsctl", "set", "bridge", BRIDGE, 'external_ids:%spg=%s' % (portsec.PG_KEY, json.dumps(pg)), "--",
        "set", "open_vswitch", ".", 'external_ids:%s%s=%s' % (portsec.SG_KEY, GROUP, json.dumps(sg))])
    deadline = time.time() + 30
    while time.time() < deadline:
        state = portsec.ovs_state(sh(portsec.VSCTL_STATE))
        if all(state["ofports"].get("kvb%d" % i) for i in range(n_max)):
            return state
        time.sleep(0.2)
    raise SystemExit("the scratch ports got no OpenFlow numbers")


def clear():
    sh(["ovs-ofctl", "del-flows", BRIDGE])


def count_rules():
    return sum(1 for line in sh(["ovs-ofctl", "-O", "OpenFlow14", "dump-flows", BRIDGE]).splitlines() if "cookie=0x4b56" in line)


def hook(name, ports):
    t = time.perf_counter()
    res = subprocess.run(["/usr/bin/python3", HOOK, name, "started", "begin", "-"], input=domain_xml(name, ports),
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit("hook failed: %s" % res.stderr.strip())
    return time.perf_counter() - t


def rule_lines(portsec, state, n):
    ports = [{"mac": mac(i), "dev": "kvb%d" % i, "network": BRIDGE, "bridge": BRIDGE, "portgroup": "pg",
              "security_group": GROUP, "ips": ["10.%d.%d.%d" % (20 + i // 65536, (i // 256) % 256, i % 256 or 1)]}
             for i in range(n)]
    lines = []
    for _br, _p, batch in portsec.batches(ports, state):
        lines += [ln[len("add "):] for ln in batch if ln.startswith("add ")]
    seen = set()
    return [ln for ln in lines if not (ln in seen or seen.add(ln))]


def floor(lines, tmp):
    path = os.path.join(tmp, "flows.txt")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    t = time.perf_counter()
    sh(["ovs-ofctl", "-O", "OpenFlow14", "add-flows", BRIDGE, path])
    return time.perf_counter() - t


def per_rule(lines):
    t = time.perf_counter()
    for ln in lines:
        sh(["ovs-ofctl", "-O", "OpenFlow14", "add-flow", BRIDGE, ln])
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", default="1,50")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    sizes = [int(x) for x in a.ports.split(",")]
    if subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True, check=False).returncode != 0:
        raise SystemExit("Open vSwitch is not running here: run this on a CNA (in the lab: "
                         "tools/lab ssh cna1 -- /usr/bin/python3 %s)" % os.path.abspath(__file__))
    tmp = tempfile.mkdtemp(prefix="bench-portsec-")
    portsec = import_portsec(tmp)
    times = dict(((n, k), []) for n in sizes for k in ("vm", "vms", "floor", "per_rule"))
    counts = {}
    try:
        state = setup(max(sizes), portsec)
        for r in range(a.rounds + 1):  # round 0 warms caches and is discarded
            for n in sizes:
                ports = [(i, "kvb%d" % i) for i in range(n)]
                lines = rule_lines(portsec, state, n)
                clear()
                t_vm = hook("bench-vm", ports)
                counts[n] = (count_rules(), len(lines))
                clear()
                t_vms = sum(hook("bench-vm%d" % i, [p]) for i, p in enumerate(ports))
                clear()
                t_floor = floor(lines, tmp)
                clear()
                t_rule = per_rule(lines) if n <= 10 or r < 2 else None
                if r:
                    for k, v in (("vm", t_vm), ("vms", t_vms), ("floor", t_floor), ("per_rule", t_rule)):
                        if v is not None:
                            times[(n, k)].append(v)
    finally:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", BRIDGE], check=False)
        subprocess.run(["ovs-vsctl", "remove", "open_vswitch", ".", "external_ids", portsec.SG_KEY + GROUP], check=False)
    print("method: medians of %d rounds (after one discarded); each port: IP-MAC binding, DHCP isolation and a "
          "security group of %d inbound rules" % (a.rounds, len(RULES)))
    for n in sizes:
        installed, planned = counts[n]
        med = dict((k, statistics.median(times[(n, k)])) for k in ("vm", "vms", "floor", "per_rule") if times[(n, k)])
        print("%d port(s): %d rules (%d on the bridge after the hook)" % (n, planned, installed))
        print("  floor, ovs-ofctl add-flows of them from one file: %.1f ms" % (med["floor"] * 1000))
        print("  hook, one VM with %d NIC(s) (one batch per port): %.1f ms -> %.2fx the floor"
              % (n, med["vm"] * 1000, med["vm"] / med["floor"]))
        print("  hook, %d VM(s) of one NIC (a hook process each):  %.1f ms -> %.2fx the floor, %.1f ms per port"
              % (n, med["vms"] * 1000, med["vms"] / med["floor"], med["vms"] * 1000 / n))
        if "per_rule" in med:
            print("  one ovs-ofctl process per rule (what batching avoids): %.1f ms -> %.2fx the floor"
                  % (med["per_rule"] * 1000, med["per_rule"] / med["floor"]))


if __name__ == "__main__":
    main()
