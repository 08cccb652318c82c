# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: storage migration throughput against ``qemu-img convert`` of the same disk, and bytes moved.

Targets (issue: migration): storage migration throughput >= 0.9x that of ``qemu-img convert`` of the same
disk (the baseline, measured in the same run); a thin disk with 10% data moves about 10% of its size.

    python3 bench/storage_migration.py [--rounds 3] [--size-mib N --data-pct P]
        (root, on the controller; the lab must be up and installed: ./dev lab)

Method: runs itself on the first lab CNA (``--inside``) and drives the collection's own code (module_utils,
as storage_migration does, without Ansible's start-up cost). A thin qcow2 disk of --size-mib with --data-pct
of it written (random data in 1 MiB pieces spread over the disk) belongs to a firmware-only KVM VM. Per round,
interleaved: (a) the baseline, ``qemu-img convert -O qcow2`` of the disk to the other datastore (then
deleted); (b) a live move of the running VM's disk there (libvirt block copy, then the switch) and (c) back,
stopped (convert, compare, rename); both ask for a thin target, as the baseline makes (a fully written thin
disk would otherwise measure as thick and get a preallocated target). Nothing is dirty when a timed step
starts (``sync`` first, untimed), so no step pays for another's writeback. Plain ``qemu-img convert`` writes
through the page cache without flushing (cache=unsafe): a move must have the copy on disk before the source
goes, so a durable baseline (convert, then ``sync`` of the copy) is printed beside it. Throughput = the
disk's size over the wall time. The bytes the target
holds afterwards are printed against the data written. Medians and ratios are printed. Everything is
removed at the end. Never fails on timing; exits non-zero only when a step fails.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
A, B = "bench-sm-a", "bench-sm-b"
A_DIR, B_DIR = "/var/lib/kvmfusion/datastores/bench-sm-a", "/var/lib/kvmfusion/datastores/bench-sm-b"
VM = "bench-sm"
DISK = "bench-sm.qcow2"


def sh(cmd, check=True):
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(cmd[:4]), (res.stderr or res.stdout).strip()))
    return res.stdout


def virsh(*args, check=True):
    return sh(["virsh", "-c", "qemu:///system"] + list(args), check=check)


def collection():
    tmp = tempfile.mkdtemp(prefix="kvmf-bench-")
    os.makedirs(os.path.join(tmp, "ansible_collections", "kvmfusion"))
    os.symlink(ROOT, os.path.join(tmp, "ansible_collections", "kvmfusion", "compute"))
    sys.path.insert(0, tmp)
    from ansible_collections.kvmfusion.compute.plugins.module_utils import (  # pylint: disable=import-error
        client, fileops, hosts, storagemove)
    return client, fileops, hosts, storagemove


