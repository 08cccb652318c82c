# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kvmfusion.compute.vms inventory plugin against the fake libvirt of tests/unit/conftest.py: one fake
connection per CNA URI, nothing else mocked (options, Constructable and the cache are ansible-core's own)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import threading
import time
import xml.etree.ElementTree as ET
from unittest import mock

import pytest
import yaml

# ansible-core 2.19 switches process-wide hooks of module_utils to the controller's the first time controller code
# (ansible.errors, the inventory, display) is imported, and AnsibleModule then behaves as on the controller (its
# warnings and tracebacks go to the display, not into its result). They are put back once this file's imports are
# done, for the module tests of the same session, and set to the controller's for these tests only (_as_controller).
HOOKS = (("ansible.module_utils._internal", "is_controller"),
         ("ansible.module_utils._internal", "import_controller_module"),
         ("ansible.module_utils._internal", "get_controller_serialize_map"),
         ("ansible.module_utils._internal._traceback", "_is_traceback_enabled"))


def _hooks():
    found = {}
    for module_name, attr in HOOKS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # ansible-core 2.18 has none of them
            continue
        if hasattr(module, attr):
            found[(module, attr)] = getattr(module, attr)
    return found


MODULE_HOOKS = _hooks()

from ansible import constants as C  # noqa: E402
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import add_fragments

from ansible_collections.kvmfusion.compute.plugins.inventory import vms
from ansible_collections.kvmfusion.compute.plugins.module_utils import diskspec, netspec, vmspec, xmlutil

CONTROLLER_HOOKS = _hooks()
for (_module, _attr), _value in MODULE_HOOKS.items():
    setattr(_module, _attr, _value)

CNA1 = "qemu+ssh://root@cna1/system"
CNA2 = "qemu+ssh://root@cna2/system"
DS1 = "/var/lib/kvmfusion/ds1"
NO_DOMAIN, NO_POOL, NO_NETWORK = 42, 49, 43
AGENT = "org.qemu.guest_agent.0"


# ---------------------------------------------------------------- libvirt as each CNA shows it
def domain_xml(name, vcpus=2, memory="1GiB", nics=(), disks=(), template=None, agent="connected", uuid=None):
    """A domain as the vm module defines it (vmspec.build_xml), with disks (diskspec.disk_element) and, as libvirt
    reports a running domain, the agent channel's state."""
    d = vmspec.desired_state(dict(name=name, vcpus=vcpus, memory=memory, nics=list(nics), template=template))
    root = xmlutil.parse(vmspec.build_xml(d, "kvm"))
    ET.SubElement(root, "uuid").text = uuid or "00000000-0000-4000-8000-%012d" % (sum(map(ord, name)))
    devices = root.find("devices")
    for i, (datastore_dir, source) in enumerate(disks):
        spec = diskspec.desired_state(dict(name="%s-%d" % (name, i), datastore="ds1", vm=name))
        path = source if datastore_dir is None else "%s/%s" % (datastore_dir, source)
        devices.append(diskspec.disk_element(spec, path, "qcow2", "vd" + "abcdef"[i]))
    for ch in devices.findall("channel"):
        if agent and xmlutil.find_attr(ch, "target", "name") == AGENT:
            ch.find("target").set("state", agent)
    return xmlutil.tostring(root)


def libvirt_error(fake, message, code):
    return fake.libvirtError(message, code)


def dom(fake, name, xml, state=5, persistent=1, saved=0, addresses=None):
    d = mock.MagicMock(name="virDomain %s" % name)
    d.name.return_value = name
    d.state.return_value = [state, 1]
    d.hasManagedSaveImage.return_value = saved
    d.isPersistent.return_value = persistent
    d.XMLDesc.return_value = xml
    if isinstance(addresses, BaseException) or callable(addresses):
        d.interfaceAddresses.side_effect = addresses
    else:
        d.interfaceAddresses.return_value = addresses or {}
    return d


def pool_xml(name, path):
    root = ET.Element("pool", type="dir")
    ET.SubElement(root, "name").text = name
    ET.SubElement(ET.SubElement(root, "target"), "path").text = path
    return xmlutil.tostring(root)


def conn(fake, doms=(), pools=None, networks=None, hostname="cna"):
    """A virConnect with ``doms``, ``pools`` {name: XML} and ``networks`` {name: XML}."""
    c = mock.MagicMock(name="virConnect")
    c.listAllDomains.return_value = list(doms)
    c.getHostname.return_value = hostname
    pool_objs = {}
    for pname, pxml in (pools or {}).items():
        p = mock.MagicMock(name="virStoragePool %s" % pname)
        p.name.return_value = pname
        p.XMLDesc.return_value = pxml
        pool_objs[pname] = p
    c.listAllStoragePools.return_value = list(pool_objs.values())

    def pool_lookup(pname):
        if pname not in pool_objs:
            raise libvirt_error(fake, "Storage pool not found", NO_POOL)
        return pool_objs[pname]
    c.storagePoolLookupByName.side_effect = pool_lookup

    def net_lookup(nname):
        if nname not in (networks or {}):
            raise libvirt_error(fake, "Network not found: no network with matching name '%s'" % nname, NO_NETWORK)
        n = mock.MagicMock(name="virNetwork %s" % nname)
        n.XMLDesc.return_value = networks[nname]
        return n
    c.networkLookupByName.side_effect = net_lookup
    return c


def cnas(fake, by_uri):
    """Each URI opens its own fake connection (read-write or read-only); an exception value refuses to connect."""
    def opener(uri):
        c = by_uri[uri]
        if isinstance(c, BaseException):
            raise c
        return c
    fake.open.side_effect = opener
    fake.openReadOnly.side_effect = opener
    return by_uri


DVS_XML = netspec.network_xml("dvs0", [netspec.portgroup_element(
    netspec.portgroup_state(dict(dvs="dvs0", name="pg-web", vlan=10)))])
NAT_XML = "<network><name>default</name><forward mode='nat'/></network>"

WEB_MAC, WEB_MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
WEB_ADDRESSES = {
    "lo": {"hwaddr": "00:00:00:00:00:00",
           "addrs": [{"type": 0, "addr": "127.0.0.1", "prefix": 8}, {"type": 1, "addr": "::1", "prefix": 128}]},
    "eth0": {"hwaddr": WEB_MAC, "addrs": [{"type": 1, "addr": "fe80::5054:ff:fe00:1", "prefix": 64},
                                          {"type": 1, "addr": "2001:db8::10", "prefix": 64},
                                          {"type": 0, "addr": "192.0.2.10", "prefix": 24}]},
    "eth1": {"hwaddr": WEB_MAC2, "addrs": [{"type": 0, "addr": "198.51.100.7", "prefix": 24}]},
}


def site(fake):
    """Two CNAs: cna1 runs web1 (DVS port group, NAT NIC, disk on ds1, agent answering) and has the template tpl1;
    cna2 has db1 stopped, with a disk of datastore ds2 attached by volume name."""
    web1 = dom(fake, "web1", domain_xml(
        "web1", nics=[dict(dvs="dvs0", portgroup="pg-web", mac=WEB_MAC), dict(network="default", mac=WEB_MAC2)],
        disks=[(DS1, "web1-vda.qcow2"), (None, "/srv/iso/debian.iso")]), state=1, addresses=WEB_ADDRESSES)
    tpl1 = dom(fake, "tpl1", domain_xml("tpl1", vcpus=1, memory="512MiB", template=True, disks=[(DS1, "tpl1.qcow2")]))
    db1 = dom(fake, "db1", domain_xml("db1", vcpus=4, memory="4GiB", nics=[dict(dvs="dvs0", portgroup="pg-db")],
                                      disks=[(None, "ds2/db1-vda")]), state=5)
    return cnas(fake, {
        CNA1: conn(fake, [web1, tpl1], pools={"ds1": pool_xml("ds1", DS1)},
                   networks={"dvs0": DVS_XML, "default": NAT_XML}, hostname="cna1.example.com"),
        CNA2: conn(fake, [db1], pools={"ds1": pool_xml("ds1", DS1)}, networks={"dvs0": DVS_XML},
                   hostname="cna2.example.com"),
    })


# ---------------------------------------------------------------- the plugin as the plugin loader makes it
@pytest.fixture(autouse=True)
def _as_controller(monkeypatch):
    for (module, attr), value in CONTROLLER_HOOKS.items():
        monkeypatch.setattr(module, attr, value)


@pytest.fixture(scope="module")
def _option_definitions():
    """What the plugin loader does when it loads the plugin: its documented options (fragments included) become
    its configuration definitions."""
    doc = yaml.safe_load(vms.DOCUMENTATION)
    add_fragments(doc, vms.__file__, fragment_loader=fragment_loader)
    C.config.initialize_plugin_configuration_definitions("inventory", vms.InventoryModule.NAME, doc["options"])


@pytest.fixture
def run(_option_definitions, tmp_path):
    """run(config, cache=True) -> (InventoryData, plugin) after parsing ``config`` (a dict) from a config file."""
    def _run(config, cache=True, name="test.kvmfusion_vms.yml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(dict({"plugin": "kvmfusion.compute.vms"}, **config)))
        plugin = vms.InventoryModule()
        plugin._load_name = plugin.ansible_name = vms.InventoryModule.NAME
        plugin._redirected_names = []
        plugin.display = mock.MagicMock(name="display")
        assert plugin.verify_file(str(path))
        inventory = InventoryData()
        plugin.parse(inventory, DataLoader(), str(path), cache=cache)
        if plugin.get_option("cache"):  # as the inventory manager does after parsing a source
            plugin.update_cache_if_changed()
        return inventory, plugin
    return _run


def hostvars(inventory, host):
    return inventory.get_host(host).get_vars()


def members(inventory, group):
    return sorted(h.name for h in inventory.groups[group].get_hosts()) if group in inventory.groups else []


def warnings(plugin):
    return [c.args[0] for c in plugin.display.warning.call_args_list]


# ---------------------------------------------------------------- the listing
@pytest.mark.parametrize("name, ok", [
    ("site.kvmfusion_vms.yml", True), ("site.kvmfusion_vms.yaml", True), ("lab.vms.yml", True), ("vms.yaml", True),
    ("site.yml", False), ("vms.json", False), ("kvmfusion_vms.yml.bak", False),
])
def test_config_file_names(tmp_path, name, ok):
    path = tmp_path / name
    path.write_text("plugin: kvmfusion.compute.vms\n")
    assert vms.InventoryModule().verify_file(str(path)) is ok


def test_every_vm_of_every_cna_with_its_vars(fake_libvirt, run):
    by_uri = site(fake_libvirt)
    inventory, plugin = run({"uris": [{"name": "cna1", "uri": CNA1}], "hosts": ["cna2"],
                             "uri_template": "qemu+ssh://root@{host}/system"})
    assert sorted(inventory.hosts) == ["db1", "tpl1", "web1"]
    web1 = hostvars(inventory, "web1")
    assert web1["kvmfusion_cna"] == "cna1" and web1["kvmfusion_uri"] == CNA1
    assert web1["kvmfusion_state"] == "running"
    assert (web1["kvmfusion_vcpus"], web1["kvmfusion_memory"]) == (2, 1024 ** 3)
    # the ISO outside any datastore is no datastore's
    assert web1["kvmfusion_datastores"] == ["ds1"]
    # the NIC on libvirt's NAT network is on no port group
    assert web1["kvmfusion_portgroups"] == ["dvs0/pg-web"]
    assert [(n["mac"], n["dvs"], n["network"], n["portgroup"]) for n in web1["kvmfusion_nics"]] == [
        (WEB_MAC, "dvs0", "dvs0", "pg-web"), (WEB_MAC2, None, "default", None)]
    # the agent's addresses by NIC; loopback and link-local left out; ansible_host the first IPv4
    assert web1["kvmfusion_nics"][0]["ips"] == ["2001:db8::10", "192.0.2.10"]
    assert web1["kvmfusion_ips"] == ["2001:db8::10", "192.0.2.10", "198.51.100.7"]
    assert web1["ansible_host"] == "192.0.2.10"
    assert (web1["kvmfusion_ha"], web1["kvmfusion_persistent"], web1["kvmfusion_template"]) == (False, True, False)
    assert web1["kvmfusion_uuid"].startswith("00000000-0000-4000-8000-")

    db1 = hostvars(inventory, "db1")
    assert (db1["kvmfusion_cna"], db1["kvmfusion_state"], db1["kvmfusion_vcpus"], db1["kvmfusion_memory"]) == (
        "cna2", "shutoff", 4, 4 * 1024 ** 3)
    # a disk attached by datastore volume names its datastore itself
    assert db1["kvmfusion_datastores"] == ["ds2"]
    assert db1["kvmfusion_portgroups"] == ["dvs0/pg-db"]
    assert db1["kvmfusion_ips"] == [] and "ansible_host" not in db1
    assert hostvars(inventory, "tpl1")["kvmfusion_template"] is True
    # one connection per CNA, read-write for the agents; a stopped VM's agent is not asked
    assert sorted(c.args[0] for c in fake_libvirt.open.call_args_list) == [CNA1, CNA2]
    fake_libvirt.openReadOnly.assert_not_called()
    by_uri[CNA2].listAllDomains.return_value[0].interfaceAddresses.assert_not_called()
    assert warnings(plugin) == []


def test_listing_changes_nothing(fake_libvirt, run):
    by_uri = site(fake_libvirt)
    run({"uris": [CNA1, CNA2]})
    for c in by_uri.values():
        for name in ("defineXML", "defineXMLFlags", "createXML", "networkDefineXML", "storagePoolDefineXML"):
            assert not getattr(c, name).called
        for d in c.listAllDomains.return_value:
            for name in ("create", "destroy", "shutdownFlags", "undefineFlags", "setMetadata", "managedSave",
                         "setAutostart", "agentSetResponseTimeout", "qemuAgentCommand"):
                assert not getattr(d, name).called, "%s.%s called" % (d.name(), name)


def test_cna_names_from_uris(fake_libvirt, run, monkeypatch):
    cnas(fake_libvirt, {"qemu+ssh://admin:s3cret@[2001:db8::11]:2222/system": conn(fake_libvirt, [
        dom(fake_libvirt, "a1", domain_xml("a1"))]),
        "qemu+tls://cna3.example.com/system?pkipath=/etc/pki/x": conn(fake_libvirt, [
            dom(fake_libvirt, "a3", domain_xml("a3"))]),
        "qemu:///system": conn(fake_libvirt, [dom(fake_libvirt, "a0", domain_xml("a0"))], hostname="here")})
    inventory, _plugin = run({"uris": ["qemu+ssh://admin:s3cret@[2001:db8::11]:2222/system",
                                       "qemu+tls://cna3.example.com/system?pkipath=/etc/pki/x", "qemu:///system"]})
    a1 = hostvars(inventory, "a1")
    assert a1["kvmfusion_cna"] == "2001:db8::11"
    assert "s3cret" not in a1["kvmfusion_uri"] and a1["kvmfusion_uri"].startswith("qemu+ssh://admin:********@")
    assert hostvars(inventory, "a3")["kvmfusion_cna"] == "cna3.example.com"
    # a local URI: the CNA's own host name
    assert hostvars(inventory, "a0")["kvmfusion_cna"] == "here"


def test_without_cnas_this_cnas_libvirt_is_read(fake_libvirt, run, monkeypatch):
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu+ssh://root@cna9/system")
    cnas(fake_libvirt, {"qemu+ssh://root@cna9/system": conn(fake_libvirt, [dom(fake_libvirt, "v", domain_xml("v"))])})
    inventory, _plugin = run({})
    assert hostvars(inventory, "v")["kvmfusion_cna"] == "cna9"


# ---------------------------------------------------------------- state, persistence, HA
@pytest.mark.parametrize("state, saved, persistent, want_state, ha", [
    (1, 0, 1, "running", False),
    (1, 0, 0, "running", True),       # the cluster started it from its definition copy
    (3, 0, 0, "paused", True),
    (3, 0, 1, "paused", False),
    (2, 0, 1, "running", False),      # blocked: running as the vm module says
    (5, 0, 1, "shutoff", False),
    (5, 1, 1, "suspended", False),    # saved to disk
    (6, 0, 1, "crashed", False),
    (7, 0, 1, "pmsuspended", False),
])
def test_state_and_ha_as_libvirt_shows_them(fake_libvirt, run, state, saved, persistent, want_state, ha):
    d = dom(fake_libvirt, "v1", domain_xml("v1"), state=state, saved=saved, persistent=persistent)
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [d])})
    inventory, _plugin = run({"uris": [CNA1]})
    v = hostvars(inventory, "v1")
    assert (v["kvmfusion_state"], v["kvmfusion_ha"], v["kvmfusion_persistent"]) == (want_state, ha, bool(persistent))
    if want_state in ("shutoff", "suspended"):
        d.isPersistent.assert_not_called()  # a stopped domain is persistent


