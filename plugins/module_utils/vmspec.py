# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A VM as the user declares it and as its domain XML holds it; pure, no libvirt calls.

``desired_state`` validates the vm module's options into the managed view (only what the
user set); ``build_xml`` applies that view to a new or existing domain XML; ``managed_view``
reads the same view back with libvirt-generated values ignored, so comparing the two is the
idempotence check and the diff.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import random
import re
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import names, portsec, xmlutil

VM_NS = "https://kvmfusion.compute/xmlns/vm/1"
VM_KEY = "kvmfvm"
CLONE_NS = "https://kvmfusion.compute/xmlns/clone/1"
STATES = ("present", "running", "stopped", "restarted", "suspended", "paused", "absent")
NIC_MODELS = ("virtio", "e1000", "rtl8139")
GRAPHICS = ("none", "vnc", "spice")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_CPU_MODEL = re.compile(r"^[A-Za-z0-9_.-]+$")


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
    _cpu_memory_spec(p, d)
    _machine_spec(p, d)
    if p.get("nics") is not None:
        d["nics"] = _nics_spec(p["nics"], d["name"])
    if p.get("qos") is not None:
        d["qos"] = _qos_spec(p["qos"] or {}, d)
    return d


def _cpu_memory_spec(p, d):
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


def _machine_spec(p, d):
    """Firmware, graphics, machine, CPU model and features, kernel boot, boot order, agent, template."""
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


def _nics_spec(nic_options, vm):
    nics, macs = [], set()
    for i, n in enumerate(nic_options):
        n = dict(n or {})
        if n.get("dvs"):
            # A DVS is a libvirt network of its name; its NICs always join a port group (a port outside one
            # would be an unrestricted trunk on Open vSwitch).
            if n.get("network") or n.get("bridge"):
                raise ValueError("VM '%s': nic %d has dvs and also network or bridge: give one" % (vm, i))
            if not n.get("portgroup"):
                raise ValueError("VM '%s': nic %d on dvs %s needs its portgroup" % (vm, i, n["dvs"]))
            n["network"] = n.pop("dvs")
        if bool(n.get("network")) == bool(n.get("bridge")):
            raise ValueError("VM '%s': nic %d needs exactly one of dvs, network or bridge" % (vm, i))
        nic = {"network": n.get("network"), "bridge": n.get("bridge"), "model": n.get("model") or "virtio",
               "portgroup": n.get("portgroup"), "mac": None, "security_group": None, "bound_ips": []}
        if n.get("security_group") or n.get("bound_ips"):
            if not n.get("portgroup"):
                raise ValueError("VM '%s': nic %d: security_group and bound_ips apply to a NIC on a DVS port group"
                                 % (vm, i))
            if n.get("security_group"):
                nic["security_group"] = portsec.validate_group_name(n["security_group"])
            if isinstance(n.get("bound_ips"), str):
                if n["bound_ips"] != "dhcp":
                    raise ValueError("VM '%s': nic %d bound_ips must be a list of addresses or dhcp (learned from the "
                                     "guest's DHCP leases), got %r" % (vm, i, n["bound_ips"]))
                nic["bound_ips"] = "dhcp"
            else:
                nic["bound_ips"] = portsec.normalize_ips(n.get("bound_ips"), "VM '%s': nic %d bound_ips" % (vm, i))
        for key in ("network", "bridge", "portgroup"):
            if nic[key]:
                names.validate_name(nic[key], kind="%s of nic %d" % (key, i))
        if nic["model"] not in NIC_MODELS:
            raise ValueError("VM '%s': nic %d model must be one of %s" % (vm, i, ", ".join(NIC_MODELS)))
        if n.get("mac"):
            mac = n["mac"].lower()
            if not _MAC.match(mac) or int(mac[:2], 16) & 1:
                raise ValueError("VM '%s': nic %d mac %r is not a unicast MAC address" % (vm, i, n["mac"]))
            if mac in macs:
                raise ValueError("VM '%s': duplicate NIC MAC %s" % (vm, mac))
            macs.add(mac)
            nic["mac"] = mac
        nics.append(nic)
    return nics


