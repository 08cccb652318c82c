# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local multi-host lab: N Debian "hosts" on this one machine.

Each host is a network namespace plus fresh pid/mount/uts/ipc/cgroup namespaces in
which the machine's own systemd boots as PID 1, with private /etc, /var (overlays of the machine's), /root
(a fresh Debian root home, not the machine's), private /run, /tmp, /dev/shm, its own machine-id, MAC, libvirt host UUID,
SSH host key and cgroup subtree.  /usr and /boot are the machine's, read-only, unless the host is given its
own (overlays like /etc); the rest of the machine's root is read-only to every host.  With its own /usr
the cna role may install another generation of the virtualization stack there
(``--stack cna2=backports``) without touching the machine's packages.  Lab hosts reach the
machine's package mirrors through NAT, as real hosts reach theirs.  Hosts share one bridge (10.77.0.0/24) and one
directory mounted at the same path everywhere (the shared datastore).  The lab writes
an Ansible inventory so that playbooks reach lab hosts over SSH exactly as real hosts.

    tools/lab up [--cna N] [--vrm N] [--own-usr HOST]... [--stack HOST=STACK]... [--only HOST]...
                                       idempotent; boots what is missing (with --only: only HOST)
    tools/lab down                     removes every trace (processes, mounts, netns, links, rules, state)
    tools/lab status [--json]          what is up
    tools/lab ssh HOST [CMD...]        a shell or command on a lab host
    tools/lab inventory                path of the generated inventory

State lives in $KVMF_LAB_DIR (default /srv/kvmfusion-lab): outside /etc, /var, /root
and /tmp, because those are the lower layers or private mounts of every host.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
LAB_DIR = os.environ.get("KVMF_LAB_DIR", "/srv/kvmfusion-lab")
BRIDGE = "kvmflab0"
BRIDGE_MAC = "02:6b:76:6d:66:01"  # locally administered, fixed: see network_up
# The second bridge: the "physical switch" DVS uplinks plug into. No address; it carries the VMs'
# VLAN-tagged frames between hosts (a Linux bridge without VLAN filtering forwards tags as they are).
UNDERLAY = "kvmflab1"
UNDERLAY_MAC = "02:6b:76:6d:66:02"
UNDERLAY_PREFIX = "kvmfu-"
UNDERLAY_NIC = "eth1"
SUBNET = ipaddress.ip_network("10.77.0.0/24")
GATEWAY = "10.77.0.1"
SHARED_MOUNTPOINT = "/var/lib/kvmfusion/shared"
NETNS_PREFIX = "kvmf-"
IPT_COMMENT = "kvmfusion-lab"
# The cna role's cna_virt_stack values (roles/cna/meta/argument_specs.yml).
STACKS = ("stock", "backports")
BOOT_TIMEOUT = 60
# The lab hosts' BMC (tools/lab_bmc.py): one Redfish service on the bridge address, an account per host.
BMC_PORT = 8443

# Units of the machine image a lab host must not run: they touch the real hardware or
# kernel (udev, sysctl, modules, clocks, consoles), belong to the machine itself
# (databases, cluster stacks started later by roles), or are periodic noise.
MASKED_UNITS = [
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service", "systemd-hwdb-update.service",
    "systemd-sysctl.service", "systemd-modules-load.service", "kmod-static-nodes.service",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
    "systemd-timesyncd.service", "systemd-networkd.service", "systemd-networkd.socket",
    "systemd-resolved.service", "networking.service", "ifupdown-pre.service",
    "getty@tty1.service", "serial-getty@ttyS0.service", "console-getty.service", "getty.target",
    "systemd-remount-fs.service", "systemd-fsck-root.service", "systemd-pstore.service",
    "systemd-firstboot.service", "systemd-machine-id-commit.service",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount", "dev-mqueue.mount",
    "systemd-journald-audit.socket", "swap.target",
    "postgresql.service",
    "docker.service", "docker.socket", "containerd.service", "uuidd.socket", "tgt.service",
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "fstrim.timer", "logrotate.timer", "man-db.timer",
    "lvm2-monitor.service", "lvm2-lvmpolld.socket", "dm-event.socket", "blk-availability.service",
    "iscsid.socket", "iscsid.service", "open-iscsi.service", "multipathd.service", "multipathd.socket",
    "rpcbind.service", "rpcbind.socket", "nfs-server.service", "remote-fs.target",
]

# Services the machine image may have enabled (Debian's corosync starts a one-node cluster on install, cockpit's
# socket listens as soon as it is installed): masked when a host is made, and then left to the host, whose roles
# turn them on (the cna role's HA cluster, the vrm role's arbiter and web console); a host that reboots (its BMC)
# keeps them as its roles left them.
ROLE_UNITS = ["corosync.service", "pacemaker.service", "corosync-qdevice.service", "corosync-qnetd.service",
              "cockpit.socket"]


class LabError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, capture=True, input=None, timeout=60):
    res = subprocess.run(cmd, input=input, text=True, timeout=timeout, check=False,
                         stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.PIPE if capture else None)
    if check and res.returncode != 0:
        err = (res.stderr or res.stdout or "").strip().replace("\n", " ")
        raise LabError(f"{' '.join(cmd)}: exit {res.returncode}: {err}")
    return res


