# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""./dev test mutation: do the unit tests catch bugs in the code that protects data?

Two parts, both on a copy of the tree (the working tree is never mutated):

planted  Each bug of tests/mutation/planted.yml, alone: the whole unit suite must fail, and the test the
         entry names must be among the failures. Any survivor fails the stage.
score    mutmut (2.x, from PyPI, in its own virtualenv) mutates the functions tests/mutation/scope.txt names
         (protection, provisioning, revert and power-state code) and runs the unit tests of that code for
         each mutant. Prints the mutation score and every surviving mutant; tests/mutation/survivors.txt
         lists the survivors reviewed as acceptable, each with its reason. An unreviewed survivor fails the stage.

usage: python tools/mutation.py [planted] [score [FILE...]]      (both by default; FILE limits the score to those files)
Run through ./dev (its virtualenv and collection path); not part of the default CI run.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.environ.get("KVMF_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")
MUTMUT = "mutmut==2.5.1"
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"]


def tree_copy():
    """What git would ship (tracked and untracked, not ignored) at <tmp>/ansible_collections/kvmfusion/compute."""
    base = tempfile.mkdtemp(prefix="kvmf-mutation-")
    dst = os.path.join(base, "ansible_collections", "kvmfusion", "compute")
    files = subprocess.check_output(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).split(b"\0")
    for f in files:
        f = f.decode()
        if not f or not os.path.isfile(os.path.join(ROOT, f)):
            continue
        os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), os.path.join(dst, f))
    return base, dst


def env_for(base):
    env = dict(os.environ)
    env["PYTHONPATH"] = base
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_tests(dst, base, args, log=None):
    proc = subprocess.run(PYTEST[:-1] + ["-rf"] + args, cwd=dst, env=env_for(base), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if log:
        with open(log, "w") as f:
            f.write(proc.stdout)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
    return proc.returncode, failed, proc.stdout


def planted(dst, base):
    entries = yaml.safe_load(open(os.path.join(ROOT, "tests", "mutation", "planted.yml")))
    rc, failed, out = run_tests(dst, base, ["-n", "2", "tests/unit"])
    if rc != 0:
        print("planted: the unit suite fails without any planted bug:\n" + out[-3000:])
        return False
    ok = True
    print("planted bugs (%d), each alone, against the whole unit suite:" % len(entries))
    for e in entries:
        path = os.path.join(dst, e["file"])
        src = open(path).read()
        n = src.count(e["find"])
        if n != 1:
            print("  %-28s STALE: its anchor occurs %d times in %s (update tests/mutation/planted.yml)"
                  % (e["id"], n, e["file"]))
            ok = False
            continue
        with open(path, "w") as f:
            f.write(src.replace(e["find"], e["replace"]))
        t0 = time.time()
        try:
            rc, failed, out = run_tests(dst, base, ["-n", "2", "tests/unit"])
        finally:
            with open(path, "w") as f:
                f.write(src)
        named = [t for t in failed if t.split("::")[-1].split("[")[0] == e["killed_by"]]
        if rc == 1 and named:
            print("  %-28s killed by %d test(s), %s among them (%.0fs)" % (e["id"], len(failed), e["killed_by"],
                                                                           time.time() - t0))
        else:
            ok = False
            why = "SURVIVED" if rc == 0 else ("killed, but not by %s: %s" % (e["killed_by"], ", ".join(failed[:3]))
                                              if rc == 1 else "the test run broke (rc %d)" % rc)
            print("  %-28s %s" % (e["id"], why))
    return ok


# ---------------------------------------------------------------------------- mutmut

def scope():
    """{file: [function names]} from tests/mutation/scope.txt ("file: name name ...", # comments)."""
    out = {}
    for line in open(os.path.join(ROOT, "tests", "mutation", "scope.txt")):
        line = line.split("#", 1)[0].strip()
        if line:
            f, names = line.split(":", 1)
            out[f.strip()] = names.split()
    return out


def scoped_lines(dst, wanted):
    """{file: sorted line numbers} of the named functions (Class.method or function)."""
    out = {}
    for f, names in wanted.items():
        tree = ast.parse(open(os.path.join(dst, f)).read())
        found = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                found[node.name] = node
            elif isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef):
                        found["%s.%s" % (node.name, sub.name)] = sub
        missing = [n for n in names if n not in found]
        if missing:
            raise SystemExit("mutation: %s has no %s (update tests/mutation/scope.txt)" % (f, ", ".join(missing)))
        lines = set()
        for n in names:
            node = found[n]
            body_start = node.body[0].lineno
            if isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant):
                body_start = node.body[0].end_lineno + 1  # not the docstring
            lines.update(range(body_start, node.end_lineno + 1))
        out[f] = sorted(lines)
    return out


