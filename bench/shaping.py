# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: a transfer between two test guests through a shaped port group, against the configured average.

Target (issue: networks): a transfer out of a guest in a port group shaped to an outbound average of
--average Mbit/s stays within 10% of that average. The baseline, measured in the same run, is the same
transfer from a guest in an unshaped port group of the same DVS (the lab's TCG guests and the userspace
datapath set that ceiling; the shaped figure means something only well below it).

    python3 bench/shaping.py [--average 20] [--megabytes 24] [--rounds 3] [--direction outbound|inbound]
        (root; the lab must be up: tools/lab up, or ./dev lab)

The guests' NICs compute their own checksums (the vm module turns host checksum offload off on a
userspace-datapath DVS): without that, TCP between guests on the userspace datapath stalls.

Method: on the first CNA, a DVS with two port groups (``fast``: no shaping; ``shaped``: outbound average =
peak = --average, burst = average x 0.25 s) and three test guests: a receiver on ``fast``, a sender on each
group. Each round sends --megabytes of zeroes with busybox nc from each sender in turn to the receiver; the
sender times itself from its own /proc/uptime (the last socket buffer, about 200 KiB, is not waited for).
Medians over the rounds are printed with the ratios shaped/configured and shaped/unshaped. Everything is
removed at the end. Never fails on timing; exits non-zero only when a step fails.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".cache", "venv", "bin")
EXEC = os.path.join(ROOT, "tests", "integration", "targets", "setup_test_guest", "files", "guest_exec.py")
GUESTS = [("bench-sh-rx", "fast", "192.168.78.1"), ("bench-sh-fast", "fast", "192.168.78.2"),
          ("bench-sh-slow", "shaped", "192.168.78.3")]

SETUP = """
- name: Shaping benchmark set-up
  hosts: cna[0]
  gather_facts: false
  tasks:
    - name: Test guest
      ansible.builtin.include_role:
        name: ROOT/tests/integration/targets/setup_test_guest
    - name: DVS
      kvmfusion.compute.dvs: {name: bench-sh, uplinks: []}
    - name: Port groups
      kvmfusion.compute.portgroup: "{{ item }}"
      loop:
        - {dvs: bench-sh, name: fast, vlan: 78}
        - {dvs: bench-sh, name: shaped, vlan: 78,
           shaping: {DIRECTION: {average: AVG, peak: AVG, burst: BURST}}}
    - name: Guests
      kvmfusion.compute.vm:
        name: "{{ item.0 }}"
        hypervisor: qemu
        memory: 128MiB
        kernel: /var/lib/kvmfusion/shared/test-guest/vmlinux
        initrd: /var/lib/kvmfusion/shared/test-guest/initrd.img
        cmdline: console=ttyS0 panic=-1 quiet
        graphics: none
        nics: [{dvs: bench-sh, portgroup: "{{ item.1 }}"}]
        state: running
      loop: GUESTS
    - name: Wait for the agents
      ansible.builtin.command: virsh -c qemu:///system qemu-agent-command {{ item.0 }} '{"execute":"guest-ping"}'
      register: ping
      until: ping.rc == 0
      retries: 90
      delay: 1
      changed_when: false
      loop: GUESTS
"""

CLEANUP = """
- name: Shaping benchmark clean-up
  hosts: cna[0]
  gather_facts: false
  tasks:
    - name: Guests
      kvmfusion.compute.vm: {name: "{{ item.0 }}", state: absent}
      loop: GUESTS
    - name: DVS
      kvmfusion.compute.dvs: {name: bench-sh, state: absent, force: true}
"""


def lab():
    inv = subprocess.run([os.path.join(ROOT, "tools", "lab"), "inventory"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return inv


def play(text, inventory, tmp):
    # beside the integration targets: setup_test_guest finds the builder relative to the playbook
    path = os.path.join(ROOT, "tests", "integration", ".bench-shaping-%s.yml" % os.path.basename(tmp))
    with open(path, "w") as f:
        f.write(text.replace("GUESTS", json.dumps([list(g) for g in GUESTS])).replace("ROOT", ROOT))
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"],
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"), ANSIBLE_HOST_KEY_CHECKING="False")
    try:
        res = subprocess.run(["ansible-playbook", "-i", inventory, path], capture_output=True, text=True, env=env,
                             check=False)
    finally:
        os.unlink(path)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:])
        raise SystemExit("play failed")


