# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters of playbooks/site.yml and snapshot.yml: schema checks, where VMs are, the record and the purge."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import sys

import pytest
import yaml

from ansible_collections.kvmfusion.compute.plugins.filter import site

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
CNAS = ["cna1", "cna2"]


def example():
    with open(os.path.join(ROOT, "inventories", "lab", "group_vars", "all.yml")) as f:
        return yaml.safe_load(f)


def test_the_lab_example_holds_together_and_names_every_object():
    assert site.site_problems(example(), CNAS, True) == []
    assert site.site_declared(example()) == {
        "vms": ["db1", "tpl-web", "web-01", "web-02"], "ha": ["db1"], "security_groups": ["sg-db", "sg-web"],
        "portgroups": ["dvs-lab/pg-db", "dvs-lab/pg-web"], "switches": ["dvs-lab"], "datastores": ["lab-shared"]}


@pytest.mark.parametrize("change, expected", [
    ({"kvmfusion_vms": [{"name": "a b"}]}, "invalid VM name 'a b'"),
    ({"kvmfusion_vms": [{"name": "x", "host": "cna9"}]}, "host 'cna9' is not in the inventory's group cna"),
    ({"kvmfusion_vms": [{"name": "x", "ha": {"priority": "high"}}]}, "have ha but the CNAs form no HA cluster"),
    ({"kvmfusion_vms": [{"name": "web-01"}]}, "web-01 declared more than once"),
    ({"kvmfusion_clones": [{"source": "tpl-web", "count": 2, "name_pattern": "web"}]}, "name_pattern must contain"),
    ({"kvmfusion_datastores": [{"name": "d", "hosts": ["nohost"]}]}, "hosts 'nohost' is not in"),
    ({"kvmfusion_switches": [{"name": "s", "portgroups": [{"name": "p"}, {"name": "p"}]}]}, "p declared more than once"),
    ({"kvmfusion_vms": "db1"}, "kvmfusion_vms must be a list of dicts"),
    ({"kvmfusion_vms": [{"name": "x", "vcpu": 2}]}, "kvmfusion_vms x: unknown key(s) vcpu (known: name, state"),
    ({"kvmfusion_templates": [{"name": "t", "ha": {}}]}, "kvmfusion_templates t: unknown key(s) ha"),
    ({"kvmfusion_vms": [{"name": "x", "ha": {"priorty": "high"}}]}, "ha of VM x: unknown key(s) priorty"),
    ({"kvmfusion_clones": [{"source": "tpl-web", "name": "c", "host": "cna1"}]},
     "kvmfusion_clones tpl-web: unknown key(s) host"),
    ({"kvmfusion_datastores": [{"name": "d", "pth": "/x"}]}, "kvmfusion_datastores d: unknown key(s) pth"),
    ({"kvmfusion_switches": [{"name": "s", "portgroups": [{"name": "p", "vlan_id": 3}]}]},
     "portgroups s/p: unknown key(s) vlan_id"),
    ({"kvmfusion_security_groups": [{"name": "g", "rule": []}]}, "kvmfusion_security_groups g: unknown key(s) rule"),
    ({"kvmfusion_snapshot_policy": {"vms": ["db1"], "kep": 2}}, "kvmfusion_snapshot_policy: unknown key(s) kep"),
    ({"kvmfusion_snapshot_policy": ["db1"]}, "kvmfusion_snapshot_policy must be a dict"),
])
def test_bad_declarations_are_each_named_in_one_short_sentence(change, expected):
    cfg = dict(example(), **change)
    if "ha" in str(change):
        cfg.pop("kvmfusion_ha")
    problems = site.site_problems(cfg, CNAS, "ha" not in str(change))
    assert any(expected in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_every_unknown_key_is_refused_at_once_and_the_example_uses_none():
    cfg = dict(example(), kvmfusion_vms=[{"name": "x", "vcpu": 2, "mem": 1}], kvmfusion_switches=[{"name": "s", "mt": 1}])
    problems = site.site_problems(cfg, CNAS, True)
    assert [p for p in problems if "unknown key" in p] == [
        "kvmfusion_switches s: unknown key(s) mt (known: %s)" % ", ".join(site.KEYS["kvmfusion_switches"]),
        "kvmfusion_vms x: unknown key(s) mem, vcpu (known: %s)" % ", ".join(site.KEYS["kvmfusion_vms"])]


def _site_reads():
    """What playbooks/site.yml reads of each declaration (item.X in the task that loops over it)."""
    import re
    with open(os.path.join(ROOT, "playbooks", "site.yml")) as f:
        plays = yaml.safe_load(f)
    reads = {}
    for play in plays:
        for task in play.get("tasks") or []:
            loop, body = str(task.get("loop", "")), yaml.safe_dump(task)
            for key in site.KEYS:
                if key.startswith("kvmfusion_") and re.search(r"\b%s\b" % key, loop):
                    reads.setdefault(key, set()).update(re.findall(r"item\.(\w+)", body))
            if "subelements('portgroups'" in loop:
                reads.setdefault("portgroups", set()).update(re.findall(r"item\.1\.(\w+)", body))
                reads.setdefault("kvmfusion_switches", set()).add("portgroups")
            if "selectattr('ha'" in loop:
                reads.setdefault("ha", set()).update(re.findall(r"item\.ha\.(\w+)", body))
    return reads


def test_the_known_keys_are_what_site_yml_passes_on_plus_the_site_keys():
    reads = _site_reads()
    site_own = {"kvmfusion_datastores": {"hosts"}, "kvmfusion_templates": {"host"}, "kvmfusion_vms": {"host", "ha"},
                "kvmfusion_switches": {"portgroups"}}
    for key in ("kvmfusion_datastores", "kvmfusion_switches", "kvmfusion_security_groups", "kvmfusion_clones",
                "portgroups", "ha"):
        assert set(site.KEYS[key]) == (reads[key] - {"0", "1", "ha"}) | site_own.get(key, set()), key
    # templates and VMs share one task
    vm_task = reads["kvmfusion_vms"] - {"ha"}
    assert set(site.KEYS["kvmfusion_templates"]) == vm_task | {"host"}
    assert set(site.KEYS["kvmfusion_vms"]) == vm_task | {"host", "ha"}


def test_a_vm_is_managed_where_it_runs_then_where_it_is_defined_then_at_home():
    lists = {"cna1": [{"name": "a", "state": "shutoff"}, {"name": "b", "state": "shutoff"}],
             "cna2": [{"name": "a", "state": "running"}]}
    where = site.site_locate(lists, ["a", "b", "c", "d"], {"a": "cna1", "b": "cna2", "c": "cna2"}, "cna1")
    assert where == {"a": "cna2", "b": "cna1", "c": "cna2", "d": "cna1"}


def test_the_record_keeps_what_was_declared_until_it_is_purged():
    old = [{"vms": ["a", "b"], "switches": ["s"]}, {"vms": ["c"]}]
    declared = {"vms": ["a"], "switches": ["t"]}
    purge = site.site_purge(old, declared)
    assert purge["vms"] == ["b", "c"] and purge["switches"] == ["s"] and purge["datastores"] == []
    # not purged (no kvmfusion_purge): the record still holds them for a later purge
    assert site.site_record(old, declared)["vms"] == ["a", "b", "c"]
    after = site.site_record(old, declared, purge)
    assert after["vms"] == ["a"] and after["switches"] == ["t"]
    assert site.site_purge([after], declared)["vms"] == []


LISTS = {"cna1": [{"name": "tpl", "uuid": "u1", "state": "shutoff", "disks": [{"datastore": "ds"}]},
                  {"name": "c1", "uuid": "u2", "state": "running", "clone_of": {"source": "tpl"},
                   "disks": [{"datastore": "ds"}]},
                  {"name": "hand", "uuid": "u9", "state": "shutoff", "disks": []}],
         "cna2": [{"name": "keep", "uuid": "u3", "state": "running", "disks": [{"datastore": "ds"}]}]}
RECORD = [{"vms": ["tpl", "c1", "hand", "old", "keep"], "vm_uuids": {"tpl": "u1", "c1": "u2", "hand": "u0", "keep": "u3"},
           "datastores": ["ds"], "switches": ["s"]}]


def test_a_purge_removes_a_vm_only_while_it_is_the_one_the_site_made_and_clones_first():
    purge = site.site_purge(RECORD, {"vms": ["keep"], "datastores": ["ds"], "switches": ["s"]}, LISTS)
    # 'hand' was made since under a name the site used: left; 'old' exists nowhere: only dropped from the record
    assert purge["vms"] == ["c1", "tpl"] and purge["foreign"] == ["hand"] and purge["gone"] == ["old"]
    assert purge["sources"] == ["tpl"] and purge["problems"] == []
    record = site.site_record(RECORD, {"vms": ["keep"]}, dict(purge, vms=purge["vms"] + purge["gone"] + purge["foreign"]),
                              LISTS)
    assert record["vms"] == ["keep"] and record["vm_uuids"] == {"keep": "u3"}


def test_a_purge_is_refused_for_a_datastore_in_use_and_for_an_area_left_empty():
    purge = site.site_purge(RECORD, {"vms": ["keep"], "switches": ["s"]}, LISTS)
    assert purge["problems"] == ["datastore ds is still used by VM(s) keep, which stay",
                                 "the declarations leave datastores empty while the site made datastores ds: set "
                                 "kvmfusion_purge_all to remove all of it"]
    everything = site.site_purge(RECORD, {}, dict(LISTS, cna2=[]), purge_all=True)
    assert everything["problems"] == [] and everything["vms"] == ["c1", "tpl"] and everything["gone"] == ["keep", "old"]


def test_the_record_keeps_each_declared_vms_uuid():
    record = site.site_record([], {"vms": ["tpl", "new"]}, None, LISTS)
    assert record["vms"] == ["new", "tpl"] and record["vm_uuids"] == {"tpl": "u1"}


def test_retention_counts_the_snapshot_being_taken_and_only_its_own_prefix():
    results = [{"item": "web-01", "snapshots": [
        {"name": "auto-1", "creation_time": 1}, {"name": "manual", "creation_time": 0},
        {"name": "auto-2", "creation_time": 2}, {"name": "auto-3", "creation_time": 3}]},
        {"item": "web-02", "skipped": True}]
    # a check run: auto-4 is not taken yet, but counts as the newest
    assert site.snapshot_expired(results, "auto", 2, "auto-4") == [{"vm": "web-01", "name": "auto-1"},
                                                                   {"vm": "web-01", "name": "auto-2"}]
    results[0]["snapshots"].append({"name": "auto-4", "creation_time": 4})
    assert site.snapshot_expired(results, "auto", 2, "auto-4") == [{"vm": "web-01", "name": "auto-1"},
                                                                   {"vm": "web-01", "name": "auto-2"}]
    assert site.snapshot_expired(results, "auto", 9, "auto-4") == []


def test_a_filter_error_is_an_ansible_filter_error():
    # in a process of its own: importing ansible.errors makes this one the controller for every later test
    code = ("from ansible.errors import AnsibleFilterError\n"
            "from ansible_collections.kvmfusion.compute.plugins.filter import site\n"
            "try:\n    site.FilterModule().filters()['snapshot_expired']([], 'auto', 0)\n"
            "except AnsibleFilterError as e:\n    print('filter error:', e)\n")
    res = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         check=False)
    assert "filter error: snapshot_expired: keep must be at least 1" in res.stdout, res.stderr