def write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    # created with its final mode (a 0600 file is never readable by others, not even while it is written)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, mode)  # whatever the umask
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- layout
def host_plan(n_cna: int, n_vrm: int) -> list[dict]:
    hosts = []
    for i in range(1, n_cna + 1):
        hosts.append({"name": f"cna{i}", "group": "cna", "index": 10 + i})
    for i in range(1, n_vrm + 1):
        hosts.append({"name": f"vrm{i}", "group": "vrm", "index": 50 + i})
    for h in hosts:
        h["ip"] = str(SUBNET.network_address + h["index"])
        h["mac"] = "02:77:00:00:00:%02x" % h["index"]
        h["netns"] = NETNS_PREFIX + h["name"]
        h["veth"] = NETNS_PREFIX + h["name"]
        h["uveth"] = UNDERLAY_PREFIX + h["name"]
        h["umac"] = "02:77:01:00:00:%02x" % h["index"]
        h["dir"] = os.path.join(LAB_DIR, "hosts", h["name"])
    return hosts


def load_state() -> dict:
    try:
        with open(os.path.join(LAB_DIR, "state.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save_state(state: dict) -> None:
    write(os.path.join(LAB_DIR, "state.json"), json.dumps(state, indent=2) + "\n")


# ---------------------------------------------------------------------------- network
def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout or ""
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ipt_rules() -> list[list[str]]:
    return [
        ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT", "-m", "comment", "--comment", IPT_COMMENT],
        ["INPUT", "-i", BRIDGE, "-j", "ACCEPT", "-m", "comment", "--comment", IPT_COMMENT],
        ["FORWARD", "-i", UNDERLAY, "-o", UNDERLAY, "-j", "ACCEPT", "-m", "comment", "--comment", IPT_COMMENT],
        # the way out to the machine's package mirrors (NAT), and the answers back
        ["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-s", str(SUBNET), "-j", "ACCEPT",
         "-m", "comment", "--comment", IPT_COMMENT],
        ["FORWARD", "-o", BRIDGE, "-d", str(SUBNET), "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
         "-j", "ACCEPT", "-m", "comment", "--comment", IPT_COMMENT],
    ]


def nat_rules() -> list[list[str]]:
    return [["POSTROUTING", "-s", str(SUBNET), "!", "-o", BRIDGE, "-j", "MASQUERADE",
             "-m", "comment", "--comment", IPT_COMMENT]]


IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def network_up() -> None:
    for br, mac in ((BRIDGE, BRIDGE_MAC), (UNDERLAY, UNDERLAY_MAC)):
        if not link_exists(br):
            run(["ip", "link", "add", br, "type", "bridge"])
        # A bridge without an address of its own takes its lowest port's, and a new one when that port goes: a
        # killed host's port taking the gateway's (and the BMC's) MAC with it left the survivors' ARP caches stale
        # for up to a minute, and their fence agent (fence_redfish: no request timeout) hung until pacemaker's 60 s
        # timeout. A set address stays (addr_assign_type 3).
        run(["ip", "link", "set", br, "address", mac])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]).stdout
    if f"{GATEWAY}/" not in addrs:
        run(["ip", "addr", "add", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    run(["ip", "link", "set", UNDERLAY, "up"])
    # Bridged lab traffic passes this namespace's FORWARD chain (bridge-nf-call-iptables).
    for rule in ipt_rules():
        if run(["iptables", "-C"] + rule, check=False).returncode != 0:
            run(["iptables", "-I"] + rule)
    for rule in nat_rules():
        if run(["iptables", "-t", "nat", "-C"] + rule, check=False).returncode != 0:
            run(["iptables", "-t", "nat", "-I"] + rule)
    # routing on for the lab's life; 'down' puts back what the machine had
    saved = os.path.join(LAB_DIR, "ip_forward.orig")
    if not os.path.exists(saved):
        write(saved, open(IP_FORWARD).read())
    with open(IP_FORWARD, "w") as f:
        f.write("1\n")


def network_down() -> None:
    for rule in ipt_rules():
        while run(["iptables", "-C"] + rule, check=False).returncode == 0:
            run(["iptables", "-D"] + rule)
    for rule in nat_rules():
        while run(["iptables", "-t", "nat", "-C"] + rule, check=False).returncode == 0:
            run(["iptables", "-t", "nat", "-D"] + rule)
    saved = os.path.join(LAB_DIR, "ip_forward.orig")
    if os.path.exists(saved):
        with open(IP_FORWARD, "w") as f:
            f.write(open(saved).read())
        os.remove(saved)
    for br in (BRIDGE, UNDERLAY):
        if link_exists(br):
            run(["ip", "link", "del", br])


def host_net_up(h: dict) -> None:
    if h["netns"] not in netns_list():
        run(["ip", "netns", "add", h["netns"]])
    ns = ["ip", "-n", h["netns"]]
    if run(ns + ["link", "show", "dev", "eth0"], check=False).returncode != 0:
        if link_exists(h["veth"]):
            run(["ip", "link", "del", h["veth"]])
        run(["ip", "link", "add", h["veth"], "type", "veth", "peer", "name", "eth0",
             "netns", h["netns"]])
    run(ns + ["link", "set", "eth0", "address", h["mac"]])
    addrs = run(ns + ["-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    if f"{h['ip']}/" not in addrs:
        run(ns + ["addr", "add", f"{h['ip']}/{SUBNET.prefixlen}", "dev", "eth0"])
    run(ns + ["link", "set", "lo", "up"])
    run(ns + ["link", "set", "eth0", "up"])
    run(ns + ["route", "replace", "default", "via", GATEWAY])
    run(["ip", "link", "set", h["veth"], "master", BRIDGE])
    run(["ip", "link", "set", h["veth"], "up"])
    # the underlay NIC: no address, a DVS takes it as an uplink
    if run(ns + ["link", "show", "dev", UNDERLAY_NIC], check=False).returncode != 0:
        if link_exists(h["uveth"]):
            run(["ip", "link", "del", h["uveth"]])
        run(["ip", "link", "add", h["uveth"], "type", "veth", "peer", "name", UNDERLAY_NIC, "netns", h["netns"]])
    run(ns + ["link", "set", UNDERLAY_NIC, "address", h["umac"]])
    run(ns + ["link", "set", UNDERLAY_NIC, "up"])
    run(["ip", "link", "set", h["uveth"], "master", UNDERLAY])
    run(["ip", "link", "set", h["uveth"], "up"])


def host_net_down(h: dict) -> None:
    if h["netns"] in netns_list():
        run(["ip", "netns", "del", h["netns"]], check=False)
    for link in (h["veth"], h.get("uveth")):
        if link and link_exists(link):
            run(["ip", "link", "del", link], check=False)


# ---------------------------------------------------------------------------- identity
def host_layers(h: dict) -> list[str]:
    """The directories a host sees through an overlay of its own (the rest of the machine's are shared)."""
    # A package install writes /boot too (initramfs triggers): a host with its own /usr gets its own /boot.
    return ["etc", "var", "root"] + (["usr"] + (["boot"] if os.path.isdir("/boot") else []) if h.get("own_usr") else [])


def root_home(d: str) -> None:
    """The lower layer of the host's /root: the root home of a freshly installed Debian (base-files' dot files),
    not the machine's. The machine's /root is somebody's home: its shell start-up files (a pyenv or cargo set-up
    that every SSH command of Ansible would run, about 0.14 s each here) and its credentials are not a host's."""
    lower = os.path.join(d, "root.lower")
    os.chmod(os.path.join(d, "root.upper"), 0o700)  # the merged /root takes its mode from here: Debian's is 0700
    if os.path.isdir(lower):
        return
    tmp = lower + ".new"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700)
    for name in ("bashrc", "profile"):
        src = f"/usr/share/base-files/dot.{name}"
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(tmp, "." + name))
            os.chmod(os.path.join(tmp, "." + name), 0o644)
    os.rename(tmp, lower)


def mask_units(d: str) -> None:
    """Mask in the host's /etc the machine's units a lab host must not run (MASKED_UNITS, at every boot), and the
    cluster units (ROLE_UNITS) once, when the host is made: after that they are the host's roles' to turn on, and
    stay on across a power cycle by the host's BMC."""
    unitdir = os.path.join(d, "etc.upper", "systemd/system")
    os.makedirs(unitdir, exist_ok=True)
    made = os.path.join(d, "role-units-masked")
    for unit in MASKED_UNITS + (ROLE_UNITS if not os.path.exists(made) else []):
        p = os.path.join(unitdir, unit)
        if not os.path.islink(p):
            if os.path.exists(p):
                os.remove(p)
            os.symlink("/dev/null", p)
    write(made, "the cluster units were masked when the host was made; its roles own them since\n")


def ssh_material() -> dict:
    d = os.path.join(LAB_DIR, "ssh")
    key = os.path.join(d, "id_ed25519")
    if not os.path.exists(key):
        os.makedirs(d, mode=0o700, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kvmfusion-lab", "-f", key])
    return {"key": key, "pub": open(key + ".pub").read().strip(), "known_hosts": os.path.join(d, "known_hosts")}


def host_identity(h: dict, write_files: bool = True) -> None:
    """Write the host's identity into its /etc and /root upper layers (before boot); with ``write_files`` False
    (a running host) only read it."""
    d = h["dir"]
    if not write_files:
        h.update(json.load(open(os.path.join(d, "identity.json"))))
        h["host_key"] = open(os.path.join(d, "etc.upper", "ssh/ssh_host_ed25519_key.pub")).read().split()[:2]
        return
    for layer in host_layers(h):
        os.makedirs(os.path.join(d, f"{layer}.upper"), exist_ok=True)
        os.makedirs(os.path.join(d, f"{layer}.work"), exist_ok=True)
    root_home(d)
    etc = os.path.join(d, "etc.upper")
    idfile = os.path.join(d, "identity.json")
    if os.path.exists(idfile):
        ident = json.load(open(idfile))
    else:
        mid = uuid.uuid4().hex
        ident = {"machine_id": mid, "host_uuid": str(uuid.UUID(mid))}
        write(idfile, json.dumps(ident) + "\n")
    h.update(ident)
    write(os.path.join(etc, "machine-id"), ident["machine_id"] + "\n", 0o444)
    write(os.path.join(etc, "hostname"), h["name"] + "\n")
    # D-Bus (and Ansible's machine_id fact) read this copy first.
    dbus_mid = os.path.join(d, "var.upper", "lib/dbus/machine-id")
    os.makedirs(os.path.dirname(dbus_mid), exist_ok=True)
    if not os.path.islink(dbus_mid):
        if os.path.exists(dbus_mid):
            os.remove(dbus_mid)
        os.symlink("/etc/machine-id", dbus_mid)
    write(os.path.join(etc, "fstab"), "# lab host: nothing to mount; see tools/lab-init\n")
    # Keep the MAC the lab assigned (udev is masked too; this is belt and braces).
    write(os.path.join(etc, "systemd/network/99-kvmfusion-lab.link"),
          "[Match]\nOriginalName=*\n\n[Link]\nMACAddressPolicy=none\n")
    mask_units(d)
    # A lab host boots no kernel of its own: package triggers need not build initramfs images (about 25 s each
    # time a stack generation is installed; they would land in the host's own /boot, see host_layers).
    write(os.path.join(etc, "initramfs-tools/update-initramfs.conf"),
          "# lab host (tools/lab): no kernel of its own boots here\nupdate_initramfs=no\nbackup_initramfs=no\n")
    # libvirt would take the host UUID from SMBIOS, which every lab host shares.
    base = open("/etc/libvirt/libvirtd.conf").read() if os.path.exists("/etc/libvirt/libvirtd.conf") else ""
    lines = [ln for ln in base.splitlines() if not ln.strip().startswith("host_uuid")]
    lines.append(f'host_uuid = "{ident["host_uuid"]}"')
    write(os.path.join(etc, "libvirt/libvirtd.conf"), "\n".join(lines) + "\n")
    # SSH host key of its own.
    hk = os.path.join(etc, "ssh/ssh_host_ed25519_key")
    if not os.path.exists(hk):
        os.makedirs(os.path.dirname(hk), exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{h['name']}", "-f", hk])
    write(os.path.join(etc, "ssh/sshd_config.d/kvmfusion-lab.conf"),
          "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\n"
          "UseDNS no\nPasswordAuthentication no\n")
    h["host_key"] = open(hk + ".pub").read().split()[:2]


def write_shared_files(hosts: list[dict], ssh: dict, only: set | None = None) -> None:
    """The controller's known_hosts, and each host's hosts/known_hosts/root SSH files.

    Only hosts in ``only`` (all when None) get theirs: a running host's overlay upper dirs are not written
    under it (overlayfs then answers ESTALE, and the cna role's authorized_keys would be clobbered).
    """
    hosts_lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                   f"{GATEWAY}\tlab-controller"]
    hosts_lines += [f"{h['ip']}\t{h['name']}" for h in hosts]
    known = [f"{h['name']},{h['ip']} {' '.join(h['host_key'])}" for h in hosts]
    write(ssh["known_hosts"], "\n".join(known) + "\n")
    priv = open(ssh["key"]).read()
    for h in hosts:
        if only is not None and h["name"] not in only:
            continue
        etc = os.path.join(h["dir"], "etc.upper")
        write(os.path.join(etc, "hosts"), "\n".join(hosts_lines + [f"127.0.1.1\t{h['name']}"]) + "\n")
        write(os.path.join(etc, "ssh/ssh_known_hosts"), "\n".join(known) + "\n")
        root = os.path.join(h["dir"], "root.upper", ".ssh")
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)
        write(os.path.join(root, "authorized_keys"), ssh["pub"] + "\n", 0o600)
        write(os.path.join(root, "id_ed25519"), priv, 0o600)
        write(os.path.join(root, "id_ed25519.pub"), ssh["pub"] + "\n", 0o644)


def write_inventory(hosts: list[dict], ssh: dict, bmc_users: dict) -> str:
    path = os.path.join(LAB_DIR, "inventory.yml")
    lines = ["---", "# Written by tools/lab up. Do not edit: rewritten on every up.", "all:", "  children:"]
    for group in ("cna", "vrm"):
        members = [h for h in hosts if h["group"] == group]
        lines.append(f"    {group}:")
        if not members:
            lines.append("      hosts: {}")
            continue
        lines.append("      hosts:")
        for h in members:
            lines.append(f"        {h['name']}:")
            lines.append(f"          ansible_host: {h['ip']}")
            lines.append(f"          kvmfusion_lab_own_usr: {'true' if h.get('own_usr') else 'false'}")
            # its network namespace on the controller: tests cut its cables there (ip -n NETNS link set eth0 down)
            lines.append(f"          kvmfusion_lab_netns: {h['netns']}")
            if h.get("stack"):
                lines.append(f"          cna_virt_stack: {h['stack']}")
            # The host's BMC (tools/lab_bmc.py), as a real server's would be given to the cna role's fencing.
            cred = bmc_users[h["name"]]
            lines.append("          kvmfusion_lab_bmc:")
            lines.append(f"            address: {GATEWAY}")
            lines.append(f"            port: {BMC_PORT}")
            lines.append(f"            username: {json.dumps(cred['user'])}")
            lines.append(f"            password: {json.dumps(cred['password'])}")  # quoted: always a YAML string
            lines.append(f"            systems_uri: /redfish/v1/Systems/{h['name']}")
    lines += [
        "  vars:",
        "    ansible_user: root",
        "    ansible_python_interpreter: /usr/bin/python3",
        f"    ansible_ssh_private_key_file: {ssh['key']}",
        "    ansible_ssh_common_args: >-",
        f"      -o UserKnownHostsFile={ssh['known_hosts']} -o StrictHostKeyChecking=yes",
        "      -o ControlMaster=auto -o ControlPersist=120s",
        "    kvmfusion_lab: true",
        f"    kvmfusion_shared_datastore_path: {SHARED_MOUNTPOINT}",
    ]
    write(path, "\n".join(lines) + "\n", mode=0o600)  # it holds the BMC passwords
    return path


# ---------------------------------------------------------------------------- cgroups
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                  "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc")


def cgroup_layout() -> tuple[list[str], list[tuple[str, str]]]:
    """(v1 hierarchy names for lab-init, [(mountpoint, our current path)] to create subtrees in)."""
    mounts = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            if fstype == "cgroup":
                for o in opts.split(","):
                    if o.startswith("name=") or o in V1_CONTROLLERS:
                        mounts[o] = mnt
            elif fstype == "cgroup2":
                mounts[""] = mnt
    hierarchies, dirs = [], []
    with open("/proc/self/cgroup") as f:
        for line in f:
            ctrls, path = line.rstrip("\n").split(":", 2)[1:]
            key = ctrls.split(",")[0]
            if key not in mounts:
                continue
            if key:
                hierarchies.append(ctrls if not ctrls.startswith("name=") else ctrls)
            dirs.append((mounts[key], path))
    return hierarchies, dirs


def cgroup_dirs_for(name: str) -> list[str]:
    dirs = cgroup_layout()[1]
    out = []
    for mnt, path in dirs:
        d = os.path.join(mnt, path.lstrip("/"), f"kvmflab-{name}")
        if not os.path.isdir(d):
            os.mkdir(d)
            parent = os.path.dirname(d)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                src = os.path.join(parent, knob)
                if os.path.exists(src) and os.path.exists(os.path.join(d, knob)):
                    with open(src) as s, open(os.path.join(d, knob), "w") as t:
                        t.write(s.read())
        out.append(d)
    return out


def _cgroup_mounts() -> list[str]:
    with open("/proc/self/mounts") as f:
        return sorted({line.split()[1] for line in f if line.split()[2] in ("cgroup", "cgroup2")})


def _lab_cgroups(name: str = "") -> list[str]:
    """Every lab cgroup on the machine, not only under our own path: a lab whose runner was killed (a CI job
    cut off, a session ended) left its subtrees under that runner's cgroup, which 'down' must clear too."""
    prefix = f"kvmflab-{name}" if name else "kvmflab-"
    found = []
    for mnt in _cgroup_mounts():
        for base, dirs, _files in os.walk(mnt):
            hits = [d for d in dirs if (d == prefix if name else d.startswith(prefix))]
            found += [os.path.join(base, d) for d in hits]
            # never into a lab host's own tree (systemd's), and not deeper than a runner's cgroup can be
            dirs[:] = [] if base.count("/") - mnt.count("/") > 6 else [d for d in dirs if not d.startswith("kvmflab-")]
    return found


def cgroup_remove(name: str = "") -> None:
    """Remove a host's cgroups (every host's without a name) wherever they are, children first (systemd and
    libvirt inside the host made them). A cgroup with a process left in it stays, and 'down' reports it."""
    for d in _lab_cgroups(name):
        for root in sorted((w[0] for w in os.walk(d)), key=lambda r: -r.count("/")):
            try:
                os.rmdir(root)
            except OSError:
                pass


# ---------------------------------------------------------------------------- hosts
def host_pid1(h: dict, state: dict) -> int | None:
    pid = state.get("hosts", {}).get(h["name"], {}).get("pid1")
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        with open(f"/proc/{pid}/status") as f:
            zombie = "State:\tZ" in f.read()
    except FileNotFoundError:
        return None
    if zombie or b"systemd" not in cmd:
        return None
    return pid


def in_host(pid: int, cmd: list[str], timeout=30, check=False):
    return run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-C", "--"] + cmd,
               check=check, timeout=timeout)