def test_vm_defined_on_two_cnas_is_listed_where_it_is_active(fake_libvirt, run):
    left = dom(fake_libvirt, "web1", domain_xml("web1", vcpus=1), state=5)
    moved = dom(fake_libvirt, "web1", domain_xml("web1", vcpus=2), state=1, persistent=0)
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [left]), CNA2: conn(fake_libvirt, [moved])})
    inventory, plugin = run({"uris": [CNA1, CNA2]})
    assert hostvars(inventory, "web1")["kvmfusion_cna"] == "cna2"
    assert hostvars(inventory, "web1")["kvmfusion_vcpus"] == 2
    assert warnings(plugin) == ["kvmfusion.compute.vms: VM web1 is defined on more than one CNA: cna1 (shutoff), "
                                "cna2 (running); listed from cna2"]


def test_vm_active_on_two_cnas_is_listed_from_the_first_with_a_warning(fake_libvirt, run):
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [dom(fake_libvirt, "web1", domain_xml("web1"), state=1)]),
                        CNA2: conn(fake_libvirt, [dom(fake_libvirt, "web1", domain_xml("web1"), state=1)])})
    inventory, plugin = run({"uris": [CNA1, CNA2], "guest_agent": False})
    assert hostvars(inventory, "web1")["kvmfusion_cna"] == "cna1"
    assert "is active on more than one CNA" in warnings(plugin)[0]


