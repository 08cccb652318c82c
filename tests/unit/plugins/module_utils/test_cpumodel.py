# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster CPU model: baseline over the CNAs, probes that drop what KVM refuses, the vm module's default."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import cpumodel, domains, hosts, vmspec, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import Client

DOMCAPS = """<domainCapabilities><cpu>
<mode name='host-passthrough' supported='yes'/>
<mode name='host-model' supported='yes'>
  <model fallback='forbid'>kvm64</model><vendor>AMD</vendor>
  <feature policy='require' name='x2apic'/>
  <feature policy='require' name='arch-capabilities'/>
  <feature policy='require' name='%s'/>
  <feature policy='disable' name='pni'/>
</mode></cpu></domainCapabilities>"""


class FakeCna(object):
    """A CNA at the client boundary: domain capabilities, libvirt's baseline, and a KVM that refuses features."""

    def __init__(self, name, extra="clzero", refuses=(), kvm=True):
        self.uri = "qemu+ssh://root@%s/system" % name
        self.name = name
        self.extra = extra
        self.refuses = set(refuses)
        self.kvm = kvm
        self.probes = []
        self.baseline_input = None

    def host_info(self):
        return {"hostname": self.name, "arch": "x86_64", "domain_types": ["kvm", "qemu"] if self.kvm else ["qemu"]}

    def domain_capabilities(self, virttype):
        assert self.kvm and virttype == "kvm"
        return DOMCAPS % self.extra

    def cpu_baseline(self, cpu_xmls, virttype):
        # libvirt's answer: the features every input requires
        self.baseline_input = list(cpu_xmls)
        cpus = [cpumodel.parse_cpu(x) for x in cpu_xmls]
        common = dict((n, p) for n, p in cpus[0]["features"].items()
                      if all(c["features"].get(n) == p for c in cpus))
        return cpumodel.cpu_xml(dict(cpus[0], features=common))

    def try_start_paused(self, xml):
        root = xmlutil.parse(xml)
        self.probes.append(root)
        assert root.get("type") == "kvm" and root.find("devices/disk") is None
        required = set(f.get("name") for f in root.findall("cpu/feature") if f.get("policy") == "require")
        bad = sorted(required & self.refuses)
        return "qemu unexpectedly closed the monitor: MSR for %s" % bad[0] if bad else None


def test_host_model_is_read_from_domain_capabilities():
    cpu = cpumodel.host_model(DOMCAPS % "clzero")
    assert (cpu["model"], cpu["vendor"]) == ("kvm64", "AMD")
    assert cpu["features"] == {"x2apic": "require", "arch-capabilities": "require", "clzero": "require",
                               "pni": "disable"}
    assert cpumodel.host_model("<domainCapabilities><cpu><mode name='host-model' supported='no'/></cpu>"
                               "</domainCapabilities>") is None


def test_baseline_is_common_to_every_cna_and_drops_what_kvm_refuses():
    cna1, cna2 = FakeCna("cna1", refuses=["arch-capabilities"]), FakeCna("cna2", extra="gfni")
    got = cpumodel.cluster_cpu([cna1, cna2])
    assert len(cna1.baseline_input) == 2
    assert got["model"] == "kvm64" and got["vendor"] == "AMD"
    # clzero (cna1 only) and gfni (cna2 only) are not in the baseline; arch-capabilities is disabled
    assert got["features"] == {"x2apic": "require", "arch-capabilities": "disable", "pni": "disable"}
    assert got["dropped"] == {"arch-capabilities": "cna1"}
    assert got["hosts"] == ["cna1", "cna2"] and got["skipped"] == []
    cpu = xmlutil.parse(got["xml"])
    assert (cpu.get("mode"), xmlutil.find_text(cpu, "model"), xmlutil.find_text(cpu, "vendor")) == (
        "custom", "kvm64", "AMD")
    # every CNA started the final model
    for cna in (cna1, cna2):
        last = cna.probes[-1]
        assert [f.get("policy") for f in last.findall("cpu/feature") if f.get("name") == "arch-capabilities"] == [
            "disable"]


def test_a_feature_kvm_refuses_is_found_even_when_it_is_not_a_known_one():
    cna1, cna2 = FakeCna("cna1"), FakeCna("cna2", refuses=["x2apic"])
    got = cpumodel.cluster_cpu([cna1, cna2])
    assert got["dropped"] == {"x2apic": "cna2"}
    assert got["features"]["x2apic"] == "disable" and got["features"]["arch-capabilities"] == "require"


def test_every_probe_domain_is_transient_paused_and_named_beyond_user_names():
    cna = FakeCna("cna1", refuses=["arch-capabilities"])
    cpumodel.cluster_cpu([cna])
    for probe in cna.probes:
        name = xmlutil.find_text(probe, "name")
        with pytest.raises(ValueError):
            vmspec.desired_state({"name": name})


