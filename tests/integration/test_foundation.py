# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""End to end: the lab, the cna role and the libvirt client layer together.

Covers: every lab host boots systemd with its own machine-id, MAC and libvirt host
UUID; one CNA reaches another's libvirt over qemu+ssh; the shared datastore is one
directory on every host while /tmp is private; a throwaway domain is defined,
started, inspected and removed on each CNA through the collection's client, and its
QEMU process runs inside that CNA only; while a VM runs from a shared-datastore disk,
virtlockd (set up by the cna role) holds that disk's direct lease (a lock on the file
itself) so no other CNA can take it, and a second VM on another CNA cannot start on it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import uuid
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client, LibvirtClientError

SHARED = "/var/lib/kvmfusion/shared"


def test_hosts_have_distinct_identities(lab):
    seen = {"machine-id": {}, "mac": {}, "host-uuid": {}}
    for name in lab.hosts:
        out = lab.ssh(name, "systemctl is-system-running; cat /etc/machine-id; "
                            "cat /sys/class/net/eth0/address; "
                            "virsh -c qemu:///system capabilities | sed -n 's:.*<uuid>\\(.*\\)</uuid>.*:\\1:p' | head -1")
        state, machine_id, mac, host_uuid = out.stdout.split()
        assert state == "running", "%s: systemd is %s" % (name, state)
        for key, value in (("machine-id", machine_id), ("mac", mac), ("host-uuid", host_uuid)):
            assert value not in seen[key], "%s %s of %s also on %s" % (key, value, name, seen[key].get(value))
            seen[key][value] = name
    assert len(seen["host-uuid"]) == len(lab.hosts)


def test_cna_reaches_another_cnas_libvirt(lab):
    cnas = lab.group("cna")
    assert len(cnas) >= 2, "the lab needs two CNAs"
    src, dst = cnas[0], cnas[1]
    out = lab.ssh(src, "virsh -c qemu+ssh://root@%s/system hostname && virsh -c qemu+ssh://root@%s/system list --all"
                  % (dst, dst))
    assert out.stdout.splitlines()[0].strip() == dst


def test_shared_datastore_is_shared_and_tmp_is_private(lab):
    cnas = lab.group("cna")
    marker = "kvmf-%s" % uuid.uuid4().hex
    lab.ssh(cnas[0], "echo %s > %s/%s && echo %s > /tmp/%s" % (marker, SHARED, marker, marker, marker))
    try:
        for other in cnas[1:]:
            assert lab.ssh(other, "cat %s/%s" % (SHARED, marker)).stdout.strip() == marker
            assert lab.ssh(other, "test -e /tmp/%s" % marker, check=False).returncode != 0
        assert not os.path.exists("/tmp/" + marker), "a lab host's /tmp leaked onto the machine"
    finally:
        lab.ssh(cnas[0], "rm -f %s/%s /tmp/%s" % (SHARED, marker, marker))


def _domain_xml(name, domain_type, disk=None):
    dom = ET.Element("domain", type=domain_type)
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory", unit="MiB").text = "64"
    ET.SubElement(dom, "vcpu").text = "1"
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    devices = ET.SubElement(dom, "devices")
    ET.SubElement(devices, "serial", type="pty")
    if disk:
        d = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(d, "driver", name="qemu", type="raw")
        ET.SubElement(d, "source", file=disk)
        ET.SubElement(d, "target", dev="vda", bus="virtio")
    return xmlutil.tostring(dom)