def test_vm_gone_while_being_read_is_not_listed(fake_libvirt, run):
    gone = dom(fake_libvirt, "gone", domain_xml("gone"))
    gone.XMLDesc.side_effect = libvirt_error(fake_libvirt, "Domain not found", NO_DOMAIN)
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [gone, dom(fake_libvirt, "kept", domain_xml("kept"))])})
    inventory, _plugin = run({"uris": [CNA1]})
    assert sorted(inventory.hosts) == ["kept"]


# ---------------------------------------------------------------- guest agents
def test_agent_not_asked_without_a_connected_channel_or_when_off(fake_libvirt, run):
    no_channel = dom(fake_libvirt, "a", domain_xml("a", agent=None).replace(AGENT, "org.example.other"), state=1)
    disconnected = dom(fake_libvirt, "b", domain_xml("b", agent="disconnected"), state=1)
    paused = dom(fake_libvirt, "c", domain_xml("c"), state=3)
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [no_channel, disconnected, paused])})
    inventory, _plugin = run({"uris": [CNA1]})
    assert sorted(inventory.hosts) == ["a", "b", "c"]
    for d in (no_channel, disconnected, paused):
        d.interfaceAddresses.assert_not_called()

    fake_libvirt.open.reset_mock()
    ready = dom(fake_libvirt, "d", domain_xml("d"), state=1, addresses=WEB_ADDRESSES)
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [ready])})
    inventory, _plugin = run({"uris": [CNA1], "guest_agent": False})
    ready.interfaceAddresses.assert_not_called()
    fake_libvirt.open.assert_not_called()
    fake_libvirt.openReadOnly.assert_called_with(CNA1)
    assert "ansible_host" not in hostvars(inventory, "d")