def inside(args):
    client, fileops, hosts, storagemove = collection()
    size = args.size_mib * 1024 * 1024
    for name, path in ((A, A_DIR), (B, B_DIR)):
        sh(["mkdir", "-p", path])
        if name not in virsh("pool-list", "--all", "--name").split():
            virsh("pool-define-as", name, "dir", "--target", path)
            virsh("pool-start", name)
    src = os.path.join(A_DIR, DISK)
    try:
        sh(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", src, str(size)])
        rng = random.Random(42)
        pieces = max(1, args.size_mib * args.data_pct // 100)
        offsets = sorted(rng.sample(range(args.size_mib), pieces))
        with tempfile.NamedTemporaryFile(suffix=".raw") as blob:
            blob.write(os.urandom(1024 * 1024))
            blob.flush()
            cmds = []
            for off in offsets:
                cmds += ["-c", "write -s %s %dM 1M" % (blob.name, off)]
            for i in range(0, len(cmds), 400):
                sh(["qemu-io", "-f", "qcow2"] + cmds[i:i + 400] + [src])
        written = pieces * 1024 * 1024
        cpu = (hosts.local_facts().get("cluster_cpu") or {}).get("xml", "")
        xml = ("<domain type='kvm'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
               "<os><type arch='x86_64' machine='pc'>hvm</type></os>%s<devices><disk type='file' device='disk'>"
               "<driver name='qemu' type='qcow2'%s/><source file='%s'/><target dev='vda' bus='virtio'/></disk>"
               "</devices></domain>" % (VM, cpu, " cache='none' io='native'" if args.direct else "", src))
        with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
            f.write(xml)
        virsh("define", f.name)
        os.unlink(f.name)
        virsh("pool-refresh", A)
        base, durable, live, cold, held, live_copy, cold_copy = [], [], [], [], [], [], []
        c = client.Client("qemu:///system")
        for _r in range(args.rounds):
            out = os.path.join(B_DIR, "baseline.qcow2")
            sh(["sync"])  # each timed step starts with nothing dirty: none pays for another's writeback
            t = time.time()
            sh(["qemu-img", "convert"] + (["-t", "none", "-T", "none"] if args.direct else []) +
               ["-O", "qcow2", "-o", "compat=1.1", src, out])
            base.append(time.time() - t)
            sh(["sync", out])  # the copy on disk: what a move must have before the source goes
            durable.append(time.time() - t)
            os.unlink(out)
            virsh("start", VM)
            sh(["sync"])
            t = time.time()
            res = storagemove.StorageMigrationManager(c).converge({"vm": VM, "datastore": B, "provisioning": "thin"})
            live.append(time.time() - t)
            live_copy.append(res.values["disks"][0]["seconds"])
            held.append(fileops.allocated_bytes(os.path.join(B_DIR, DISK)))
            virsh("destroy", VM)
            sh(["sync"])
            t = time.time()
            res = storagemove.StorageMigrationManager(c).converge({"vm": VM, "datastore": A, "provisioning": "thin"})
            cold.append(time.time() - t)
            cold_copy.append(res.values["disks"][0]["seconds"])
        mb = args.size_mib
        b, lv, cd = statistics.median(base), statistics.median(live), statistics.median(cold)
        print("disk: %d MiB thin qcow2, %d MiB of data (%d%%)" % (mb, written >> 20, args.data_pct))
        print("qemu-img convert (baseline): %6.2f s  %7.0f MiB/s" % (b, mb / b))
        bd = statistics.median(durable)
        print("qemu-img convert + sync of the copy (durable baseline): %6.2f s  %7.0f MiB/s" % (bd, mb / bd))
        print("live move (block copy), wall: %6.2f s  %7.0f MiB/s  ratio to the baseline %.2f; "
              "to the durable baseline %.2f" % (lv, mb / lv, b / lv, bd / lv))
        print("stopped move (convert, compare, sync, rename): %6.2f s  %7.0f MiB/s  ratio %.2f; to the durable "
              "baseline %.2f" % (cd, mb / cd, b / cd, bd / cd))
        # the move itself (the result's seconds: copy, switch or rename, definition) without deleting the
        # source afterwards, which the baseline never does (about 1 s for a 4 GiB image here)
        lc, cc = statistics.median(live_copy), statistics.median(cold_copy)
        print("live move without deleting the source: %6.2f s  %7.0f MiB/s  throughput ratio %.2f  (target >= 0.9: %s)"
              % (lc, mb / lc, b / lc, "met" if b / lc >= 0.9 else "NOT met"))
        print("stopped move without deleting the source: %6.2f s  %7.0f MiB/s  ratio %.2f" % (cc, mb / cc, b / cc))
        print("bytes the moved disk holds: %d MiB of %d MiB written (%.2fx the data, %.1f%% of its size)"
              % (int(statistics.median(held)) >> 20, written >> 20, statistics.median(held) / written,
                 100.0 * statistics.median(held) / size))
    finally:
        virsh("destroy", VM, check=False)
        virsh("undefine", VM, check=False)
        for name, path in ((A, A_DIR), (B, B_DIR)):
            virsh("pool-destroy", name, check=False)
            virsh("pool-undefine", name, check=False)
            sh(["rm", "-rf", path])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--size-mib", type=int, default=None, help="one run with this disk (default: both runs below)")
    ap.add_argument("--data-pct", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--direct", action="store_true",
                    help="bypass the page cache: the VM's disk with cache=none, the baseline with -t none -T none")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        return inside(args)
    # Throughput: a fully written 4 GiB disk read and written past the page cache (the VM's disk with
    # cache=none, the baseline with -t none -T none), so both copy at the disk's speed: through the page cache
    # qemu-img convert of a few GiB runs at memory speed and is never flushed, which measures the page cache
    # (--size-mib 8192 --data-pct 100 without --direct shows it). Bytes moved: a 2 GiB thin disk, 10% data.
    if args.size_mib:
        runs = [(args.size_mib, args.data_pct, args.rounds, args.direct)]
    else:
        runs = [(4096, 100, args.rounds, True), (2048, 10, 1, False)]
    rc = 0
    for size, pct, rounds, direct in runs:
        print("== %d MiB disk, %d%% written, %d round(s)%s" % (size, pct, rounds, ", past the page cache" if direct else ""),
              flush=True)
        rc = rc or subprocess.call([os.path.join(ROOT, "tools", "lab"), "ssh", "cna1", "--", "/usr/bin/python3",
                                    os.path.abspath(__file__), "--inside", "--size-mib", str(size),
                                    "--data-pct", str(pct), "--rounds", str(rounds)] + (["--direct"] if direct else []))
    return rc


if __name__ == "__main__":
    sys.exit(main())
