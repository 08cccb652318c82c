# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX / Automation Controller support (docs/awx.md), checked offline.

- meta/execution-environment.yml: ansible-builder accepts it; the build context it makes installs the whole
  collection the way the image's galaxy stage does; ansible-builder's introspection of the installed collection,
  which reads that same file as the collection's own dependency list, works; the ansible-core range is the one the
  collection supports.
- module_defaults: every module is in meta/runtime.yml's action group ``all``, and ``group/kvmfusion.compute.all``
  (and LIBVIRT_DEFAULT_URI) reach a module, run for real against libvirt's test driver.
- awx/maintenance_survey.json: a survey AWX accepts (the checks of AWX's survey_spec endpoint), asking exactly for
  the variables playbooks/maintenance.yml reads, with its defaults, its yes/no answers read with ``| bool``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import yaml
from jinja2 import Environment, nodes
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EE_FILE = os.path.join(ROOT, "meta", "execution-environment.yml")
SURVEY_FILE = os.path.join(ROOT, "awx", "maintenance_survey.json")
MAINTENANCE = os.path.join(ROOT, "playbooks", "maintenance.yml")
BIN = os.path.dirname(sys.executable)


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _run(cmd, **kwargs):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
                          **kwargs)


def _tool(name):
    # beside this interpreter, else the main virtualenv's (the compat stage's venv holds only ansible-core 2.18 and
    # pytest; ansible-builder runs the same whichever ansible-core the tests import)
    for d in (BIN, os.path.join(ROOT, ".cache", "venv", "bin")):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    raise AssertionError("%s is not installed beside %s (requirements-dev.txt)" % (name, sys.executable))


# ---------------------------------------------------------------- the execution environment

@pytest.fixture(scope="module")
def ee_context(tmp_path_factory):
    """The build context ``ansible-builder create`` makes of meta/execution-environment.yml, and its output."""
    context = str(tmp_path_factory.mktemp("ee") / "context")
    out = _run([_tool("ansible-builder"), "create", "-f", EE_FILE, "-c", context, "-v", "3"], cwd=ROOT)
    assert out.returncode == 0, out.stdout
    return context, out.stdout


def test_ansible_builder_accepts_the_definition(ee_context):
    context, output = ee_context
    # A source of additional_build_files that matches nothing is only a warning for ansible-builder; the image would
    # then miss that part of the collection.
    assert "No matches" not in output and "does not exist" not in output, output
    build_file = [f for f in ("Containerfile", "Dockerfile") if os.path.exists(os.path.join(context, f))]
    assert build_file, os.listdir(context)
    with open(os.path.join(context, build_file[0])) as f:
        steps = f.read()
    assert "ansible-galaxy collection install" in steps
    assert "introspect.py introspect" in steps


def test_the_definition_is_also_valid_collection_metadata():
    """ansible-builder reads meta/execution-environment.yml of every installed collection for its dependencies:
    dependencies.python and .system must then be file names relative to the collection (a list fails its
    introspection with a TypeError in every EE that installs this collection)."""
    deps = _load(EE_FILE).get("dependencies") or {}
    for entry in ("python", "system"):
        value = deps.get(entry)
        assert value is None or (isinstance(value, str) and "\n" not in value and not os.path.isabs(value)), (
            "dependencies.%s is %r: ansible-builder's introspection of the installed collection cannot read it"
            % (entry, value))
        if value is not None:
            assert os.path.exists(os.path.join(ROOT, value)), value


