# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two generations of the stack in one lab (./dev test generations).

A lab of its own: three CNAs; cna1 and cna2 get their own /usr (an overlay of the machine's), cna3 stays on
the machine's libvirt 9.0 / QEMU 7.2. playbooks/site.yml (tag cna) makes all three compute nodes on the stock stack; a test
guest starts writing a checksummed block sequence on cna1; playbooks/rolling_upgrade.yml moves cna1 and cna2
to the backports stack (libvirt 11 / QEMU 10) one at a time while the guest keeps writing; check.yml then
moves VMs across the generations and reads every block back in the guest. Bad input (an unknown stack, a
downgrade) fails in one line with nothing changed. The machine's own /boot is untouched by the upgrade.
Every integration target runs on libvirt 11 in the named stage integration-newer (./dev test integration-newer,
a lab whose CNAs all run it; outside the default run for the CI budget). KVMF_GENERATION_TARGETS=snapshot,...
runs targets here as well, after the upgrade, with the first CNA on libvirt 11.
Ends with the lab down (KVMF_KEEP_LAB=1 keeps it).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LAB = os.path.join(ROOT, "tools", "lab")
ROLLING = os.path.join(ROOT, "playbooks", "rolling_upgrade.yml")
MAINTENANCE_UUID = "ab9123e9-28f4-5791-a5ae-7a85f4d025e9"
# Targets to run here after the upgrade (none by default: integration-newer runs them all on libvirt 11).
NEWER_TARGETS = [t.strip() for t in os.environ.get("KVMF_GENERATION_TARGETS", "").split(",") if t.strip()]


def sh(*cmd, **kw):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kw)


# The compute nodes of the site (the cna role), without the lab's example site (inventories/lab).
SITE_YML = os.path.join(ROOT, "playbooks", "site.yml")


def play(inventory, path, *extra):
    t0 = time.time()
    res = sh("ansible-playbook", "-i", inventory, path, *extra, timeout=2400)
    print(res.stdout[-12000:])
    print("[%.0fs] ansible-playbook %s %s" % (time.time() - t0, os.path.basename(path), " ".join(extra)))
    return res


def facts(inventory, host):
    """The kvmfusion local fact of a lab host, read on the host itself."""
    res = sh(LAB, "ssh", host, "cat /etc/ansible/facts.d/kvmfusion.fact")
    assert res.returncode == 0, res.stdout
    return json.loads(res.stdout)


def boot_listing():
    """The machine's own /boot: names, sizes and modification times."""
    return sorted((n, os.lstat(os.path.join("/boot", n)).st_size, os.lstat(os.path.join("/boot", n)).st_mtime_ns)
                  for n in os.listdir("/boot"))


def maintenance_marks(hosts):
    """The maintenance mark (a libvirt secret, see module_utils/hosts.py) of each host, empty when active."""
    return dict((h, sh(LAB, "ssh", h, "virsh -c qemu:///system secret-list | grep -F %s; true" % MAINTENANCE_UUID)
                 .stdout.strip()) for h in hosts)


@pytest.fixture(scope="module")
def lab():
    assert sh(LAB, "down").returncode == 0
    up = sh(LAB, "up", "--cna", "3", "--vrm", "0", "--own-usr", "cna1", "--own-usr", "cna2")
    assert up.returncode == 0, up.stdout
    inventory = sh(LAB, "inventory").stdout.strip()
    res = play(inventory, SITE_YML, "--tags", "cna")
    assert res.returncode == 0, res.stdout[-4000:]
    yield inventory
    if not os.environ.get("KVMF_KEEP_LAB"):
        sh(LAB, "down")


def one_line_failure(res, pattern):
    """The play failed, and its failure message is one line matching ``pattern``."""
    assert res.returncode != 0
    msgs = re.findall(r'"msg": "([^"\n]*)"', res.stdout)
    assert any(re.search(pattern, m) for m in msgs), msgs
    msg = [m for m in msgs if re.search(pattern, m)][0]
    assert "\\n" not in msg, msg  # one line (a newline shows as \n in the JSON Ansible prints)
    return msg


