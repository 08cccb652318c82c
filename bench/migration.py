# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: live migration downtime, a busy guest with auto-converge, and a host evacuation of 10 VMs.

Targets (issue: migration):
  * live migration of an idle guest: reported downtime <= 300 ms (QEMU's default limit); the baseline, in the
    same run, is ``virsh migrate --live --p2p`` of the same VM between the same CNAs (downtime from
    ``virsh domjobinfo --completed`` on the destination);
  * a guest dirtying memory, migrated with auto-converge: completes, with its downtime reported (baseline:
    ``virsh migrate --auto-converge``);
  * the evacuation of 10 VMs by host_maintenance (2 and 4 at a time): total time against the sum of the same
    10 single migrations, measured in the same run.

    python3 bench/migration.py [--rounds 5] [--vms 10]     (root, on the controller; the lab must be up and
                                                             installed: ./dev lab)

Method: runs itself on the first lab CNA (``--inside``), where it drives the collection's own migration code
(module_utils, as the modules do, without Ansible's start-up cost) and virsh. The idle guests are firmware-only
KVM VMs (64 MiB, the cluster CPU model) with a disk on a shared datastore; the busy guest is the test guest
(TCG, 192 MiB) running ``dd`` from /dev/urandom into a 48 MiB tmpfs file in a loop. Each measured move goes from
the first CNA to the second; an unmeasured move brings the VM back. Medians are printed with ratios. Everything
is removed at the end. Never fails on timing; exits non-zero only when a step fails.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_SHARED = os.path.join(os.environ.get("KVMF_LAB_DIR", "/srv/kvmfusion-lab"), "shared")
SHARED = "/var/lib/kvmfusion/shared"
POOL = "bench-mig"
POOL_DIR = SHARED + "/bench-mig"
DEST = "cna2"


def sh(cmd, check=True):
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(cmd[:4]), (res.stderr or res.stdout).strip()))
    return res.stdout


def controller(args):
    """Put the test guest on the shared datastore, then run the benchmark on the first CNA."""
    print(sh([os.path.join(ROOT, "tools", "build-test-guest")]).strip().splitlines()[-1])
    os.makedirs(os.path.join(LAB_SHARED, "test-guest"), exist_ok=True)
    for f in ("vmlinux", "initrd.img"):
        shutil.copyfile(os.path.join("/var/cache/kvmfusion/test-guest", f), os.path.join(LAB_SHARED, "test-guest", f))
    cmd = [os.path.join(ROOT, "tools", "lab"), "ssh", "cna1", "--", "/usr/bin/python3",
           os.path.join(ROOT, "bench", "migration.py"), "--inside", "--rounds", str(args.rounds), "--vms", str(args.vms)]
    return subprocess.call(cmd)


# ------------------------------------------------------------------------------------------------- inside
def collection():
    tmp = tempfile.mkdtemp(prefix="kvmf-bench-")
    os.makedirs(os.path.join(tmp, "ansible_collections", "kvmfusion"))
    os.symlink(ROOT, os.path.join(tmp, "ansible_collections", "kvmfusion", "compute"))
    sys.path.insert(0, tmp)
    from ansible_collections.kvmfusion.compute.plugins.module_utils import (  # pylint: disable=import-error
        client, hosts, maintenance, migration, storage)
    return client, hosts, maintenance, migration, storage


def virsh(*args, uri="qemu:///system", check=True):
    return sh(["virsh", "-c", uri] + list(args), check=check)


def remote(host):
    return "qemu+ssh://root@%s/system" % host


def pool_xml(storage):
    return ("<pool type='dir'><name>%s</name><uuid>%s</uuid><target><path>%s</path></target></pool>"
            % (POOL, storage.shared_uuid(POOL), POOL_DIR))


def firmware_vm(name, cpu_xml):
    disk = "%s/%s.qcow2" % (POOL_DIR, name)
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", disk, "16M"])
    return ("<domain type='kvm'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os>%s<devices>"
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>"
            "<target dev='vda' bus='virtio'/></disk><memballoon model='virtio'/></devices></domain>"
            % (name, cpu_xml, disk))


def busy_vm(name):
    return ("<domain type='qemu'><name>%s</name><memory unit='MiB'>192</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type><kernel>%s/test-guest/vmlinux</kernel>"
            "<initrd>%s/test-guest/initrd.img</initrd><cmdline>console=ttyS0 panic=-1 quiet</cmdline></os>"
            "<devices><serial type='pty'/><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
            "</channel><memballoon model='virtio'/></devices></domain>" % (name, SHARED, SHARED))


def define_start(xml, name):
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write(xml)
    try:
        virsh("define", f.name)
    finally:
        os.unlink(f.name)
    virsh("start", name)


def ours(mig, client, name, **opts):
    mgr = mig.MigrationManager(client.Client("qemu:///system"), client.Client(remote(DEST)))
    p = dict(name=name, mode="live", storage="auto", compression="none", auto_converge=False, post_copy=False)
    p.update(opts)
    start = time.time()
    res = mgr.converge(p)
    wall = time.time() - start
    m = res.values["migration"]
    return {"downtime": m["downtime_ms"], "total": m["total_time_ms"], "wall": wall, "iterations": m["memory_iterations"]}