def test_agent_that_fails_or_hangs_never_fails_the_listing(fake_libvirt, run):
    release = threading.Event()

    def hang(*_args):
        release.wait(30)
        return WEB_ADDRESSES

    failing = dom(fake_libvirt, "f", domain_xml("f"), state=1,
                  addresses=libvirt_error(fake_libvirt, "Guest agent is not responding: QEMU guest agent is not "
                                                        "connected", 86))
    hung = dom(fake_libvirt, "h", domain_xml("h"), state=1, addresses=hang)
    fine = dom(fake_libvirt, "ok", domain_xml("ok", nics=[dict(network="default", mac=WEB_MAC)]), state=1,
               addresses={"eth0": WEB_ADDRESSES["eth0"]})
    c = conn(fake_libvirt, [failing, hung, fine], networks={"default": NAT_XML})
    cnas(fake_libvirt, {CNA1: c})
    try:
        started = time.monotonic()
        inventory, plugin = run({"uris": [CNA1], "agent_timeout": 0.5})
        took = time.monotonic() - started
    finally:
        release.set()
    assert took < 5, "the listing waited %.1f s for a hung agent" % took
    assert sorted(inventory.hosts) == ["f", "h", "ok"]
    assert hostvars(inventory, "f")["kvmfusion_ips"] == [] and "ansible_host" not in hostvars(inventory, "f")
    assert hostvars(inventory, "h")["kvmfusion_ips"] == []
    assert hostvars(inventory, "ok")["ansible_host"] == "192.0.2.10"
    assert warnings(plugin) == []