def _qos_spec(q, d):
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
    return qos


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
    _apply_basics(root, d, existing)
    _apply_os(root, d, existing)
    feats = root.find("features")
    if feats is None:
        feats = ET.SubElement(root, "features")
        ET.SubElement(feats, "acpi")
        ET.SubElement(feats, "apic")
    if "cpu_model" in d or "cpu_features" in d or not existing:
        _apply_cpu(root, d, hypervisor)
    if "qos" in d:
        _apply_qos(root, d["qos"])
    _apply_devices(root, d, existing)
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


def _apply_basics(root, d, existing):
    """Description, vCPUs and memory."""
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


def _apply_os(root, d, existing):
    """Machine type, firmware, direct kernel boot and boot order."""
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


def _apply_cpu(root, d, hypervisor):
    """CPU model and features; topology and other children the user set stay."""
    old_cpu = root.find("cpu")
    keep = [c for c in (list(old_cpu) if old_cpu is not None else []) if c.tag not in ("model", "feature", "vendor")]
    old_vendor = None
    if "cpu_model" not in d and old_cpu is not None:
        # only the features change: the model (and its vendor) stays what it is
        old_mode = old_cpu.get("mode", "custom")
        old_model = old_mode if old_mode in ("host-model", "host-passthrough") else xmlutil.find_text(old_cpu, "model")
        old_vendor = xmlutil.find_text(old_cpu, "vendor")
    else:
        old_model = None
    _remove(root, "cpu")
    model = d["cpu_model"] if "cpu_model" in d else (old_model or ("host-model" if hypervisor == "kvm" else None))
    if model in ("host-model", "host-passthrough"):
        cpu = ET.SubElement(root, "cpu", mode=model, check="none" if model == "host-passthrough" else "partial")
    elif model:
        cpu = ET.SubElement(root, "cpu", mode="custom", match="exact", check="partial")
        ET.SubElement(cpu, "model", fallback="forbid").text = model
        vendor = d.get("cpu_vendor") if "cpu_model" in d else old_vendor
        if vendor:
            ET.SubElement(cpu, "vendor").text = vendor
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


def _apply_devices(root, d, existing):
    """Default devices of a new VM, graphics, the guest agent channel and NICs."""
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
    have = devices.find("graphics")
    same = have is not None and have.get("type") == d.get("graphics") or have is None and d.get("graphics") == "none"
    # An unchanged display stays as it is (its password, listen address and port with it).
    if ("graphics" in d and not same) or not existing:
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
        _apply_ports_meta(root, _apply_nics(devices, d["nics"]))


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


def nic_view(el, ports=None):
    """A NIC's managed view; ``ports``: the domain's port metadata (portsec.ports_meta) for its security."""
    mac = xmlutil.find_attr(el, "mac", "address")
    sec = (ports or {}).get((mac or "").lower(), {})
    return {"network": xmlutil.find_attr(el, "source", "network"), "bridge": xmlutil.find_attr(el, "source", "bridge"),
            "portgroup": xmlutil.find_attr(el, "source", "portgroup"),
            "model": xmlutil.find_attr(el, "model", "type") or "rtl8139",
            "mac": mac, "security_group": sec.get("security_group"),
            "bound_ips": "dhcp" if sec.get("learn") == "dhcp" else list(sec.get("ips") or [])}


def random_mac():
    """A locally administered unicast MAC in libvirt's own range (52:54:00), as libvirt would pick."""
    n = random.getrandbits(24)
    return "52:54:00:%02x:%02x:%02x" % (n >> 16, (n >> 8) & 0xFF, n & 0xFF)


