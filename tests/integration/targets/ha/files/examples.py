# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""examples.py MODULE_FILE OUT VM: the module's EXAMPLES block as a tasks file, its VM db1 named VM.

The ha module's examples need an HA cluster, which only the ha target forms: it runs them from here (the
examples test, tests/integration/test_examples.py, leaves them to it). Each task is named "EXAMPLE ha: ...".
"""

import ast
import sys

import yaml


def main():
    path, out, vm = sys.argv[1:4]
    with open(path) as f:
        tree = ast.parse(f.read())
    text = next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "EXAMPLES")
    tasks = yaml.safe_load(text.replace("name: db1", "name: " + vm))
    for t in tasks:
        t["name"] = "EXAMPLE ha: " + t["name"]
    with open(out, "w") as f:
        yaml.safe_dump(tasks, f, sort_keys=False)


if __name__ == "__main__":
    main()
