# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # The libvirt connection shared by every module (COMMON_ARGSPEC in module_utils/base.py).
    DOCUMENTATION = r'''
options:
  uri:
    description:
      - libvirt connection URI of the host to manage.
      - If not set, the value of the E(LIBVIRT_DEFAULT_URI) environment variable on the host
        running the module is used; if that is unset or empty, V(qemu:///system).
      - Use V(qemu:///system) to manage the host the module runs on,
        V(qemu+ssh://root@cna2/system) to reach another CNA over SSH, or
        V(qemu+tls://cna2.example.com/system) over TLS with the site's libvirt certificates.
    type: str
    aliases: [libvirt_uri]
requirements:
  - libvirt-python >= 9.0
notes:
  - The module runs on the host the task executes on and manages the libvirt daemon O(uri) points to.
    With the default URI that is the task's target host itself (for example a CNA); to manage a host from
    the controller, delegate the task to C(localhost) and set a remote O(uri).
  - Error messages name the object and the URI they concern.
'''