def test_run_bounded_leaves_late_calls_and_skips_unstarted_ones():
    release, made = threading.Event(), []

    def slow():
        made.append("slow")
        release.wait(10)
        return "late"

    def later():
        made.append("later")
        return "never asked for"

    try:
        results, done = vms.run_bounded([("slow", slow), ("later", later), ("boom", lambda: 1 / 0)], 1, 0.2)
    finally:
        release.set()
    assert done is False
    assert results == {} and made == ["slow"]
    results, done = vms.run_bounded([("a", lambda: 1), ("b", lambda: 1 / 0)], 4, 5)
    assert done is True and results["a"] == (1, None) and isinstance(results["b"][1], ZeroDivisionError)


# ---------------------------------------------------------------- parallel CNAs
def test_cnas_are_read_in_parallel_with_one_connection_each(fake_libvirt, run):
    both_listing = threading.Barrier(2, timeout=10)

    def listing(flags):
        both_listing.wait()  # BrokenBarrierError unless both CNAs are being listed at the same time
        return []
    c1, c2 = conn(fake_libvirt), conn(fake_libvirt)
    c1.listAllDomains.side_effect = c2.listAllDomains.side_effect = listing
    cnas(fake_libvirt, {CNA1: c1, CNA2: c2})
    run({"uris": [CNA1, CNA2], "parallel": 2})
    assert fake_libvirt.open.call_count == 2
    c1.close.assert_called_once_with()
    c2.close.assert_called_once_with()


