# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the lab benchmarks share: the median of a round's figures, and a play run on the lab, timed whole."""
from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".cache", "venv", "bin")


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def play(text, inventories, extra, tmp):
    """Run the play ``text`` with the project's venv and collections on ``inventories`` (one path or several);
    (seconds, stdout). A failed play ends the benchmark (exit status non-zero), with its output's tail."""
    path = os.path.join(tmp, "play.yml")
    with open(path, "w") as f:
        f.write(text)
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"],
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_STDOUT_CALLBACK="default")
    cmd = ["ansible-playbook"]
    for inv in [inventories] if isinstance(inventories, str) else inventories:
        cmd += ["-i", inv]
    cmd += [path, "-e", json.dumps(extra)]
    t0 = time.time()
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
                         check=False)
    took = time.time() - t0
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-2000:])
        raise SystemExit("play failed: %s" % text.strip().splitlines()[0])
    return took, res.stdout
