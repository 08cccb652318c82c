# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""VMs: the declarative spec, its libvirt domain XML, power states and online changes.

``desired_state`` validates the vm module's options into the managed view (only what the
user set); ``managed_view`` reads the same view back from a domain's inactive XML with
libvirt-generated values ignored, so comparing the two is the idempotence check and the
diff. Disks are attached through disks.DiskManager: one implementation for disk and vm.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import names, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.actions import ActionRecorder

VM_NS = "https://kvmfusion.compute/xmlns/vm/1"
VM_KEY = "kvmfvm"
CLONE_NS = "https://kvmfusion.compute/xmlns/clone/1"
STATES = ("present", "running", "stopped", "restarted", "suspended", "paused", "absent")
NIC_MODELS = ("virtio", "e1000", "rtl8139")
GRAPHICS = ("none", "vnc", "spice")
# libvirt ABI constants (stable)
AFFECT_LIVE, AFFECT_CONFIG = 1, 2
VCPU_MAXIMUM = 4
MEM_MAXIMUM = 4
SHUTDOWN_ACPI, SHUTDOWN_AGENT = 1, 4
UNDEFINE_MANAGED_SAVE, UNDEFINE_SNAPSHOTS_METADATA, UNDEFINE_NVRAM = 1, 2, 4
METADATA_ELEMENT = 2
XML_INACTIVE = 2
DOMAIN_STATE = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
                6: "crashed", 7: "pmsuspended"}
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_CPU_MODEL = re.compile(r"^[A-Za-z0-9_.-]+$")
_KEEP_MAC_PREFIX = "52:54:00"


def _size(vm, value, what):
    try:
        n = names.parse_size(value, kind=what)
    except ValueError as e:
        raise ValueError("VM '%s': %s" % (vm, e))
    if n < 1024 * 1024:
        raise ValueError("VM '%s': %s must be at least 1MiB, got %r" % (vm, what, value))
    # libvirt keeps memory in KiB: round down so what is compared is what libvirt holds.
    return n // 1024 * 1024


