# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the no-change re-run of site.yml on the example site vs the same objects through community.libvirt.

Issue (site): wall time of re-running playbooks/site.yml on the example inventory (inventories/lab) when nothing
has to change, against the equivalent community.libvirt tasks for the objects community.libvirt can express
(storage pools, volumes, domains), in the same run. Goal: <= 1.0x.

    python3 bench/site_rerun.py [--repeat 3] [--profile | --no-profile] [--keep]
        (root, after `. /tmp/env.sh` or with the project venv's python; the lab must be up and the example site
         applied: tools/lab up, then ./dev lab or playbooks/lab.yml)

community.libvirt is taken from the `ansible` community package on PyPI: `pip download --no-deps 'ansible>=11,<12'`
into .cache/bench/pip (first run only), and only ansible_collections/community/libvirt/ is extracted into
.cache/bench/collections (when profiling, ansible/posix/ as well, for its profile_tasks callback).

The community.libvirt playbook is written into a temporary directory from what the lab holds for the site's objects,
read once at setup: each datastore's pool (`virsh pool-dumpxml --inactive`) on every CNA, as virt_pool define, build
(only when the define created it: `build` reports changed on every call), active and autostart; each disk of the
site's VMs that lies in one of those pools as virt_volume state=present with its `virsh vol-dumpxml`; each template,
VM and clone as virt command=define of its `virsh dumpxml --inactive --security-info` (so the define changes nothing)
and virt state=running/shutdown as it is, on the CNA where it runs (else where it is defined), as site.yml does.

Method: both playbooks run from the repository root (its ansible.cfg: forks, pipelining) with the same inventories
(tools/lab's and inventories/lab), the same environment and SSH settings. First, untimed for the figures: site.yml
must report changed=0 (the lab is shared: when a first run puts something back, it says what and runs once more),
and the community.libvirt play is run twice (the second must report changed=0; tasks that report changed anyway are
named). Then --repeat rounds, each timing whole runs (Ansible start-up included): an empty play on the CNAs (start-up
and one round trip, the baseline), site.yml, site.yml --tags storage,vms (the comparable subset) and the
community.libvirt play, the order reversed every other round. The figures are medians over the rounds, printed with
the commit measured and the machine's load. For each of site.yml and the subset that is slower than the goal (or all
with --profile) one more run is made with ansible.posix.profile_tasks: time per role, fact gathering and site.yml's
own tasks, and the slowest tasks. Never fails on timing; exits non-zero only when a play fails or the lab is not
ready (the lab down, or the example site not applied).
"""
from __future__ import absolute_import, division, print_function

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "bench")
PIP_DIR = os.path.join(CACHE, "pip")
BENCH_COLLECTIONS = os.path.join(CACHE, "collections")
ANSIBLE_PKG = "ansible>=11,<12"
LAB_GROUPS = os.path.join(ROOT, "inventories", "lab")
SITE = os.path.join(ROOT, "playbooks", "site.yml")
GOAL = 1.0

# Runs on every CNA (python3 is there for Ansible): what the lab holds for the objects the site names.
READER = r'''
import json, os, subprocess, sys
import xml.etree.ElementTree as ET

want = json.loads(sys.argv[1])


def virsh(*args):
    res = subprocess.run(("virsh", "-c", "qemu:///system") + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    return res.stdout if res.returncode == 0 else None


out = {"pools": {}, "domains": {}, "volumes": {}}
targets = {}
for name in want["pools"]:
    xml = virsh("pool-dumpxml", "--inactive", name)
    if xml is None:
        continue
    info = virsh("pool-info", name) or ""
    fields = dict((k.strip(), v.strip()) for k, _s, v in (ln.partition(":") for ln in info.splitlines()) if _s)
    out["pools"][name] = {"xml": xml, "state": fields.get("State"), "autostart": fields.get("Autostart") == "yes"}
    path = ET.fromstring(xml).findtext("./target/path")
    if path:
        targets[os.path.normpath(path)] = name
for name in want["vms"]:
    xml = virsh("dumpxml", "--inactive", "--security-info", name)
    if xml is None:
        continue
    state = (virsh("domstate", name) or "").strip()
    disks = []
    for disk in ET.fromstring(xml).findall("./devices/disk"):
        src = disk.find("source")
        if src is None or disk.get("device", "disk") != "disk":
            continue
        if disk.get("type") == "volume" and src.get("pool") in out["pools"]:
            disks.append((src.get("pool"), src.get("volume")))
        elif disk.get("type") == "file" and src.get("file"):
            pool = targets.get(os.path.dirname(os.path.normpath(src.get("file"))))
            if pool:
                disks.append((pool, os.path.basename(src.get("file"))))
    out["domains"][name] = {"xml": xml, "state": state, "disks": disks}
    for pool, vol in disks:
        vxml = virsh("vol-dumpxml", "--pool", pool, vol)
        if vxml is not None:
            out["volumes"]["%s/%s" % (pool, vol)] = vxml
print(json.dumps(out))
'''

SETUP = """
- name: Read the site's objects from the lab
  hosts: cna
  gather_facts: false
  vars_files: [%(vars)s]
  tasks:
    - name: Pools, volumes and domains the site names, as the lab holds them
      ansible.builtin.script:
        cmd: "%(reader)s {{ {'pools': __site_declared.datastores, 'vms': __site_declared.vms} | to_json | quote }}"
        executable: /usr/bin/python3
      register: __bench_read
      changed_when: false

    - name: Hand them to the benchmark
      ansible.builtin.copy:
        dest: "%(out)s"
        content: >-
          {{ {'declared': __site_declared, 'vrm': groups['vrm'] | default([]), 'cna': groups['cna'],
              'hosts': dict(groups['cna'] | zip(groups['cna'] | map('extract', hostvars, ['__bench_read', 'stdout'])))}
             | to_json }}
        mode: "0600"
      delegate_to: localhost
      run_once: true
