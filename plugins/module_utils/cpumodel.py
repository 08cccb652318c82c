# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The cluster CPU model (FusionCompute's IMC, VMware's EVC): what every CNA of a cluster can run.

libvirt computes the baseline of the CNAs' host-model CPUs (``baselineHypervisorCPU``, migratable
features only); then each CNA starts a paused throw-away domain with it, because KVM may refuse a
feature libvirt reports (these machines' KVM refuses ``arch-capabilities``: MSR 0x10a). Features a
CNA cannot start with are dropped, each with the reason, until every CNA starts the model.

The pure parts (parse, XML, merge) need no libvirt; the rest goes through the one client layer.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import uuid
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import images, vmspec, xmlutil

# Features KVM is known to refuse although libvirt offers them: tried first when a probe fails.
KNOWN_TROUBLE = ("arch-capabilities", "invtsc", "tsc-deadline", "umip")
#: at most this many features are dropped before the search gives up
MAX_DROPS = 6


def parse_cpu(xml):
    """{model, vendor, features: {name: policy}} of a ``<cpu>`` element (or a document holding one)."""
    root = xmlutil.parse(xml) if isinstance(xml, str) else xml
    cpu = root if root.tag in ("cpu", "mode") else root.find(".//cpu")
    if cpu is None:
        raise ValueError("no <cpu> element in the CPU description")
    return {
        "model": xmlutil.find_text(cpu, "model"),
        "vendor": xmlutil.find_text(cpu, "vendor"),
        "features": dict((f.get("name"), f.get("policy") or "require") for f in cpu.findall("feature")),
    }


def parse_cpu_of_domain(domain_xml):
    """{model, vendor, features} of a domain's custom CPU; None for host-model, host-passthrough or no CPU."""
    cpu = xmlutil.parse(domain_xml).find("cpu")
    if cpu is None or cpu.get("mode", "custom") != "custom" or cpu.find("model") is None:
        return None
    return parse_cpu(cpu)


def cpu_xml(cpu):
    """A ``<cpu mode='custom'>`` element text for ``cpu`` ({model, vendor, features})."""
    el = ET.Element("cpu", mode="custom", match="exact", check="partial")
    ET.SubElement(el, "model", fallback="forbid").text = cpu["model"]
    if cpu.get("vendor"):
        ET.SubElement(el, "vendor").text = cpu["vendor"]
    for name in sorted(cpu.get("features") or {}):
        ET.SubElement(el, "feature", policy=cpu["features"][name], name=name)
    return xmlutil.tostring(el)


def host_model(domcaps_xml):
    """The host-model CPU a CNA's domain capabilities offer, as {model, vendor, features}; None if not offered."""
    root = xmlutil.parse(domcaps_xml)
    for mode in root.findall("cpu/mode"):
        if mode.get("name") == "host-model" and mode.get("supported") == "yes":
            return parse_cpu(mode)
    return None


def without(cpu, dropped):
    """``cpu`` with the features in ``dropped`` disabled (a required feature the guest must not see)."""
    feats = dict(cpu["features"])
    for name in dropped:
        feats[name] = "disable"
    return dict(cpu, features=feats)


def same_family(vm_cpu, cluster):
    """Whether a VM's CPU ({model, vendor, ...}) is the cluster model: the same named model and vendor."""
    return bool(vm_cpu and cluster and vm_cpu.get("model") == cluster.get("model")
                and (vm_cpu.get("vendor") or None) == (cluster.get("vendor") or None))


def probe_xml(cpu, arch="x86_64"):
    """A paused, diskless, NIC-less domain with ``cpu``: starts only if the CPU model does.

    Its name carries the collection's separator, which no user object name can contain.
    """
    name = images.SEP.join(("kvmfusion", "cpu-probe", uuid.uuid4().hex[:12]))
    dom = ET.Element("domain", type="kvm")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory", unit="MiB").text = "16"
    ET.SubElement(dom, "vcpu").text = "1"
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch=arch).text = "hvm"
    dom.append(xmlutil.parse(cpu_xml(cpu)))
    devices = ET.SubElement(dom, "devices")
    ET.SubElement(devices, "memballoon", model="none")
    return name, xmlutil.tostring(dom)


