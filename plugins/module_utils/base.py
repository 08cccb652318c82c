# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The module base: common argument spec, check/diff handling, results and the one fail path."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kvmfusion.compute.plugins.module_utils import names
from ansible_collections.kvmfusion.compute.plugins.module_utils.client import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    Client,
    LibvirtClientError,
    resolve_uri,
)

# Documented by the kvmfusion.compute.connection doc fragment. No env fallback here:
# resolve_uri() applies LIBVIRT_DEFAULT_URI, then qemu:///system.
COMMON_ARGSPEC = dict(
    uri=dict(type="str", aliases=["libvirt_uri"]),
)


def _one_line(text):
    return " ".join(str(text).split())


def _diff_side(value, other):
    # An absent object is shown as an empty document of the other side's type, not as null.
    if value is not None:
        return value
    return "" if isinstance(other, str) else {}


class KvmfModule(object):
    """AnsibleModule plus a lazily connected libvirt Client.

    Module logic runs inside ``run(fn)`` and ends by calling ``exit()``;
    LibvirtClientError and ValueError become a one-line failure.
    """

    def __init__(self, argument_spec, supports_check_mode=True, readonly=False, **kwargs):
        self._client = None
        self.readonly = readonly
        spec = copy.deepcopy(COMMON_ARGSPEC)
        spec.update(copy.deepcopy(argument_spec))
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=supports_check_mode, **kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.diff_mode = self.module._diff
        if not HAS_LIBVIRT:
            self.module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
        self.uri = resolve_uri(self.params.get("uri"))

    @property
    def client(self):
        if self._client is None:
            self._client = Client(self.uri, readonly=self.readonly)
        return self._client

    def close(self):
        client, self._client = self._client, None
        if client is not None:
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

    def run(self, fn):
        """Call ``fn(self)``, which must end with ``self.exit()``; failures leave through ``fail()``."""
        try:
            fn(self)
        except (LibvirtClientError, ValueError) as e:
            self.fail(str(e), exception=traceback.format_exc())
        finally:
            self.close()
        self.fail("internal error: %s returned without a result" % getattr(fn, "__name__", repr(fn)))

    def validate_name(self, value, kind="name", max_len=64):
        """names.validate_name, failing the task (before any change) on a bad name."""
        try:
            return names.validate_name(value, kind=kind, max_len=max_len)
        except ValueError as e:
            self.fail(str(e))