def test_the_ee_installs_the_collection_and_introspection_reads_it(ee_context, tmp_path):
    """What the image's galaxy and builder stages run, without a container: ansible-galaxy installs the collection
    from the build context (galaxy.yml's build_ignore applied), and ansible-builder's introspect script reads it."""
    build = os.path.join(ee_context[0], "_build")
    inst = str(tmp_path / "collections")
    env = dict(os.environ, ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1")
    out = _run([_tool("ansible-galaxy"), "collection", "install", "--offline", "--force", "-r", "requirements.yml",
                "--collections-path", inst], cwd=build, env=env)
    assert out.returncode == 0, out.stdout
    installed = os.path.join(inst, "ansible_collections", "kvmfusion", "compute")
    assert os.path.exists(os.path.join(installed, "MANIFEST.json"))

    def tree(base, part):
        return sorted(os.path.relpath(p, base) for p in glob.glob(os.path.join(base, part, "**", "*"), recursive=True)
                      if os.path.isfile(p) and "__pycache__" not in p and "/molecule/" not in p)
    for part in ("plugins", "roles", "playbooks", "meta"):
        assert tree(installed, part) == tree(ROOT, part), part
    assert not glob.glob(os.path.join(installed, "roles", "*", "molecule")), "build_ignore was not applied"

    out = _run([sys.executable, os.path.join(build, "scripts", "introspect.py"), "introspect", "--sanitize", inst])
    assert out.returncode == 0, out.stdout
    assert yaml.safe_load(out.stdout.split("\n", 1)[1]) == {"python": [], "system": []}, out.stdout


def test_the_ee_copies_every_part_of_the_collection_ansible_uses():
    copied = {os.path.normpath(os.path.join("meta", e["src"])) for e in _load(EE_FILE)["additional_build_files"]}
    for part in ("galaxy.yml", "README.md", "requirements.txt", "meta", "plugins", "roles", "playbooks",
                 "extensions"):
        if os.path.exists(os.path.join(ROOT, part)):
            assert part in copied, "%s is not copied into the EE's build context" % part


def test_the_ee_has_the_ansible_core_the_collection_supports():
    ee = Requirement(_load(EE_FILE)["dependencies"]["ansible_core"]["package_pip"])
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        core = [Requirement(line.strip()) for line in f if line.strip().startswith("ansible-core")]
    runtime = SpecifierSet(_load(os.path.join(ROOT, "meta", "runtime.yml"))["requires_ansible"])
    assert ee.name == "ansible-core"
    assert ee.specifier == core[0].specifier == runtime


# ---------------------------------------------------------------- module_defaults

def test_every_module_is_in_the_all_action_group():
    modules = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py"))}
    modules.discard("__init__")
    group = _load(os.path.join(ROOT, "meta", "runtime.yml"))["action_groups"]["all"]
    assert len(group) == len(set(group)), "a module is listed twice"
    assert sorted(modules - set(group)) == [], "modules missing from action group all"
    assert sorted(set(group) - modules) == [], "action group all names modules that do not exist"


def test_group_module_defaults_and_libvirt_default_uri_reach_the_modules(tmp_path):
    """docs/awx.md: ``group/kvmfusion.compute.all`` in module_defaults sets ``uri`` for every module of the
    collection, and without it LIBVIRT_DEFAULT_URI of the host running the module does. libvirt's test driver
    (test:///default) has a storage pool named default-pool; the host's own libvirt is never asked."""
    play = tmp_path / "play.yml"
    play.write_text(textwrap.dedent("""\
        - name: The URI from module_defaults of the collection's action group
          hosts: localhost
          gather_facts: false
          module_defaults:
            group/kvmfusion.compute.all:
              uri: test:///default
          tasks:
            - name: Datastores
              kvmfusion.compute.datastore_info:
              register: __by_group
            - name: Check
              ansible.builtin.assert:
                that: "'default-pool' in __by_group.datastores | map(attribute='name')"

        - name: The URI from LIBVIRT_DEFAULT_URI
          hosts: localhost
          gather_facts: false
          environment:
            LIBVIRT_DEFAULT_URI: test:///default
          tasks:
            - name: Datastores
              kvmfusion.compute.datastore_info:
              register: __by_env
            - name: Check
              ansible.builtin.assert:
                that: "'default-pool' in __by_env.datastores | map(attribute='name')"
        """))
    out = _run([_tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=%s" % sys.executable, str(play)], cwd=ROOT)
    assert out.returncode == 0, out.stdout
    assert "ok=4" in out.stdout and "failed=0" in out.stdout, out.stdout


def _takes_uri(path):
    """Whether a module has the common ``uri`` option (the kvmfusion.compute.connection doc fragment)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    doc = [n.value.value for n in tree.body if isinstance(n, ast.Assign) and
           any(getattr(t, "id", None) == "DOCUMENTATION" for t in n.targets)]
    doc = yaml.safe_load(doc[0])
    fragments = doc.get("extends_documentation_fragment") or []
    own = [f.split(".", 2)[-1] for f in fragments if f.startswith("kvmfusion.compute.")]
    return "uri" in (doc.get("options") or {}) or any(f.startswith("connection") for f in own)


def test_docs_name_the_modules_group_module_defaults_of_uri_break():
    """``uri`` in the group's module_defaults reaches every module of the group; one without that option fails
    with "Unsupported parameters": docs/awx.md names each such module."""
    without = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py"))
                     if not p.endswith("__init__.py") and not _takes_uri(p))
    with open(os.path.join(ROOT, "docs", "awx.md")) as f:
        named = sorted(re.findall(r"`kvmfusion\.compute\.(\w+)` takes no `uri`", f.read()))
    assert named == without


# ---------------------------------------------------------------- the survey of playbooks/maintenance.yml

# AWX's question types and the Python type of their default (awx/main/constants.py, SURVEY_TYPE_MAPPING).
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                "integer": int, "float": (float, int)}


def survey_errors(spec):
    """What AWX's survey_spec endpoint refuses (awx/api/views JobTemplateSurveySpec._validate_spec_data)."""
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(spec.get(field), kind):
            errors.append("%s missing or not a %s" % (field, kind.__name__))
    if errors or not spec["spec"]:
        return errors or ["spec has no question"]
    seen = set()
    for idx, q in enumerate(spec["spec"]):
        if not isinstance(q, dict):
            errors.append("question %d is not an object" % idx)
            continue
        for field in ("type", "question_name", "variable", "required"):
            if not isinstance(q.get(field), bool if field == "required" else str):
                errors.append("question %d: %s missing or of the wrong type" % (idx, field))
        if q.get("variable") in seen:
            errors.append("question %d: variable %s twice" % (idx, q.get("variable")))
        seen.add(q.get("variable"))
        if q.get("type") not in SURVEY_TYPES:
            errors.append("question %d: unknown type %r" % (idx, q.get("type")))
            continue
        if q.get("default", "") != "" and not isinstance(q["default"], SURVEY_TYPES[q["type"]]):
            errors.append("question %d: default of the wrong type" % idx)
        for key in ("min", "max"):
            if q.get(key) is not None and not isinstance(q[key], int):
                errors.append("question %d: %s is not an integer" % (idx, key))
        if q["type"] in ("multiplechoice", "multiselect"):
            if "choices" not in q:
                errors.append("question %d: no choices" % idx)
                continue
            choices = q["choices"].splitlines() if isinstance(q["choices"], str) else q["choices"]
            defaults = q["default"].splitlines() if isinstance(q.get("default"), str) else q.get("default") or []
            if q["type"] == "multiplechoice" and len(defaults) > 1:
                errors.append("question %d: more than one default" % idx)
            if any(d not in choices for d in defaults):
                errors.append("question %d: a default that is not a choice" % idx)
    return errors


@pytest.fixture(scope="module")
def survey():
    with open(SURVEY_FILE) as f:
        return json.load(f)


def _yes_no(question):
    return question["type"] == "multiplechoice" and sorted(question["choices"]) == ["false", "true"]


def test_awx_accepts_the_survey(survey):
    assert survey_errors(survey) == []


def test_the_survey_check_finds_what_awx_refuses(survey):
    bad = json.loads(json.dumps(survey))
    [q for q in bad["spec"] if _yes_no(q)][0]["default"] = "yes"
    bad["spec"].append(dict(bad["spec"][0], required="true"))
    bad["spec"].append({"question_name": "x", "variable": "y", "type": "boolean", "required": False})
    assert len(survey_errors(bad)) == 4, survey_errors(bad)


def test_every_survey_answer_is_documented(survey):
    with open(os.path.join(ROOT, "docs", "awx.md")) as f:
        doc = f.read()
    for q in survey["spec"]:
        assert "`%s`" % q["variable"] in doc, q["variable"]


CONDITIONS = ("when", "failed_when", "changed_when", "until")
BOOL_FILTERS = ("bool", "ansible.builtin.bool")
DEFAULT_FILTERS = ("default", "d", "ansible.builtin.default")
INCLUDES = ("import_tasks", "include_tasks", "import_playbook", "ansible.builtin.import_tasks",
            "ansible.builtin.include_tasks", "ansible.builtin.import_playbook")
TRUTH_TESTS = ("truthy", "falsy", "ansible.builtin.truthy", "ansible.builtin.falsy")
PREFIX = "kvmfusion_maintenance_"


def _expressions(node, where, out):
    """Every Jinja expression of a playbook as (where, template source); conditions as ``{{ condition }}``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CONDITIONS or (key == "that" and isinstance(value, (str, list))):
                for cond in value if isinstance(value, list) else [value]:
                    if isinstance(cond, str):
                        out.append((where, "{{ %s }}" % cond))
            else:
                _expressions(value, where, out)
    elif isinstance(node, list):
        for item in node:
            _expressions(item, where, out)
    elif isinstance(node, str) and ("{{" in node or "{%" in node):
        out.append((where, node))


def _files_of(path, base, seen):
    """The playbook and the task, playbook and vars files it names literally (relative to ``base``)."""
    if path in seen or not os.path.exists(path):
        return
    seen.append(path)

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                names = []
                if key in INCLUDES:
                    names = [value.get("file") if isinstance(value, dict) else value]
                elif key == "vars_files":
                    names = value if isinstance(value, list) else [value]
                for name in names:
                    if isinstance(name, str) and "{{" not in name:
                        _files_of(os.path.normpath(os.path.join(base, name)), base, seen)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(_load(path))


def _reads(playbook):
    """Each read of a ``kvmfusion_maintenance_*`` variable in ``playbook`` and the files it names:
    {variable: [(where, under a bool filter, the constant its default() gives or None)]}, and the constants
    play-level ``vars`` give them."""
    files = []
    _files_of(playbook, os.path.dirname(playbook), files)
    exprs, play_vars = [], {}
    for path in files:
        data = _load(path)
        _expressions(data, os.path.relpath(path, os.path.dirname(playbook)), exprs)
        for play in data if isinstance(data, list) else []:
            for name, value in ((play or {}).get("vars") or {}).items():
                if name.startswith(PREFIX) and "{{" not in str(value):
                    play_vars[name] = value
    reads = {}

    def walk(node, under_bool, where):
        if isinstance(node, nodes.Filter):
            if node.name in DEFAULT_FILTERS and isinstance(node.node, nodes.Name) and \
                    node.node.name.startswith(PREFIX) and node.args and isinstance(node.args[0], nodes.Const):
                reads.setdefault(node.node.name, []).append((where, under_bool, node.args[0].value))
                return
            under_bool = under_bool or node.name in BOOL_FILTERS
        if isinstance(node, nodes.Test) and node.name not in TRUTH_TESTS:
            # "is defined", "is string": what the test answers does not depend on reading "false" as true
            walk(node.node, True, where)
            for child in node.args:
                walk(child, under_bool, where)
            return
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name.startswith(PREFIX):
            reads.setdefault(node.name, []).append((where, under_bool, None))
        for child in node.iter_child_nodes():
            walk(child, under_bool, where)

    env = Environment()
    for where, source in exprs:
        walk(env.parse(source), False, where)
    return reads, play_vars


def survey_problems(survey, playbook):
    """How the survey and the playbook disagree: variables read but not asked for, asked for but not read, yes/no
    answers read without ``| bool`` (AWX passes the string "true" or "false": a string in a condition is an error
    on ansible-core 2.19, and "false" is a true string), and defaults that differ."""
    reads, play_vars = _reads(playbook)
    asked = {q["variable"]: q for q in survey["spec"]}
    problems = {
        "not asked": sorted(set(reads) - set(asked)),
        "not read": sorted(set(asked) - set(reads)),
        "without bool": sorted("%s in %s" % (name, where) for name, q in asked.items() if _yes_no(q)
                               for where, under_bool, _default in reads.get(name, []) if not under_bool),
        "other default": [],
    }
    for name, q in asked.items():
        if q["required"] and not _yes_no(q):
            continue
        given = {default for _where, _under_bool, default in reads.get(name, []) if default is not None}
        if name in play_vars:
            given.add(play_vars[name])
        answer = {"true": True, "false": False}[q["default"]] if _yes_no(q) else q["default"]
        problems["other default"].extend("%s: %r, survey %r" % (name, d, q["default"]) for d in sorted(given, key=str)
                                         if d != answer and d != q["default"])
    return problems


def test_the_survey_checks_find_what_they_are_for(survey, tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "more.yml").write_text("- ansible.builtin.debug: {msg: '{{ kvmfusion_maintenance_extra }}'}\n")
    playbook = tmp_path / "maintenance.yml"
    playbook.write_text(textwrap.dedent("""\
        - name: Maintenance
          hosts: "{{ kvmfusion_maintenance_host }}"
          vars:
            __upgrade: "{{ kvmfusion_maintenance_upgrade | default(false) | bool }}"
          tasks:
            - name: More
              ansible.builtin.import_tasks: tasks/more.yml
            - name: Reboot
              ansible.builtin.reboot: {}
              when: kvmfusion_maintenance_reboot | default(false)
            - name: Return
              ansible.builtin.debug: {}
              when: kvmfusion_maintenance_return is defined and kvmfusion_maintenance_return | bool
        """))
    assert survey_problems(survey, str(playbook)) == {
        "not asked": ["kvmfusion_maintenance_extra"],
        "not read": ["kvmfusion_maintenance_reason"],
        "without bool": ["kvmfusion_maintenance_reboot in maintenance.yml"],
        "other default": ["kvmfusion_maintenance_upgrade: False, survey 'true'"],
    }


@pytest.mark.skipif(not os.path.exists(MAINTENANCE), reason="playbooks/maintenance.yml does not exist yet: the "
                                                            "survey is checked against it once it does")
def test_the_survey_asks_exactly_what_maintenance_yml_reads(survey):
    assert survey_problems(survey, MAINTENANCE) == {"not asked": [], "not read": [], "without bool": [],
                                                    "other default": []}


def test_the_job_template_runs_maintenance_yml_with_the_survey():
    tasks = _load(os.path.join(ROOT, "awx", "configure.yml"))[0]["tasks"]
    template = [t["awx.awx.job_template"] for t in tasks if "awx.awx.job_template" in t]
    assert len(template) == 1
    assert template[0]["playbook"] == "playbooks/maintenance.yml"
    assert template[0]["survey_enabled"] is True
    assert os.path.basename(SURVEY_FILE) in template[0]["survey_spec"]
    assert template[0]["ask_limit_on_launch"] is False
