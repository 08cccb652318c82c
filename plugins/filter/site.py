# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of playbooks/site.yml: its inventory schema checked in one place, where each declared VM is, and what a
purge would remove. Plain functions over plain data (tests/unit/plugins/filter/test_site.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.kvmfusion.compute.plugins.module_utils import names
from ansible_collections.kvmfusion.compute.plugins.module_utils.clones import clone_names

# The areas of the site, as site.yml records what it declared (per area, names) and purges them.
AREAS = ("vms", "ha", "security_groups", "portgroups", "switches", "datastores")
_LISTS = ("kvmfusion_datastores", "kvmfusion_switches", "kvmfusion_security_groups", "kvmfusion_templates",
          "kvmfusion_vms", "kvmfusion_clones")

# The keys each declaration takes: the module options site.yml passes on, and the site's own keys (docs/site.md).
# A key outside them is refused, not dropped: a typo in an option would otherwise change nothing and say nothing.
# tests/unit/plugins/filter/test_site.py checks these against what playbooks/site.yml reads.
_VM_KEYS = ("name", "state", "description", "hypervisor", "vcpus", "max_vcpus", "memory", "max_memory", "cpu_model",
            "cpu_features", "firmware", "machine", "boot_devices", "kernel", "initrd", "cmdline", "graphics",
            "guest_agent", "template", "disks", "nics", "qos", "host")
KEYS = {
    "kvmfusion_datastores": ("name", "type", "shared", "path", "server", "export", "mount_options", "portal", "iqn",
                             "initiator_iqn", "chap_username", "chap_password", "devices", "vg_name", "adapter",
                             "wwnn", "wwpn", "parent", "autostart", "hosts"),
    "kvmfusion_switches": ("name", "uplinks", "bond_mode", "lacp", "mtu", "portgroups"),
    "portgroups": ("name", "vlan_mode", "vlan", "trunk_vlans", "native_vlan", "shaping", "dhcp_isolation",
                   "ip_mac_binding"),
    "kvmfusion_security_groups": ("name", "rules", "peers"),
    "kvmfusion_templates": _VM_KEYS,
    "kvmfusion_vms": _VM_KEYS + ("ha",),
    "ha": ("priority", "preferred_hosts", "forbidden_hosts", "max_restarts", "failure_timeout", "guest_monitor",
           "start_timeout", "stop_timeout", "migrate_timeout"),
    "kvmfusion_clones": ("source", "snapshot", "name", "names", "count", "name_pattern", "start_index", "linked",
                         "datastore", "provisioning", "format", "state", "hostname", "metadata"),
    "kvmfusion_snapshot_policy": ("vms", "keep", "memory", "quiesce", "prefix"),
}


def _list(config, key, problems):
    value = config.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
        problems.append("%s must be a list of dicts" % key)
        return []
    return value


def _name(item, key, kind, problems, field="name"):
    try:
        return names.validate_name(item.get(field), kind=kind)
    except ValueError as e:
        problems.append("%s: %s" % (key, e))
        return None


def _unknown(item, kind, what, problems):
    extra = sorted(str(k) for k in item if k not in KEYS[kind])
    if extra:
        where = ("%s %s" % (kind, what)) if what else kind
        problems.append("%s: unknown key(s) %s (known: %s)" % (where, ", ".join(extra), ", ".join(KEYS[kind])))


def clones_of(item):
    """The VM names one entry of kvmfusion_clones makes."""
    if item.get("name"):
        return [item["name"]]
    return clone_names(item.get("names"), item.get("count"), item.get("name_pattern"), item.get("start_index", 1))


def site_problems(config, cna_hosts, ha_cluster=False):
    """Every problem of the site's declarations (empty when none), each a short sentence."""
    problems, cna_hosts = [], list(cna_hosts or [])
    lists = {k: _list(config, k, problems) for k in _LISTS}
    if not cna_hosts:
        problems.append("the inventory has no host in group cna")
    for key in _LISTS:
        for i in lists[key]:
            _unknown(i, key, i.get("source") if key == "kvmfusion_clones" else i.get("name"), problems)
    policy = config.get("kvmfusion_snapshot_policy")
    if policy is not None and not isinstance(policy, dict):
        problems.append("kvmfusion_snapshot_policy must be a dict")
    elif policy:
        _unknown(policy, "kvmfusion_snapshot_policy", "", problems)

    def on_cnas(key, item, field, many):
        hosts = item.get(field)
        if hosts is None:
            return
        for h in (hosts if many else [hosts]):
            if h not in cna_hosts:
                what = item.get("name") or item.get("source")
                problems.append("%s %s: %s %r is not in the inventory's group cna" % (key, what, field, h))

    def unique(key, values):
        dup = sorted(set(v for v in values if v and values.count(v) > 1))
        if dup:
            problems.append("%s: %s declared more than once" % (key, ", ".join(dup)))

    ds = [_name(i, "kvmfusion_datastores", "datastore", problems) for i in lists["kvmfusion_datastores"]]
    unique("kvmfusion_datastores", ds)
    for i in lists["kvmfusion_datastores"]:
        on_cnas("datastore", i, "hosts", True)
    sw = [_name(i, "kvmfusion_switches", "DVS", problems) for i in lists["kvmfusion_switches"]]
    unique("kvmfusion_switches", sw)
    for i in lists["kvmfusion_switches"]:
        pgs = i.get("portgroups") or []
        if not isinstance(pgs, list) or not all(isinstance(p, dict) for p in pgs):
            problems.append("DVS %s: portgroups must be a list of dicts" % i.get("name"))
            continue
        pg_names = [_name(p, "DVS %s" % i.get("name"), "port group", problems) for p in pgs]
        for p in pgs:
            _unknown(p, "portgroups", "%s/%s" % (i.get("name"), p.get("name")), problems)
        unique("DVS %s portgroups" % i.get("name"), pg_names)
    sgs = [_name(i, "kvmfusion_security_groups", "security group", problems)
           for i in lists["kvmfusion_security_groups"]]
    unique("kvmfusion_security_groups", sgs)

    vms = []
    for key in ("kvmfusion_templates", "kvmfusion_vms"):
        for i in lists[key]:
            vms.append(_name(i, key, "VM", problems))
            on_cnas(key[10:-1], i, "host", False)
    for i in lists["kvmfusion_clones"]:
        _name(i, "kvmfusion_clones", "source VM", problems, field="source")
        try:
            vms += clones_of(i)
        except ValueError as e:
            problems.append("kvmfusion_clones of %s: %s" % (i.get("source"), e))
    unique("VMs (templates, VMs and clones)", vms)
    with_ha = [i.get("name") for i in lists["kvmfusion_vms"] if i.get("ha")]
    if with_ha and not ha_cluster:
        problems.append("VM(s) %s have ha but the CNAs form no HA cluster (cna_ha_cluster)" % ", ".join(with_ha))
    if config.get("kvmfusion_ha") and not ha_cluster:
        problems.append("kvmfusion_ha is set but the CNAs form no HA cluster (cna_ha_cluster)")
    for i in lists["kvmfusion_vms"]:
        if i.get("ha") is not None and not isinstance(i.get("ha"), dict):
            problems.append("VM %s: ha must be a dict (priority, preferred_hosts...)" % i.get("name"))
        elif i.get("ha"):
            _unknown(i["ha"], "ha", "of VM %s" % i.get("name"), problems)
            for h in (i["ha"].get("preferred_hosts") or []) + (i["ha"].get("forbidden_hosts") or []):
                if h not in cna_hosts:
                    problems.append("VM %s: ha host %r is not in the inventory's group cna" % (i.get("name"), h))
    return problems


def site_declared(config):
    """What the declarations name, per area (the record site.yml keeps, and what a purge compares with)."""
    vms = [i["name"] for k in ("kvmfusion_templates", "kvmfusion_vms") for i in config.get(k) or []]
    for i in config.get("kvmfusion_clones") or []:
        vms += clones_of(i)
    return {
        "vms": sorted(vms),
        "ha": sorted(i["name"] for i in config.get("kvmfusion_vms") or [] if i.get("ha")),
        "security_groups": sorted(i["name"] for i in config.get("kvmfusion_security_groups") or []),
        "portgroups": sorted("%s/%s" % (s["name"], p["name"]) for s in config.get("kvmfusion_switches") or []
                             for p in s.get("portgroups") or []),
        "switches": sorted(i["name"] for i in config.get("kvmfusion_switches") or []),
        "datastores": sorted(i["name"] for i in config.get("kvmfusion_datastores") or []),
    }


def site_locate(vm_lists, wanted, homes, fallback=None):
    """{VM name: the CNA to manage it on}: where it runs, else where it is defined, else its home (``homes``: the
    declared host), else ``fallback`` (the first CNA). ``vm_lists`` is {CNA: vm_info's vms} in inventory order."""
    where = {}
    for name in wanted:
        running = [h for h, vms in vm_lists.items()
                   if any(v["name"] == name and v["state"] != "shutoff" for v in vms or [])]
        defined = [h for h, vms in vm_lists.items() if any(v["name"] == name for v in vms or [])]
        where[name] = (running or defined or [(homes or {}).get(name) or fallback])[0]
    return where


def _uuids(vm_lists):
    """{name: uuid} of the VMs of every CNA (a VM that runs on one CNA and is defined on another has one UUID)."""
    return dict((v["name"], v.get("uuid")) for vms in (vm_lists or {}).values() for v in vms or [])


def site_record(records, declared, purged=None, vm_lists=None):
    """The new record: what earlier runs declared (every CNA's record merged), with what this run declares, less
    what this run purged. ``vm_uuids`` keeps the UUID of each declared VM as found (``vm_lists``): a purge removes
    a VM only while it is still that VM."""
    merged = {a: set() for a in AREAS}
    uuids = {}
    for r in records or []:
        for a in AREAS:
            merged[a].update((r or {}).get(a) or [])
        uuids.update((r or {}).get("vm_uuids") or {})
    found = _uuids(vm_lists)
    for a in AREAS:
        merged[a].update(declared.get(a) or [])
        merged[a].difference_update((purged or {}).get(a) or [])
    for n in declared.get("vms") or []:
        if found.get(n):
            uuids[n] = found[n]
    out = {a: sorted(merged[a]) for a in AREAS}
    out["vm_uuids"] = dict((n, u) for n, u in sorted(uuids.items()) if n in merged["vms"])
    return out


def site_purge(records, declared, vm_lists=None, purge_all=False):
    """What a purge removes: what earlier runs declared (the records) and the declarations no longer name.

    With ``vm_lists`` ({CNA: vm_info's vms}), a VM is removed only while it is the VM the site recorded (same UUID):
    one made since under the same name is left (``foreign``); one that exists nowhere is only dropped from the
    record. ``clones_first`` orders the VMs so that a VM goes after the clones that stand on it; ``sources`` are the
    VMs some purged clone stands on (a check run, which removes nothing, cannot remove them either). ``problems``
    are refusals: a datastore still used by a VM that stays, an area the declarations leave empty while the record
    still holds names in it (unless ``purge_all``)."""
    recorded = site_record(records, {})
    purge = dict((a, [n for n in recorded[a] if n not in (declared.get(a) or [])]) for a in AREAS)
    purge.update(foreign=[], gone=[], sources=[], problems=[])
    if vm_lists is not None:
        found = _uuids(vm_lists)
        vms = []
        for n in purge["vms"]:
            if n not in found:
                purge["gone"].append(n)
            elif recorded["vm_uuids"].get(n) and recorded["vm_uuids"][n] == found[n]:
                vms.append(n)
            else:
                purge["foreign"].append(n)
        info = dict((v["name"], v) for lst in vm_lists.values() for v in lst or [])

        def depth(n, seen=()):
            src = ((info.get(n) or {}).get("clone_of") or {}).get("source")
            return 0 if not src or src in seen else 1 + depth(src, seen + (n,))
        purge["vms"] = sorted(vms, key=lambda n: (-depth(n), n))
        purge["sources"] = sorted(set(((info[n].get("clone_of") or {}).get("source")) for n in vms
                                      if (info[n].get("clone_of") or {}).get("source") in vms))
        purge["ha"] = [n for n in purge["ha"] if n not in purge["foreign"]]
        staying = [v for v in info.values() if v["name"] not in vms]
        for ds in purge["datastores"]:
            users = sorted(v["name"] for v in staying if any(d.get("datastore") == ds for d in v.get("disks") or []))
            if users:
                purge["problems"].append("datastore %s is still used by VM(s) %s, which stay" % (ds, ", ".join(users)))
    if not purge_all:
        # (HA is left out: taking every VM out of HA removes no data)
        empty = [a for a in AREAS if a != "ha" and purge[a] and not declared.get(a)]
        if empty:
            purge["problems"].append("the declarations leave %s empty while the site made %s: set kvmfusion_purge_all "
                                     "to remove all of it" % (", ".join(empty), "; ".join(
                                         "%s %s" % (a, ", ".join(purge[a])) for a in empty)))
    return purge


def snapshot_expired(results, prefix, keep, taking=None):
    """[{vm, name}] of the snapshots playbooks/snapshot.yml deletes: per VM (``results``: snapshot_info's, looped
    over VMs), those named ``<prefix>-...`` beyond the newest ``keep``, counting ``taking`` (the one this run takes,
    which a check run has not) as the newest."""
    if int(keep) < 1:
        raise ValueError("keep must be at least 1")
    out = []
    for r in results or []:
        snaps = sorted((s for s in r.get("snapshots") or [] if s["name"].startswith(prefix + "-")),
                       key=lambda s: (s.get("creation_time") or 0, s["name"]))
        ordered = [s["name"] for s in snaps if s["name"] != taking] + ([taking] if taking else [])
        out += [{"vm": r["item"], "name": n} for n in ordered[:max(len(ordered) - int(keep), 0)]]
    return out


def _wrap(fn):
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError, TypeError) as e:
            # imported here: ansible.errors marks the process as the controller, which changes how module results
            # are made (the unit tests run modules in the same process)
            from ansible.errors import AnsibleFilterError
            raise AnsibleFilterError("%s: %s" % (fn.__name__, e))
    return inner


class FilterModule(object):
    def filters(self):
        fns = (site_problems, site_declared, site_locate, site_record, site_purge, snapshot_expired)
        return dict((f.__name__, _wrap(f)) for f in fns)
