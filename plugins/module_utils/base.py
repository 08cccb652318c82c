# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The module base: common argument spec, check/diff handling, results and the one fail path."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kvmfusion.compute.plugins.module_utils import names
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    Client,
    LibvirtClientError,
    is_local_uri,
    resolve_uri,
    uri_for_host,
)
from ansible_collections.kvmfusion.compute.plugins.module_utils.fileops import FileOpsError
from ansible_collections.kvmfusion.compute.plugins.module_utils.manager import Result

# Documented by the kvmfusion.compute.connection doc fragment. No env fallback here:
# resolve_uri() applies LIBVIRT_DEFAULT_URI, then qemu:///system.
COMMON_ARGSPEC = dict(
    uri=dict(type="str", aliases=["libvirt_uri"]),
)
# The second connection of modules that span two CNAs (kvmfusion.compute.connection.dest fragment).
DEST_ARGSPEC = dict(
    dest_uri=dict(type="str"),
    dest_host=dict(type="str"),
)

# Everything a user can cause ends as one line: libvirt errors, bad input (ValueError, CommandError
# among them), file operations and the OS (disk full, permissions).
USER_ERRORS = (LibvirtClientError, ValueError, FileOpsError, OSError)


def _os_error_line(e):
    if isinstance(e, OSError) and e.strerror:
        where = " ".join(str(f) for f in (e.filename, e.filename2) if f)
        return "%s%s" % (e.strerror, ": %s" % where if where else "")
    return str(e) or type(e).__name__


def _one_line(text):
    return " ".join(str(text).split())


def _diff_side(value, other):
    # An absent object is shown as an empty document of the other side's type, not as null.
    if value is not None:
        return value
    return "" if isinstance(other, str) else {}


class KvmfModule(object):
    """AnsibleModule plus a lazily connected libvirt Client.

    Module logic runs inside ``run(fn)``: ``fn`` returns a manager's ``Result`` (or, for
    ``_info`` modules, ends by calling ``exit()``); every error a user can cause becomes a
    one-line failure. ``two_hosts=True`` adds the destination options (``dest_uri`` or
    ``dest_host``) and ``dest_client`` for operations that span two CNAs.
    """

    def __init__(self, argument_spec, supports_check_mode=True, readonly=False, two_hosts=False, libvirt=True, **kwargs):
        # Every file this task makes (images, overlays, memory files, copies, temporary files), directly or through
        # qemu-img, is readable by its owner only from the moment it exists.
        os.umask(0o077)
        self._client = None
        self._dest_client = None
        self._peers = []
        self.readonly = readonly
        # libvirt=False: a module of the cluster's own tools (pacemaker, corosync) on this node, no libvirt connection
        # (its uri is still accepted, so that module_defaults of the group kvmfusion.compute.all apply, and must be local)
        spec = copy.deepcopy(COMMON_ARGSPEC)
        if two_hosts:
            spec.update(copy.deepcopy(DEST_ARGSPEC))
            kwargs["mutually_exclusive"] = list(kwargs.get("mutually_exclusive") or []) + [("dest_uri", "dest_host")]
        spec.update(copy.deepcopy(argument_spec))
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=supports_check_mode, **kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.diff_mode = self.module._diff
        if libvirt and not HAS_LIBVIRT:
            self.module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
        self.uri = resolve_uri(self.params.get("uri")) if libvirt else None
        if not libvirt and self.params.get("uri") and not is_local_uri(self.params["uri"]):
            self.module.fail_json(msg="this module runs the cluster's tools of the CNA it runs on: run it there "
                                      "(uri %s is remote)" % self.params["uri"])

    @property
    def client(self):
        if self._client is None:
            self._client = Client(self.uri, readonly=self.readonly)
        return self._client

    @property
    def dest_uri(self):
        """The destination URI: dest_uri, or dest_host reached the way ``uri`` reaches its host; None if unset."""
        if self.params.get("dest_uri"):
            return self.params["dest_uri"]
        if self.params.get("dest_host"):
            return uri_for_host(self.params["dest_host"], like=self.uri)
        return None

    def peer_clients(self, hosts, readonly=True):
        """Clients of other CNAs (inventory host names, or URIs), reached the way ``uri`` reaches its host.

        Read-only unless asked; they are closed with the module's own clients.
        """
        out = []
        for h in hosts or []:
            uri = h if "://" in h else uri_for_host(h, like=self.uri)
            out.append(Client(uri, readonly=readonly))
        self._peers.extend(out)
        return out

    @property
    def dest_client(self):
        if self._dest_client is None:
            if self.dest_uri is None:
                raise ValueError("a destination is needed: set dest_host or dest_uri")
            self._dest_client = Client(self.dest_uri, readonly=self.readonly)
        return self._dest_client

    def run_command(self, cmd, data=None):
        """The one command runner handed to managers: (rc, stdout, stderr); managers decide what a failure means."""
        if data is None:
            return self.module.run_command(cmd)
        return self.module.run_command(cmd, data=data, binary_data=True)

    def manager(self, cls, *args, **kwargs):
        """Build a manager of ``cls`` on this task's client, check mode and command runner."""
        return cls(self.client, *args, check_mode=self.check_mode, run_command=self.run_command, **kwargs)

    def close(self):
        for attr in ("_client", "_dest_client"):
            client = getattr(self, attr)
            setattr(self, attr, None)
            if client is not None:
                client.close()
        peers, self._peers = self._peers, []
        for client in peers:
            client.close()

    def warn(self, msg):
        self.module.warn(_one_line(msg))

    def fail(self, msg, exception=None, **extra):
        """Fail the task with a one-line ``msg``; ``exception`` carries the traceback."""
        if exception:
            extra["exception"] = exception
        self.close()
        self.module.fail_json(msg=_one_line(msg), **extra)

    def exit(self, changed=False, before=None, after=None, **result):
        """Return the result; in diff mode with ``before``/``after`` given, add ``diff``."""
        if self.diff_mode and (before is not None or after is not None):
            result["diff"] = dict(before=_diff_side(before, after), after=_diff_side(after, before))
        self.close()
        self.module.exit_json(changed=changed, **result)

    def exit_result(self, result):
        """Turn a manager's Result into the module result: warnings, actions, diff, values."""
        for w in result.warnings:
            self.warn(w)
        self.exit(before=result.before, after=result.after, **result.as_dict())

    def run(self, fn):
        """Call ``fn(self)``: a returned Result becomes the module result; failures leave through ``fail()``."""
        try:
            result = fn(self)
            if isinstance(result, Result):
                self.exit_result(result)
        except USER_ERRORS as e:
            self.fail(_os_error_line(e), exception=traceback.format_exc())
        finally:
            self.close()
        self.fail("internal error: %s returned without a result" % getattr(fn, "__name__", repr(fn)))

    def validate_name(self, value, kind="name", max_len=64):
        """names.validate_name, failing the task (before any change) on a bad name."""
        try:
            return names.validate_name(value, kind=kind, max_len=max_len)
        except ValueError as e:
            self.fail(str(e))