def test_a_rolling_upgrade_keeps_the_guest_writing_and_its_data(lab):
    hosts = ["cna1", "cna2", "cna3"]
    before = dict((h, facts(lab, h)) for h in hosts)
    assert all(before[h]["libvirt_version"].startswith("9.0.") for h in hosts), before

    # bad input first: one line each, nothing changed
    msg = one_line_failure(play(lab, ROLLING, "--limit", "cna1,cna2", "-e", "rolling_upgrade_stack=warp"),
                           r"rolling_upgrade_stack=warp is not a stack")
    print("unknown stack:", msg)
    solo = play(lab, ROLLING, "--limit", "cna1", "-e", "rolling_upgrade_stack=backports")
    print("one CNA:", one_line_failure(solo, r"needs two compute nodes or more"))
    assert dict((h, facts(lab, h)) for h in hosts) == before
    assert not any(maintenance_marks(hosts).values())

    res = play(lab, os.path.join(HERE, "prepare.yml"))
    assert res.returncode == 0, res.stdout[-4000:]

    machine_boot = boot_listing()
    res = play(lab, ROLLING, "--limit", "cna1,cna2", "-e", "rolling_upgrade_stack=backports")
    assert res.returncode == 0, res.stdout[-6000:]
    # the packages' triggers wrote nothing into the machine's /boot: a CNA with its own /usr writes its own
    # /boot, one on the machine's /usr cannot write it at all
    assert boot_listing() == machine_boot
    assert sh(LAB, "ssh", "cna1", "touch /boot/kvmf-probe && rm /boot/kvmf-probe").returncode == 0
    ro = sh(LAB, "ssh", "cna3", "touch /boot/kvmf-probe")
    assert ro.returncode != 0 and "Read-only file system" in ro.stdout, ro.stdout
    assert boot_listing() == machine_boot
    reports = re.findall(r'"msg": "(cna[12]: libvirt [^"]*)"', res.stdout)
    print("\n".join(reports))
    assert len(reports) == 2, reports
    # each CNA's evacuation moved the writer, and said with what downtime
    assert all("gen-writer downtime_ms=" in r for r in reports), reports
    after = dict((h, facts(lab, h)) for h in hosts)
    assert after["cna1"]["libvirt_version"].startswith("11.") and after["cna2"]["libvirt_version"].startswith("11.")
    assert after["cna3"]["libvirt_version"].startswith("9.0.")
    assert not any(maintenance_marks(hosts).values())

    # the same run again: every CNA is on the stack already, nothing moves
    again = play(lab, ROLLING, "--limit", "cna1,cna2", "-e", "rolling_upgrade_stack=backports")
    assert again.returncode == 0 and re.search(r"cna1\s*:.*changed=0", again.stdout), again.stdout[-3000:]
    assert not re.findall(r'"msg": "(cna[12]: libvirt [^"]*)"', again.stdout)

    # a downgrade is refused before anything moves
    msg = one_line_failure(play(lab, ROLLING, "--limit", "cna1,cna2", "-e", "rolling_upgrade_stack=stock"),
                           r"an older generation, which is not supported")
    print("downgrade:", msg)
    assert dict((h, facts(lab, h)["libvirt_version"]) for h in hosts) == \
        dict((h, after[h]["libvirt_version"]) for h in hosts)
    assert not any(maintenance_marks(hosts).values())

    res = play(lab, os.path.join(HERE, "check.yml"))
    assert res.returncode == 0, res.stdout[-6000:]


def _target_on_libvirt_11(lab, target):
    assert facts(lab, "cna1")["libvirt_version"].startswith("11."), "runs after the rolling upgrade"
    res = play(lab, os.path.join(ROOT, "tests", "integration", "target.yml"), "-e", "target=" + target)
    assert res.returncode == 0, "target %s failed on libvirt 11:\n%s" % (target, res.stdout[-6000:])
    assert "failed=0" in res.stdout and "unreachable=0" in res.stdout


if NEWER_TARGETS:  # an empty parametrize would be reported as a skip
    test_targets_on_libvirt_11 = pytest.mark.parametrize("target", NEWER_TARGETS)(_target_on_libvirt_11)


def _os_release(major):
    return ('PRETTY_NAME="Debian GNU/Linux %s"\nNAME="Debian GNU/Linux"\nVERSION_ID="%s"\nVERSION="%s"\n'
            'ID=debian\n' % (major, major, major))


def test_the_role_refuses_bad_input_in_one_line_and_changes_nothing(lab):
    fact_before = dict((h, facts(lab, h)) for h in ("cna1", "cna3"))
    # an unknown stack (the role's argument spec)
    res = play(lab, SITE_YML, "--tags", "cna", "--limit", "cna3", "-e", "cna_virt_stack=warp")
    print("unknown stack:", one_line_failure(res, r"cna_virt_stack=warp is not a stack: choose stock or backports"))
    # a downgrade: cna1 runs libvirt 11 after the rolling upgrade
    res = play(lab, SITE_YML, "--tags", "cna", "--limit", "cna1", "-e", "cna_virt_stack=stock")
    print("downgrade:", one_line_failure(res, r"runs libvirt 11\.[0-9.]+.*would install libvirt 9, an older generation"))
    # a release the role does not support, and backports on Debian 13 (cna3's own /etc says so for a moment)
    saved = sh(LAB, "ssh", "cna3", "cp -a /etc/os-release /root/os-release.kvmf && cp -a /etc/debian_version "
                                   "/root/debian_version.kvmf").returncode
    assert saved == 0
    try:
        for major, extra, pattern in (("11", [], r"supports Debian 12 and 13 .*found Debian 11"),
                                      ("13", ["-e", "cna_virt_stack=backports"],
                                       r"cna_virt_stack=backports does not exist on Debian 13")):
            assert sh(LAB, "ssh", "cna3", "rm -f /etc/os-release && printf '%%s' '%s' > /etc/os-release && "
                      "echo %s.1 > /etc/debian_version" % (_os_release(major), major)).returncode == 0
            res = play(lab, SITE_YML, "--tags", "cna", "--limit", "cna3", *extra)
            print("Debian %s:" % major, one_line_failure(res, pattern))
    finally:
        sh(LAB, "ssh", "cna3", "rm -f /etc/os-release /etc/debian_version && cp -a /root/os-release.kvmf "
                               "/etc/os-release && cp -a /root/debian_version.kvmf /etc/debian_version")
    assert dict((h, facts(lab, h)) for h in ("cna1", "cna3")) == fact_before