MUTMUT_CONFIG = '''
# written by tools/mutation: mutate only the scoped functions' lines
import json
_SCOPE = json.load(open(%r))


_TESTS = json.load(open(%r))
_RUNNER = %r


def pre_mutation(context):
    lines = _SCOPE.get(context.filename)
    if lines is None or (context.current_line_index + 1) not in lines:
        context.skip = True
        return
    context.config.test_command = _RUNNER + " " + " ".join(_TESTS[context.filename])
    code = context.current_source_line.strip()
    # messages and logging: mutating their words tests nothing
    if code.startswith(("raise ", "self.warn(", "self.record(", "log(", '"', "'", "#")):
        context.skip = True
'''


def mutmut_python():
    venv = os.path.join(CACHE, "mutation-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(os.path.join(venv, "bin", "mutmut")):
        subprocess.check_call(["/usr/bin/python3", "-m", "venv", venv])
        subprocess.check_call([py, "-m", "pip", "install", "-q", MUTMUT])
    return os.path.join(venv, "bin", "mutmut")


def score(dst, base, only=()):
    import json
    mutmut = mutmut_python()
    wanted = dict((f, n) for f, n in scope().items() if not only or any(o in f for o in only))
    lines = scoped_lines(dst, wanted)
    scope_file = os.path.join(base, "scope.json")
    json.dump(lines, open(scope_file, "w"))
    tests = {}
    for line in open(os.path.join(ROOT, "tests", "mutation", "tests.txt")):
        line = line.split("#", 1)[0].strip()
        if line:
            f, names = line.split(":", 1)
            tests[f.strip()] = [os.path.normpath(os.path.join("tests/unit/plugins/module_utils", n)) for n in names.split()]
    missing = sorted(set(wanted) - set(tests))
    if missing:
        raise SystemExit("mutation: tests/mutation/tests.txt names no tests for %s" % ", ".join(missing))
    tests_file = os.path.join(base, "tests.json")
    json.dump(tests, open(tests_file, "w"))
    runner = " ".join(PYTEST)
    with open(os.path.join(dst, "mutmut_config.py"), "w") as f:
        f.write(MUTMUT_CONFIG % (scope_file, tests_file, runner))
    runner = " ".join(PYTEST + sorted(set(t for ts in tests.values() for t in ts)))
    env = env_for(base)
    t0 = time.time()
    proc = subprocess.run([mutmut, "run", "--paths-to-mutate", ",".join(sorted(wanted)), "--runner", runner,
                           "--tests-dir", "tests/unit", "--no-progress", "--simple-output",
                           # string literals here are messages and libvirt verbs in error texts: not mutated
                           "--disable-mutation-types", "string,fstring,decorator"],
                          cwd=dst, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False)
    with open(os.path.join(CACHE, "mutation-mutmut.log"), "w") as f:
        f.write(proc.stdout)
    counts, survivors = _cache(dst)
    killed = counts.get("ok_killed", 0)
    total = killed + sum(counts.get(k, 0) for k in ("bad_survived", "bad_timeout", "ok_suspicious"))
    if total == 0:
        print("score: mutmut checked no mutants (see .cache/mutation-mutmut.log)")
        return False
    reviewed = _reviewed()
    unreviewed = []
    print("mutation score: %d of %d mutants killed (%.1f%%; %d timed out or suspicious, counted as survivors) "
          "in %s; %.0fs" % (killed, total, 100.0 * killed / total, counts.get("bad_timeout", 0) +
                            counts.get("ok_suspicious", 0),
                            "; ".join("%s: %s" % (f, " ".join(n)) for f, n in sorted(wanted.items())), time.time() - t0))
    for mid, fname, func in survivors:
        diff = subprocess.run([mutmut, "show", str(mid)], cwd=dst, env=env, stdout=subprocess.PIPE,
                              universal_newlines=True, check=False).stdout
        key = "%s:%s | %s" % (fname, func, _change(diff))
        if key not in reviewed:
            unreviewed.append(key)
        print("  survived %-12s %s" % ("reviewed" if key in reviewed else "NOT REVIEWED", key))
    with open(os.path.join(CACHE, "mutation-survivors.txt"), "w") as f:
        f.write("".join(k + "\n" for k in unreviewed))
    if unreviewed:
        print("%d survivor(s) not in tests/mutation/survivors.txt (listed in .cache/mutation-survivors.txt): "
              "kill them with a test, or add them there with the reason they are acceptable" % len(unreviewed))
    return not unreviewed


def _cache(dst):
    """({status: count}, [(mutant id, file, function)] of the survivors) from mutmut's cache."""
    import sqlite3
    db = sqlite3.connect(os.path.join(dst, ".mutmut-cache"))
    counts = dict(db.execute("select status, count(*) from Mutant group by status").fetchall())
    rows = db.execute("select m.id, f.filename, l.line_number from Mutant m join Line l on m.line = l.id "
                      "join SourceFile f on l.sourcefile = f.id where m.status in "
                      "('bad_survived', 'bad_timeout', 'ok_suspicious') order by f.filename, l.line_number, m.id").fetchall()
    funcs = {}
    out = []
    for mid, fname, line in rows:
        if fname not in funcs:
            funcs[fname] = _functions(os.path.join(dst, fname))
        name = next((n for n, a, b in funcs[fname] if a <= line + 1 <= b), "?")
        out.append((mid, fname, name))
    return counts, out


def _functions(path):
    tree = ast.parse(open(path).read())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.append((node.name, node.lineno, node.end_lineno))
        elif isinstance(node, ast.ClassDef):
            out += [("%s.%s" % (node.name, sub.name), sub.lineno, sub.end_lineno) for sub in node.body
                    if isinstance(sub, ast.FunctionDef)]
    return out


def _change(diff):
    """"- old / + new" of a mutmut diff: stable across runs (no line numbers)."""
    old = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    new = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return "- %s / + %s" % (" ".join(old), " ".join(new))


def _reviewed():
    out = set()
    path = os.path.join(ROOT, "tests", "mutation", "survivors.txt")
    if os.path.exists(path):
        for line in open(path):
            line = line.rstrip("\n")
            if line.strip() and not line.lstrip().startswith("#"):
                out.add(line.split("  #", 1)[0].rstrip())
    return out


def main(argv):
    parts = argv or ["planted", "score"]
    only = parts[parts.index("score") + 1:] if "score" in parts else []
    parts = [p for p in parts if p not in only]
    bad = [p for p in parts if p not in ("planted", "score")]
    if bad:
        print("usage: python tools/mutation.py [planted] [score [FILE...]]", file=sys.stderr)
        return 2
    base, dst = tree_copy()
    ok = True
    try:
        if "planted" in parts:
            ok = planted(dst, base) and ok
        if "score" in parts:
            ok = score(dst, base, only) and ok
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