def guest(host, vm, command, timeout=300):
    """Run ``command`` in guest ``vm`` on lab host ``host`` (guest_exec.py over SSH); its stdout."""
    key = "/srv/kvmfusion-lab/ssh/id_ed25519"
    ssh = ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
           "LogLevel=ERROR", "root@" + host,
           # one word for the remote shell: the command must run in the guest, never on the CNA
           " ".join(shlex.quote(w) for w in ["/usr/bin/python3", "-", vm, command, str(timeout)])]
    with open(EXEC) as f:
        res = subprocess.run(ssh, stdin=f, capture_output=True, text=True, check=False, timeout=timeout + 30)
    if res.returncode != 0:
        raise SystemExit("guest %s: %s failed (%d): %s" % (vm, command, res.returncode, res.stdout + res.stderr))
    return res.stdout


def send(host, sender, receiver, rx_ip, megabytes):
    """Seconds the sender took to push ``megabytes`` MiB to the receiver (timed inside the sender)."""
    # busybox nc ends at the first EOF it sees: the listener's stdin stays open (sleep), or it would close
    # its side at once and cut the transfer short
    guest(host, receiver, "killall nc 2>/dev/null; setsid sh -c 'sleep 900 | nc -l -p 5001 > /dev/null' "
                          "</dev/null >/dev/null 2>&1 &")
    out = guest(host, sender, "a=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero bs=65536 count=%d 2>/dev/null "
                              "| nc %s 5001; b=$(cut -d' ' -f1 /proc/uptime); echo $a $b" % (megabytes * 16, rx_ip))
    a, b = (float(x) for x in out.split()[-2:])
    return b - a


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--average", type=float, default=20.0, help="Mbit/s")
    ap.add_argument("--megabytes", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--direction", choices=["outbound", "inbound"], default="outbound",
                    help="outbound: the shaped guest sends (the seed's send shaping); inbound: it receives")
    a = ap.parse_args()
    inventory = lab()
    host = "10.77.0.11"
    tmp = tempfile.mkdtemp(prefix="bench-shaping-")
    setup = SETUP.replace("AVG", repr(a.average)).replace("BURST", repr(a.average * 0.25)).replace(
        "DIRECTION", a.direction)
    # outbound: each sender in turn to the receiver on the unshaped group; inbound: the unshaped sender to the
    # receiver on the unshaped group, then to the guest on the shaped group
    pairs = ((("fast", "bench-sh-fast", "bench-sh-rx", "192.168.78.1"), ("slow", "bench-sh-slow", "bench-sh-rx", "192.168.78.1"))
             if a.direction == "outbound" else
             (("fast", "bench-sh-fast", "bench-sh-rx", "192.168.78.1"), ("slow", "bench-sh-fast", "bench-sh-slow", "192.168.78.3")))
    rates = {"fast": [], "slow": []}
    try:
        play(setup, inventory, tmp)
        for name, _pg, ip in GUESTS:
            guest(host, name, "killall udhcpc 2>/dev/null; ip addr flush dev eth0; ip link set eth0 up; "
                              "ip addr add %s/24 dev eth0" % ip)
        guest(host, "bench-sh-fast", "ping -c 2 -W 2 192.168.78.1 >/dev/null")
        guest(host, "bench-sh-slow", "ping -c 2 -W 2 192.168.78.1 >/dev/null")
        bits = a.megabytes * 1048576 * 8.0
        for r in range(a.rounds):
            for key, vm, rx, rx_ip in pairs:
                secs = send(host, vm, rx, rx_ip, a.megabytes)
                rates[key].append(bits / secs / 1e6)
            print("round %d: unshaped %.1f Mbit/s, shaped %.1f Mbit/s" % (r + 1, rates["fast"][-1], rates["slow"][-1]),
                  flush=True)
    finally:
        play(CLEANUP, inventory, tmp)
    fast, slow = statistics.median(rates["fast"]), statistics.median(rates["slow"])
    print("method: medians of %d rounds of %d MiB each, senders alternating; timed inside the sender" % (
        a.rounds, a.megabytes))
    print("unshaped (baseline): %.1f Mbit/s" % fast)
    print("shaped (%s) to %.1f Mbit/s: %.1f Mbit/s -> %.3fx the configured average (target 0.9-1.1x), %.3fx the baseline"
          % (a.direction, a.average, slow, slow / a.average, slow / fast))
    if fast < a.average * 1.5:
        print("note: the unshaped rate is not well above the average: the figure says little about the shaping")


if __name__ == "__main__":
    main()