def host_boot(h: dict) -> int:
    hierarchies = cgroup_layout()[0]
    cg = cgroup_dirs_for(h["name"])
    shared = os.path.join(LAB_DIR, "shared")
    os.makedirs(shared, exist_ok=True)

    def enter_cgroups():
        for d in cg:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    console = open(os.path.join(h["dir"], "console.log"), "ab")
    cmd = ["ip", "netns", "exec", h["netns"],
           "unshare", "--pid", "--mount", "--uts", "--ipc", "--cgroup", "--fork", "--mount-proc",
           os.path.join(HERE, "lab-init"), h["name"], h["dir"], shared, SHARED_MOUNTPOINT,
           " ".join(hierarchies), " ".join(host_layers(h))]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                            start_new_session=True, preexec_fn=enter_cgroups)
    # unshare --fork: its child is the host's PID 1.
    for _attempt in range(100):
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                kids = f.read().split()
        except FileNotFoundError:
            kids = []
        if kids:
            return int(kids[0])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise LabError(f"host {h['name']} did not start; see {h['dir']}/console.log")


def wait_booted(h: dict, pid: int, deadline: float) -> str:
    state = ""
    while time.time() < deadline:
        res = in_host(pid, ["systemctl", "is-system-running"], timeout=10)
        state = (res.stdout or "").strip()
        if state in ("running", "degraded"):
            break
        time.sleep(0.3)
    else:
        raise LabError(f"host {h['name']} did not finish booting (systemd says {state or 'nothing'}); "
                       f"see {h['dir']}/console.log")
    while time.time() < deadline:
        try:
            with socket.create_connection((h["ip"], 22), timeout=1):
                return state
        except OSError:
            time.sleep(0.2)
    raise LabError(f"host {h['name']}: sshd does not answer on {h['ip']}:22")


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until the pids are reaped (not merely dead): zombies still pin their cgroups."""
    deadline = time.time() + timeout
    left = [p for p in pids if p]
    while left and time.time() < deadline:
        left = [p for p in left if os.path.exists(f"/proc/{p}")]
        if left:
            time.sleep(0.1)
    return left


def kill_host(h: dict, state: dict) -> list[int]:
    """Power the host off hard; returns pids that were not reaped in time."""
    info = state.get("hosts", {}).get(h["name"], {})
    pid, launcher = host_pid1(h, state), info.get("launcher")
    # Power loss: SIGKILL to the namespace's PID 1 ends every process in it; the
    # launcher (unshare) then exits and the machine's init reaps both.
    for p in (pid, launcher):
        if p:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    left = _wait_gone([info.get("pid1"), launcher], 30)
    cgroup_remove(h["name"])
    return left


# ---------------------------------------------------------------------------- BMC
def bmc_dir() -> str:
    return os.path.join(LAB_DIR, "bmc")


def bmc_alive(state: dict) -> bool:
    pid = (state.get("bmc") or {}).get("pid")
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"lab_bmc.py" in f.read()
    except OSError:
        return False


def bmc_up(hosts: list[dict], state: dict) -> dict:
    """The BMC service for these hosts (started, or restarted when a host has no account yet); their accounts."""
    d = bmc_dir()
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    users_path = os.path.join(d, "users.json")
    try:
        with open(users_path) as f:
            users = json.load(f)
    except FileNotFoundError:
        users = {}
    new = [h["name"] for h in hosts if h["name"] not in users]
    for name in new:
        users[name] = {"user": f"bmc-{name}", "password": secrets.token_urlsafe(18)}
    if new:
        write(users_path, json.dumps(users, indent=2, sort_keys=True) + "\n", mode=0o600)
    if not os.path.exists(os.path.join(d, "cert.pem")):
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=kvmfusion-lab-bmc",
             "-addext", f"subjectAltName=IP:{GATEWAY}", "-keyout", os.path.join(d, "key.pem"),
             "-out", os.path.join(d, "cert.pem")])
        os.chmod(os.path.join(d, "key.pem"), 0o600)
    if bmc_alive(state) and not new:
        return users
    bmc_down(state)  # a running service learns new accounts by a restart
    if _bmc_answers():
        raise LabError(f"port {BMC_PORT} on {GATEWAY} is taken by another process: the lab BMC cannot start")
    errfd = os.open(os.path.join(d, "stderr.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "lab_bmc.py"), "serve", "--dir", d, "--listen",
                                 GATEWAY, "--port", str(BMC_PORT), "--lab", os.path.join(HERE, "lab.py")],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfd, start_new_session=True)
    finally:
        os.close(errfd)
    deadline = time.time() + 10
    while not _bmc_answers():
        if proc.poll() is not None or time.time() > deadline:
            raise LabError(f"the lab BMC did not start: see {os.path.join(d, 'stderr.log')}")
        time.sleep(0.2)
    state["bmc"] = {"pid": proc.pid, "address": GATEWAY, "port": BMC_PORT}
    return users


def _bmc_answers() -> bool:
    try:
        with socket.create_connection((GATEWAY, BMC_PORT), timeout=1):
            return True
    except OSError:
        return False


def bmc_down(state: dict) -> None:
    """Stop the BMC and whatever it runs (a power-on in progress is a 'tools/lab up' in its process group)."""
    if bmc_alive(state):
        pid = state["bmc"]["pid"]
        group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid]
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _wait_gone(group, 10)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


# ---------------------------------------------------------------------------- commands
def lab_lock() -> int:
    """One 'up', 'down' or 'kill' at a time (a person's, CI's and the BMC's power changes), held until exit.

    The lock is on the directory that holds the lab's state directory (no lock file: 'down' leaves nothing)."""
    parent = os.path.dirname(os.path.abspath(LAB_DIR))
    os.makedirs(parent, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def cmd_up(args) -> int:
    t0 = time.time()
    if os.geteuid() != 0:
        raise LabError("lab up must run as root")
    for tool in ("ip", "unshare", "nsenter", "iptables", "ssh-keygen"):
        if not shutil.which(tool):
            raise LabError(f"missing tool {tool!r}: run ./dev setup (apt packages) first")
    if not os.path.exists("/lib/systemd/systemd"):
        raise LabError("/lib/systemd/systemd not found: lab hosts boot the machine's own systemd")
    state = load_state()
    old = state.get("layout")
    want = {"cna": args.cna, "vrm": args.vrm}
    if old and old != want and any(host_pid1(h, state) for h in host_plan(old["cna"], old["vrm"])):
        raise LabError(f"lab is up with {old}; run 'tools/lab down' before changing its size to {want}")
    hosts = host_plan(args.cna, args.vrm)
    names = [h["name"] for h in hosts]
    # per-host options are kept in the state: a later plain 'up' (or one after 'kill') keeps them
    opts = state.get("options", {})
    asked = {}
    for name in args.own_usr:
        for n in (names if name == "all" else [name]):
            asked.setdefault(n, {})["own_usr"] = True
    for spec in args.stack:
        name, _sep, stack = spec.partition("=")
        if stack not in STACKS:
            raise LabError(f"--stack {spec}: the stack must be one of {', '.join(STACKS)}")
        for n in (names if name == "all" else [name]):
            asked.setdefault(n, {}).update(own_usr=True, stack=stack)
    for n, o in asked.items():
        if n not in names:
            raise LabError(f"--own-usr/--stack: no lab host {n!r} (hosts: {', '.join(names)})")
        h = next(x for x in hosts if x["name"] == n)
        if o.get("own_usr") and not opts.get(n, {}).get("own_usr") and host_pid1(h, state):
            raise LabError(f"{n} is running on the machine's /usr: 'tools/lab kill {n}' first, then 'up' gives it its own")
        opts.setdefault(n, {}).update(o)
    for n in args.only:
        if n not in names:
            raise LabError(f"--only: no lab host {n!r} (hosts: {', '.join(names)})")
    for h in hosts:
        h.update(opts.get(h["name"], {}))
    state["options"] = opts
    os.makedirs(LAB_DIR, exist_ok=True)
    os.chmod(LAB_DIR, 0o755)
    ssh = ssh_material()
    network_up()
    # identity and shared files go into the overlays of hosts that are off, never under a running one
    off = set(h["name"] for h in hosts if not host_pid1(h, state))
    booting = set(n for n in off if not args.only or n in args.only)
    for h in hosts:
        host_identity(h, write_files=h["name"] in off)
    write_shared_files(hosts, ssh, only=booting)
    state.setdefault("hosts", {})
    state["layout"] = want
    booted = []
    for h in hosts:
        host_net_up(h)
        if h["name"] not in booting:
            continue
        pid = host_boot(h)
        launcher_pid = int(open(f"/proc/{pid}/stat").read().split()[3])
        state["hosts"][h["name"]] = {"pid1": pid, "launcher": launcher_pid, "ip": h["ip"]}
        save_state(state)
        booted.append((h, pid))
    deadline = time.time() + BOOT_TIMEOUT
    for h, pid in booted:
        st = wait_booted(h, pid, deadline)
        if st == "degraded":
            failed = in_host(pid, ["systemctl", "--failed", "--no-legend", "--plain"]).stdout.strip()
            log(f"{h['name']}: degraded: {failed.replace(chr(10), '; ')}")
    users = bmc_up(hosts, state)
    inv = write_inventory(hosts, ssh, users)
    save_state(state)
    log(f"up: {len(hosts)} hosts ({len(booted)} booted) in {time.time() - t0:.1f}s; inventory {inv}")
    print(inv)
    return 0


def cmd_kill(args) -> int:
    """Power one host off hard (SIGKILL to its PID 1: a power loss); 'up' boots it again with its disks."""
    state = load_state()
    layout = state.get("layout") or {}
    hosts = [h for h in host_plan(layout.get("cna", 0), layout.get("vrm", 0)) if h["name"] == args.host]
    if not hosts:
        raise LabError(f"no lab host {args.host!r}")
    if not host_pid1(hosts[0], state):
        log(f"{args.host}: already off")
        return 0
    left = kill_host(hosts[0], state)
    if left:
        raise LabError(f"{args.host}: pids {left} not reaped after the kill")
    # A power loss also loses the kernel's network state (bridges, taps, routes, firewall): the namespace
    # goes too, and 'up' makes a fresh one, as a rebooted machine starts with a fresh kernel.
    host_net_down(hosts[0])
    log(f"{args.host}: killed (power loss); 'tools/lab up' boots it again")
    return 0


def lab_processes() -> list[str]:
    """Processes still in any lab namespace (or zombies of our launchers)."""
    found = []
    nets = [n for n in netns_list() if n.startswith(NETNS_PREFIX)]
    for n in nets:
        pids = (run(["ip", "netns", "pids", n], check=False).stdout or "").split()
        found += [f"{p} (netns {n})" for p in pids]
    return found


def cmd_down(args) -> int:
    # The BMC first: it must not power a host on while the lab goes (a power-on it started is stopped with it),
    # then the state as that left it.
    bmc_down(load_state())
    state = load_state()
    layout = state.get("layout") or {"cna": 0, "vrm": 0}
    hosts = host_plan(layout.get("cna", 0), layout.get("vrm", 0))
    names = {h["name"] for h in hosts}
    # Anything named like a lab host, even from an interrupted run.
    for n in netns_list():
        if n.startswith(NETNS_PREFIX) and n[len(NETNS_PREFIX):] not in names:
            extra = n[len(NETNS_PREFIX):]
            hosts.append({"name": extra, "netns": n, "veth": n, "uveth": UNDERLAY_PREFIX + extra,
                          "dir": os.path.join(LAB_DIR, "hosts", extra)})
    unreaped = []
    for h in hosts:
        unreaped += kill_host(h, state)
    for n in netns_list():
        if n.startswith(NETNS_PREFIX):
            for p in (run(["ip", "netns", "pids", n], check=False).stdout or "").split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    time.sleep(0.2)
    for h in hosts:
        host_net_down(h)
    network_down()
    leftovers = lab_processes() + [f"{p} (not reaped)" for p in unreaped]
    if os.path.isdir(LAB_DIR):
        shutil.rmtree(LAB_DIR, ignore_errors=True)
    cgroup_remove()
    leftovers += _lab_cgroups()
    if leftovers:
        raise LabError("left behind in lab namespaces: " + ", ".join(leftovers))
    log("down: nothing of the lab is left")
    return 0


def cmd_status(args) -> int:
    state = load_state()
    layout = state.get("layout")
    report = {"lab_dir": LAB_DIR, "bridge": link_exists(BRIDGE), "hosts": []}
    if layout:
        for h in host_plan(layout["cna"], layout["vrm"]):
            pid = host_pid1(h, state)
            entry = {"name": h["name"], "group": h["group"], "ip": h["ip"], "pid1": pid,
                     "netns": h["netns"] in netns_list(), "systemd": None, "ssh": False}
            if pid:
                entry["systemd"] = (in_host(pid, ["systemctl", "is-system-running"], timeout=10).stdout or "").strip()
                try:
                    with socket.create_connection((h["ip"], 22), timeout=1):
                        entry["ssh"] = True
                except OSError:
                    pass
            report["hosts"].append(entry)
        report["inventory"] = os.path.join(LAB_DIR, "inventory.yml")
    up = bool(report["hosts"]) and all(e["ssh"] for e in report["hosts"])
    report["up"] = up
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if not report["hosts"]:
            print("lab: down")
        for e in report["hosts"]:
            print(f"{e['name']:6} {e['group']:4} {e['ip']:12} pid1={e['pid1'] or '-':<8} "
                  f"systemd={e['systemd'] or '-':10} ssh={'up' if e['ssh'] else 'down'}")
    return 0 if up else 3


def cmd_ssh(args) -> int:
    inv = os.path.join(LAB_DIR, "inventory.yml")
    if not os.path.exists(inv):
        raise LabError("the lab is not up (no inventory)")
    state = load_state()
    ip = state.get("hosts", {}).get(args.host, {}).get("ip")
    if not ip:
        raise LabError(f"no lab host {args.host!r}")
    cmd = ["ssh", "-i", os.path.join(LAB_DIR, "ssh/id_ed25519"),
           "-o", f"UserKnownHostsFile={os.path.join(LAB_DIR, 'ssh/known_hosts')}",
           "-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=" + args.host, f"root@{ip}"] + args.command
    os.execvp("ssh", cmd)


def cmd_inventory(args) -> int:
    inv = os.path.join(LAB_DIR, "inventory.yml")
    if not os.path.exists(inv):
        raise LabError("the lab is not up (no inventory)")
    print(inv)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lab", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bring the lab up (idempotent)")
    up.add_argument("--cna", type=int, default=int(os.environ.get("KVMF_LAB_CNA", 2)))
    up.add_argument("--vrm", type=int, default=int(os.environ.get("KVMF_LAB_VRM", 1)))
    up.add_argument("--own-usr", action="append", default=[], metavar="HOST",
                    help="give HOST (or 'all') its own /usr, an overlay of the machine's (kept until down)")
    up.add_argument("--stack", action="append", default=[], metavar="HOST=STACK",
                    help="HOST (or 'all') gets its own /usr and cna_virt_stack=STACK in the inventory "
                         f"({', '.join(STACKS)})")
    up.add_argument("--only", action="append", default=[], metavar="HOST",
                    help="boot only HOST of the hosts that are off (a BMC's power-on); the others stay as they are")
    sub.add_parser("down", help="remove everything the lab created")
    st = sub.add_parser("status", help="show what is up (exit 0 only when every host answers SSH)")
    st.add_argument("--json", action="store_true")
    s = sub.add_parser("ssh", help="ssh to a lab host")
    s.add_argument("host")
    s.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("inventory", help="print the inventory path")
    k = sub.add_parser("kill", help="power one host off hard (a power loss); 'up' boots it again")
    k.add_argument("host")
    args = p.parse_args(argv)
    if args.cmd == "up" and not (1 <= args.cna <= 8 and 0 <= args.vrm <= 2):
        p.error("--cna must be 1..8 and --vrm 0..2")
    if args.cmd in ("up", "down", "kill"):
        lab_lock()
    try:
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "ssh": cmd_ssh,
                "inventory": cmd_inventory, "kill": cmd_kill}[args.cmd](args)
    except (LabError, subprocess.TimeoutExpired) as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