def test_a_cna_that_starts_nothing_fails_in_one_line():
    cna = FakeCna("cna1", refuses=["x2apic", "arch-capabilities", "clzero"])

    def never(xml):
        cna.probes.append(xml)
        return "KVM is broken here"
    cna.try_start_paused = never
    with pytest.raises(ValueError) as err:
        cpumodel.cluster_cpu([cna])
    assert "\n" not in str(err.value)
    assert "cannot start the cluster CPU model kvm64: KVM is broken here" in str(err.value)


def test_without_probing_the_baseline_is_returned_as_libvirt_computed_it():
    cna = FakeCna("cna1", refuses=["arch-capabilities"])
    got = cpumodel.cluster_cpu([cna], probe=False)
    assert cna.probes == [] and got["dropped"] == {}
    assert got["features"]["arch-capabilities"] == "require"


def test_cnas_without_kvm_are_skipped():
    got = cpumodel.cluster_cpu([FakeCna("cna1"), FakeCna("tcg1", kvm=False)])
    assert got["hosts"] == ["cna1"] and got["skipped"] == ["tcg1"]
    with pytest.raises(ValueError) as err:
        cpumodel.cluster_cpu([FakeCna("tcg1", kvm=False)])
    assert "no compute node with KVM" in str(err.value)


def test_client_probe_reports_libvirts_refusal_and_destroys_what_started(fake_libvirt):
    c = Client("qemu:///system")
    fake_libvirt.conn.createXML.side_effect = fake_libvirt.libvirtError("MSR 0x10a refused")
    assert c.try_start_paused("<domain/>") == "MSR 0x10a refused"
    fake_libvirt.conn.createXML.side_effect = None
    assert c.try_start_paused("<domain/>") is None
    flags = fake_libvirt.conn.createXML.call_args[0][1]
    assert flags == fake_libvirt.VIR_DOMAIN_START_PAUSED | fake_libvirt.VIR_DOMAIN_START_AUTODESTROY
    fake_libvirt.conn.createXML.return_value.destroy.assert_called_once_with()


# ---------------------------------------------------------------- the vm module's default

CLUSTER = {"model": "kvm64", "vendor": "AMD", "features": {"x2apic": "require", "arch-capabilities": "disable"}}


@pytest.fixture
def facts(monkeypatch, tmp_path):
    path = tmp_path / "kvmfusion.fact"
    monkeypatch.setattr(hosts, "FACTS_PATH", str(path))

    def write(cluster_cpu=None):
        path.write_text(json.dumps({"role": "cna", "cluster_cpu": cluster_cpu or CLUSTER}))
    return write


class DomainsClient(object):
    is_local = True
    uri = "qemu:///system"

    def __init__(self, xml=None):
        self.xml = xml

    def domain_xml(self, name, inactive=False, secure=False):
        return self.xml


def resolve(p, hyper="kvm", existing_d=None, existing_hyper="kvm", client=None):
    xml = vmspec.build_xml(vmspec.desired_state(existing_d), existing_hyper) if existing_d is not None else None
    mgr = domains.VmManager(client or DomainsClient(xml), check_mode=True)
    d = vmspec.desired_state(p)
    mgr.cluster_cpu_default(d, p, hyper, object() if xml else None)
    return d, (vmspec.build_xml(d, hyper, xml) if xml else vmspec.build_xml(d, hyper))


def test_new_kvm_vms_get_the_cluster_model(facts):
    facts()
    d, xml = resolve({"name": "vm1"})
    assert (d["cpu_model"], d["cpu_vendor"]) == ("kvm64", "AMD")
    cpu = xmlutil.parse(xml).find("cpu")
    assert cpumodel.parse_cpu(cpu) == CLUSTER
    # what was written reads back as what was wanted: a second run changes nothing
    assert vmspec.managed_view(xml, d) == d


def test_user_features_go_on_top_of_the_cluster_model(facts):
    facts()
    d = resolve({"name": "vm1", "cpu_features": {"avx2": "require", "x2apic": "disable"}})[0]
    assert d["cpu_features"] == {"avx2": "require", "x2apic": "disable", "arch-capabilities": "disable"}


@pytest.mark.parametrize("p, hyper", [({"name": "vm1", "cpu_model": "host-model"}, "kvm"),
                                      ({"name": "vm1"}, "qemu")], ids=["explicit-model", "tcg"])
def test_no_cluster_model_for_an_explicit_model_or_tcg(facts, p, hyper):
    facts()
    d = resolve(p, hyper)[0]
    assert d.get("cpu_model") == p.get("cpu_model") and "cpu_vendor" not in d


def test_without_facts_new_kvm_vms_stay_host_model():
    d, xml = resolve({"name": "vm1"})
    assert "cpu_model" not in d
    assert xmlutil.parse(xml).find("cpu").get("mode") == "host-model"


def test_cpu_model_cluster_without_facts_is_refused_in_one_line():
    with pytest.raises(ValueError) as err:
        resolve({"name": "vm1", "cpu_model": "cluster"})
    assert "\n" not in str(err.value) and "cpu_model cluster needs the cluster CPU model" in str(err.value)


