# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's own life cycle: up is idempotent, status tells, down leaves nothing.

Covers: 'up' from nothing boots every host to systemd 'running' with SSH; a second
'up' boots nothing; hosts see the machine's /usr read-only and routing is on (NAT to the mirror); after
'down', 'ip netns list', 'mount', 'ip link', iptables (filter and nat), the cgroup tree and the process list
show nothing of the lab, its state is gone and routing is as it was; 'down' also clears a lab host's cgroup
left under another runner's cgroup (a killed CI job's).
Ends with the lab down. Boot time is printed, never asserted (bench/lab_up.py measures it).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "tools", "lab")
LAB_DIR = os.environ.get("KVMF_LAB_DIR", "/srv/kvmfusion-lab")


def sh(*cmd):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)


def traces():
    """Everything of the lab visible from the machine, by the commands a person would use."""
    found = []
    found += ["netns " + n for n in sh("ip", "netns", "list").stdout.split() if n.startswith("kvmf-")]
    found += ["mount " + line for line in sh("mount").stdout.splitlines()
              if "lab-" in line.split(" on ")[0] or "kvmfusion-lab" in line]
    found += ["link " + line for line in sh("ip", "-o", "link").stdout.splitlines() if "kvmf" in line]
    found += ["iptables " + line for line in sh("iptables", "-S").stdout.splitlines() if "kvmfusion-lab" in line]
    found += ["iptables nat " + line for line in sh("iptables", "-t", "nat", "-S").stdout.splitlines()
              if "kvmfusion-lab" in line]
    found += ["process " + line for line in sh("ps", "-eo", "pid,stat,args").stdout.splitlines()
              if "lab-init" in line or "kvmfusion-lab" in line]
    for base, dirs, _files in os.walk("/sys/fs/cgroup"):
        found += ["cgroup " + os.path.join(base, d) for d in dirs if d.startswith("kvmflab-")]
        if base.count("/") > 6:
            dirs[:] = []
    if os.path.exists(LAB_DIR):
        found.append("state " + LAB_DIR)
    return found


def ip_forward():
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()


def stale_runner_cgroup():
    """A lab host's cgroup as a killed runner (a CI job cut off) leaves it: under another cgroup than ours."""
    with open("/proc/self/cgroup") as f:
        line = next(x for x in f if x.split(":")[1] in ("memory", "pids", ""))
    ctrl, path = line.rstrip("\n").split(":", 2)[1:]
    mnt = "/sys/fs/cgroup" + ("/" + ctrl if ctrl and os.path.isdir("/sys/fs/cgroup/" + ctrl) else "")
    runner = os.path.join(mnt, path.lstrip("/"), "kvmf-killed-runner")
    stale = os.path.join(runner, "kvmflab-vrm1", "system.slice")
    os.makedirs(stale)
    return runner


def test_up_is_idempotent_and_down_leaves_nothing():
    runner = stale_runner_cgroup()
    try:
        assert sh(LAB, "down").returncode == 0
        assert not os.path.exists(os.path.join(runner, "kvmflab-vrm1"))
    finally:
        for d in (os.path.join(runner, "kvmflab-vrm1", "system.slice"), os.path.join(runner, "kvmflab-vrm1"), runner):
            if os.path.isdir(d):
                os.rmdir(d)
    assert traces() == []
    forward = ip_forward()

    t0 = time.time()
    up = sh(LAB, "up", "--cna", "2", "--vrm", "1")
    boot = time.time() - t0
    assert up.returncode == 0, up.stderr
    print("lab up (2 CNA + 1 VRM) from nothing: %.1fs" % boot)
    assert "(3 booted)" in up.stderr

    status = sh(LAB, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert sorted(h["name"] for h in report["hosts"]) == ["cna1", "cna2", "vrm1"]
    assert all(h["systemd"] == "running" and h["ssh"] for h in report["hosts"]), report
    pids = [h["pid1"] for h in report["hosts"]]
    # the hosts reach the machine's mirror through NAT (routing on), and see the machine's /usr read-only
    assert ip_forward() == "1"
    # ... and the rest of the machine's root read-only too (a package's /boot trigger, a stray /opt file)
    for path in ("/usr", "/boot", "/opt", "/srv", "/"):
        ro = sh(LAB, "ssh", "cna1", "touch %s/kvmf-probe" % path.rstrip("/"))
        assert ro.returncode != 0 and "Read-only file system" in ro.stderr + ro.stdout, (path, ro.stderr)
    assert sh(LAB, "ssh", "cna1", "touch /etc/kvmf-probe /var/kvmf-probe /root/kvmf-probe").returncode == 0
    assert not any(os.path.exists(os.path.join(d, "kvmf-probe")) for d in ("/etc", "/var", "/root"))
    # /root is a fresh Debian root home, not the machine's: none of the machine's files (its shell start-up files
    # and credentials) show there, and the shell start-up files are Debian's own.
    machine_only = "/root/kvmf-machine-only"
    open(machine_only, "w").close()
    try:
        seen = sh(LAB, "ssh", "cna1", "test -e %s && echo seen || echo absent; cmp /root/.bashrc "
                                      "/usr/share/base-files/dot.bashrc && echo debian; stat -c %%a /root" % machine_only)
    finally:
        os.remove(machine_only)
    assert seen.stdout.split() == ["absent", "debian", "700"], seen.stdout + seen.stderr

    again = sh(LAB, "up", "--cna", "2", "--vrm", "1")
    assert again.returncode == 0 and "(0 booted)" in again.stderr
    assert [h["pid1"] for h in json.loads(sh(LAB, "status", "--json").stdout)["hosts"]] == pids

    resize = sh(LAB, "up", "--cna", "3")
    assert resize.returncode != 0 and "down" in resize.stderr

    down = sh(LAB, "down")
    assert down.returncode == 0, down.stderr
    assert traces() == []
    assert ip_forward() == forward
    assert all(not os.path.exists("/proc/%d" % p) for p in pids)
    assert sh(LAB, "status").returncode != 0