def test_parallel_bounds_the_cnas_read_at_once(fake_libvirt, run):
    reading, most = [0], [0]
    lock = threading.Lock()

    def listing(flags):
        with lock:
            reading[0] += 1
            most[0] = max(most[0], reading[0])
        time.sleep(0.05)
        with lock:
            reading[0] -= 1
        return []
    by_uri = {}
    for i in range(6):
        c = conn(fake_libvirt)
        c.listAllDomains.side_effect = listing
        by_uri["qemu+ssh://root@cna%d/system" % i] = c
    cnas(fake_libvirt, by_uri)
    run({"uris": sorted(by_uri), "parallel": 2})
    assert most[0] == 2


# ---------------------------------------------------------------- unreachable CNAs
def test_unreachable_cna_fails_the_inventory_on_one_line(fake_libvirt, run):
    site(fake_libvirt)[CNA2] = libvirt_error(
        fake_libvirt, "Cannot recv data: ssh: connect to host cna2 port 22: No route to host\n: Connection reset", 38)
    with pytest.raises(AnsibleParserError) as err:
        run({"uris": [CNA1, CNA2]})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("kvmfusion.compute.vms: cannot read the VMs of CNA cna2: cannot connect to %s:" % CNA2)
    assert "skip_unreachable" in msg


def test_unreachable_cna_skipped_on_request(fake_libvirt, run):
    site(fake_libvirt)[CNA2] = libvirt_error(fake_libvirt, "Cannot recv data: ssh: No route to host", 38)
    inventory, plugin = run({"uris": [CNA1, CNA2], "skip_unreachable": True})
    assert sorted(inventory.hosts) == ["tpl1", "web1"]
    assert len(warnings(plugin)) == 1 and "cannot read the VMs of CNA cna2" in warnings(plugin)[0]


@pytest.mark.parametrize("config, fragment", [
    ({"uris": [{"url": CNA1}]}, "uris: each entry is a libvirt URI or a mapping with uri and name"),
    ({"uris": [42]}, "uris: each entry"),
    ({"hosts": ["cna1"], "uri_template": "qemu+ssh://root@cna1/system"}, "has no {host}"),
    ({"hosts": ["cna1/../x"]}, "hosts: invalid CNA name"),
    ({"hosts": ["cna1"], "uris": [{"name": "cna1", "uri": CNA2}]}, "CNA cna1 is given twice"),
    ({"uris": [CNA1, CNA1]}, "is given twice"),
    ({"uris": [CNA1], "parallel": 0}, "parallel must be at least 1"),
    ({"uris": [CNA1], "agent_timeout": -1}, "agent_timeout must not be negative"),
])
def test_bad_configuration_is_refused_before_any_connection(fake_libvirt, run, config, fragment):
    with pytest.raises(AnsibleParserError) as err:
        run(config)
    assert fragment in str(err.value)
    fake_libvirt.open.assert_not_called()
    fake_libvirt.openReadOnly.assert_not_called()


