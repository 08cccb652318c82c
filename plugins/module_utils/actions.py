# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one way managers change things: record the action, then do it unless in check mode.

Check mode and a real run walk the same code and record the same actions, which is what
makes check mode exact; only the call that changes something is skipped.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ActionRecorder(object):
    """Mixin: needs ``self.actions`` (a list) and ``self.check_mode``."""

    def _act(self, what, fn, *args):
        self.actions.append(what)
        if not self.check_mode:
            return fn(*args)
        return None