@pytest.mark.parametrize("index", [0, 1])
def test_throwaway_domain_lifecycle(lab, index):
    cna = lab.group("cna")[index]
    others = [h for h in lab.group("cna") if h != cna]
    name = "kvmf-e2e-%s" % uuid.uuid4().hex[:8]
    with Client(lab.uri(cna)) as client:
        info = client.host_info()
        assert info["hostname"] == cna
        domain_type = info["domain_types"][0]
        print("%s runs %s guests (libvirt %s)" % (cna, domain_type, info["libvirt_version"]))
        assert client.domain(name) is None
        client.define_domain(_domain_xml(name, domain_type))
        try:
            dom = client.domain(name)
            assert dom is not None and not dom.isActive()
            client.call("start", "domain '%s'" % name, dom.create)
            assert dom.isActive()
            live = xmlutil.parse(client.domain_xml(name))
            assert live.get("type") == domain_type
            assert xmlutil.find_text(live, "memory") == str(64 * 1024)
            assert live.get("id") is not None
            pid = lab.ssh(cna, "pgrep -f 'guest=%s,' " % name).stdout.split()
            assert pid, "no QEMU process for %s on %s" % (name, cna)
            for other in others:
                assert lab.ssh(other, "pgrep -f 'guest=%s,'" % name, check=False).returncode != 0
            client.call("stop", "domain '%s'" % name, dom.destroy)
            assert not dom.isActive()
        finally:
            dom = client.domain(name)
            if dom is not None:
                if dom.isActive():
                    dom.destroy()
                assert client.undefine_domain(name) is True
        assert client.domain(name) is None
        assert name not in client.domain_names()


def test_client_errors_name_object_and_uri(lab):
    cna = lab.group("cna")[0]
    with Client(lab.uri(cna)) as client:
        with pytest.raises(LibvirtClientError) as err:
            client.define_domain("<domain type='kvm'><name>bad</name></domain>")
    msg = str(err.value)
    assert "\n" not in msg
    assert "domain 'bad'" in msg and lab.hosts[cna]["ip"] in msg


# Try virtlockd's direct lease: an exclusive POSIX lock on byte 0 of the disk file.
_TRY_LOCK = ("/usr/bin/python3 -c 'import fcntl,sys\n"
             "try: fcntl.lockf(open(sys.argv[1],\"r+\"), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0); print(\"free\")\n"
             "except BlockingIOError: print(\"held\")' %s")


def test_virtlockd_keeps_a_shared_disk_to_one_running_vm(lab):
    cna1, cna2 = lab.group("cna")[:2]
    tag = uuid.uuid4().hex[:8]
    disk = "%s/kvmf-lock-%s.img" % (SHARED, tag)
    names = {cna1: "kvmf-lock-a-%s" % tag, cna2: "kvmf-lock-b-%s" % tag}
    lab.ssh(cna1, "truncate -s 16M %s" % disk)
    clients = {h: Client(lab.uri(h)) for h in (cna1, cna2)}
    try:
        for h, c in clients.items():
            c.define_domain(_domain_xml(names[h], c.host_info()["domain_types"][0], disk=disk))
        first = clients[cna1].domain(names[cna1])
        clients[cna1].call("start", "domain", first.create)
        assert first.isActive()
        second = clients[cna2].domain(names[cna2])
        with pytest.raises(LibvirtClientError) as err:
            clients[cna2].call("start", "domain '%s'" % names[cna2], second.create)
        print("second start refused: %s" % err.value)
        assert "lock" in str(err.value).lower()
        assert not second.isActive()
        # The refusal above may come from QEMU's own image lock (bytes 100+); byte 0 is virtlockd's lease.
        assert lab.ssh(cna2, _TRY_LOCK % disk, check=False).stdout.strip() == "held"
        # Released when the first VM stops: the disk can move to the other CNA.
        first.destroy()
        assert lab.ssh(cna2, _TRY_LOCK % disk, check=False).stdout.strip() == "free"
        clients[cna2].call("start", "domain '%s'" % names[cna2], second.create)
        assert second.isActive()
        second.destroy()
    finally:
        for h, c in clients.items():
            dom = c.domain(names[h])
            if dom is not None:
                if dom.isActive():
                    dom.destroy()
                c.undefine_domain(names[h])
            c.close()
        lab.ssh(cna1, "rm -f %s" % disk)
