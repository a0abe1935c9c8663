"""The code's shape that the layout promises: dependencies point service -> connectors -> automl, the connectors
and the command line load without the numerical stack, and functions stay short."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

LAYERS = {"automl": set(), "connectors": {"automl"}, "service": {"automl", "connectors"}}
MAX_FUNCTION_LINES = 60


def _modules(package: str):
    for path in sorted((ROOT / package).glob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def test_dependencies_point_one_way():
    wrong = []
    for package, allowed in LAYERS.items():
        for path, tree in _modules(package):
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for name in names:
                    top = name.split(".")[0]
                    if top in LAYERS and top != package and top not in allowed:
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not wrong, wrong


def test_no_function_is_longer_than_the_limit():
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for package in LAYERS for path, tree in _modules(package) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_the_records_connectors_and_command_line_load_without_the_numerical_stack():
    code = ("import sys, connectors.base, connectors.files, connectors.label_studio, service.cli, service.config;"
            " print(sorted({m.split('.')[0] for m in sys.modules} & {'autosklearn', 'sklearn', 'numpy', 'kili'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