def runnable(client, cpu, arch="x86_64"):
    """None when ``client``'s host starts a paused domain with ``cpu``, else the one-line reason."""
    return client.try_start_paused(probe_xml(cpu, arch)[1])


def _first_drop(client, cpu, dropped, arch):
    """The first feature whose removal lets the host start ``cpu`` (known troublemakers first); None if none does."""
    required = [n for n, pol in sorted(cpu["features"].items()) if pol in ("require", "force") and n not in dropped]
    ordered = [n for n in KNOWN_TROUBLE if n in required] + [n for n in required if n not in KNOWN_TROUBLE]
    for name in ordered:
        if runnable(client, without(cpu, dropped + [name]), arch) is None:
            return name
    return None


def cluster_cpu(clients, probe=True):
    """The CPU model every host of ``clients`` (kvm hosts of one cluster) can run.

    Returns {model, vendor, features, dropped: {feature: host refusing it}, hosts: [...], skipped: [hosts
    without KVM, whose guests run under TCG and need no model], xml}.
    A host that cannot start the model even after ``MAX_DROPS`` drops fails with its reason.
    """
    infos = [c.host_info() for c in clients]
    skipped = [i["hostname"] for i in infos if "kvm" not in i["domain_types"]]
    host = dict((id(c), i["hostname"]) for c, i in zip(clients, infos))
    clients = [c for c, i in zip(clients, infos) if "kvm" in i["domain_types"]]
    if not clients:
        raise ValueError("no compute node with KVM to compute a cluster CPU model from")
    first = clients[0]
    arch = [i for i in infos if "kvm" in i["domain_types"]][0]["arch"]
    models = []
    for c in clients:
        hm = host_model(c.domain_capabilities("kvm"))
        if hm is None:
            raise ValueError("%s offers no host-model CPU for kvm domains" % c.uri)
        models.append(cpu_xml(hm))
    base = parse_cpu(first.cpu_baseline(models, "kvm"))
    dropped = {}
    if probe:
        for c in clients:
            cpu = without(base, sorted(dropped))
            reason = runnable(c, cpu, arch)
            while reason is not None:
                if len(dropped) >= MAX_DROPS:
                    raise ValueError("%s cannot start the cluster CPU model %s even without %s: %s"
                                     % (c.uri, base["model"], ", ".join(sorted(dropped)), reason))
                name = _first_drop(c, cpu, sorted(dropped), arch)
                if name is None:
                    raise ValueError("%s cannot start the cluster CPU model %s: %s" % (c.uri, base["model"], reason))
                dropped[name] = host[id(c)]
                cpu = without(base, sorted(dropped))
                reason = runnable(c, cpu, arch)
    final = without(base, sorted(dropped))
    return {
        "model": final["model"],
        "vendor": final["vendor"],
        "features": final["features"],
        "dropped": dropped,
        "hosts": [host[id(c)] for c in clients],
        "skipped": skipped,
        "xml": cpu_xml(final),
    }


def cluster_machines(clients):
    """For each machine type alias (pc, q35): the newest versioned machine type every host's QEMU provides.

    libvirt expands an alias to the newest version its own QEMU knows (pc-q35-10.0 under QEMU 10), which an
    older QEMU cannot run: a VM of a cluster that mixes generations gets this version instead, so that it can
    move to any CNA of the cluster (QEMU keeps older machine types, so the guest sees no change either way).
    """
    common = None
    for c in clients:
        info = c.host_info()
        names = c.machine_types(info["arch"], info["domain_types"][0] if info["domain_types"] else "kvm")
        common = set(names) if common is None else common & set(names)
    out = {}
    for alias, family in sorted(vmspec.MACHINE_FAMILIES.items()):
        prefix = family + "-"
        versions = []
        for name in common or ():
            version = name[len(prefix):]
            if name.startswith(prefix) and re.match(r"^[0-9]+(\.[0-9]+)*$", version):
                versions.append((tuple(int(x) for x in version.split(".")), name))
        if versions:
            out[alias] = max(versions)[1]
    return out