def test_missing_libvirt_bindings_named(fake_libvirt, run, monkeypatch):
    monkeypatch.setattr(vms.libvirt_client, "libvirt", None)
    with pytest.raises(AnsibleParserError) as err:
        run({"uris": [CNA1]})
    assert "libvirt-python" in str(err.value)


# ---------------------------------------------------------------- filters
def test_include_exclude_and_states_before_anything_is_read(fake_libvirt, run):
    web1 = dom(fake_libvirt, "web-1", domain_xml("web-1"), state=1)
    web_old = dom(fake_libvirt, "web-1-old", domain_xml("web-1-old"), state=1)
    web2 = dom(fake_libvirt, "web-2", domain_xml("web-2"), state=5)
    db1 = dom(fake_libvirt, "db-1", domain_xml("db-1"), state=1)
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [web1, web_old, web2, db1])})
    inventory, _plugin = run({"uris": [CNA1], "include": ["web-*"], "exclude": ["*-old"], "states": ["running"],
                              "guest_agent": False})
    assert sorted(inventory.hosts) == ["web-1"]
    for d in (web_old, web2, db1):
        d.XMLDesc.assert_not_called()
    for d in (web_old, db1):  # left out by name: not even their state is read
        d.state.assert_not_called()


def test_filters_are_conditions_on_the_host_vars(fake_libvirt, run):
    site(fake_libvirt)
    filters = ["not kvmfusion_template", "'dvs0/pg-web' in kvmfusion_portgroups"]
    inventory, _plugin = run({"uris": [CNA1, CNA2], "filters": filters})
    assert sorted(inventory.hosts) == ["web1"]


def test_filter_that_cannot_be_evaluated(fake_libvirt, run):
    site(fake_libvirt)
    inventory, _plugin = run({"uris": [CNA1], "filters": ["kvmfusion_no_such_var > 1"]})
    assert sorted(inventory.hosts) == []
    site(fake_libvirt)
    with pytest.raises(AnsibleError) as err:
        run({"uris": [CNA1], "filters": ["kvmfusion_no_such_var > 1"], "strict": True})
    assert "cannot evaluate filter" in str(err.value)


# ---------------------------------------------------------------- constructed
def test_compose_groups_and_keyed_groups(fake_libvirt, run):
    by_uri = site(fake_libvirt)
    by_uri[CNA2].listAllDomains.return_value.append(
        dom(fake_libvirt, "ha1", domain_xml("ha1", nics=[dict(dvs="dvs0", portgroup="pg-web")],
                                            disks=[(DS1, "ha1.qcow2")]), state=1, persistent=0, addresses={}))
    inventory, _plugin = run({
        "uris": [{"name": "cna1", "uri": CNA1}, {"name": "cna2", "uri": CNA2}],
        # an expression that fails for a VM without addresses: left out for it (not strict)
        "compose": {"ansible_host": "kvmfusion_ips[2]", "ansible_user": "'admin'"},
        "groups": {"ha_vms": "kvmfusion_ha", "big": "kvmfusion_vcpus >= 4"},
        "keyed_groups": [{"key": "kvmfusion_cna", "prefix": "cna"},
                         {"key": "kvmfusion_state", "prefix": "state"},
                         {"key": "kvmfusion_datastores", "prefix": "datastore"},
                         {"key": "kvmfusion_portgroups", "prefix": "portgroup"},
                         {"key": "kvmfusion_cna", "prefix": "", "separator": "_"}],
        "leading_separator": False,
    })
    # compose runs after the plugin's own vars: it can override ansible_host
    assert hostvars(inventory, "web1")["ansible_host"] == "198.51.100.7"
    assert hostvars(inventory, "web1")["ansible_user"] == "admin"
    assert members(inventory, "ha_vms") == ["ha1"]
    assert members(inventory, "big") == ["db1"]
    assert members(inventory, "cna_cna1") == ["tpl1", "web1"]
    assert members(inventory, "cna_cna2") == ["db1", "ha1"]
    assert members(inventory, "state_running") == ["ha1", "web1"]
    assert members(inventory, "state_shutoff") == ["db1", "tpl1"]
    assert members(inventory, "datastore_ds1") == ["ha1", "tpl1", "web1"]
    assert members(inventory, "datastore_ds2") == ["db1"]
    assert members(inventory, "portgroup_dvs0_pg_web") == ["ha1", "web1"]
    assert members(inventory, "portgroup_dvs0_pg_db") == ["db1"]
    # leading_separator false and no prefix: the bare CNA name
    assert members(inventory, "cna1") == ["tpl1", "web1"]