"""

EMPTY = """
- name: Empty play (Ansible start-up and one round trip, the baseline)
  hosts: cna
  gather_facts: false
  tasks:
    - name: One round trip to each CNA
      ansible.builtin.ping:
"""

# The community.libvirt play: {objects} is replaced by per-CNA variables (XML marked !unsafe: it is data).
COMMUNITY = """
- name: community.libvirt, the site's pools, volumes and domains
  hosts: cna
  gather_facts: false
  vars:
    __cl: {objects}
  tasks:
    - name: Define the datastores' pools
      community.libvirt.virt_pool:
        command: define
        name: "{{{{ item.name }}}}"
        xml: "{{{{ item.xml }}}}"
      loop: "{{{{ __cl[inventory_hostname].pools }}}}"
      loop_control:
        label: "{{{{ item.name }}}}"
      register: __cl_defined

    - name: Build the pools just defined (build reports changed on every call)
      community.libvirt.virt_pool:
        command: build
        name: "{{{{ item.item.name }}}}"
      loop: "{{{{ __cl_defined.results | select('changed') | list }}}}"
      loop_control:
        label: "{{{{ item.item.name }}}}"

    - name: Start the pools
      community.libvirt.virt_pool:
        state: active
        name: "{{{{ item.name }}}}"
      loop: "{{{{ __cl[inventory_hostname].pools | selectattr('active') | list }}}}"
      loop_control:
        label: "{{{{ item.name }}}}"

    - name: Pools autostart
      community.libvirt.virt_pool:
        autostart: "{{{{ item.autostart }}}}"
        name: "{{{{ item.name }}}}"
      loop: "{{{{ __cl[inventory_hostname].pools }}}}"
      loop_control:
        label: "{{{{ item.name }}}}"

    - name: The VMs' disks
      community.libvirt.virt_volume:
        state: present
        pool: "{{{{ item.pool }}}}"
        name: "{{{{ item.name }}}}"
        xml: "{{{{ item.xml }}}}"
      loop: "{{{{ __cl[inventory_hostname].volumes }}}}"
      loop_control:
        label: "{{{{ item.pool }}}}/{{{{ item.name }}}}"

    - name: Define the templates, VMs and clones
      community.libvirt.virt:
        command: define
        xml: "{{{{ item.xml }}}}"
      loop: "{{{{ __cl[inventory_hostname].domains }}}}"
      loop_control:
        label: "{{{{ item.name }}}}"

    - name: Their power state
      community.libvirt.virt:
        name: "{{{{ item.name }}}}"
        state: "{{{{ item.state }}}}"
      loop: "{{{{ __cl[inventory_hostname].domains }}}}"
      loop_control:
        label: "{{{{ item.name }}}}"
