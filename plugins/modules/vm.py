#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: vm
short_description: Manage a virtual machine declaratively on a compute node
version_added: 0.1.0
description:
  - Defines a VM from a declarative spec (vCPUs, memory, CPU model, firmware, machine type, boot, disks, NICs,
    console and graphics, guest agent channel, QoS) and drives its power state.
  - Only the options you set are managed; a second identical run reports no change. Values libvirt generates
    (UUID, MAC addresses of NICs whose C(mac) of O(nics) you left out, PCI addresses, aliases) are kept, never
    compared.
  - "On a running VM: vCPUs and memory change live within O(max_vcpus) and O(max_memory) (memory through the
    balloon), NICs and disks are hot-plugged, QoS is applied live. Changes QEMU cannot apply live go to the
    persistent definition and the result says RV(reboot_required=true); nothing is silently ignored."
  - Disks use the same code as M(kvmfusion.compute.disk) (create, grow, convert, attach). Disks not listed
    in O(disks) are left alone.
  - "The VM's definition is also written beside its system disk (the first disk) as C(.<name>~vm.xml), so
    any CNA that sees the datastore can re-create the VM (HA and recovery use it)."
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes
attributes:
  idempotent:
    support: partial
    description: Idempotent for every state except V(restarted), which always restarts.