def test_strict_fails_on_a_compose_error(fake_libvirt, run):
    site(fake_libvirt)
    inventory, _plugin = run({"uris": [CNA1], "compose": {"x": "kvmfusion_nope.attr"}})
    assert "x" not in hostvars(inventory, "web1")
    site(fake_libvirt)
    with pytest.raises(AnsibleError):
        run({"uris": [CNA1], "compose": {"x": "kvmfusion_nope.attr"}, "strict": True})


def test_vm_data_is_never_a_template(fake_libvirt, run):
    xml = domain_xml("web1", nics=[dict(network="default", mac=WEB_MAC)])
    d = dom(fake_libvirt, "web1", xml, state=1, addresses={})
    # a network name cannot hold braces, a NIC model from a foreign definition can
    d.XMLDesc.return_value = xml.replace("type=\"virtio\"", "type=\"{{ lookup('env', 'HOME') }}\"")
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [d], networks={"default": NAT_XML})})
    inventory, _plugin = run({"uris": [CNA1], "compose": {"model": "kvmfusion_nics[0].model"}})
    assert hostvars(inventory, "web1")["model"] == "{{ lookup('env', 'HOME') }}"


# ---------------------------------------------------------------- inventory cache
def test_cache_serves_the_listing_until_refreshed(fake_libvirt, run, tmp_path):
    site(fake_libvirt)
    config = {"uris": [CNA1, CNA2], "cache": True, "cache_plugin": "jsonfile",
              "cache_connection": str(tmp_path / "cache"), "cache_timeout": 600}
    first, _plugin = run(config)
    assert sorted(first.hosts) == ["db1", "tpl1", "web1"]
    assert fake_libvirt.open.call_count == 2

    # every CNA unreachable now: the cached listing is used, no connection is tried
    fake_libvirt.open.reset_mock()
    cnas(fake_libvirt, {CNA1: libvirt_error(fake_libvirt, "down", 38), CNA2: libvirt_error(fake_libvirt, "down", 38)})
    cached, _plugin = run(config)
    fake_libvirt.open.assert_not_called()
    assert sorted(cached.hosts) == ["db1", "tpl1", "web1"]
    assert hostvars(cached, "web1")["ansible_host"] == "192.0.2.10"
    assert hostvars(cached, "web1")["kvmfusion_portgroups"] == ["dvs0/pg-web"]

    # refreshed (--flush-cache, meta: refresh_inventory): read again, and the cache rewritten
    cnas(fake_libvirt, {CNA1: conn(fake_libvirt, [dom(fake_libvirt, "new1", domain_xml("new1"))]), CNA2: conn(
        fake_libvirt)})
    refreshed, _plugin = run(config, cache=False)
    assert sorted(refreshed.hosts) == ["new1"]
    cnas(fake_libvirt, {CNA1: libvirt_error(fake_libvirt, "down", 38), CNA2: libvirt_error(fake_libvirt, "down", 38)})
    again, _plugin = run(config)
    assert sorted(again.hosts) == ["new1"]


# ---------------------------------------------------------------- pure helpers
def test_vm_vars_of_a_definition_without_optional_parts():
    v = vms.vm_vars("<domain type='kvm'><name>bare</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                    "<devices><disk type='file' device='cdrom'><target dev='hdc'/></disk></devices></domain>",
                    {}, lambda net: False)
    assert v == {"uuid": None, "vcpus": 1, "memory": 64 * 1024 ** 2, "datastores": [], "nics": [], "portgroups": [],
                 "template": False, "agent": False}
