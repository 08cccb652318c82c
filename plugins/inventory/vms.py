# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
name: vms
short_description: The VMs of the compute nodes, read from each CNA's libvirt
version_added: 0.5.0
description:
  - Lists the VMs of every CNA given in O(uris) and O(hosts), one libvirt connection per CNA, the CNAs read in
    parallel (at most O(parallel) at a time).
  - Each VM becomes a host named after the VM (VM names are unique cluster-wide) with the host variables below, and
    C(ansible_host) set to its first IPv4 address that is not loopback when its guest agent reports one. O(compose)
    runs after them and can override any of them, C(ansible_host) included.
  - "Host variables: C(kvmfusion_cna) (the CNA it is defined on), C(kvmfusion_uri) (the libvirt URI of that CNA, a
    password in it masked), C(kvmfusion_uuid), C(kvmfusion_state) (V(running), V(paused), V(shutoff),
    V(suspended) (saved to disk), V(crashed), V(pmsuspended) or V(nostate), as the vm module names them),
    C(kvmfusion_vcpus), C(kvmfusion_memory) (bytes), C(kvmfusion_datastores) (the datastores, that is libvirt
    storage pools, holding the images its disks use now), C(kvmfusion_portgroups) (V(<dvs>/<portgroup>) of each
    NIC on a DVS port group), C(kvmfusion_nics) (per NIC: C(mac), C(model), C(network), C(bridge), C(dvs),
    C(portgroup), C(security_group), C(bound_ips), C(ips)), C(kvmfusion_ips) (the guest's addresses from its
    agent, loopback and IPv6 link-local left out), C(kvmfusion_ha), C(kvmfusion_persistent) and
    C(kvmfusion_template)."
  - C(kvmfusion_ha) is what libvirt shows of HA. Pacemaker keeps the list of VMs under HA, and this plugin asks
    only libvirt, so C(kvmfusion_ha) is true for a running transient domain, which is what a VM under HA becomes
    once the cluster has started it (C(ocf:heartbeat:VirtualDomain) undefines it and starts it from its
    definition copy). A VM put under HA while running, and not started by the cluster since, is still persistent
    and reads false; a VM under HA that the cluster keeps stopped is defined on no CNA and is not listed.
    M(kvmfusion.compute.ha_info) reports the cluster's own list.
  - A VM defined on several CNAs (the stopped definition a live migration or a failover left behind on its old
    CNA) is listed once, from the CNA where it is active, with a warning; from the first CNA given when it is active
    nowhere or on more than one.
  - The guest agents of running VMs are asked for their addresses in parallel after the definitions are read; the
    listing waits at most O(agent_timeout) seconds for them per CNA, and a VM whose agent does not answer in time
    simply has no addresses.
  - Uses YAML configuration files whose names end in C(kvmfusion_vms.yml), C(kvmfusion_vms.yaml), C(vms.yml) or
    C(vms.yaml), for example C(site.kvmfusion_vms.yml).
author:
  - kvmfusion.compute developers (@kvmfusion)
