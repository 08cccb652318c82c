# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Modules that change things: every one supports check and diff mode fully.
    DOCUMENTATION = r'''
attributes:
  check_mode:
    support: full
    description: Computes the same changes and reports the same C(changed) and C(actions) without making them.
  diff_mode:
    support: full
    description: Returns the managed settings before and after.
'''

    IDEMPOTENT = r'''
attributes:
  idempotent:
    support: full
    description: A second identical run reports no change.
'''

    # _info modules: read only.
    INFO_MODULE = r'''
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Reports no changes, so there is nothing to diff.
  idempotent:
    support: full
    description: Never changes anything.
'''
