# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one manager contract every module family follows.

A manager is built with a client (which knows its URI and whether it reaches the host the
module runs on), check mode and a command runner. It records every action it takes or
would take (check mode walks the same code and skips only the calls that change things),
collects warnings and ``reboot_required``, runs commands through one runner with one error
behaviour, and returns one ``Result`` that the module base turns into the module's result.

No Ansible imports: managers run under the module base, in unit tests and in tools alike.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess


class CommandError(ValueError):
    """A command exited non-zero; ``str()`` is one line naming the command and its error."""

    def __init__(self, cmd, rc, detail):
        self.cmd = list(cmd)
        self.rc = rc
        what = " ".join(str(c) for c in self.cmd[:2])
        detail = " ".join(str(detail or "").split()) or "exit code %s" % rc
        super(CommandError, self).__init__("%s failed: %s" % (what, detail))


def subprocess_runner(cmd, data=None):
    """(rc, stdout, stderr) of ``cmd`` (``data``: its standard input); the runner used where no module provides one."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stdin=subprocess.PIPE if data is not None else None)
    out, err = proc.communicate(data.encode("utf-8") if data is not None else None)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


class Result(object):
    """What a manager's ``converge`` returns, whatever the module.

    ``before``/``after`` are the managed views for diff mode; ``values`` are the module's own
    return keys (facts of the object, progress figures). ``reboot_required`` is None for
    modules that never report it.
    """

    def __init__(self, changed, before=None, after=None, actions=None, warnings=None, reboot_required=None,
                 values=None):
        self.changed = bool(changed)
        self.before = before
        self.after = after
        self.actions = list(actions or [])
        self.warnings = list(warnings or [])
        self.reboot_required = reboot_required
        self.values = dict(values or {})

    def as_dict(self):
        """The module result without diff (the module base adds it in diff mode)."""
        out = dict(self.values, changed=self.changed, actions=self.actions)
        if self.reboot_required is not None:
            out["reboot_required"] = bool(self.reboot_required)
        return out


class _Journal(object):
    """Actions, warnings and reboot_required of one task, shared by a manager and its helpers."""

    def __init__(self):
        self.actions = []
        self.warnings = []
        self.reboot_required = False


class Manager(object):
    """Base of every manager. Subclasses implement ``converge(params)`` returning ``self.result(...)``."""

    #: whether the module reports reboot_required (VM and disk changes can need a power cycle)
    REPORTS_REBOOT = False

    def __init__(self, client, check_mode=False, run_command=None, journal=None):
        self.client = client
        self.check_mode = bool(check_mode)
        self._run_command = run_command or subprocess_runner
        self._journal = journal or _Journal()

    # who and where ------------------------------------------------------------------------
    @property
    def uri(self):
        return self.client.uri

    @property
    def local(self):
        """Whether the client reaches the libvirt of the host this code runs on."""
        return self.client.is_local

    def need_local(self, what):
        """Refuse (one line, before any change) work on files or devices through a remote URI."""
        if not self.local:
            raise ValueError("%s works on files or devices of the CNA: run the task on the CNA that has them "
                             "(uri %s is remote)" % (what, self.uri))

    # the journal --------------------------------------------------------------------------
    @property
    def actions(self):
        return self._journal.actions

    @property
    def warnings(self):
        return self._journal.warnings

    @property
    def reboot_required(self):
        return self._journal.reboot_required

    @reboot_required.setter
    def reboot_required(self, value):
        self._journal.reboot_required = bool(value)

    def act(self, what, fn, *args, **kwargs):
        """Record ``what``, then call ``fn`` unless in check mode (the one way managers change things)."""
        self._journal.actions.append(what)
        if not self.check_mode:
            return fn(*args, **kwargs)
        return None

    def record(self, what):
        """Record an action whose call is made (or skipped in check mode) by the caller itself."""
        self._journal.actions.append(what)

    def warn(self, msg):
        self._journal.warnings.append(msg)

    def helper(self, cls, *args, **kwargs):
        """Another manager working for this one: same client, check mode, runner and journal."""
        return cls(self.client, *args, check_mode=self.check_mode, run_command=self._run_command,
                   journal=self._journal, **kwargs)

    # commands -----------------------------------------------------------------------------
    def run(self, cmd, data=None):
        """Run ``cmd`` (a list) on this host, ``data`` on its standard input; stdout, or CommandError (a
        ValueError) on a non-zero exit."""
        try:
            rc, out, err = self._run_command(list(cmd)) if data is None else self._run_command(list(cmd), data=data)
        except OSError as e:
            raise CommandError(cmd, None, e.strerror or str(e))
        if rc != 0:
            raise CommandError(cmd, rc, err or out)
        return out

    def probe(self, cmd):
        """(rc, stdout) of a read-only command whose exit code is an answer (blkid: 2 = nothing found)."""
        try:
            rc, out, _err = self._run_command(list(cmd))
        except OSError as e:
            raise CommandError(cmd, None, e.strerror or str(e))
        return rc, out

    def qemu_img(self, args):
        return self.run(["qemu-img"] + list(args))

    # the result ---------------------------------------------------------------------------
    def result(self, before=None, after=None, changed=None, **values):
        """The one result type; ``changed`` defaults to whether any action was recorded."""
        return Result(bool(self.actions) if changed is None else changed, before=before, after=after,
                      actions=self.actions, warnings=self.warnings,
                      reboot_required=self.reboot_required if self.REPORTS_REBOOT else None, values=values)

    def converge(self, params):
        raise NotImplementedError


class TwoHostManager(Manager):
    """A manager for operations that span two CNAs (migration, HA moves): a source and a destination client.

    ``self.client`` is the source, ``self.dest`` the destination. File work on either side is
    refused unless that side is local; libvirt-only work may use remote URIs on both.
    """

    def __init__(self, client, dest, check_mode=False, run_command=None, journal=None):
        super(TwoHostManager, self).__init__(client, check_mode=check_mode, run_command=run_command,
                                             journal=journal)
        self.dest = dest

    @property
    def source(self):
        return self.client

    def refuse_same_host(self, what):
        """One line when source and destination are the same libvirt host (by host UUID)."""
        src = self.client.host_info().get("host_uuid")
        dst = self.dest.host_info().get("host_uuid")
        if src and src == dst:
            raise ValueError("%s: source %s and destination %s are the same host (host UUID %s)"
                             % (what, self.client.uri, self.dest.uri, src))
