# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SIGKILL a running module in the middle of its work.

    kill_module.py FILE DELAY TIMEOUT
        Waits until FILE (a glob pattern) exists (a file the module is writing), waits DELAY seconds more,
        then kills every process that has it open and the Python processes above each (the Ansible module,
        whatever runs it). Exit 2 if FILE never appeared.
    kill_module.py --module NAME DELAY TIMEOUT
        Waits until the module NAME runs (a process running AnsiballZ_NAME.py), waits DELAY seconds
        more, then kills it and every process below it (qemu-img...). Nothing is killed if it ended.

SIGKILL gives the module no chance to clean up, exactly as when a host loses power or an operator
kills it. Prints one JSON line: what was killed (and how big FILE was then).
"""

import glob
import json
import os
import signal
import sys
import time


def holders(path):
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == path:
                    found.add(int(pid))
                    break
        except OSError:
            continue
    return found


def module_ancestors(pid):
    """The Python processes above ``pid``: the Ansible module (with pipelining its command line is just the
    interpreter, the module comes on stdin) and, with async, its wrapper."""
    out = []
    procs = processes()
    while pid > 1 and pid in procs:
        ppid, cmd = procs[pid]
        if not is_python(cmd):
            break  # the shell or sshd above the module
        if "kill_module.py" not in cmd:
            out.append(pid)
        pid = ppid
    return out


def is_python(cmd):
    """Whether a command line runs a Python interpreter (argv[0]); shells are never killed: a shell killed
    while its startup files run (root's pyenv rehash in the lab) leaves a lock that hangs every later login."""
    argv0 = os.path.basename(cmd.split(" ", 1)[0])
    return argv0.startswith("python")


def processes():
    """{pid: (ppid, cmdline)} of every process."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        out[int(pid)] = (ppid, cmd)
    return out


def kill_module(name, delay, timeout):
    deadline = time.time() + timeout
    marker = "AnsiballZ_%s.py" % name
    while True:
        procs = processes()
        # the module itself, not the async wrapper that launched it
        mods = [p for p, (_pp, cmd) in procs.items() if marker in cmd and "async_wrapper" not in cmd and is_python(cmd)]
        if mods:
            break
        if time.time() > deadline:
            print(json.dumps({"killed": [], "error": "module %s never ran" % name}))
            sys.exit(2)
        time.sleep(0.005)
    time.sleep(delay)
    procs = processes()
    victims = [p for p in mods if p in procs]
    todo = list(victims)
    while todo:
        parent = todo.pop()
        for p, (pp, cmd) in procs.items():
            if pp == parent and p not in victims and os.path.basename(cmd.split(" ", 1)[0]) not in ("sh", "bash", "dash"):
                victims.append(p)
                todo.append(p)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    print(json.dumps({"killed": victims, "module": name, "delay": delay}))


def main():
    if sys.argv[1] == "--module":
        kill_module(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
        return
    pattern, delay, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    deadline = time.time() + timeout
    while True:
        found = glob.glob(pattern)
        if found:
            path = found[0]
            break
        if time.time() > deadline:
            print(json.dumps({"killed": [], "error": "%s never appeared" % pattern}))
            sys.exit(2)
        time.sleep(0.002)
    time.sleep(delay)
    pids = holders(path)
    victims = []
    for pid in sorted(pids):
        victims.extend(p for p in module_ancestors(pid) if p not in victims)
    victims.extend(p for p in sorted(pids) if p not in victims)  # the module first: it must not clean up
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        st = os.stat(path)
        size = {"bytes": st.st_size, "allocated": st.st_blocks * 512}
    except OSError:
        size = None
    print(json.dumps({"killed": victims, "file": path, "size": size}))


if __name__ == "__main__":
    main()
