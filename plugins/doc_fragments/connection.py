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
  - Work on image files or devices (qcow2 headers, zeroing, deleting files) is done only when O(uri) reaches
    the host the module runs on; through a remote O(uri) such work is refused in one line, before any change.
  - Error messages name the object and the URI they concern.
'''

    # The second connection of modules that span two CNAs (DEST_ARGSPEC in module_utils/base.py).
    DEST = r'''
options:
  dest_host:
    description:
      - Destination CNA by its host name (as in the inventory and in every CNA's C(/etc/hosts)).
      - It is reached the way O(uri) reaches its host, over SSH as the same user (V(root) by default), or
        over TLS when O(uri) uses TLS.
      - Mutually exclusive with O(dest_uri).
    type: str
  dest_uri:
    description:
      - libvirt connection URI of the destination CNA, for example V(qemu+tls://cna2.example.com/system).
      - Mutually exclusive with O(dest_host).
    type: str
'''
