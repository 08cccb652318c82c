# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: finding what stands on an image, datastore-wide, against 'ls -l' of the same datastore.

Target (issue: data safety): on a datastore of 1,000 images, images.dependants_of() (which reads every
image's qcow2 header, so it sees linked clones defined on any CNA) takes at most 5x the time of
'ls -l' of that datastore (the floor: one stat per file), measured in the same run.

    python3 bench/dependants.py [--images 1000] [--rounds 9] [--dir /var/tmp]

The datastore holds one template image and N-1 linked clones on it (qemu-img create), as a shared
datastore with many clones does. Both methods run interleaved in every round, page cache warm for
both (the first round of each is discarded); medians are reported. 'ls -l' is timed as a process
(fork, exec, stat of every entry), dependants_of in-process as the modules call it, through a
client that offers the datastore and no VMs. Prints figures and the ratio; never fails on timing.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 5.0


def import_images(tmp):
    """module_utils/images.py as the collection ships it (ansible_collections.kvmfusion.compute...)."""
    base = os.path.join(tmp, "collections", "ansible_collections", "kvmfusion")
    os.makedirs(base)
    os.symlink(ROOT, os.path.join(base, "compute"))
    sys.path.insert(0, os.path.join(tmp, "collections"))
    from ansible_collections.kvmfusion.compute.plugins.module_utils import images  # pylint: disable=import-error
    return images


class Pool(object):
    def __init__(self, path):
        self.path = path

    def isActive(self):  # noqa: N802 (libvirt's name)
        return 1

    def XMLDesc(self, flags=0):  # noqa: N802
        return "<pool type='dir'><name>ds</name><target><path>%s</path></target></pool>" % self.path


class Client(object):
    """The client calls dependants_of makes: one running dir datastore, no VMs on this host."""

    uri = "qemu:///system"
    is_local = True

    def __init__(self, path):
        self._pool = Pool(path)

    def pool_names(self):
        return ["ds"]

    def pool(self, name):
        return self._pool

    def domain_names(self):
        return []

    def domain(self, name):
        return None

    def call(self, action, obj, fn, *args):
        return fn(*args)


def make_datastore(path, count):
    template = os.path.join(path, "template.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", template, "1G"], check=True)
    for i in range(1, count):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", template,
                        os.path.join(path, "clone-%04d-vda.qcow2" % i)], check=True)
    return template


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kvmf-bench-dependants-", dir=args.dir)
    try:
        images = import_images(tmp)
        ds = os.path.join(tmp, "ds")
        os.mkdir(ds)
        t0 = time.time()
        template = make_datastore(ds, args.images)
        print("datastore: %d images (1 template, %d linked clones) made in %.1f s" % (args.images, args.images - 1,
                                                                                      time.time() - t0))
        client = Client(ds)
        ours, floor = [], []
        found = None
        for r in range(args.rounds + 1):
            methods = [("ours", ours), ("floor", floor)]
            if r % 2:
                methods.reverse()  # interleaved, order alternating
            for name, times in methods:
                start = time.perf_counter()
                if name == "ours":
                    found = images.dependants_of(client, [template])
                else:
                    subprocess.run(["ls", "-l", ds], stdout=subprocess.DEVNULL, check=True)
                elapsed = time.perf_counter() - start
                if r:  # round 0 warms the page cache for both
                    times.append(elapsed)
        standing = len(found.get(template, []))
        m_ours, m_floor = statistics.median(ours), statistics.median(floor)
        print("method: medians of %d interleaved rounds (a warm-up round discarded)" % args.rounds)
        print("images.dependants_of: %.2f ms (found %d images standing on the template)" % (m_ours * 1000, standing))
        print("ls -l (floor):        %.2f ms" % (m_floor * 1000))
        print("ratio ours/floor: %.2fx (target <= %.1fx)" % (m_ours / m_floor, TARGET))
        if standing != args.images - 1:
            print("WARNING: expected %d dependants, found %d" % (args.images - 1, standing))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