def test_remote_uri_does_not_read_this_hosts_facts(facts):
    facts()
    remote = DomainsClient()
    remote.is_local = False
    d = resolve({"name": "vm1"}, client=remote)[0]
    assert "cpu_model" not in d


def test_an_existing_vm_keeps_its_model_unless_asked(facts):
    facts()
    d = resolve({"name": "vm1", "vcpus": 2}, existing_d={"name": "vm1", "cpu_model": "host-model"})[0]
    assert "cpu_model" not in d
    d, xml = resolve({"name": "vm1", "cpu_model": "cluster"}, existing_d={"name": "vm1", "cpu_model": "host-model"})
    assert cpumodel.parse_cpu_of_domain(xml) == CLUSTER


def test_features_on_an_existing_cluster_vm_keep_the_models_features(facts):
    facts()
    first, xml = resolve({"name": "vm1"})
    mgr = domains.VmManager(DomainsClient(xml), check_mode=True)
    p = {"name": "vm1", "cpu_features": {"avx2": "require"}}
    d = vmspec.desired_state(p)
    mgr.cluster_cpu_default(d, p, "kvm", object())
    new = vmspec.build_xml(d, "kvm", xml)
    assert cpumodel.parse_cpu_of_domain(new) == dict(CLUSTER, features=dict(CLUSTER["features"], avx2="require"))


def test_changing_features_of_a_named_model_keeps_its_vendor():
    xml = vmspec.build_xml(dict(vmspec.desired_state({"name": "vm1", "cpu_model": "EPYC"}), cpu_vendor="AMD"), "kvm")
    new = vmspec.build_xml(vmspec.desired_state({"name": "vm1", "cpu_features": {"svm": "disable"}}), "kvm", xml)
    assert xmlutil.find_text(xmlutil.parse(new), "cpu/vendor") == "AMD"


# ---------------------------------------------------------------- cluster machine types

class MachinesCna(FakeCna):
    def __init__(self, name, machines, kvm=True):
        super(MachinesCna, self).__init__(name, kvm=kvm)
        self.machines = set(machines)
        self.asked = None

    def machine_types(self, arch, virttype):
        self.asked = (arch, virttype)
        return self.machines


QEMU_72 = ("pc", "q35", "pc-i440fx-7.2", "pc-i440fx-2.12", "pc-q35-7.2", "pc-q35-7.1", "pc-q35-2.12", "isapc")
QEMU_100 = ("pc", "q35", "pc-i440fx-10.0", "pc-i440fx-7.2", "pc-q35-10.0", "pc-q35-9.2", "pc-q35-7.2", "pc-q35-2.12",
            "microvm")


def test_cluster_machine_types_are_the_newest_every_qemu_provides():
    # 10.0 > 9.2 > 7.2 numerically (a string sort would put 9.2 first); the mixed cluster stays on 7.2
    assert cpumodel.cluster_machines([MachinesCna("cna1", QEMU_100)]) == {"pc": "pc-i440fx-10.0", "q35": "pc-q35-10.0"}
    mixed = [MachinesCna("cna1", QEMU_100), MachinesCna("cna2", QEMU_72)]
    assert cpumodel.cluster_machines(mixed) == {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}
    tcg = MachinesCna("tcg1", QEMU_72, kvm=False)
    cpumodel.cluster_machines([tcg])
    assert tcg.asked == ("x86_64", "qemu")
    # a family no host shares a version of is left to libvirt
    assert cpumodel.cluster_machines([MachinesCna("a", ("pc-q35-7.2",)), MachinesCna("b", ("pc-q35-8.0",))]) == {}


def test_a_new_vm_gets_the_cluster_version_of_its_machine_alias_and_an_existing_one_keeps_its_own(facts, monkeypatch):
    path = hosts.FACTS_PATH
    with open(path, "w") as f:
        json.dump({"role": "cna", "cluster_machine_types": {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}}, f)
    mgr = domains.VmManager(DomainsClient(), check_mode=True)
    for p, want in (({"name": "vm1"}, "pc-i440fx-7.2"), ({"name": "vm1", "machine": "q35"}, "pc-q35-7.2"),
                    ({"name": "vm1", "machine": "pc-q35-9.2"}, "pc-q35-9.2")):
        d = vmspec.desired_state(p)
        mgr.cluster_machine_default(d, None)
        assert d["machine"] == want
        assert xmlutil.find_attr(xmlutil.parse(vmspec.build_xml(d, "kvm")), "os/type", "machine") == want
    d = vmspec.desired_state({"name": "vm1", "machine": "q35"})
    mgr.cluster_machine_default(d, object())
    assert d["machine"] == "q35"
    # another CNA's VM (remote uri) does not get this CNA's facts
    remote = DomainsClient()
    remote.is_local = False
    d = vmspec.desired_state({"name": "vm1"})
    domains.VmManager(remote, check_mode=True).cluster_machine_default(d, None)
    assert "machine" not in d
