# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test downloads get-pip from a host these machines cannot reach. This does
the same job with what is here: ensurepip's bundled pip, then the exact packages
ansible-test asked for from the package index the machine is configured for.
tools/run-tests puts it where ansible-test looks for its cached copy.
"""
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