options:
  name:
    description: VM name, unique cluster-wide.
    type: str
    required: true
  state:
    description:
      - V(present) defined, power state untouched; V(running) started (or resumed, or restored from disk);
        V(stopped) shut down gracefully (guest agent, then ACPI) within O(shutdown_timeout), then powered off if
        O(force=true); a VM suspended to disk is stopped (its saved memory discarded) only with O(force=true);
        V(restarted) rebooted through the guest (a paused VM is resumed first; reset instead with O(force=true)),
        started if off; V(suspended) memory and device state saved to disk
        and the VM stopped (hibernate; V(running) restores it); V(paused) vCPUs paused in memory;
        V(absent) removed (powered off first), with its disks when O(delete_disks=true).
    type: str
    choices: [present, running, stopped, restarted, suspended, paused, absent]
    default: present
  description:
    description: Free text kept with the VM.
    type: str
  hypervisor:
    description:
      - V(kvm) hardware virtualization, V(qemu) software emulation (TCG, slow), V(auto) what the host offers first.
        An existing VM keeps its type unless set explicitly.
    type: str
    choices: [auto, kvm, qemu]
    default: auto
  vcpus:
    description: Number of vCPUs; changes live on a running VM up to O(max_vcpus).
    type: int
  max_vcpus:
    description: vCPUs the VM can be given without a reboot (hot-add). Defaults to O(vcpus).
    type: int
  memory:
    description: Memory (V(2GiB), bytes ...); changes live through the balloon up to O(max_memory).
    type: raw
  max_memory:
    description: Memory the VM is started with and can be ballooned up to. Defaults to O(memory).
    type: raw
  cpu_model:
    description:
      - V(cluster) (the default for new KVM VMs when the cluster has one), V(host-model), V(host-passthrough),
        or a named model such as V(Skylake-Client).
      - V(cluster) is the CPU model every compute node of the cluster can run, which the
        P(kvmfusion.compute.cna#role) role computes with M(kvmfusion.compute.cluster_cpu_info) and records in each
        CNA's facts (C(ansible_local.kvmfusion.cluster_cpu)). A VM with it can be live-migrated to any CNA of the
        cluster. It is written as that named model, its vendor and its feature policies.
      - Without the cluster fact, new KVM VMs get V(host-model). TCG VMs default to QEMU's own model.
      - An existing VM keeps its model unless this is set.
    type: str
  cpu_features:
    description:
      - "CPU feature policies, for example C({avx2: require})."
      - On a VM with the cluster model, they go on top of the model's own feature policies.
    type: dict
  firmware:
    description: V(bios) (SeaBIOS) or V(uefi) (OVMF).
    type: str
    choices: [bios, uefi]
  machine:
    description:
      - Machine type, for example V(pc) (default for new VMs) or V(q35).
      - A new VM's alias becomes the newest version of it that every CNA of the cluster provides (the
        P(kvmfusion.compute.cna#role) role's C(ansible_local.kvmfusion.cluster_machine_types) fact, for example
        V(pc-q35-7.2) while some CNAs still run QEMU 7.2), so that the VM can move to every CNA. Without the
        fact libvirt takes the newest its own QEMU knows. An existing VM keeps its version.
    type: str
  boot_devices:
    description: Boot order by device kind; cannot be combined with a disk's C(boot_order) of a disk.
    type: list
    elements: str
  kernel:
    description: Kernel to boot directly (path on the CNA), instead of firmware booting a disk.
    type: path
  initrd:
    description: Initial RAM disk for O(kernel).
    type: path
  cmdline:
    description: Kernel command line for O(kernel).
    type: str
  graphics:
    description:
      - Graphical console (VNC or SPICE on 127.0.0.1 of the CNA; reach it through SSH or Cockpit), or none.
      - A serial console is always there.
    type: str
    choices: [none, vnc, spice]
  guest_agent:
    description: Give the VM a qemu-guest-agent channel (default for new VMs).
    type: bool
  template:
    description:
      - Mark the VM as a template. A template cannot be started; clones use its disks as read-only bases.
    type: bool
  disks:
    description:
      - Disks to create if needed and attach; each entry takes the options of M(kvmfusion.compute.disk)
        (C(datastore) and C(name) required). The first is the system disk.
    type: list
    elements: dict
  nics:
    description:
      - Network interfaces, in order. Each has exactly one of C(dvs) (a distributed virtual switch, with its
        C(portgroup), required; see M(kvmfusion.compute.portgroup)), C(network) (a libvirt network, optionally with
        C(portgroup)) or C(bridge), and optionally C(mac) and C(model) (V(virtio) default, V(e1000), V(rtl8139)).
        A DVS NIC reads back as C(network) (a DVS is a libvirt network of its name).
      - "Port security of a DVS NIC: C(security_group) (the one group the NIC belongs to, see
        M(kvmfusion.compute.security_group); it must exist on the CNA) and C(bound_ips) (the addresses the NIC may
        send from when its port group has O(kvmfusion.compute.portgroup#module:ip_mac_binding)): a list of
        addresses, or V(dhcp) to bind what the guest leases by DHCP (the lease binder service of the
        M(kvmfusion.compute.cna) role watches the acknowledgements delivered to the guest, never what the guest
        sends, and unbinds an address when its lease expires; use it with
        O(kvmfusion.compute.portgroup#module:dhcp_isolation) so that only your DHCP servers grant leases). Both
        change on a running VM without a restart, and follow it through live migration, learned leases included.
        A new NIC with either and no C(mac) gets a MAC chosen by the module."
      - The list is authoritative, NICs beyond it are removed. A NIC without C(mac) keeps the MAC it has.
    type: list
    elements: dict
  qos:
    description:
      - "CPU and memory QoS. C(cpu_shares) (2-262144, default weight 1024) is the CFS weight under contention.
        C(cpu_limit) (1-100) caps each vCPU at that percent of one host CPU (CFS quota over a 100 ms period).
        C(cpu_reservation) (1-100) cannot be guaranteed by the Linux scheduler: it raises the CFS weight to
        1024 + 102 per percent, which protects the VM under contention but is no floor; pin vCPUs to dedicated
        host CPUs for a hard guarantee. C(memory_limit) is the cgroup hard limit of the whole QEMU process
        (guest memory plus overhead, so it must exceed O(max_memory)); C(memory_soft_limit) is where reclaim
        pushes the VM first when the host is short, Linux's counterpart of memory shares;
        C(memory_reservation=locked) locks all guest memory in RAM (never swapped, a hard reservation; needs
        RLIMIT_MEMLOCK), QEMU has no partial minimum guarantee."
    type: dict
  delete_disks:
    description: With O(state=absent), delete the VM's disk volumes too (refused for disks other VMs use).
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for a graceful shutdown.
    type: int
    default: 120
  force:
    description:
      - Power the VM off when a graceful shutdown did not finish within O(shutdown_timeout).
      - Allow V(stopped) to discard the saved memory of a VM suspended to disk, and V(restarted) to reset a
        paused VM instead of resuming and rebooting it.
    type: bool
    default: false
notes:
  - Re-applying the task after M(kvmfusion.compute.snapshot), M(kvmfusion.compute.snapshot_revert), a linked
    M(kvmfusion.compute.clone) of the VM or a disk conversion changes nothing, because each declared disk is
    recognised under the snapshot and revert layers on it.
  - Changes QEMU cannot apply to a running VM go to its persistent configuration and the result says
    RV(reboot_required=true); they take effect at the next power cycle, which the module does not do for you.
  - A new VM is made completely or not at all; if a later step fails, the definition and the disks the task made
    are removed.
  - A VM under HA (M(kvmfusion.compute.ha)) is started, stopped and restarted by the cluster. The cluster may start
    it on another CNA. The actions say so (C(start through the HA cluster)). A VM the cluster runs on another CNA
    counts as running. Pausing or suspending it is refused, because the cluster would take it for a failed VM.
seealso:
  - module: kvmfusion.compute.vm_info
  - module: kvmfusion.compute.disk
'''

EXAMPLES = r'''
- name: A web server with a system disk on the shared datastore
  kvmfusion.compute.vm:
    name: web1
    vcpus: 2
    max_vcpus: 8
    memory: 2GiB
    max_memory: 8GiB
    disks:
      - datastore: shared
        name: web1-system.qcow2
        size: 20GiB
        boot_order: 1
    nics:
      - network: prod
        portgroup: web
    qos:
      cpu_shares: 2048
      cpu_limit: 80
    state: running

- name: Give it more vCPUs and memory while it runs
  kvmfusion.compute.vm:
    name: web1
    vcpus: 4
    memory: 4GiB
  register: web1
  # web1.reboot_required tells whether anything waits for a power cycle

- name: Hibernate it
  kvmfusion.compute.vm:
    name: web1
    state: suspended

- name: Make a template
  kvmfusion.compute.vm:
    name: debian12-template
    template: true
    state: stopped

- name: Remove a VM and its disks
  kvmfusion.compute.vm:
    name: old1
    state: absent
    delete_disks: true
'''

RETURN = r'''
vm:
  description: The VM after the task (see M(kvmfusion.compute.vm_info)); null when absent or not yet defined in check mode.
  returned: always
  type: dict
  sample:
    name: web1
    uuid: 5d5c3c1e-6f0d-4a6f-9d0e-2d3b1f8e9a10
    state: running
    host: cna1
    hypervisor: kvm
    machine: pc-i440fx-7.2
    vcpus: 2
    max_vcpus: 8
    memory: 2147483648
    max_memory: 8589934592
    template: false
    disks: []
    nics: [{network: prod, portgroup: web, model: virtio, mac: "52:54:00:12:34:56", ips: [192.0.2.15]}]
    qos: {cpu_shares: 2048, cpu_limit: 80}
actions:
  description: What the task did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [define, "create thin qcow2 disk of 21474836480 bytes", "attach as vda (persistent config)", start]
reboot_required:
  description: Some change is only in the persistent definition and takes effect at the next power cycle.
  returned: always
  type: bool
  sample: false
previous_state:
  description: Power state before the task.
  returned: always
  type: str
  sample: shutoff
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.domains import VmManager
from ansible_collections.kvmfusion.compute.plugins.module_utils.vmspec import GRAPHICS, STATES

ARGSPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=list(STATES), default="present"),
    description=dict(type="str"),
    hypervisor=dict(type="str", choices=["auto", "kvm", "qemu"], default="auto"),
    vcpus=dict(type="int"),
    max_vcpus=dict(type="int"),
    memory=dict(type="raw"),
    max_memory=dict(type="raw"),
    cpu_model=dict(type="str"),
    cpu_features=dict(type="dict"),
    firmware=dict(type="str", choices=["bios", "uefi"]),
    machine=dict(type="str"),
    boot_devices=dict(type="list", elements="str"),
    kernel=dict(type="path"),
    initrd=dict(type="path"),
    cmdline=dict(type="str"),
    graphics=dict(type="str", choices=list(GRAPHICS)),
    guest_agent=dict(type="bool"),
    template=dict(type="bool"),
    disks=dict(type="list", elements="dict"),
    nics=dict(type="list", elements="dict"),
    qos=dict(type="dict"),
    delete_disks=dict(type="bool", default=False),
    shutdown_timeout=dict(type="int", default=120),
    force=dict(type="bool", default=False),
)


def main():
    m = KvmfModule(ARGSPEC, supports_check_mode=True)
    m.run(lambda m: m.manager(VmManager, shutdown_timeout=m.params["shutdown_timeout"],
                              force=m.params["force"]).converge(m.params))


if __name__ == "__main__":
    main()
