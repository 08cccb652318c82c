# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.kvmfusion.compute.plugins.module_utils import cluster
from ansible_collections.kvmfusion.compute.plugins.modules import ha_info


def test_reports_not_running_without_libvirt(monkeypatch, set_module_args, module_result):
    monkeypatch.setattr(cluster.Cluster, "which", staticmethod(lambda name: None))
    set_module_args({}, check_mode=True)
    code, result = module_result(ha_info.main)
    assert code == 0
    assert result["changed"] is False and result["cluster"] == {"running": False}


def test_refuses_a_libvirt_uri(set_module_args, module_result):
    set_module_args({"uri": "qemu:///system"})
    code, result = module_result(ha_info.main)
    assert code == 1 and "uri" in result["msg"]