def _apply_ports_meta(root, security):
    """Rewrite the domain's port metadata from {mac: {security_group, ips}}."""
    meta = root.find("metadata")
    if meta is None:
        meta = ET.SubElement(root, "metadata")
    for old in meta.findall("{%s}ports" % portsec.PORTS_NS):
        meta.remove(old)
    el = portsec.ports_element(security)
    if el is not None:
        meta.append(el)
        ET.register_namespace(portsec.PORTS_KEY, portsec.PORTS_NS)
    elif not list(meta):
        root.remove(meta)


def _apply_nics(devices, nics):
    """NICs are authoritative by position; a NIC without a given MAC keeps the one it has.

    Returns {mac: {security_group, ips}} of the NICs with port security: a new NIC with a setting and no MAC
    gets one here (libvirt's range), since its settings are recorded by MAC.
    """
    existing = devices.findall("interface")
    security = {}
    for i, nic in enumerate(nics):
        if i < len(existing):
            cur = nic_view(existing[i])
            want = dict(nic, mac=nic["mac"] or cur["mac"])
            if dict(want, security_group=None, bound_ips=[]) != dict(cur, security_group=None, bound_ips=[]):
                new = nic_element(want)
                idx = list(devices).index(existing[i])
                devices.remove(existing[i])
                devices.insert(idx, new)
        else:
            want = dict(nic)
            if not want["mac"] and (nic.get("security_group") or nic.get("bound_ips")):
                want["mac"] = random_mac()
            devices.append(nic_element(want))
        if want["mac"] and (nic.get("security_group") or nic.get("bound_ips")):
            dhcp = nic.get("bound_ips") == "dhcp"
            security[want["mac"].lower()] = {"security_group": nic.get("security_group"),
                                             "ips": [] if dhcp else nic.get("bound_ips"), "learn": "dhcp" if dhcp else None}
    for extra in existing[len(nics):]:
        devices.remove(extra)
    return security


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
        v["memory"] = kib(root.find("currentMemory")) * 1024
        v["max_memory"] = kib(root.find("memory")) * 1024
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
    if "cpu_vendor" in d:
        v["cpu_vendor"] = xmlutil.find_text(cpu, "vendor") if cpu is not None else None
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
        ports = portsec.ports_meta(root)
        cur = [nic_view(el, ports) for el in devices.findall("interface")]
        # A NIC whose MAC the user left out matches whatever MAC it has.
        v["nics"] = [dict(c, mac=c["mac"] if i >= len(d["nics"]) or d["nics"][i]["mac"] else None)
                     for i, c in enumerate(cur)]
    if "template" in d:
        m = _vm_meta(root)
        v["template"] = m is not None and m.get("template") == "true"
    if "qos" in d:
        v["qos"] = qos_view(root, d["qos"])
    return v


#: machine type aliases and the family of their versioned names (pc -> pc-i440fx-7.2)
MACHINE_FAMILIES = {"pc": "pc-i440fx", "q35": "pc-q35"}


def _machine_family(machine):
    return MACHINE_FAMILIES.get(machine, machine)


def kib(el):
    unit = (el.get("unit") or "KiB").lower()
    mult = {"b": 1.0 / 1024, "bytes": 1.0 / 1024, "kib": 1, "k": 1, "mib": 1024, "m": 1024, "gib": 1024 ** 2, "g": 1024 ** 2}
    return int(int(el.text) * mult.get(unit, 1))


def qos_view(root, wanted):
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
        got["memory_limit"] = kib(hard) * 1024
    if soft is not None:
        got["memory_soft_limit"] = kib(soft) * 1024
    locked = root.find("memoryBacking/locked") is not None
    if locked or "memory_reservation" in wanted:
        got["memory_reservation"] = "locked" if locked else "none"
    return got


def is_template(xml):
    m = _vm_meta(xmlutil.parse(xml))
    return m is not None and m.get("template") == "true"


def clone_of(root):
    el = root.find("metadata/{%s}clone" % CLONE_NS)
    if el is None:
        return None
    return {"source": el.get("source"), "snapshot": el.get("snapshot") or None, "linked": el.get("linked") == "true"}