def theirs(name, *extra):
    start = time.time()
    virsh("migrate", "--live", "--p2p", "--persistent", "--undefinesource", "--unsafe", *extra, name, remote(DEST))
    wall = time.time() - start
    info = virsh("domjobinfo", "--completed", name, uri=remote(DEST))
    vals = dict((line.split(":", 1)[0].strip(), line.split(":", 1)[1].split()[0]) for line in info.splitlines()
                if ":" in line and line.split(":", 1)[1].split())
    return {"downtime": int(vals.get("Total downtime", 0)), "total": int(vals.get("Time elapsed", 0)), "wall": wall,
            "iterations": int(vals.get("Iteration", 0) or 0)}


def back(name):
    virsh("migrate", "--live", "--p2p", "--persistent", "--undefinesource", "--unsafe", name, remote("cna1"),
          uri=remote(DEST))


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def report(label, mine, base):
    print("%-34s downtime %6.0f ms (virsh %6.0f ms)   migration %6.0f ms (virsh %6.0f ms, ratio %.2f)   "
          "wall %5.2f s (virsh %5.2f s, ratio %.2f)" % (
              label, med(mine, "downtime"), med(base, "downtime"), med(mine, "total"), med(base, "total"),
              med(mine, "total") / max(med(base, "total"), 1), med(mine, "wall"), med(base, "wall"),
              med(mine, "wall") / max(med(base, "wall"), 1e-6)))


def guest_exec(name, command):
    exe = os.path.join(ROOT, "tests", "integration", "targets", "setup_test_guest", "files", "guest_exec.py")
    return sh(["/usr/bin/python3", exe, name, command, "60"])


def inside(args):
    client, hosts, maintenance, migration, storage = collection()
    cluster = hosts.local_facts().get("cluster_cpu") or {}
    cpu_xml = cluster.get("xml") or "<cpu mode='host-model'><feature policy='disable' name='arch-capabilities'/></cpu>"
    idle = ["bench-mig-%02d" % i for i in range(args.vms)]
    busy = "bench-mig-busy"
    xml = pool_xml(storage)
    for uri in ("qemu:///system", remote(DEST)):
        with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
            f.write(xml)
        sh(["mkdir", "-p", POOL_DIR])
        if POOL not in virsh("pool-list", "--all", "--name", uri=uri).split():
            if uri == "qemu:///system":
                virsh("pool-define", f.name)
            else:
                sh(["sh", "-c", "virsh -c %s pool-define /dev/stdin < %s" % (shlex.quote(uri), shlex.quote(f.name))])
            virsh("pool-start", POOL, uri=uri)
        os.unlink(f.name)
    try:
        for name in idle:
            define_start(firmware_vm(name, cpu_xml), name)
        define_start(busy_vm(busy), busy)
        # ---------------------------------------------------------------- idle guest
        mine, base = [], []
        for _r in range(args.rounds):
            mine.append(ours(migration, client, idle[0]))
            back(idle[0])
            base.append(theirs(idle[0]))
            back(idle[0])
        report("idle guest (64 MiB, KVM)", mine, base)
        print("  target: downtime <= 300 ms -> %s" % ("met" if med(mine, "downtime") <= 300 else "NOT met"))
        # ---------------------------------------------------------------- busy guest
        for _i in range(120):
            if subprocess.run(["virsh", "qemu-agent-command", busy, '{"execute":"guest-ping"}'],
                              capture_output=True, check=False).returncode == 0:
                break
            time.sleep(1)
        guest_exec(busy, "(while :; do dd if=/dev/urandom of=/tmp/dirty bs=1M count=48 conv=notrunc 2>/dev/null; "
                         "done </dev/null >/dev/null 2>&1 &) ; echo started")
        time.sleep(3)
        mine, base = [], []
        for _r in range(args.rounds):
            mine.append(ours(migration, client, busy, auto_converge=True))
            back(busy)
            base.append(theirs(busy, "--auto-converge"))
            back(busy)
        report("busy guest, auto-converge (TCG)", mine, base)
        print("  busy guest: every migration completed; memory rounds (median) ours %s, virsh %s"
              % (med(mine, "iterations"), med(base, "iterations")))
        # ---------------------------------------------------------------- evacuation
        virsh("destroy", busy)
        singles = []
        for name in idle:
            singles.append(ours(migration, client, name))
            back(name)
        total_single = sum(s["wall"] for s in singles)
        print("%d single migrations one after another: %.2f s (sum)" % (len(idle), total_single))
        for parallel in (2, 4):
            mgr = maintenance.MaintenanceManager(client.Client("qemu:///system"), [client.Client(remote(DEST))])
            start = time.time()
            res = mgr.converge({"state": "maintenance", "peers": [DEST], "parallel": parallel})
            wall = time.time() - start
            moved = len(res.values["moves"])
            maintenance.MaintenanceManager(client.Client("qemu:///system"), []).converge({"state": "active"})
            print("evacuation of %d VMs, %d at a time: %.2f s, ratio to the sum of single migrations %.2f; "
                  "max downtime %s ms" % (moved, parallel, wall, wall / total_single,
                                          max(m["downtime_ms"] or 0 for m in res.values["moves"])))
            for name in idle:
                back(name)
    finally:
        for name in idle + [busy]:
            for uri in ("qemu:///system", remote(DEST)):
                virsh("destroy", name, uri=uri, check=False)
                virsh("undefine", name, uri=uri, check=False)
        for uri in ("qemu:///system", remote(DEST)):
            virsh("pool-destroy", POOL, uri=uri, check=False)
            virsh("pool-undefine", POOL, uri=uri, check=False)
        sh(["rm", "-rf", POOL_DIR])
        virsh("secret-undefine", str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kvmfusion.compute/host-maintenance")),
              check=False)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--vms", type=int, default=10)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    return inside(args) if args.inside else controller(args)


if __name__ == "__main__":
    sys.exit(main())
