#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: cluster_cpu_info
short_description: Compute the CPU model every compute node of a cluster can run
version_added: 0.5.0
description:
  - The cluster CPU model (FusionCompute's incompatible migration cluster, VMware's EVC) for KVM guests.
    A VM with this model can be started on, and live-migrated to, any compute node (CNA) of the cluster.
  - libvirt computes the baseline of every CNA's host-model CPU, migratable features only.
    Then each CNA starts a paused, diskless throw-away domain with it and destroys it at once.
    KVM can refuse a feature that libvirt offers. Such a feature is disabled in the model,
    and RV(cluster_cpu.dropped) says which CNA refused it.
  - The P(kvmfusion.compute.cna#role) role runs this module once per cluster. It records the result in every CNA's
    C(ansible_local.kvmfusion.cluster_cpu) fact. M(kvmfusion.compute.vm) gives new KVM VMs this model by default.
  - It also finds, for each machine type alias (V(pc), V(q35)), the newest versioned machine type every CNA's QEMU
    provides (RV(cluster_machine_types)). In a cluster that mixes QEMU generations, M(kvmfusion.compute.vm) gives
    new VMs that version instead of the newest of its own CNA, so that they can move to every CNA.
  - Changes nothing that persists. The probe domains are transient and are destroyed at once, also in check mode.
author:
  - kvmfusion.compute developers (@kvmfusion)
extends_documentation_fragment:
  - kvmfusion.compute.connection
  - kvmfusion.compute.attributes.info_module
options:
  peers:
    description:
      - The other CNAs of the cluster, by inventory host name (reached the way O(uri) reaches its host) or by URI.
      - The host of O(uri) is always part of the cluster.
    type: list
    elements: str
    default: []
  probe:
    description:
      - Start a paused throw-away domain with the model on every CNA, and drop the features KVM refuses.
      - Without it, the model is libvirt's baseline as computed, which KVM may refuse to start.
    type: bool
    default: true
seealso:
  - module: kvmfusion.compute.vm
  - name: libvirt CPU model baseline
    description: virConnectBaselineHypervisorCPU.
    link: https://libvirt.org/html/libvirt-libvirt-host.html#virConnectBaselineHypervisorCPU
'''

EXAMPLES = r'''
- name: Compute the CPU model of the cluster of every CNA in the play
  kvmfusion.compute.cluster_cpu_info:
    peers: "{{ ansible_play_hosts | difference([inventory_hostname]) }}"
  run_once: true
  register: cluster

- name: Show the model and what KVM refused
  ansible.builtin.debug:
    msg: "{{ cluster.cluster_cpu.model }} ({{ cluster.cluster_cpu.vendor }}), without {{ cluster.cluster_cpu.dropped.keys() | list }}"
  run_once: true
'''

RETURN = r'''
cluster_cpu:
  description: The CPU model every CNA of the cluster starts.
  returned: success
  type: dict
  contains:
    model:
      description: The named CPU model it is based on.
      type: str
      sample: kvm64
    vendor:
      description: CPU vendor the guest sees.
      type: str
      sample: AMD
    features:
      description: Feature policies on top of the model (V(require) or V(disable)).
      type: dict
      sample: {x2apic: require, arch-capabilities: disable}
    dropped:
      description: Features the baseline had and a CNA's KVM refused, each with the CNA that refused it.
      type: dict
      sample: {arch-capabilities: cna1}
    hosts:
      description: The CNAs it was computed over, by the host name libvirt reports.
      type: list
      elements: str
      sample: [cna1, cna2]
    skipped:
      description: CNAs without KVM (their guests run under TCG, which needs no host CPU model).
      type: list
      elements: str
      sample: []
    xml:
      description: The model as a libvirt C(<cpu>) element.
      type: str
      sample: <cpu mode="custom" match="exact" check="partial"><model fallback="forbid">kvm64</model>...</cpu>
cluster_machine_types:
  description: For each machine type alias, the newest versioned machine type every CNA provides.
  returned: success
  type: dict
  sample: {pc: pc-i440fx-7.2, q35: pc-q35-7.2}
'''

from ansible_collections.kvmfusion.compute.plugins.module_utils.base import KvmfModule
from ansible_collections.kvmfusion.compute.plugins.module_utils.cpumodel import cluster_cpu, cluster_machines


def _run(m):
    clients = [m.client] + m.peer_clients(m.params["peers"], readonly=False)
    m.exit(changed=False, cluster_cpu=cluster_cpu(clients, probe=m.params["probe"]),
           cluster_machine_types=cluster_machines(clients))


def main():
    km = KvmfModule(argument_spec=dict(
        peers=dict(type="list", elements="str", default=[]),
        probe=dict(type="bool", default=True),
    ), supports_check_mode=True)
    km.run(_run)


if __name__ == "__main__":
    main()