def desired_state(p):
    """Validate vm module options (ValueError, one line) into the managed view of what the user set."""
    d = {"name": names.validate_name(p["name"], kind="VM")}
    if p.get("description") is not None:
        if any(c in p["description"] for c in "\x00"):
            raise ValueError("VM '%s': description contains NUL" % d["name"])
        # libvirt drops an empty description and the view strips spaces: compare what libvirt keeps.
        d["description"] = p["description"].strip() or None
    if p.get("vcpus") is not None:
        if int(p["vcpus"]) < 1:
            raise ValueError("VM '%s': vcpus must be at least 1" % d["name"])
        d["vcpus"] = int(p["vcpus"])
    if p.get("max_vcpus") is not None:
        if int(p["max_vcpus"]) < 1:
            raise ValueError("VM '%s': max_vcpus must be at least 1" % d["name"])
        d["max_vcpus"] = int(p["max_vcpus"])
    if d.get("vcpus") and d.get("max_vcpus") is None and p.get("vcpus") is not None:
        d["max_vcpus"] = d["vcpus"]
    if d.get("max_vcpus") is not None and d.get("vcpus") is not None and d["vcpus"] > d["max_vcpus"]:
        raise ValueError("VM '%s': vcpus %d is above max_vcpus %d" % (d["name"], d["vcpus"], d["max_vcpus"]))
    if p.get("memory") is not None:
        d["memory"] = _size(d["name"], p["memory"], "memory")
        d["max_memory"] = _size(d["name"], p["max_memory"], "max_memory") if p.get("max_memory") is not None else d["memory"]
        if d["memory"] > d["max_memory"]:
            raise ValueError("VM '%s': memory %d is above max_memory %d" % (d["name"], d["memory"], d["max_memory"]))
    elif p.get("max_memory") is not None:
        raise ValueError("VM '%s': max_memory needs memory" % d["name"])
    for key, choices in (("firmware", ("bios", "uefi")), ("graphics", GRAPHICS)):
        if p.get(key) is not None:
            if p[key] not in choices:
                raise ValueError("VM '%s': %s must be one of %s" % (d["name"], key, ", ".join(choices)))
            d[key] = p[key]
    if p.get("machine") is not None:
        if not _CPU_MODEL.match(p["machine"]):
            raise ValueError("VM '%s': invalid machine type %r" % (d["name"], p["machine"]))
        d["machine"] = p["machine"]
    if p.get("cpu_model") is not None:
        if not _CPU_MODEL.match(p["cpu_model"]):
            raise ValueError("VM '%s': invalid cpu_model %r" % (d["name"], p["cpu_model"]))
        d["cpu_model"] = p["cpu_model"]
    if p.get("cpu_features"):
        feats = {}
        for k, v in p["cpu_features"].items():
            if not _CPU_MODEL.match(k) or v not in ("require", "disable", "optional", "force", "forbid"):
                raise ValueError("VM '%s': cpu_features %s=%s is not a feature name with policy require, disable, "
                                 "optional, force or forbid" % (d["name"], k, v))
            feats[k] = v
        d["cpu_features"] = feats
    for key in ("kernel", "initrd"):
        if p.get(key) is not None:
            if not p[key].startswith("/") or ".." in p[key].split("/"):
                raise ValueError("VM '%s': %s must be an absolute path" % (d["name"], key))
            d[key] = p[key]
    if p.get("cmdline") is not None:
        if not d.get("kernel"):
            raise ValueError("VM '%s': cmdline needs kernel" % d["name"])
        d["cmdline"] = p["cmdline"]
    if p.get("boot_devices") is not None:
        for b in p["boot_devices"]:
            if b not in ("hd", "cdrom", "network"):
                raise ValueError("VM '%s': boot_devices entries are hd, cdrom or network, got %r" % (d["name"], b))
        if any((x or {}).get("boot_order") for x in (p.get("disks") or [])):
            raise ValueError("VM '%s': boot_devices and a disk's boot_order cannot be combined" % d["name"])
        d["boot_devices"] = list(p["boot_devices"])
    if p.get("guest_agent") is not None:
        d["guest_agent"] = bool(p["guest_agent"])
    if p.get("template") is not None:
        d["template"] = bool(p["template"])
    if p.get("nics") is not None:
        nics, macs = [], set()
        for i, n in enumerate(p["nics"]):
            n = n or {}
            if bool(n.get("network")) == bool(n.get("bridge")):
                raise ValueError("VM '%s': nic %d needs exactly one of network or bridge" % (d["name"], i))
            nic = {"network": n.get("network"), "bridge": n.get("bridge"), "model": n.get("model") or "virtio",
                   "portgroup": n.get("portgroup"), "mac": None}
            for key in ("network", "bridge", "portgroup"):
                if nic[key]:
                    names.validate_name(nic[key], kind="%s of nic %d" % (key, i))
            if nic["model"] not in NIC_MODELS:
                raise ValueError("VM '%s': nic %d model must be one of %s" % (d["name"], i, ", ".join(NIC_MODELS)))
            if n.get("mac"):
                mac = n["mac"].lower()
                if not _MAC.match(mac) or int(mac[:2], 16) & 1:
                    raise ValueError("VM '%s': nic %d mac %r is not a unicast MAC address" % (d["name"], i, n["mac"]))
                if mac in macs:
                    raise ValueError("VM '%s': duplicate NIC MAC %s" % (d["name"], mac))
                macs.add(mac)
                nic["mac"] = mac
            nics.append(nic)
        d["nics"] = nics
    q = p.get("qos") or {}
    qos = {}
    for key in ("cpu_shares", "cpu_limit", "cpu_reservation"):
        if q.get(key) is not None:
            v = int(q[key])
            lo, hi = (2, 262144) if key == "cpu_shares" else (1, 100)
            if not lo <= v <= hi:
                raise ValueError("VM '%s': qos %s must be between %d and %d" % (d["name"], key, lo, hi))
            qos[key] = v
    for key in ("memory_limit", "memory_soft_limit"):
        if q.get(key) is not None:
            qos[key] = _size(d["name"], q[key], "qos " + key)
    if q.get("memory_reservation") is not None:
        if q["memory_reservation"] not in ("none", "locked"):
            raise ValueError("VM '%s': qos memory_reservation is none or locked" % d["name"])
        qos["memory_reservation"] = q["memory_reservation"]
    if qos.get("memory_limit") and d.get("max_memory") and qos["memory_limit"] < d["max_memory"]:
        raise ValueError("VM '%s': qos memory_limit is below max_memory (QEMU would be killed)" % d["name"])
    if p.get("qos") is not None:
        d["qos"] = qos
    return d


def effective_shares(qos):
    """CFS has no CPU reservation: it becomes a weight. 1024 is the default weight of one VM."""
    shares = qos.get("cpu_shares")
    if qos.get("cpu_reservation"):
        floor = 1024 + qos["cpu_reservation"] * 1024 // 10
        shares = max(shares or 1024, floor)
    return shares


# ---------------------------------------------------------------------------- XML
def _text(parent, tag, value, **attrs):
    el = parent.find(tag)
    if el is None:
        el = ET.SubElement(parent, tag)
    el.text = str(value)
    for k, v in attrs.items():
        el.set(k, v)
    return el


def _remove(parent, tag):
    for el in parent.findall(tag):
        parent.remove(el)


def _vm_meta(root):
    el = root.find("metadata/{%s}vm" % VM_NS)
    return el


