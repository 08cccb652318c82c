# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shared unit-test fixtures.

libvirt is replaced at the client boundary only: the ``libvirt`` module object
that plugins/module_utils/client.py imported is swapped for FakeLibvirt, whose
open()/openReadOnly() hand out a MagicMock virConnect. No daemon is needed and
libvirt-python does not even have to be installed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import contextlib
import json
import os
import types
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.kvmfusion.compute.plugins.module_utils import client as client_mod
from ansible_collections.kvmfusion.compute.plugins.module_utils import fileops
from ansible_collections.kvmfusion.compute.plugins.module_utils.fileops import FileOpsError

# Values of libvirt's stable ABI (include/libvirt/virterror.h, libvirt-domain.h).
LIBVIRT_CONSTANTS = dict(
    VIR_ERR_INTERNAL_ERROR=1,
    VIR_ERR_SYSTEM_ERROR=38,
    VIR_ERR_OPERATION_INVALID=55,
    VIR_ERR_NO_DOMAIN=42,
    VIR_ERR_NO_NETWORK=43,
    VIR_ERR_NO_STORAGE_POOL=49,
    VIR_ERR_NO_STORAGE_VOL=50,
    VIR_ERR_NO_NODE_DEVICE=53,
    VIR_ERR_NO_NWFILTER=62,
    VIR_ERR_NO_SECRET=66,
    VIR_ERR_NO_DOMAIN_SNAPSHOT=72,
    VIR_ERR_AUTH_FAILED=45,
    VIR_DOMAIN_XML_SECURE=1,
    VIR_CONNECT_BASELINE_CPU_MIGRATABLE=2,
    VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE=1,
    VIR_DOMAIN_START_PAUSED=1,
    VIR_DOMAIN_START_AUTODESTROY=2,
    VIR_DOMAIN_XML_INACTIVE=2,
    VIR_SECRET_USAGE_TYPE_VOLUME=1,
    VIR_SECRET_USAGE_TYPE_CEPH=2,
)


class FakeLibvirtError(Exception):
    """Behaves like libvirt.libvirtError for the accessors the client uses."""

    def __init__(self, message, code=None):
        super(FakeLibvirtError, self).__init__(message)
        self.code = code

    def get_error_code(self):
        return self.code

    def get_error_message(self):
        return self.args[0]


def make_fake_libvirt():
    fake = types.ModuleType("libvirt")
    for name, value in LIBVIRT_CONSTANTS.items():
        setattr(fake, name, value)
    fake.libvirtError = FakeLibvirtError
    fake.conn = mock.MagicMock(name="virConnect")
    # no host is in maintenance (a host in maintenance holds the secret hosts.MAINTENANCE_UUID)
    fake.conn.secretLookupByUUIDString.side_effect = FakeLibvirtError("Secret not found", 66)
    fake.open = mock.MagicMock(name="open", return_value=fake.conn)
    fake.openReadOnly = mock.MagicMock(name="openReadOnly", return_value=fake.conn)
    fake.registerErrorHandler = mock.MagicMock(name="registerErrorHandler")
    return fake


@pytest.fixture(autouse=True)
def _no_host_facts(monkeypatch, tmp_path_factory):
    """Unit tests never read the facts of the machine they run on (a CNA has the cna role's)."""
    from ansible_collections.kvmfusion.compute.plugins.module_utils import hosts
    monkeypatch.setattr(hosts, "FACTS_PATH", str(tmp_path_factory.getbasetemp() / "no-such-kvmfusion.fact"))


@pytest.fixture(autouse=True)
def _no_host_cluster(monkeypatch):
    """Unit tests never ask the pacemaker of the machine they run on (its tools may be installed): no cluster
    tools, unless a test's own fixture says otherwise."""
    from ansible_collections.kvmfusion.compute.plugins.module_utils import cluster
    monkeypatch.setattr(cluster.Cluster, "which", staticmethod(lambda name: None))


@pytest.fixture(autouse=True)
def _fresh_module_warnings(monkeypatch):
    """AnsibleModule collects warnings process-wide (a list in ansible-core 2.18, a dict in 2.19): each test
    starts with none."""
    from ansible.module_utils.common import warnings as ansible_warnings
    for name in ("_global_warnings", "_global_deprecations"):
        current = getattr(ansible_warnings, name, None)
        if isinstance(current, (list, dict)):
            monkeypatch.setattr(ansible_warnings, name, type(current)())


@pytest.fixture
def fake_libvirt(monkeypatch):
    fake = make_fake_libvirt()
    monkeypatch.setattr(client_mod, "libvirt", fake)
    return fake


@pytest.fixture
def set_module_args(monkeypatch):
    """Feed AnsibleModule its arguments the way the module wrapper does: with ansible-core's own helper where it
    has one (2.19: the arguments come with a serialization profile), else by setting them as 2.18 reads them."""
    try:
        from ansible.module_utils.testing import patch_module_args  # pylint: disable=import-outside-toplevel
    except ImportError:
        patch_module_args = None
    patches = contextlib.ExitStack()

    def _set(args=None, check_mode=False, diff=False):
        payload = dict(args or {})
        payload["_ansible_check_mode"] = check_mode
        payload["_ansible_diff"] = diff
        if patch_module_args is not None:
            # 2.19 includes a failure's traceback only when the controller asks for it (as with -vvv)
            payload["_ansible_tracebacks_for"] = ["error"]
            patches.enter_context(patch_module_args(payload))
        else:
            monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": payload})))
    yield _set
    patches.close()


@pytest.fixture
def module_result(capsys):
    """Run a callable that ends the module; return (exit code, parsed JSON result)."""
    def _run(fn, *args, **kwargs):
        with pytest.raises(SystemExit) as exc:
            fn(*args, **kwargs)
        out = capsys.readouterr().out
        return exc.value.code, _plain_warnings(json.loads(out))
    return _run


def _plain_warnings(result):
    """Warnings as the controller shows them: ansible-core 2.19 modules return each as a WarningSummary
    ({"event": {"msg": ...}}), 2.18 modules as the text itself."""
    if isinstance(result.get("warnings"), list):
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) and isinstance(w.get("event"), dict) else w
                              for w in result["warnings"]]
    return result


# ---------------------------------------------------------------- real files
@pytest.fixture
def fsdir(tmp_path):
    """tmp_path, skipping when its filesystem lacks FIEMAP or keeps no unwritten extents for fallocate."""
    probe = str(tmp_path / "probe")
    try:
        fileops.reserve(probe, 64 * 1024)
        extents = fileops.extent_map(probe)
    except FileOpsError as exc:
        pytest.skip("filesystem of %s: %s" % (tmp_path, exc))
    finally:
        if os.path.exists(probe):
            os.unlink(probe)
    if not any(ext.unwritten for ext in extents):
        pytest.skip("filesystem of %s does not keep fallocated ranges as unwritten extents" % tmp_path)
    return tmp_path


@pytest.fixture
def xattr_dir(fsdir):
    probe = str(fsdir / "xattr-probe")
    open(probe, "w").close()
    try:
        os.setxattr(probe, "user.kvmfusion.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip("filesystem of %s does not support user extended attributes" % fsdir)
        raise
    return fsdir