"""

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)
PROFILE_LINE = re.compile(r"^(.*?) -+ (\d+\.\d+)s$")


def ansible_playbook():
    local = os.path.join(ROOT, ".cache", "venv", "bin", "ansible-playbook")
    found = local if os.path.exists(local) else shutil.which("ansible-playbook")
    if not found:
        sys.exit("ansible-playbook not found: run ./dev setup (or . /tmp/env.sh) first")
    return found


def lab_inventory():
    res = subprocess.run([os.path.join(ROOT, "tools", "lab"), "inventory"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
    if res.returncode != 0:
        sys.exit("the lab is not up: run tools/lab up, then apply the example site (./dev lab)")
    return res.stdout.strip()


def community_wheel():
    """The `ansible` package's wheel in .cache/bench/pip, downloaded the first time."""
    wheels = sorted(glob.glob(os.path.join(PIP_DIR, "ansible-1[1]*.whl")))
    if not wheels:
        os.makedirs(PIP_DIR, exist_ok=True)
        print("downloading %s into %s (first run only)" % (ANSIBLE_PKG, PIP_DIR), flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", ANSIBLE_PKG, "-d", PIP_DIR],
                       check=True)
        wheels = sorted(glob.glob(os.path.join(PIP_DIR, "ansible-1[1]*.whl")))
    if not wheels:
        sys.exit("pip download left no ansible-11 wheel in %s" % PIP_DIR)
    return wheels[-1]


def extract(wheel, collection):
    """ansible_collections/<collection>/ from the wheel into .cache/bench/collections; returns its version."""
    prefix = "ansible_collections/%s/" % collection.replace(".", "/")
    manifest = os.path.join(BENCH_COLLECTIONS, prefix, "MANIFEST.json")
    stamp = os.path.join(BENCH_COLLECTIONS, prefix, ".from-wheel")
    if os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == os.path.basename(wheel):
                with open(manifest) as m:
                    return json.load(m)["collection_info"]["version"]
    shutil.rmtree(os.path.join(BENCH_COLLECTIONS, prefix), ignore_errors=True)
    with zipfile.ZipFile(wheel) as z:
        members = [n for n in z.namelist() if n.startswith(prefix)]
        if not members:
            sys.exit("%s holds no %s" % (os.path.basename(wheel), prefix))
        for n in members:
            z.extract(n, BENCH_COLLECTIONS)
    with open(stamp, "w") as f:
        f.write(os.path.basename(wheel))
    with open(manifest) as m:
        return json.load(m)["collection_info"]["version"]


def checkout():
    """The commit measured, and whether site.yml's code differs from it (playbooks/, plugins/, roles/)."""
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, universal_newlines=True, check=False).stdout.strip()
    diff = subprocess.run(["git", "-C", ROOT, "diff", "HEAD", "--", "playbooks", "plugins", "roles"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout
    return (head or "unknown") + (" with uncommitted changes (diff %s)" % hashlib.sha1(diff).hexdigest()[:8]
                                  if diff else "")


def run(cmd, env, what):
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         env=env, check=False)
    took = time.monotonic() - t0
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-5000:])
        sys.exit("%s failed (rc %d)" % (what, res.returncode))
    return took, res.stdout


def recap(out):
    """{ok, changed, skipped, hosts} summed over the PLAY RECAP."""
    rows = RECAP.findall(out)
    total = {"ok": 0, "changed": 0, "skipped": 0, "hosts": len(rows)}
    for row in rows:
        total["ok"] += int(row[1])
        total["changed"] += int(row[2])
        total["skipped"] += int(row[5])
    return total


