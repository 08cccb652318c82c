# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.kvmfusion.compute.plugins.module_utils import cluster
from ansible_collections.kvmfusion.compute.plugins.modules import ha_info


@pytest.mark.parametrize("args", [{}, {"uri": "qemu:///system"}], ids=["no uri", "a local uri (module_defaults)"])
def test_reports_not_running_without_libvirt(monkeypatch, set_module_args, module_result, args):
    monkeypatch.setattr(cluster.Cluster, "which", staticmethod(lambda name: None))
    set_module_args(args, check_mode=True)
    code, result = module_result(ha_info.main)
    assert code == 0
    assert result["changed"] is False and result["cluster"] == {"running": False}


def test_refuses_a_remote_uri_in_one_line(set_module_args, module_result):
    # a local uri is accepted (module_defaults of the group kvmfusion.compute.all); a remote one cannot reach the
    # cluster's tools of another CNA
    set_module_args({"uri": "qemu+ssh://root@cna2/system"})
    code, result = module_result(ha_info.main)
    assert code == 1 and "uri qemu+ssh://root@cna2/system is remote" in result["msg"] and "\n" not in result["msg"]
