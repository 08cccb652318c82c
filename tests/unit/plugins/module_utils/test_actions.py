# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.kvmfusion.compute.plugins.module_utils.actions import ActionRecorder


class Recorder(ActionRecorder):
    def __init__(self, check_mode):
        self.actions = []
        self.check_mode = check_mode


def test_real_run_records_and_calls():
    calls = []
    r = Recorder(check_mode=False)
    assert r._act("grow", lambda *a: calls.append(a) or "done", 1, 2) == "done"
    assert r.actions == ["grow"] and calls == [(1, 2)]


def test_check_mode_records_the_same_action_without_calling():
    calls = []
    r = Recorder(check_mode=True)
    assert r._act("grow", lambda *a: calls.append(a), 1, 2) is None
    assert r.actions == ["grow"] and calls == []