def changed_tasks(out):
    """Names of the tasks that reported changed, from the default callback's output."""
    names, task = [], None
    for line in out.splitlines():
        if line.startswith("TASK ["):
            task = line[6:line.rfind("]")]
        elif line.startswith("changed:") and task and task not in names:
            names.append(task)
    return names


def community_objects(lab):
    """Per CNA: the pools, volumes and domains to manage there; and how many objects that is."""
    where = {}
    for host in lab["cna"]:
        for name, dom in (json.loads(lab["hosts"][host])["domains"]).items():
            # Where site.yml manages a VM: the CNA it runs on, else the first one that defines it.
            if name not in where or (dom["state"] == "running" and where[name][1]["state"] != "running"):
                where[name] = (host, dom)
    objects, counts = {}, {"pools": 0, "volumes": 0, "domains": 0}
    for host in lab["cna"]:
        read = json.loads(lab["hosts"][host])
        pools = [{"name": n, "xml": p["xml"], "active": p["state"] == "running", "autostart": p["autostart"]}
                 for n, p in sorted(read["pools"].items())]
        domains, volumes = [], []
        for name, (h, dom) in sorted(where.items()):
            if h != host:
                continue
            if dom["state"] not in ("running", "shut off"):
                sys.exit("%s is %s on %s: the bench expects the site's VMs running or shut off"
                         % (name, dom["state"], h))
            domains.append({"name": name, "xml": dom["xml"], "state": "running" if dom["state"] == "running"
                            else "shutdown"})
            for pool, vol in dom["disks"]:
                key = "%s/%s" % (pool, vol)
                if key in read["volumes"] and all(v["name"] != vol or v["pool"] != pool for v in volumes):
                    volumes.append({"pool": pool, "name": vol, "xml": read["volumes"][key]})
        objects[host] = {"pools": pools, "volumes": volumes, "domains": domains}
        for k in counts:
            counts[k] += len(objects[host][k])
    return objects, counts


def unsafe_yaml(value):
    """`value` in YAML flow style with every string tagged !unsafe (the XML is data, never a template)."""
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%s: %s" % (json.dumps(k), unsafe_yaml(v)) for k, v in value.items())
    if isinstance(value, list):
        return "[%s]" % ", ".join(unsafe_yaml(v) for v in value)
    if isinstance(value, str):
        return "!unsafe " + json.dumps(value)
    return json.dumps(value)


