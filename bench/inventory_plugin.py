# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: listing 500 VMs with the kvmfusion.compute.vms inventory plugin, against 'virsh list --all'.

Issue (inventory plugin): the plugin reads every CNA in parallel over one libvirt connection each. Reference from
other platforms: community.vmware's inventory lists 350 VMs in about 1.5 minutes. Here: N VMs named benchinv-NNN
(minimal definitions, never started) are defined round-robin on the lab's CNAs, then in every round

  - ours:  'ansible-inventory -i <plugin config> --list' (the whole command, Ansible's start-up included),
  - floor: 'virsh -c <URI> list --all' on each CNA in sequence, over the same qemu+ssh URIs the plugin uses
           (one connection and one call per VM for its state, as the plugin does at least),

alternating which goes first. Also printed: the plugin's own reading time (its -vvv line, without Ansible's
start-up) and 'ansible-inventory --list' of a one-host YAML inventory (Ansible's start-up alone), both from the
same rounds. Figures are medians over the rounds. The benchinv-* VMs are always undefined at the end, also those
an earlier run left. Prints figures and ratios; never fails on timing.

    python3 bench/inventory_plugin.py [--count 500] [--rounds 5]   (root; the lab must be up: tools/lab up)
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
PREFIX = "benchinv-"
READ_LINE = re.compile(r"kvmfusion\.compute\.vms: (\d+) CNA\(s\) read in ([0-9.]+) s")


def lab_cnas():
    res = subprocess.run([os.path.join(ROOT, "tools", "lab"), "status", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, check=False)
    if res.returncode != 0:
        sys.exit("the lab is not up: run tools/lab up (or ./dev lab) first")
    status = json.loads(res.stdout)
    key = os.path.join(status["lab_dir"], "ssh", "id_ed25519")
    return [(h["name"], "qemu+ssh://root@%s/system?keyfile=%s&no_verify=1" % (h["ip"], key))
            for h in status["hosts"] if h["group"] == "cna"]


def client_class():
    """The collection's libvirt client, as installed by ./dev (ansible_collections.kvmfusion.compute...)."""
    if not os.path.isdir(os.path.join(COLLECTIONS, "ansible_collections", "kvmfusion", "compute")):
        sys.exit("run ./dev setup first (links the collection into .cache/collections)")
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client  # pylint: disable=import-error
    return Client


def minimal_xml(name):
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory", unit="MiB").text = "64"
    ET.SubElement(dom, "vcpu").text = "1"
    ET.SubElement(ET.SubElement(dom, "os"), "type", arch="x86_64", machine="pc").text = "hvm"
    return ET.tostring(dom, encoding="unicode")


def undefine_all(clients):
    gone = 0
    for client in clients.values():
        for dom in client.call("list domains", None, client.conn.listAllDomains, 0):
            if dom.name().startswith(PREFIX):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(0)
                gone += 1
    return gone


def timed(argv, env=None):
    t0 = time.monotonic()
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False, env=env)
    took = time.monotonic() - t0
    if res.returncode != 0 or "Unable to parse" in res.stderr:
        sys.exit("%s failed:\n%s" % (" ".join(argv[:3]), res.stderr[-3000:]))
    return took, res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cnas = lab_cnas()
    Client = client_class()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS)
    tmp = tempfile.mkdtemp(prefix="kvmf-bench-inventory-")
    clients = dict((name, Client(uri)) for name, uri in cnas)
    try:
        left = undefine_all(clients)
        if left:
            print("undefined %d benchinv-* VMs an earlier run left" % left)
        t0 = time.monotonic()
        for i in range(args.count):
            name, _uri = cnas[i % len(cnas)]
            clients[name].define_domain(minimal_xml("%s%03d" % (PREFIX, i)))
        print("defined %d VMs (not started) round-robin on %s in %.1f s" % (
            args.count, ", ".join(n for n, _u in cnas), time.monotonic() - t0), flush=True)

        config = os.path.join(tmp, "bench.kvmfusion_vms.yml")
        with open(config, "w") as f:
            json.dump({"plugin": "kvmfusion.compute.vms", "uris": [{"name": n, "uri": u} for n, u in cnas]}, f)
        one_host = os.path.join(tmp, "one.yml")
        with open(one_host, "w") as f:
            f.write("all:\n  hosts:\n    h1:\n")
        listing = os.path.join(tmp, "listing.json")

        times = {"ours": [], "floor": [], "reading": [], "startup": []}
        listed = None
        for rnd in range(args.rounds + 1):
            methods = ["ours", "floor"] if rnd % 2 == 0 else ["floor", "ours"]
            for method in methods:
                if method == "ours":
                    took, res = timed(["ansible-inventory", "-i", config, "--list", "--output", listing, "-vvv"],
                                      env)
                    found = READ_LINE.search(res.stdout + res.stderr)
                    with open(listing) as f:
                        listed = sum(1 for h in json.load(f)["_meta"]["hostvars"] if h.startswith(PREFIX))
                    reading = float(found.group(2)) if found else float("nan")
                else:
                    took = 0.0
                    for _name, uri in cnas:
                        took += timed(["virsh", "-c", uri, "list", "--all"])[0]
                if rnd:  # round 0 warms SSH, page cache and Python's byte code for both
                    times[method].append(took)
                    if method == "ours":
                        times["reading"].append(reading)
            if rnd:
                times["startup"].append(timed(["ansible-inventory", "-i", one_host, "--list"], env)[0])
                print("round %d/%d: ours %.2f s (reading %.2f s), floor %.2f s" % (
                    rnd, args.rounds, times["ours"][-1], times["reading"][-1], times["floor"][-1]), flush=True)

        med = dict((k, statistics.median(v)) for k, v in times.items())
        print()
        print("%d VMs on %d CNAs, medians of %d rounds%s (a warm-up round discarded), order alternated per round" % (
            args.count, len(cnas), args.rounds, " (even: the mean of the middle two)" if args.rounds % 2 == 0 else ""))
        print("ansible-inventory with kvmfusion.compute.vms: %6.2f s  (%d benchinv VMs listed)" % (med["ours"], listed))
        print("  of which the plugin reading the CNAs:       %6.2f s" % med["reading"])
        print("  Ansible start-up (one-host YAML inventory): %6.2f s" % med["startup"])
        print("virsh list --all on each CNA in sequence:     %6.2f s  (floor)" % med["floor"])
        print("ratio ours / floor:                           %6.2fx" % (med["ours"] / med["floor"]))
        print("ratio plugin reading / floor:                 %6.2fx" % (med["reading"] / med["floor"]))
        print("per 100 VMs: ours %.2f s (reference: community.vmware, 350 VMs in ~90 s = ~25.7 s per 100)" % (
            med["ours"] * 100.0 / args.count))
        if listed != args.count:
            print("WARNING: %d benchinv VMs defined, %d listed" % (args.count, listed))
    finally:
        gone = undefine_all(clients)
        for client in clients.values():
            client.close()
        print("undefined %d benchinv-* VMs" % gone)
        for entry in os.listdir(tmp):
            os.unlink(os.path.join(tmp, entry))
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