requirements:
  - libvirt-python on the controller (C(requirements.txt) of the collection)
  - for C(qemu+ssh) URIs, the C(ssh) client and SSH access to each CNA as the URI's user
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin; it marks the file as a configuration of it.
    required: true
    type: str
    choices: [kvmfusion.compute.vms]
  uris:
    description:
      - libvirt URIs of CNAs to read, for example V(qemu+ssh://root@cna1/system) or V(qemu+tls://cna1/system).
      - An entry can also be a mapping with C(uri) and C(name) to give the CNA its name in C(kvmfusion_cna);
        otherwise that is the host of the URI, or libvirt's host name for a local URI.
      - When neither O(uris) nor O(hosts) is set, the CNA this runs on is read (E(LIBVIRT_DEFAULT_URI), else
        V(qemu:///system)), as the collection's modules do without a URI.
    type: list
    elements: raw
    default: []
  hosts:
    description:
      - Names of CNAs to read; the URI of each is O(uri_template) with C({host}) replaced by the name.
      - The name is the CNA's C(kvmfusion_cna).
    type: list
    elements: str
    default: []
  uri_template:
    description: The libvirt URI of a CNA named in O(hosts).
    type: str
    default: qemu+ssh://root@{host}/system
  parallel:
    description: How many CNAs are read at the same time (one thread and one libvirt connection each).
    type: int
    default: 8
  skip_unreachable:
    description:
      - What to do when a CNA cannot be read (unreachable, libvirtd down, access refused).
      - V(false) fails the inventory source, naming the CNA and its URI; none of its VMs are listed, never a partial
        list. Ansible then warns that the source could not be parsed, or stops with the C(unparsed_is_failed)
        setting of the C([inventory]) section (E(ANSIBLE_INVENTORY_UNPARSED_FAILED)).
      - V(true) warns and lists the VMs of the CNAs that answered.
    type: bool
    default: false
  guest_agent:
    description:
      - Ask the guest agent of each running VM for its addresses (C(kvmfusion_ips), C(ansible_host)).
      - This needs a read-write libvirt connection; V(false) reads every CNA through a read-only one.
    type: bool
    default: true
  agent_timeout:
    description:
      - The longest time, in seconds, that the listing of one CNA waits for the guest agents of its VMs.
      - An agent that does not answer in time never fails the listing; its VM has no addresses.
    type: float
    default: 2.0
  include:
    description:
      - Shell-style patterns (V(web-*), V(db-?)) of the VM names to list; all VMs when empty.
    type: list
    elements: str
    default: []
  exclude:
    description: Shell-style patterns of VM names left out, applied after O(include).
    type: list
    elements: str
    default: []
  states:
    description: List only VMs in these states; every state when empty.
    type: list
    elements: str
    choices: [running, paused, shutoff, suspended, crashed, pmsuspended, nostate]
    default: []
  filters:
    description:
      - Jinja2 conditions over the host variables above (before O(compose)); a VM is listed only when every one
        holds.
      - A condition that cannot be evaluated leaves the VM out, or fails the inventory source with O(strict).
    type: list
    elements: str
    default: []
seealso:
  - module: kvmfusion.compute.vm_info
  - module: kvmfusion.compute.ha_info
  - plugin: ansible.builtin.constructed
    plugin_type: inventory
notes:
  - The guest agent is asked through libvirt (C(virDomainInterfaceAddresses) with the agent as source); libvirt
    times out an agent that does not answer its sync after 5 seconds, so a hung agent costs one of the listing's
    worker threads, never more than O(agent_timeout) of its time.
'''

EXAMPLES = r'''
# site.kvmfusion_vms.yml: every VM of two CNAs, reached over SSH as root (their names resolve).
# ansible-inventory -i site.kvmfusion_vms.yml --graph
plugin: kvmfusion.compute.vms
hosts: [cna1, cna2]
---
# running.kvmfusion_vms.yml: the running VMs whose names start with web- or db-, grouped by CNA, state,
# datastore and port group, with a group of the VMs under HA; the guests are reached as the user admin.
plugin: kvmfusion.compute.vms
hosts: [cna1, cna2]
uri_template: qemu+ssh://root@{host}.example.com/system
include: [web-*, db-*]
exclude: ["*-old"]
states: [running]
filters:
  - kvmfusion_vcpus >= 1
compose:
  ansible_user: "'admin'"
groups:
  ha_vms: kvmfusion_ha
keyed_groups:
  - key: kvmfusion_cna
    prefix: cna
  - key: kvmfusion_state
    prefix: state
  - key: kvmfusion_datastores
    prefix: datastore
  - key: kvmfusion_portgroups
    prefix: portgroup
---
# named.kvmfusion_vms.yml: CNAs given by URI (TLS) with the names they have in the site's inventory, and the
# listing kept in a JSON file for 10 minutes.
plugin: kvmfusion.compute.vms
uris:
  - {name: cna1, uri: "qemu+tls://10.0.0.11/system"}
  - {name: cna2, uri: "qemu+tls://10.0.0.12/system"}
skip_unreachable: true
guest_agent: false
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /var/tmp/kvmfusion-vms-cache
cache_timeout: 600
'''

import fnmatch
import ipaddress
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.kvmfusion.compute.plugins.module_utils import (
    client as libvirt_client, diskspec, netspec, portsec, storage, vmspec, xmlutil)
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import INTERFACE_ADDRESSES_SRC_AGENT
from ansible_collections.kvmfusion.compute.plugins.module_utils.power import state_of

AGENT_CHANNEL = "org.qemu.guest_agent.0"
# Agent calls in flight per CNA: libvirtd serves at most 5 calls of one client at a time (max_client_requests),
# more would only queue there.
AGENT_WORKERS = 4
# The host part of a libvirt URI, and its user:password@ (never shown).
_URI_HOST = re.compile(r"^[a-z0-9+.-]+://(?:[^@/?]*@)?(\[[^\]]*\]|[^/:?]*)", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"^([a-z0-9+.-]+://[^/@:]*):[^/@]*@", re.IGNORECASE)


# ---------------------------------------------------------------------------- what one VM's XML says
def vm_vars(xml, pool_dirs, dvs_of):
    """The host variables a domain XML holds: UUID, vCPUs, memory, datastores, NICs and port groups, template, and
    (as ``agent``) whether it has a guest agent channel that libvirt does not report disconnected.

    ``pool_dirs``: {directory: datastore} of the CNA; ``dvs_of(network)``: whether that libvirt network is a DVS.
    """
    root = xmlutil.parse(xml)
    vcpu = root.find("vcpu")
    memory = root.find("currentMemory")
    if memory is None:
        memory = root.find("memory")
    datastores = set()
    for el in root.findall("devices/disk"):
        src = diskspec.disk_source(el)
        if not src:
            continue
        if diskspec.source_kind(src) == "volume":
            datastores.add(src.split("/", 1)[0])
        elif os.path.dirname(os.path.normpath(src)) in pool_dirs:
            datastores.add(pool_dirs[os.path.dirname(os.path.normpath(src))])
    ports = portsec.ports_meta(root)
    nics = []
    for el in root.findall("devices/interface"):
        nic = vmspec.nic_view(el, ports)
        nic["dvs"] = nic["network"] if nic["network"] and dvs_of(nic["network"]) else None
        nic["ips"] = []
        nics.append(nic)
    return {
        "uuid": xmlutil.find_text(root, "uuid"),
        "vcpus": int(vcpu.get("current") or vcpu.text) if vcpu is not None else None,
        "memory": vmspec.kib(memory) * 1024 if memory is not None else None,
        "datastores": sorted(datastores),
        "nics": nics,
        "portgroups": sorted(set("%s/%s" % (n["dvs"], n["portgroup"]) for n in nics if n["dvs"] and n["portgroup"])),
        "template": vmspec.is_template(xml),
        "agent": agent_ready(root),
    }


def agent_ready(root):
    """Whether a running domain's live XML has a guest agent channel that libvirt does not report disconnected."""
    for ch in root.findall("devices/channel"):
        if xmlutil.find_attr(ch, "target", "name") == AGENT_CHANNEL:
            return xmlutil.find_attr(ch, "target", "state") != "disconnected"
    return False


def guest_addresses(answer):
    """{mac: [address]} from libvirt's interfaceAddresses answer, loopback and IPv6 link-local left out."""
    out = {}
    for _ifname, data in sorted((answer or {}).items()):
        found = []
        for a in data.get("addrs") or []:
            try:
                ip = ipaddress.ip_address(a.get("addr") or "")
            except ValueError:
                continue
            if not (ip.is_loopback or (ip.version == 6 and ip.is_link_local)):
                found.append(str(ip))
        if found:
            out.setdefault((data.get("hwaddr") or "").lower(), []).extend(found)
    return out


def first_ipv4(addresses):
    for a in addresses:
        if ipaddress.ip_address(a).version == 4:
            return a
    return None


def display_uri(uri):
    return _URI_PASSWORD.sub(r"\1:********@", uri)


def uri_host(uri):
    m = _URI_HOST.match(uri)
    return m.group(1).strip("[]") if m else ""


# ---------------------------------------------------------------------------- calls with a deadline
def run_bounded(calls, workers, timeout):
    """Run ``calls`` ([(key, fn)]) on up to ``workers`` daemon threads; return ({key: (value, error)} of the calls
    that ended within ``timeout`` seconds, whether every call ended). A call still running then is left to end on its
    own and is never waited for (a daemon thread never holds up the end of the process); calls not started by then
    are not made."""
    todo, ended, stop = queue.Queue(), queue.Queue(), threading.Event()
    for item in calls:
        todo.put(item)

    def work():
        while not stop.is_set():
            try:
                key, fn = todo.get_nowait()
            except queue.Empty:
                return
            try:
                ended.put((key, fn(), None))
            except Exception as e:  # pylint: disable=broad-except
                ended.put((key, None, e))

    for _i in range(min(workers, len(calls))):
        threading.Thread(target=work, name="kvmfusion-vms-agent", daemon=True).start()
    results = {}
    deadline = time.monotonic() + timeout
    while len(results) < len(calls):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            key, value, err = ended.get(timeout=left)
        except queue.Empty:
            break
        results[key] = (value, err)
    stop.set()
    return results, len(results) == len(calls)


# ---------------------------------------------------------------------------- one CNA
class CnaReader(object):
    """Reads the VMs of one CNA through the collection's libvirt client: plain data, ready for the cache."""

    def __init__(self, name, uri, guest_agent=True, agent_timeout=2.0, wanted=None):
        self.name = name
        self.uri = uri
        self.guest_agent = guest_agent
        self.agent_timeout = agent_timeout
        self.wanted = wanted or (lambda name, state: True)
        self._networks = {}

    def read(self):
        client = libvirt_client.Client(self.uri, readonly=not self.guest_agent)
        pending_agents = False
        try:
            doms = client.call("list domains", None, client.conn.listAllDomains, 0)
            if not self.name:
                self.name = client.call("read host name", None, client.conn.getHostname)
            pool_dirs = self._pool_dirs(client)
            vms, asks = [], []
            for dom in doms:
                vm = self._vm(client, dom, pool_dirs)
                if vm is None:
                    continue
                vms.append(vm)
                if vm.pop("agent") and self.guest_agent:
                    asks.append((len(vms) - 1, self._ask_agent(client, dom, vm["name"])))
            if asks:
                answers, done = run_bounded(asks, AGENT_WORKERS, self.agent_timeout)
                pending_agents = not done
                for index, (answer, err) in answers.items():
                    if err is None:
                        self._set_addresses(vms[index], guest_addresses(answer))
            return sorted(vms, key=lambda v: v["name"])
        finally:
            if not pending_agents:
                # an agent call still running holds the connection; it is closed when that call ends and the
                # connection is collected
                client.close()

    @staticmethod
    def _ask_agent(client, dom, name):
        return lambda: client.call("ask the guest agent of", "VM '%s'" % name, dom.interfaceAddresses,
                                   INTERFACE_ADDRESSES_SRC_AGENT, 0)

    @staticmethod
    def _set_addresses(vm, by_mac):
        ips = []
        for nic in vm["nics"]:
            nic["ips"] = by_mac.pop((nic["mac"] or "").lower(), [])
            ips.extend(nic["ips"])
        for _mac, rest in sorted(by_mac.items()):  # interfaces the guest has beyond the NICs of the definition
            ips.extend(rest)
        vm["ips"] = ips

    def _vm(self, client, dom, pool_dirs):
        """One VM's record, or None when it is filtered out or went away while being read."""
        name = dom.name()
        if not self.wanted(name, None):
            return None
        try:
            state = state_of(client, dom, name)
            if not self.wanted(name, state):
                return None
            xml = client.call("read the XML of", "VM '%s'" % name, dom.XMLDesc, 0)
            active = state not in ("shutoff", "suspended")
            # a stopped domain is always persistent: a transient one ceases to exist when it stops
            persistent = bool(client.call("read persistence of", "VM '%s'" % name, dom.isPersistent)) \
                if active else True
        except libvirt_client.LibvirtClientError as e:
            if client.is_missing(e, "domain"):
                return None
            raise
        vm = {"name": name, "cna": self.name, "uri": display_uri(self.uri), "state": state, "active": active,
              "persistent": persistent, "ha": active and not persistent, "ips": []}
        vm.update(vm_vars(xml, pool_dirs, lambda net: self._is_dvs(client, net)))
        vm["agent"] = vm["agent"] and state == "running"
        return vm

    @staticmethod
    def _pool_dirs(client):
        """{directory: datastore} of the CNA's datastores (running or not) that have a target directory."""
        out = {}
        for pname in client.pool_names():
            pool = client.pool(pname)
            if pool is None:
                continue
            info = storage.parse_pool_xml(client.call("read", "datastore '%s'" % pname, pool.XMLDesc, 0), False)
            if info["path"]:
                out[os.path.normpath(info["path"])] = pname
        return out

    def _is_dvs(self, client, network):
        if network not in self._networks:
            net = client.network(network)
            self._networks[network] = net is not None and netspec.is_dvs_network(
                xmlutil.parse(client.call("read", "network '%s'" % network, net.XMLDesc, 0)))
        return self._networks[network]


# ---------------------------------------------------------------------------- the plugin
class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "kvmfusion.compute.vms"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(
            ("kvmfusion_vms.yml", "kvmfusion_vms.yaml", "vms.yml", "vms.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        cnas = self._cnas()
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        vms = None
        if use_cache:
            try:
                vms = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if vms is None:
            vms = self._read(cnas)
        if update_cache:
            self._cache[cache_key] = vms
        self._populate(vms)

    # validate ------------------------------------------------------------------------------
    def _cnas(self):
        """[(name or None, uri)] from uris and hosts; one line on bad input, before any connection."""
        if libvirt_client.libvirt is None:
            raise AnsibleParserError("the kvmfusion.compute.vms inventory plugin needs the libvirt Python bindings on "
                                     "the controller (libvirt-python, in the collection's requirements.txt)")
        cnas = []
        for entry in self.get_option("uris") or []:
            if isinstance(entry, str):
                cnas.append((None, entry))
            elif isinstance(entry, dict) and set(entry) <= set(("uri", "name")) and isinstance(entry.get("uri"), str):
                cnas.append((entry.get("name"), entry["uri"]))
            else:
                raise AnsibleParserError("uris: each entry is a libvirt URI or a mapping with uri and name, got %r"
                                         % (entry,))
        template = self.get_option("uri_template")
        for host in self.get_option("hosts") or []:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$", str(host)):
                raise AnsibleParserError("hosts: invalid CNA name %r" % (host,))
            if "{host}" not in template:
                raise AnsibleParserError("uri_template %r has no {host} for the CNA names of hosts" % template)
            cnas.append((host, template.replace("{host}", host)))
        if not cnas:
            cnas.append((None, libvirt_client.resolve_uri(None)))
        # unnamed: the host of the URI; a local URI's CNA is named by its libvirt (read with the VMs)
        cnas = [(str(name) if name is not None else (None if libvirt_client.is_local_uri(uri) else uri_host(uri)), uri)
                for name, uri in cnas]
        seen = {}
        for name, uri in cnas:
            for key in ([name] if name else []) + [uri]:
                if key in seen:
                    raise AnsibleParserError("CNA %s is given twice (uris and hosts)" % key)
                seen[key] = True
        if self.get_option("parallel") < 1:
            raise AnsibleParserError("parallel must be at least 1, got %s" % self.get_option("parallel"))
        if self.get_option("agent_timeout") < 0:
            raise AnsibleParserError("agent_timeout must not be negative, got %s" % self.get_option("agent_timeout"))
        return cnas

    # read ----------------------------------------------------------------------------------
    def _wanted(self, name, state):
        """Whether the VM passes include, exclude and (unless ``state`` is None, not read yet) states."""
        include, exclude, states = self.get_option("include"), self.get_option("exclude"), self.get_option("states")
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            return False
        if any(fnmatch.fnmatchcase(name, p) for p in exclude or []):
            return False
        return not states or state is None or state in states

    def _read(self, cnas):
        """Every CNA's VMs, read in parallel; [vm record] with one record per VM name."""
        readers = [CnaReader(name, uri, self.get_option("guest_agent"), self.get_option("agent_timeout"), self._wanted)
                   for name, uri in cnas]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(self.get_option("parallel"), len(readers))) as pool:
            futures = [pool.submit(r.read) for r in readers]
            outcomes = []
            for reader, future in zip(readers, futures):
                try:
                    outcomes.append((reader, future.result(), None))
                except (libvirt_client.LibvirtClientError, ValueError) as e:
                    outcomes.append((reader, None, e))
        self.display.vvv("kvmfusion.compute.vms: %d CNA(s) read in %.2f s" % (len(readers), time.monotonic() - started))
        chosen = {}
        for reader, vms, err in outcomes:
            if err is not None:
                msg = "kvmfusion.compute.vms: cannot read the VMs of CNA %s: %s" % (
                    reader.name or display_uri(reader.uri), to_native(err))
                if not self.get_option("skip_unreachable"):
                    raise AnsibleParserError(msg + " (skip_unreachable: true lists the other CNAs' VMs)")
                self.display.warning(msg + "; its VMs are not listed")
                continue
            for vm in vms:
                chosen.setdefault(vm["name"], []).append(vm)
        return [self._one_of(name, found) for name, found in sorted(chosen.items())]

    def _one_of(self, name, found):
        """The record of a VM defined on several CNAs: where it is active (the others hold a definition left behind)."""
        if len(found) == 1:
            return found[0]
        active = [vm for vm in found if vm["active"]]
        pick = (active or found)[0]
        where = ", ".join("%s (%s)" % (vm["cna"], vm["state"]) for vm in found)
        if len(active) > 1:
            self.display.warning("kvmfusion.compute.vms: VM %s is active on more than one CNA: %s; listed from %s"
                                 % (name, where, pick["cna"]))
        else:
            self.display.warning("kvmfusion.compute.vms: VM %s is defined on more than one CNA: %s; listed from %s"
                                 % (name, where, pick["cna"]))
        return pick

    # populate ------------------------------------------------------------------------------
    def _populate(self, vms):
        strict = self.get_option("strict")
        for vm in vms:
            if not self._wanted(vm["name"], vm["state"]):
                continue
            hostvars = wrap_var(dict(("kvmfusion_%s" % k, v) for k, v in sorted(vm.items())
                                     if k not in ("name", "active")))
            if not self._passes(vm["name"], hostvars, strict):
                continue
            host = self.inventory.add_host(vm["name"])
            address = first_ipv4(vm["ips"])
            if address:
                hostvars["ansible_host"] = address
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)

    def _passes(self, name, hostvars, strict):
        for condition in self.get_option("filters") or []:
            try:
                if not self._compose(condition, hostvars):
                    return False
            except Exception as e:  # pylint: disable=broad-except
                if strict:
                    raise AnsibleError("kvmfusion.compute.vms: cannot evaluate filter %r for VM %s: %s"
                                       % (condition, name, to_native(e)))
                return False
        return True
