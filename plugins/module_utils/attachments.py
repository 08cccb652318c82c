# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A disk's attachment to a VM: attach, update, detach, each on the disk as declared, which is also the disk
under the snapshot and revert layers on it (its chain reaches the declared image).

``Attachments`` is the attachment half of disks.DiskManager (it uses the manager's client, journal and
``_domain``); it is a file of its own so that each half stays readable.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
import xml.etree.ElementTree as ET

from ansible_collections.kvmfusion.compute.plugins.module_utils import images, power, xmlutil
from ansible_collections.kvmfusion.compute.plugins.module_utils.constants import (
    AFFECT_CONFIG,
    AFFECT_LIVE,
    METADATA_ELEMENT,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.diskspec import (
    IOTUNE_KEYS,
    META_KEY,
    META_NS,
    attached_disks,
    attachment_view,
    choose_target,
    disk_element,
    disk_source,
    meta_modes,
    metadata_element,
)

UNPLUG_WAIT = 10


class Attachments(object):
    """Mixin of DiskManager: the attachment of one disk to one VM."""

    def precheck_attachment(self, d, path):
        """Everything about the attachment that can be refused, checked before the volume is touched."""
        self._domain(d["vm"])
        chains = images.own_chains(self.client, d["vm"], local=self.local)
        mine = [(el, mode) for el, _src, mode, chain in chains if path is not None and path in chain]
        # a VM under HA: any change of its attachments is refused here, before the volume is touched
        if not d["attached"]:
            if mine:
                self._not_under_ha(d["vm"], "detaching disk %s" % xmlutil.find_attr(mine[0][0], "target", "dev"))
            return
        if not mine:
            self._not_under_ha(d["vm"], "attaching a disk")
        else:
            before = attachment_view(*mine[0])
            if self._wanted_view(d, before["target"], before) != before:
                self._not_under_ha(d["vm"], "changing the attachment of disk %s" % before["target"])
        if not d["target"]:
            return
        for el, src, _mode, chain in chains:
            tgt = xmlutil.find_attr(el, "target", "dev")
            if path is not None and path in chain and tgt != d["target"]:
                raise ValueError("disk '%s' is attached to VM %s as %s; moving it to %s needs a detach first"
                                 % (d["name"], d["vm"], tgt, d["target"]))
            if tgt == d["target"] and (path is None or path not in chain):
                raise ValueError("VM %s already has a disk at %s (%s)" % (d["vm"], d["target"], src))

    def _mine(self, vm, path, inactive=True):
        """[(element, active file, mode)] of the VM's disk that is ``path``: the declared image itself, or the
        snapshot and revert layers on it (the chain reaches it), so a declared disk stays that disk."""
        return [(el, src, mode) for el, src, mode, chain in images.own_chains(self.client, vm, inactive, self.local)
                if path is not None and path in chain]

    def ensure_attached(self, d, path, fmt):
        """Attach or update the disk on d['vm']. Returns (before, after) attachment views."""
        dom = self._domain(d["vm"])
        running = bool(self.client.call("read state of", "VM '%s'" % d["vm"], dom.isActive))
        disks = attached_disks(self.client, d["vm"], inactive=True)
        mine = self._mine(d["vm"], path)
        desired_target = d["target"]
        if mine:
            el, active, mode = mine[0]
            before = attachment_view(el, mode)
            if desired_target and desired_target != before["target"]:
                raise ValueError("disk '%s' is attached to VM %s as %s; moving it to %s needs a detach first"
                                 % (d["name"], d["vm"], before["target"], desired_target))
            if d["bus"] != before["bus"]:
                raise ValueError("disk '%s' is attached to VM %s on bus %s; moving it to bus %s needs a detach first "
                                 "(its device name changes)" % (d["name"], d["vm"], before["bus"], d["bus"]))
            want = self._wanted_view(d, before["target"], before)
            if want == before:
                return before, before
            if want["boot_order"] != before["boot_order"]:
                self._make_room_for_boot_order(dom, d)
            # the element is rebuilt on the file the VM writes now (a snapshot layer stays in place)
            active_fmt = xmlutil.find_attr(el, "driver", "type") or fmt
            self._update_attachment(d, dom, running, active, active_fmt, before, want)
            return before, want
        used = [xmlutil.find_attr(e, "target", "dev") for e, _s, _m in disks]
        if running:
            # a disk detached from the definition whose unplug the guest has not acknowledged still holds its target
            used += [xmlutil.find_attr(e, "target", "dev") for e, _s, _m in attached_disks(self.client, d["vm"], False)]
        target = desired_target or choose_target(used, d["bus"])
        if target in used:
            raise ValueError("VM %s already has a disk at %s" % (d["vm"], target))
        want = self._wanted_view(d, target)
        # path None: check mode, and the disk a new volume of a block datastore, whose device libvirt names when it
        # makes it
        el = disk_element(d, path, fmt, target) if path is not None else None
        self._make_room_for_boot_order(dom, d)
        live = running and d["mode"] != "independent_nonpersistent"
        what = "attach as %s%s" % (target, " (live and persistent)" if live else " (persistent config)")
        self._not_under_ha(d["vm"], "attaching a disk")
        if el is None:
            self.record(what)
        else:
            self.act(what, self._attach, dom, el, live, path, d["mode"])
        if running and not live:
            self.reboot_required = True
        return None, want

    def _make_room_for_boot_order(self, dom, d):
        """libvirt refuses a device boot order beside the domain-wide <os><boot dev=...> list, which it writes
        itself (dev='hd') into every definition without one: that default gives way (in the same definition that
        brings the boot order, or libvirt writes it again); a list the user chose is refused here, before any change."""
        if not d["boot_order"]:
            return
        root = xmlutil.parse(self.client.domain_xml(d["vm"], inactive=True))
        boots = [b.get("dev") for b in root.findall("os/boot")]
        if boots not in ([], ["hd"]):
            raise ValueError("disk '%s': VM %s boots by the device list %s; a disk boot_order needs that list removed "
                             "(boot_devices) first" % (d["name"], d["vm"], ", ".join(boots)))

    @staticmethod
    def _drop_default_boot(root):
        os_el = root.find("os")
        if os_el is not None and [b.get("dev") for b in os_el.findall("boot")] == ["hd"]:
            for b in os_el.findall("boot"):
                os_el.remove(b)

    def _attach_with_boot_order(self, dom, el, live):
        """The persistent definition gets the disk and loses the default boot list in one define; a running VM gets
        the disk live without the boot order (which only matters at the next boot)."""
        root = xmlutil.parse(self.client.domain_xml(dom.name(), inactive=True, secure=True))
        self._drop_default_boot(root)
        root.find("devices").append(el)
        self.client.define_domain(xmlutil.tostring(root))
        if live:
            live_el = xmlutil.parse(xmlutil.tostring(el))
            for b in live_el.findall("boot"):
                live_el.remove(b)
            self.client.call("attach disk to", "VM '%s'" % dom.name(), dom.attachDeviceFlags, xmlutil.tostring(live_el),
                             AFFECT_LIVE)

    def _wanted_view(self, d, target, before=None):
        """Options the user left out (None) keep what the attached disk has."""
        keep = before or {}
        return {"target": target, "bus": d["bus"], "cache": d["cache"] or keep.get("cache"),
                "io": d["io"] or keep.get("io"), "discard": d["discard"] or keep.get("discard"),
                "readonly": d["readonly"], "shareable": d["shareable"],
                "boot_order": d["boot_order"] or keep.get("boot_order"), "mode": d["mode"], "iotune": d["iotune"]}

    def _attach(self, dom, el, live, path, mode):
        if el.find("boot") is not None:
            self._attach_with_boot_order(dom, el, live)
        else:
            flags = AFFECT_CONFIG | (AFFECT_LIVE if live else 0)
            self.client.call("attach disk to", "VM '%s'" % dom.name(), dom.attachDeviceFlags, xmlutil.tostring(el),
                             flags)
        self._set_mode(dom, path, mode, live)

    def _set_mode(self, dom, path, mode, live):
        root = xmlutil.parse(self.client.domain_xml(dom.name(), inactive=True))
        modes = meta_modes(root)
        if modes.get(path, "persistent") == mode:
            return
        modes[path] = mode
        flags = AFFECT_CONFIG | (AFFECT_LIVE if live else 0)
        self.client.call("record disk modes of", "VM '%s'" % dom.name(), dom.setMetadata, METADATA_ELEMENT,
                         xmlutil.tostring(metadata_element(modes, namespaced=False)), META_KEY, META_NS, flags)

    def _not_under_ha(self, vm, what):
        """A VM under HA runs from its definition copy (a transient domain after the cluster's first start of it):
        its disks change only out of HA."""
        power.refuse_under_ha(self._run_command, self.local, vm, what)

    def _update_attachment(self, d, dom, running, path, fmt, before, want):
        changed_keys = sorted(k for k in want if want[k] != before[k])
        # persistent <-> independent_persistent is bookkeeping for snapshots (metadata), QoS applies live;
        # anything else changes the device, which QEMU cannot do live: persistent config + reboot.
        meta_mode = "mode" in changed_keys and "independent_nonpersistent" not in (before["mode"], want["mode"])
        device_keys = [k for k in changed_keys if k != "iotune" and not (k == "mode" and meta_mode)]
        target = before["target"]
        if changed_keys:
            self._not_under_ha(d["vm"], "changing the attachment of disk %s" % target)
        if device_keys:
            merged = dict(d, cache=want["cache"], io=want["io"], discard=want["discard"], boot_order=want["boot_order"])
            self.act("update %s in the persistent config" % ", ".join(changed_keys), self._redefine_disk,
                     dom, path, disk_element(merged, path, fmt, target), want["mode"])
            if running:
                self.reboot_required = True
                if "iotune" in changed_keys:
                    self.act("set QoS live", self._set_iotune, dom, target, want["iotune"], True, False)
                if meta_mode:
                    self.act("set mode %s live" % want["mode"], self._set_mode, dom, path, want["mode"], True)
            return
        if "iotune" in changed_keys:
            self.act("set QoS%s" % (" live and persistent" if running else ""), self._set_iotune, dom, target,
                     want["iotune"], running, True)
        if meta_mode:
            self.act("set mode %s" % want["mode"], self._set_mode, dom, path, want["mode"], running)

    def _set_iotune(self, dom, target, iotune, live, config):
        params = dict((k, int(iotune.get(k, 0))) for k in IOTUNE_KEYS)
        obj = "VM '%s' disk %s" % (dom.name(), target)
        # libvirt takes LIVE and CONFIG for block I/O tuning one at a time.
        for flag, wanted in ((AFFECT_LIVE, live), (AFFECT_CONFIG, config)):
            if wanted:
                self.client.call("set QoS of", obj, dom.setBlockIoTune, target, params, flag)

    def _redefine_disk(self, dom, path, new_el, mode):
        # Read with secrets (SECURE): a redefinition from the plain XML would drop a VNC/SPICE password.
        root = xmlutil.parse(self.client.domain_xml(dom.name(), inactive=True, secure=True))
        if new_el.find("boot") is not None:
            self._drop_default_boot(root)
        devices = root.find("devices")
        for i, el in enumerate(list(devices)):
            if el.tag == "disk" and disk_source(el) == path:
                addr = el.find("address")
                if addr is not None:
                    new_el.append(addr)
                devices.remove(el)
                devices.insert(i, new_el)
                break
        modes = meta_modes(root)
        modes[path] = mode
        meta = root.find("metadata")
        if meta is None:
            meta = ET.SubElement(root, "metadata")
        for old in meta.findall("{%s}disks" % META_NS):
            meta.remove(old)
        meta.append(metadata_element(modes))
        self.client.define_domain(xmlutil.tostring(root))

    def detach(self, vm, path, target=None):
        dom = self._domain(vm)
        running = bool(self.client.call("read state of", "VM '%s'" % vm, dom.isActive))
        found = self._mine(vm, path)
        live_found = self._mine(vm, path, inactive=False) if running else []
        if not found:
            if live_found:
                # Detached from the definition already; the running guest has not let go of it yet.
                self._pending_unplug(vm, path)
            return None
        el, active, mode = found[0]
        before = attachment_view(el, mode)
        self._not_under_ha(vm, "detaching disk %s" % before["target"])
        self.act("detach %s from VM %s" % (before["target"], vm), self._detach, dom, el, True, bool(live_found), active)
        if live_found and not self.check_mode and not self._wait_unplugged(vm, path, UNPLUG_WAIT):
            self._pending_unplug(vm, path)
        return before

    def _wait_unplugged(self, vm, path, seconds):
        """Live unplug needs the guest's consent (ACPI); give it a moment."""
        deadline = time.time() + seconds
        while True:
            if not self._mine(vm, path, inactive=False):
                return True
            if time.time() >= deadline:
                return False
            time.sleep(0.5)

    def _pending_unplug(self, vm, path):
        self._pending.add(path)
        self.reboot_required = True
        self.warn("VM %s has not released %s yet (its guest did not acknowledge the unplug); it is gone "
                  "from the VM's definition and disappears at the VM's next power off" % (vm, path))

    def _detach(self, dom, el, config, live, path):
        flags = (AFFECT_CONFIG if config else 0) | (AFFECT_LIVE if live else 0)
        self.client.call("detach disk from", "VM '%s'" % dom.name(), dom.detachDeviceFlags, xmlutil.tostring(el), flags)
        if config:
            self._set_mode(dom, path, "persistent", live)