def build_xml(d, hypervisor, existing=None):
    """Domain XML with the managed settings of ``d`` applied to ``existing`` (or a new domain)."""
    root = xmlutil.parse(existing) if existing else ET.Element("domain", type=hypervisor)
    if not existing:
        _text(root, "name", d["name"])
    root.set("type", hypervisor)
    if "description" in d:
        if d["description"]:
            _text(root, "description", d["description"])
        else:
            _remove(root, "description")
    if "max_vcpus" in d or "vcpus" in d:
        maxv = d.get("max_vcpus") or d.get("vcpus")
        old = root.find("vcpu")
        kept = int(old.get("current") or old.text) if old is not None and old.text else maxv
        cur = d.get("vcpus") or min(kept, maxv)
        el = _text(root, "vcpu", maxv)
        el.set("placement", el.get("placement") or "static")
        if cur != maxv:
            el.set("current", str(cur))
        elif "current" in el.attrib:
            del el.attrib["current"]
    elif not existing:
        _text(root, "vcpu", 1, placement="static")
    if "memory" in d:
        _text(root, "memory", d["max_memory"] // 1024, unit="KiB")
        _text(root, "currentMemory", d["memory"] // 1024, unit="KiB")
    elif not existing:
        _text(root, "memory", 512 * 1024, unit="KiB")
        _text(root, "currentMemory", 512 * 1024, unit="KiB")
    os_el = root.find("os")
    if os_el is None:
        os_el = ET.SubElement(root, "os")
    typ = os_el.find("type")
    if typ is None:
        typ = ET.SubElement(os_el, "type", arch="x86_64")
        typ.text = "hvm"
    if "machine" in d and existing and (typ.get("machine") or "").startswith(_machine_family(d["machine"])):
        pass  # libvirt expanded the alias (pc -> pc-i440fx-7.2): rewriting it would upgrade the guest's hardware
    elif "machine" in d:
        old = typ.get("machine") or ""
        if existing and not old.startswith(_machine_family(d["machine"])) and old != d["machine"]:
            # Another machine family has another PCI topology: let libvirt lay it out afresh.
            devs = root.find("devices")
            for ctl in devs.findall("controller"):
                if ctl.get("type") == "pci":
                    devs.remove(ctl)
            for dev in list(devs):
                for addr in dev.findall("address"):
                    if addr.get("type") == "pci":
                        dev.remove(addr)
        typ.set("machine", d["machine"])
    elif not existing:
        typ.set("machine", "pc")
    if "firmware" in d:
        if d["firmware"] == "uefi":
            os_el.set("firmware", "efi")
        elif os_el.get("firmware"):
            del os_el.attrib["firmware"]
            _remove(os_el, "loader")
            _remove(os_el, "nvram")
    for key in ("kernel", "initrd", "cmdline"):
        if key in d:
            _text(os_el, key, d[key])
    if "kernel" in d and "cmdline" not in d:
        _remove(os_el, "cmdline")
    if "boot_devices" in d:
        _remove(os_el, "boot")
        for b in d["boot_devices"]:
            ET.SubElement(os_el, "boot", dev=b)
    feats = root.find("features")
    if feats is None:
        feats = ET.SubElement(root, "features")
        ET.SubElement(feats, "acpi")
        ET.SubElement(feats, "apic")
    if "cpu_model" in d or "cpu_features" in d or not existing:
        old_cpu = root.find("cpu")
        keep = [c for c in (list(old_cpu) if old_cpu is not None else []) if c.tag not in ("model", "feature", "vendor")]
        if "cpu_model" not in d and old_cpu is not None:
            # only the features change: the model stays what it is
            old_mode = old_cpu.get("mode", "custom")
            old_model = old_mode if old_mode in ("host-model", "host-passthrough") else xmlutil.find_text(old_cpu, "model")
        else:
            old_model = None
        _remove(root, "cpu")
        model = d["cpu_model"] if "cpu_model" in d else (old_model or ("host-model" if hypervisor == "kvm" else None))
        if model in ("host-model", "host-passthrough"):
            cpu = ET.SubElement(root, "cpu", mode=model, check="none" if model == "host-passthrough" else "partial")
        elif model:
            cpu = ET.SubElement(root, "cpu", mode="custom", match="exact", check="partial")
            ET.SubElement(cpu, "model", fallback="forbid").text = model
        else:
            cpu = None
        if d.get("cpu_features"):
            if cpu is None:
                cpu = ET.SubElement(root, "cpu", mode="custom", match="exact", check="partial")
                ET.SubElement(cpu, "model", fallback="allow").text = "qemu64"
            for name in sorted(d["cpu_features"]):
                ET.SubElement(cpu, "feature", policy=d["cpu_features"][name], name=name)
        if keep:
            if cpu is None:
                cpu = ET.SubElement(root, "cpu")
            for child in keep:
                cpu.append(child)
    if "qos" in d:
        _apply_qos(root, d["qos"])
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    if not existing:
        ET.SubElement(devices, "controller", type="scsi", model="virtio-scsi")
        ser = ET.SubElement(devices, "serial", type="pty")
        ET.SubElement(ser, "target", port="0")
        con = ET.SubElement(devices, "console", type="pty")
        ET.SubElement(con, "target", type="serial", port="0")
        ET.SubElement(devices, "memballoon", model="virtio")
        rng = ET.SubElement(devices, "rng", model="virtio")
        ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    if "graphics" in d or not existing:
        _remove(devices, "graphics")
        _remove(devices, "video")
        kind = d.get("graphics", "vnc")
        if kind != "none":
            g = ET.SubElement(devices, "graphics", type=kind, autoport="yes", listen="127.0.0.1")
            ET.SubElement(g, "listen", type="address", address="127.0.0.1")
            ET.SubElement(ET.SubElement(devices, "video"), "model", type="virtio" if kind == "spice" else "vga")
    if d.get("guest_agent", True if not existing else None) is not None:
        want = d.get("guest_agent", True)
        have = [c for c in devices.findall("channel") if xmlutil.find_attr(c, "target", "name") == "org.qemu.guest_agent.0"]
        if want and not have:
            ch = ET.SubElement(devices, "channel", type="unix")
            ET.SubElement(ch, "target", type="virtio", name="org.qemu.guest_agent.0")
        elif not want:
            for c in have:
                devices.remove(c)
    if "nics" in d:
        _apply_nics(devices, d["nics"])
    if "template" in d:
        meta = root.find("metadata")
        if meta is None:
            meta = ET.SubElement(root, "metadata")
        for old in meta.findall("{%s}vm" % VM_NS):
            meta.remove(old)
        if d["template"]:
            ET.SubElement(meta, "{%s}vm" % VM_NS, template="true")
        ET.register_namespace(VM_KEY, VM_NS)
    return xmlutil.tostring(root)


def _child(root, tag):
    el = root.find(tag)
    return el if el is not None else ET.SubElement(root, tag)


def _drop_if_empty(root, tag):
    el = root.find(tag)
    if el is not None and not list(el):
        root.remove(el)


def _apply_qos(root, qos):
    """Set QoS elements only: vCPU pinning and other tuning the user made stay."""
    ct = _child(root, "cputune")
    for tag in ("shares", "period", "quota"):
        _remove(ct, tag)
    shares = effective_shares(qos)
    if shares:
        ct.insert(0, ET.Element("shares"))
        ct[0].text = str(shares)
    if qos.get("cpu_limit"):
        # Percent of one host CPU per vCPU: CFS quota per vCPU thread over a 100 ms period.
        ET.SubElement(ct, "period").text = "100000"
        ET.SubElement(ct, "quota").text = str(qos["cpu_limit"] * 1000)
    _drop_if_empty(root, "cputune")
    mt = _child(root, "memtune")
    for tag in ("hard_limit", "soft_limit"):
        _remove(mt, tag)
    if qos.get("memory_limit"):
        ET.SubElement(mt, "hard_limit", unit="KiB").text = str(qos["memory_limit"] // 1024)
    if qos.get("memory_soft_limit"):
        ET.SubElement(mt, "soft_limit", unit="KiB").text = str(qos["memory_soft_limit"] // 1024)
    _drop_if_empty(root, "memtune")
    mb = root.find("memoryBacking")
    if qos.get("memory_reservation") == "locked":
        if mb is None:
            mb = ET.SubElement(root, "memoryBacking")
        if mb.find("locked") is None:
            ET.SubElement(mb, "locked")
    elif mb is not None:
        _remove(mb, "locked")
        if not list(mb):
            root.remove(mb)


def nic_element(nic):
    if nic["network"]:
        el = ET.Element("interface", type="network")
        src = {"network": nic["network"]}
        if nic.get("portgroup"):
            src["portgroup"] = nic["portgroup"]
        ET.SubElement(el, "source", src)
    else:
        el = ET.Element("interface", type="bridge")
        ET.SubElement(el, "source", bridge=nic["bridge"])
    if nic.get("mac"):
        ET.SubElement(el, "mac", address=nic["mac"])
    ET.SubElement(el, "model", type=nic["model"])
    return el


def _nic_view(el):
    return {"network": xmlutil.find_attr(el, "source", "network"), "bridge": xmlutil.find_attr(el, "source", "bridge"),
            "portgroup": xmlutil.find_attr(el, "source", "portgroup"),
            "model": xmlutil.find_attr(el, "model", "type") or "rtl8139",
            "mac": xmlutil.find_attr(el, "mac", "address")}


def _apply_nics(devices, nics):
    """NICs are authoritative by position; a NIC without a given MAC keeps the one it has."""
    existing = devices.findall("interface")
    for i, nic in enumerate(nics):
        if i < len(existing):
            cur = _nic_view(existing[i])
            want = dict(nic, mac=nic["mac"] or cur["mac"])
            if want != cur:
                new = nic_element(want)
                idx = list(devices).index(existing[i])
                devices.remove(existing[i])
                devices.insert(idx, new)
        else:
            devices.append(nic_element(nic))
    for extra in existing[len(nics):]:
        devices.remove(extra)


def managed_view(xml, d):
    """The keys of ``d`` read back from a domain XML (libvirt-generated values ignored)."""
    root = xmlutil.parse(xml)
    v = {"name": xmlutil.find_text(root, "name")}
    if "hypervisor" in d:
        v["hypervisor"] = root.get("type")
    if "description" in d:
        v["description"] = xmlutil.find_text(root, "description")
    vcpu = root.find("vcpu")
    if "max_vcpus" in d:
        v["max_vcpus"] = int(vcpu.text)
    if "vcpus" in d:
        v["vcpus"] = int(vcpu.get("current") or vcpu.text)
    if "memory" in d:
        v["memory"] = _kib(root.find("currentMemory")) * 1024
        v["max_memory"] = _kib(root.find("memory")) * 1024
    os_el = root.find("os")
    if "firmware" in d:
        v["firmware"] = "uefi" if os_el.get("firmware") == "efi" or os_el.find("loader") is not None else "bios"
    if "machine" in d:
        mach = xmlutil.find_attr(os_el, "type", "machine") or ""
        # libvirt expands aliases (pc -> pc-i440fx-7.2): compare the family the user named.
        v["machine"] = d["machine"] if mach == d["machine"] or mach.startswith(_machine_family(d["machine"])) else mach
    for key in ("kernel", "initrd", "cmdline"):
        if key in d:
            v[key] = xmlutil.find_text(os_el, key)
    if "boot_devices" in d:
        v["boot_devices"] = [b.get("dev") for b in os_el.findall("boot")]
    cpu = root.find("cpu")
    if "cpu_model" in d:
        if cpu is None:
            v["cpu_model"] = None
        elif cpu.get("mode") in ("host-model", "host-passthrough"):
            v["cpu_model"] = cpu.get("mode")
        else:
            v["cpu_model"] = xmlutil.find_text(cpu, "model")
    if "cpu_features" in d:
        v["cpu_features"] = dict((f.get("name"), f.get("policy")) for f in (cpu.findall("feature") if cpu is not None else []))
    devices = root.find("devices")
    if "graphics" in d:
        g = devices.find("graphics")
        v["graphics"] = g.get("type") if g is not None else "none"
    if "guest_agent" in d:
        v["guest_agent"] = any(xmlutil.find_attr(c, "target", "name") == "org.qemu.guest_agent.0"
                               for c in devices.findall("channel"))
    if "nics" in d:
        cur = [_nic_view(el) for el in devices.findall("interface")]
        # A NIC whose MAC the user left out matches whatever MAC it has.
        v["nics"] = [dict(c, mac=c["mac"] if i >= len(d["nics"]) or d["nics"][i]["mac"] else None)
                     for i, c in enumerate(cur)]
    if "template" in d:
        m = _vm_meta(root)
        v["template"] = m is not None and m.get("template") == "true"
    if "qos" in d:
        v["qos"] = _qos_view(root, d["qos"])
    return v


def _machine_family(machine):
    return {"pc": "pc-i440fx", "q35": "pc-q35"}.get(machine, machine)


def _kib(el):
    unit = (el.get("unit") or "KiB").lower()
    mult = {"b": 1.0 / 1024, "bytes": 1.0 / 1024, "kib": 1, "k": 1, "mib": 1024, "m": 1024, "gib": 1024 ** 2, "g": 1024 ** 2}
    return int(int(el.text) * mult.get(unit, 1))


def _qos_view(root, wanted):
    """QoS as the user wrote it, reconstructed from the XML (reservation folds into shares)."""
    shares = xmlutil.find_text(root, "cputune/shares")
    quota = xmlutil.find_text(root, "cputune/quota")
    got = {}
    if shares and effective_shares(wanted) == int(shares):
        for k in ("cpu_shares", "cpu_reservation"):
            if k in wanted:
                got[k] = wanted[k]
    elif shares:
        got["cpu_shares"] = int(shares)
    if quota and int(quota) > 0:
        got["cpu_limit"] = int(quota) // 1000
    hard = root.find("memtune/hard_limit")
    soft = root.find("memtune/soft_limit")
    if hard is not None:
        got["memory_limit"] = _kib(hard) * 1024
    if soft is not None:
        got["memory_soft_limit"] = _kib(soft) * 1024
    locked = root.find("memoryBacking/locked") is not None
    if locked or "memory_reservation" in wanted:
        got["memory_reservation"] = "locked" if locked else "none"
    return got


def is_template(xml):
    m = _vm_meta(xmlutil.parse(xml))
    return m is not None and m.get("template") == "true"


def state_of(client, dom, name):
    st, _reason = client.call("read state of", "VM '%s'" % name, dom.state, 0)
    state = DOMAIN_STATE.get(st, str(st))
    if state == "shutoff" and client.call("read saved state of", "VM '%s'" % name, dom.hasManagedSaveImage, 0):
        return "suspended"
    return {"blocked": "running", "shutdown": "running"}.get(state, state)


class PowerManager(ActionRecorder):
    """Moves a VM between shutoff, running, paused and suspended (saved to disk)."""

    def __init__(self, client, check_mode, actions, shutdown_timeout=120, force=False):
        self.client = client
        self.check_mode = check_mode
        self.actions = actions
        self.timeout = shutdown_timeout
        self.force = force

    def converge(self, name, dom, want, template=False):
        obj = "VM '%s'" % name
        cur = state_of(self.client, dom, name)
        if want in ("running", "restarted", "paused", "suspended") and template:
            raise ValueError("VM '%s' is a template: templates cannot be started (clone it)" % name)
        if cur == "pmsuspended" and want in ("running", "restarted", "paused", "stopped", "suspended"):
            # suspended to RAM by the guest itself: wake it (resume would be refused)
            self._act("wake up", self.client.call, "wake up", obj, dom.pMWakeup, 0)
            cur = "running"
        if want == "running":
            if cur in ("shutoff", "crashed", "nostate", "suspended"):
                self._act("restore from disk" if cur == "suspended" else "start", self.client.call, "start", obj, dom.create)
            elif cur == "paused":
                self._act("resume", self.client.call, "resume", obj, dom.resume)
        elif want == "restarted":
            if cur == "running":
                self._act("reboot", self.client.call, "reboot", obj, dom.reboot, 0)
            elif cur == "paused":
                self._act("reset", self.client.call, "reset", obj, dom.reset, 0)
                self._act("resume", self.client.call, "resume", obj, dom.resume)
            else:
                self._act("start", self.client.call, "start", obj, dom.create)
        elif want == "paused":
            if cur in ("shutoff", "crashed", "nostate", "suspended"):
                self._act("start", self.client.call, "start", obj, dom.create)
                cur = "running"
            if cur == "running":
                self._act("pause", self.client.call, "pause", obj, dom.suspend)
        elif want == "suspended":
            if cur in ("running", "paused"):
                self._act("save to disk", self.client.call, "save", obj, dom.managedSave, 0)
            elif cur != "suspended":
                raise ValueError("VM '%s' is %s: only a running or paused VM can be suspended to disk" % (name, cur))
        elif want == "stopped":
            if cur == "suspended":
                self._act("discard saved state", self.client.call, "discard saved state of", obj,
                          dom.managedSaveRemove, 0)
            elif cur in ("running", "paused"):
                self._act("shut down", self._shutdown, name, dom, cur)
        return cur

    def _shutdown(self, name, dom, cur):
        obj = "VM '%s'" % name
        if cur == "paused":
            self.client.call("resume", obj, dom.resume)
        # Through the guest agent when it answers, else ACPI: both let the guest close its files.
        try:
            self.client.call("shut down", obj, dom.shutdownFlags, SHUTDOWN_AGENT | SHUTDOWN_ACPI)
        except Exception:  # pylint: disable=broad-except
            self.client.call("shut down", obj, dom.shutdownFlags, SHUTDOWN_ACPI)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if not self.client.call("read state of", obj, dom.isActive):
                return
            time.sleep(0.5)
        if not self.force:
            raise ValueError("VM '%s' did not shut down within %ds (guest agent and ACPI asked); set force=true "
                             "to power it off" % (name, self.timeout))
        self.actions.append("power off (shutdown timed out)")
        self.client.call("power off", obj, dom.destroy)


def write_definition_copy(client, name, path):
    """The VM's definition beside its system disk, so any CNA that sees the datastore can re-create it."""
    xml = client.domain_xml(name, inactive=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(xml)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


LIVE_KEYS = ("vcpus", "memory", "nics", "qos", "description", "template", "name")


class VmManager(ActionRecorder):
    """Converges one VM: its definition, online changes, disks and power state."""

    def __init__(self, client, uri, check_mode=False, run_command=None, shutdown_timeout=120, force=False):
        from ansible_collections.kvmfusion.compute.plugins.module_utils import disks as _disks
        self.disks_mod = _disks
        self.client = client
        self.uri = uri
        self.check_mode = check_mode
        self.actions = []
        self.reboot_required = False
        self.warnings = []
        self.run_command = run_command
        self.power = PowerManager(client, check_mode, self.actions, shutdown_timeout, force)

    def hypervisor(self, wanted):
        offered = self.client.host_info()["domain_types"]
        if wanted == "auto":
            return offered[0]
        if wanted not in offered:
            raise ValueError("hypervisor %s is not offered by %s (it offers %s)" % (wanted, self.uri, ", ".join(offered)))
        return wanted

    def disk_specs(self, vm, disk_options):
        specs = []
        for i, opts in enumerate(disk_options or []):
            o = dict(opts or {})
            o["vm"] = vm
            o.setdefault("attached", True)
            o.setdefault("mode", "persistent")
            o.setdefault("bus", "virtio")
            if not o.get("name") or not o.get("datastore"):
                raise ValueError("VM '%s': disk %d needs datastore and name" % (vm, i))
            specs.append(self.disks_mod.desired_state(o))
        names_seen = [(s["datastore"], s["name"]) for s in specs]
        if len(set(names_seen)) != len(names_seen):
            raise ValueError("VM '%s': the same disk is listed twice" % vm)
        return specs

    def present(self, d, hyper, disk_specs, state):
        name = d["name"]
        dom = self.client.domain(name)
        before = after = None
        if dom is None:
            if state == "running" and d.get("template"):
                raise ValueError("VM '%s' is a template: templates cannot be started (clone it)" % name)
            xml = build_xml(d, hyper)
            self._act("define", self.client.define_domain, xml)
            after = dict(d)
        else:
            existing = self.client.domain_xml(name, inactive=True)
            before = managed_view(existing, d)
            want = dict(d)
            if "nics" in want:
                want["nics"] = [dict(n, mac=n["mac"]) for n in want["nics"]]
            after = want
            if before != want:
                running = bool(self.client.call("read state of", "VM '%s'" % name, dom.isActive))
                if running and want.get("template") and not before.get("template"):
                    raise ValueError("VM '%s' is running: stop it before making it a template" % name)
                if before.get("template") and not want.get("template"):
                    self._refuse_if_clones_stand_on(name)
                changed = sorted(k for k in want if want.get(k) != before.get(k))
                # An existing VM keeps its domain type unless the user named one (d["hypervisor"]).
                new_xml = build_xml(d, d.get("hypervisor") or xmlutil.parse(existing).get("type"), existing)
                self._act("update %s" % ", ".join(changed), self.client.define_domain, new_xml)
                if running:
                    self._live_changes(name, dom, before, want, changed)
        # Disks through the disk module's code: one implementation.
        mgr = self.disks_mod.DiskManager(self.client, self.uri, check_mode=self.check_mode, run_command=self.run_command)
        system_disk = None
        planned = []
        for spec in disk_specs:
            pool, _vol, cur = mgr.volume_state(spec)
            path = cur["path"] if cur else mgr._pool_path(pool, spec)  # pylint: disable=protected-access
            if dom is not None or not self.check_mode:
                mgr.precheck_attachment(spec, path)
            mgr.ensure_volume(spec)
            if dom is None and self.check_mode:
                # The VM does not exist yet: predict the target the real run will choose.
                target = spec["target"] or self.disks_mod.choose_target(planned, spec["bus"])
                planned.append(target)
                mgr.actions.append("attach as %s (persistent config)" % target)
            else:
                fmt = cur["format"] if cur else (spec["format"] or "qcow2")
                mgr.ensure_attached(spec, path, fmt)
            system_disk = system_disk or path
        self.actions.extend(mgr.actions)
        self.reboot_required = self.reboot_required or mgr.reboot_required
        self.warnings.extend(mgr.warnings)
        if "template" in d and self.client.domain(name) is not None:
            self._template_disks(name, d["template"])
        return before, after, system_disk

    def _template_disks(self, name, template):
        """A template's disks are read-only bases for clones: nobody writes them by accident."""
        want = 0o444 if template else 0o600
        paths = [src for el, src, _m in self.disks_mod.attached_disks(self.client, name, inactive=True)
                 if el.get("type") == "file" and el.get("device", "disk") == "disk" and src and os.path.isfile(src)]
        wrong = [p for p in paths if os.stat(p).st_mode & 0o777 != want]
        if wrong and not template:
            self._refuse_if_clones_stand_on(name, wrong)
        if wrong:
            if not self.disks_mod.is_local_uri(self.uri):
                raise ValueError("VM '%s': making template disks %s needs the task on their CNA (uri %s is remote)"
                                 % (name, "read-only" if template else "writable", self.uri))
            self._act("make disks %s" % ("read-only" if template else "writable"), self._chmod, wrong, want)

    def _refuse_if_clones_stand_on(self, name, paths=None):
        if paths is None:
            paths = [src for el, src, _m in self.disks_mod.attached_disks(self.client, name, inactive=True)
                     if el.get("type") == "file" and el.get("device", "disk") == "disk" and src]
        if not self.disks_mod.is_local_uri(self.uri):
            return
        deps = self.disks_mod.dependants_of(self.client, paths, exclude_vm=name)
        if deps:
            raise ValueError("VM '%s' cannot stop being a template: linked clones stand on its disks (%s)"
                             % (name, self.disks_mod.describe_dependants(deps)))

    @staticmethod
    def _chmod(paths, mode):
        for p in paths:
            os.chmod(p, mode)

    def _live_changes(self, name, dom, before, want, changed):
        obj = "VM '%s'" % name
        for key in changed:
            if key == "vcpus" and want.get("max_vcpus", before.get("max_vcpus")) == before.get("max_vcpus"):
                self._act("set %d vCPUs live" % want["vcpus"], self.client.call, "set vCPUs of", obj,
                          dom.setVcpusFlags, want["vcpus"], AFFECT_LIVE)
            elif key == "memory" and want.get("max_memory") == before.get("max_memory"):
                self._act("balloon memory to %d bytes live" % want["memory"], self.client.call, "set memory of", obj,
                          dom.setMemoryFlags, want["memory"] // 1024, AFFECT_LIVE)
            elif key == "qos" and want["qos"].get("memory_reservation") == before["qos"].get("memory_reservation"):
                self._act("set QoS live", self._qos_live, dom, want["qos"])
            elif key == "nics":
                self._nics_live(name, dom, before["nics"], want["nics"])
            elif key in ("description", "template", "name"):
                continue
            else:
                self.reboot_required = True

    def _qos_live(self, dom, qos):
        sched = {}
        shares = effective_shares(qos)
        if shares:
            sched["cpu_shares"] = shares
        sched["vcpu_period"] = 100000
        sched["vcpu_quota"] = qos["cpu_limit"] * 1000 if qos.get("cpu_limit") else -1
        self.client.call("set CPU QoS of", "VM '%s'" % dom.name(), dom.setSchedulerParametersFlags, sched, AFFECT_LIVE)
        mem = {"hard_limit": qos["memory_limit"] // 1024 if qos.get("memory_limit") else -1,
               "soft_limit": qos["memory_soft_limit"] // 1024 if qos.get("memory_soft_limit") else -1}
        # libvirt's "unlimited" is VIR_DOMAIN_MEMORY_PARAM_UNLIMITED (2^53 - 1 KiB)
        mem = dict((k, v if v >= 0 else 9007199254740991) for k, v in mem.items())
        self.client.call("set memory QoS of", "VM '%s'" % dom.name(), dom.setMemoryParameters, mem, AFFECT_LIVE)

    def _nics_live(self, name, dom, cur, want):
        obj = "VM '%s'" % name
        live = xmlutil.parse(self.client.domain_xml(name))
        live_nics = live.findall("devices/interface")
        for i, nic in enumerate(want):
            if i >= len(cur):
                self._act("hot-plug NIC %d" % i, self.client.call, "hot-plug a NIC into", obj, dom.attachDeviceFlags,
                          xmlutil.tostring(self._persistent_nic(name, i, nic)), AFFECT_LIVE)
            elif dict(cur[i], mac=None) != dict(nic, mac=None) or (nic["mac"] and nic["mac"] != cur[i]["mac"]):
                self.reboot_required = True
        for i in range(len(want), len(cur)):
            if i < len(live_nics):
                self._act("hot-unplug NIC %d" % i, self.client.call, "hot-unplug a NIC from", obj,
                          dom.detachDeviceFlags, xmlutil.tostring(live_nics[i]), AFFECT_LIVE)

    def _persistent_nic(self, name, index, nic):
        """The NIC as now defined (with the MAC libvirt gave it), so live and persistent agree."""
        if self.check_mode:
            return nic_element(nic)
        root = xmlutil.parse(self.client.domain_xml(name, inactive=True))
        el = root.findall("devices/interface")[index]
        for addr in el.findall("address"):
            el.remove(addr)
        return el

    def absent(self, name, delete_disks=False):
        dom = self.client.domain(name)
        if dom is None:
            return None
        existing = self.client.domain_xml(name, inactive=True)
        before = {"name": name}
        volumes = []
        if delete_disks:
            from ansible_collections.kvmfusion.compute.plugins.module_utils import snapshots as _snaps
            # The VM's images down to each disk's own base (snapshot layers included) and its memory
            # files; below the base (a template a linked clone stands on) nothing is the VM's.
            files, mem_files = _snaps.owned_files(self.client, name)
            for f in sorted(files):
                others = [u for u, _t in self.disks_mod.users_of(self.client, f) if u != name]
                if others:
                    raise ValueError("VM '%s': disk %s is also used by %s; detach it there or keep the disks"
                                     % (name, f, ", ".join(sorted(set(others)))))
            deps = self.disks_mod.dependants_of(self.client, sorted(files), exclude_vm=name)
            if deps:
                raise ValueError("VM '%s' cannot be deleted with its disks: linked clones stand on them (%s); "
                                 "delete the clones first" % (name, self.disks_mod.describe_dependants(deps)))
            for f in sorted(files):
                vol = self.client.volume_by_path(f)
                volumes.append((f, vol))
            volumes += [(f, None) for f in sorted(mem_files)]
        obj = "VM '%s'" % name
        if self.client.call("read state of", obj, dom.isActive):
            self._act("power off", self.client.call, "power off", obj, dom.destroy)
        flags = UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS_METADATA | UNDEFINE_NVRAM
        self._act("undefine", self.client.call, "undefine", obj, dom.undefineFlags, flags)
        for src, vol in volumes:
            if vol is None:
                if os.path.exists(src):
                    self._act("delete %s" % src, os.unlink, src)
                continue
            self._act("delete disk %s" % src, self.client.call, "delete disk", "%s of VM '%s'" % (src, name), vol.delete, 0)
        copy = definition_copy_path(existing)
        if copy and os.path.exists(copy):
            self._act("remove definition copy %s" % copy, os.unlink, copy)
        return before


def definition_copy_path(xml):
    """Hidden file beside the VM's first file disk: <dir>/.<vm>.kvmf-vm.xml (dot entries are the platform's)."""
    root = xmlutil.parse(xml)
    name = xmlutil.find_text(root, "name")
    for el in root.findall("devices/disk"):
        src = el.find("source")
        if el.get("device", "disk") == "disk" and src is not None and src.get("file"):
            return os.path.join(os.path.dirname(src.get("file")), ".%s.kvmf-vm.xml" % name)
    return None


def vm_facts(client, dom, local):
    from ansible_collections.kvmfusion.compute.plugins.module_utils import disks as _disks
    name = client.call("read name of", "VM", dom.name)
    obj = "VM '%s'" % name
    xml = client.domain_xml(name, inactive=True)
    root = xmlutil.parse(xml)
    state = state_of(client, dom, name)
    running = state in ("running", "paused")
    live = xmlutil.parse(client.domain_xml(name)) if running else root
    vcpu = live.find("vcpu")
    nics = []
    addresses = {}
    if state == "running" and any(xmlutil.find_attr(c, "target", "name") == "org.qemu.guest_agent.0"
                                  for c in root.findall("devices/channel")):
        try:
            addresses = client.call("ask the guest agent of", obj, dom.interfaceAddresses, 1, 0)  # SRC_AGENT
        except Exception:  # pylint: disable=broad-except
            addresses = {}
    by_mac = {}
    for _ifname, data in (addresses or {}).items():
        by_mac[(data.get("hwaddr") or "").lower()] = [a["addr"] for a in (data.get("addrs") or [])]
    for el in live.findall("devices/interface"):
        n = _nic_view(el)
        n["ips"] = by_mac.get((n["mac"] or "").lower(), [])
        nics.append(n)
    qos = _qos_view(root, {})
    return {
        "name": name,
        "uuid": client.call("read UUID of", obj, dom.UUIDString),
        "state": state,
        "host": client.call("read host name", None, client.conn.getHostname),
        "hypervisor": root.get("type"),
        "description": xmlutil.find_text(root, "description"),
        "vcpus": int(vcpu.get("current") or vcpu.text),
        "max_vcpus": int(vcpu.text),
        "memory": _kib(live.find("currentMemory")) * 1024,
        "max_memory": _kib(root.find("memory")) * 1024,
        "template": is_template(xml),
        "disks": _disks.inventory(client, local, vm=name),
        "nics": nics,
        "qos": qos,
        "definition_copy": definition_copy_path(xml),
        "clone_of": _clone_of(root),
    }


def _clone_of(root):
    el = root.find("metadata/{%s}clone" % CLONE_NS)
    if el is None:
        return None
    return {"source": el.get("source"), "snapshot": el.get("snapshot") or None, "linked": el.get("linked") == "true"}