def profile(env, label, play_cmd, wall, top):
    """One more run of `play_cmd` with ansible.posix.profile_tasks; prints where its time goes."""
    penv = dict(env, ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_TASK_OUTPUT_LIMIT="all",
                PROFILE_TASKS_SORT_ORDER="descending")
    took, out = run(play_cmd, penv, label + " (profiled)")
    tail = out[out.rfind("PLAY RECAP"):]
    tasks = [(m.group(1).strip(), float(m.group(2))) for m in (PROFILE_LINE.match(ln) for ln in tail.splitlines()) if m]
    total = sum(t for _n, t in tasks)
    parts = {}
    for name, t in tasks:
        part = ("role " + name.split(" : ", 1)[0]) if " : " in name else (
            "fact gathering" if name == "Gathering Facts" else "site.yml's own tasks")
        n, s = parts.get(part, (0, 0.0))
        parts[part] = (n + 1, s + t)
    print()
    print("profile of %s (one more run, ansible.posix.profile_tasks; median above %.1fs): %.1fs wall, %d tasks, "
          "%.1fs in tasks, %.1fs outside them (start-up, inventory, play set-up)"
          % (label, wall, took, len(tasks), total, took - total))
    for part, (n, t) in sorted(parts.items(), key=lambda x: -x[1][1]):
        print("  %-44s %3d tasks %6.1fs  %3.0f%%" % (part, n, t, 100.0 * t / took))
    print("  slowest %d tasks:" % min(top, len(tasks)))
    for name, t in tasks[:top]:
        print("  %6.2fs  %s" % (t, name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3; odd, so the median is one run)")
    ap.add_argument("--profile", dest="profile", action="store_true", default=None,
                    help="profile site.yml even when it meets the goal")
    ap.add_argument("--no-profile", dest="profile", action="store_false", help="never profile")
    ap.add_argument("--top", type=int, default=15, help="slowest tasks to print when profiling")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (the community.libvirt play)")
    args = ap.parse_args()

    playbook = ansible_playbook()
    inv = lab_inventory()
    wheel = community_wheel()
    cl_version = extract(wheel, "community.libvirt")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([os.path.join(ROOT, ".cache", "collections"),
                                                         BENCH_COLLECTIONS]))
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    invs = ["-i", inv, "-i", LAB_GROUPS]
    load_start = os.getloadavg()[0]
    code_start = checkout()
    tmp = tempfile.mkdtemp(prefix="kvmf-bench-site-")
    try:
        reader = os.path.join(tmp, "read_site_objects.py")
        with open(reader, "w") as f:
            f.write(READER)
        setup = os.path.join(tmp, "setup.yml")
        read_out = os.path.join(tmp, "lab.json")
        with open(setup, "w") as f:
            f.write(SETUP % {"vars": json.dumps(os.path.join(ROOT, "playbooks", "vars", "site.yml")),
                             "reader": reader, "out": read_out})
        run([playbook] + invs + [setup], env, "reading the lab")
        with open(read_out) as f:
            lab = json.load(f)
        objects, counts = community_objects(lab)
        missing = [n for n in lab["declared"]["vms"] if not any(d["name"] == n for o in objects.values()
                                                                for d in o["domains"])]
        if missing:
            sys.exit("the example site is not applied (%s missing): run ./dev lab first" % ", ".join(missing))
        cl_play = os.path.join(tmp, "community_libvirt.yml")
        with open(cl_play, "w") as f:
            f.write(COMMUNITY.format(objects=unsafe_yaml(objects)))

        plays = {
            "empty": [playbook] + invs + [os.path.join(tmp, "empty.yml")],
            "site": [playbook] + invs + [SITE],
            "subset": [playbook] + invs + [SITE, "--tags", "storage,vms"],
            "community": [playbook] + invs + [cl_play],
        }
        with open(os.path.join(tmp, "empty.yml"), "w") as f:
            f.write(EMPTY)

        # The no-change re-run must be one: check both before timing anything. The lab is shared: when something
        # changed the site's objects since it was applied, the first run puts them back (said) and a second must
        # change nothing.
        for attempt in (1, 2):
            _t, out = run(plays["site"], env, "site.yml")
            first_site = recap(out)
            if not first_site["changed"]:
                break
            print("site.yml changed %d things on run %d (%s)%s" % (
                first_site["changed"], attempt, ", ".join(changed_tasks(out)),
                ": running it again" if attempt == 1 else ""), flush=True)
        else:
            sys.exit("site.yml is not a no-change re-run here; apply the example site first (./dev lab)")
        _t, out = run(plays["community"], env, "community.libvirt play")
        cl_first_changed = changed_tasks(out)
        _t, out = run(plays["community"], env, "community.libvirt play")
        cl_always_changed = changed_tasks(out)

        times = dict((k, []) for k in plays)
        recaps = {}
        for rnd in range(args.repeat):
            order = ["empty", "site", "subset", "community"]
            if rnd % 2:
                order.reverse()
            for name in order:
                took, out = run(plays[name], env, name)
                times[name].append(took)
                recaps[name] = recap(out)
                if recaps[name]["changed"] and name != "community":
                    print("warning: %s reported changed=%d in round %d (%s)" % (
                        name, recaps[name]["changed"], rnd + 1, ", ".join(changed_tasks(out))))
            print("round %d/%d (%s): %s" % (rnd + 1, args.repeat, " -> ".join(order), ", ".join(
                "%s %.1fs" % (k, times[k][-1]) for k in ("site", "subset", "community", "empty"))), flush=True)
    finally:
        if args.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    med = dict((k, statistics.median(v)) for k, v in times.items())
    d = lab["declared"]
    n_cna, n_vrm = len(lab["cna"]), len(lab["vrm"])
    n_vols = counts["volumes"]
    print()
    print("no-change re-run of playbooks/site.yml on the example site (inventories/lab), %d CNAs + %d VRM, "
          "median of %d rounds%s, order reversed every other round; whole runs, Ansible start-up included"
          % (n_cna, n_vrm, args.repeat, " (even: the mean of the middle two)" if args.repeat % 2 == 0 else ""))
    code_end = checkout()
    print("code: %s%s" % (code_start, "" if code_end == code_start else
                          " at the start, %s at the end: the figures mix the two" % code_end))
    print("machine: %d CPUs, 1-minute load average %.1f at the start, %.1f at the end (the lab shares them)"
          % (os.cpu_count() or 0, load_start, os.getloadavg()[0]))
    print("objects:")
    print("  site.yml:              roles vrm (%d host) and cna (%d hosts); per CNA: %d datastore, %d switch, "
          "%d port groups, %d security groups; %d VMs (templates, VMs, clones) with %d disks; HA cluster + %d VM; "
          "the site record" % (n_vrm, n_cna, len(d["datastores"]), len(d["switches"]), len(d["portgroups"]),
                               len(d["security_groups"]), len(d["vms"]), n_vols, len(d["ha"])))
    print("  site.yml --tags storage,vms: per CNA %d datastore; %d VMs with %d disks; the site record"
          % (len(d["datastores"]), len(d["vms"]), n_vols))
    print("  community.libvirt %s: %d pools (%d datastore x %d CNAs), %d volumes, %d domains "
          "(7 tasks: pool define/build/active/autostart, volume present, domain define/state)"
          % (cl_version, counts["pools"], len(d["datastores"]), n_cna, counts["volumes"], counts["domains"]))
    for name, label in (("site", "site.yml"), ("subset", "site.yml --tags storage,vms"),
                        ("community", "community.libvirt play"), ("empty", "empty play (start-up)")):
        r = recaps[name]
        print("  %-30s %6.2fs   task results ok=%d changed=%d skipped=%d on %d hosts   (rounds: %s)" % (
            label + ":", med[name], r["ok"], r["changed"], r["skipped"], r["hosts"],
            ", ".join("%.1f" % t for t in times[name])))
    for name, label in (("site", "site.yml"), ("subset", "site.yml --tags storage,vms")):
        ratio = med[name] / med["community"]
        net = (med[name] - med["empty"]) / max(med["community"] - med["empty"], 1e-9)
        print("ratio %-28s %.2fx  (goal <= %.1fx: %s; less the start-up baseline: %.2fx)" % (
            label + " / community.libvirt:", ratio, GOAL, "met" if ratio <= GOAL else "NOT met", net))
    print("community.libvirt no-op: %s" % (
        "changed=0 on the re-run" if not cl_always_changed else
        "NOT a no-op, these tasks report changed on every run: " + ", ".join(cl_always_changed)))
    if cl_first_changed:
        print("  (its first run here changed: %s)" % ", ".join(cl_first_changed))
    print("not expressed through community.libvirt: switches, port groups, security groups (OVS, nftables), HA, "
          "the vrm and cna roles, the site record; volumes only by name (virt_volume state=present checks that the "
          "volume exists: no size, format or provisioning convergence), domains as whole XML (define of the lab's "
          "own XML: no declarative options); pool build is not idempotent (it runs only after a define here)")
    slow = [(n, lbl) for n, lbl in (("site", "site.yml"), ("subset", "site.yml --tags storage,vms"))
            if args.profile or (args.profile is None and med[n] / med["community"] > GOAL)]
    if slow:
        print()
        print("ansible.posix %s (from the same wheel) for its profile_tasks callback" % extract(wheel, "ansible.posix"))
    for name, label in slow:
        profile(env, label, plays[name], med[name], args.top)


if __name__ == "__main__":
    main()
