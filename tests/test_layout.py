"""The code's shape that the layout promises: dependencies point service -> connectors -> automl, the connectors
and the command line load without the numerical stack, and functions stay short."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from conftest import ROOT

LAYERS = {"automl": set(), "connectors": {"automl"}, "service": {"automl", "connectors"}}
# Inside the service, each subpackage may use those before it; the service's own top-level modules (settings, stop
# requests) may be used by all and use none.
SERVICE_LAYERS = ("store", "quality", "cycle", "app")
MAX_FUNCTION_LINES = 60


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _modules(package: str):
    for path in _files(package):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _imported(path: Path, tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, type-hint and function-level imports included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package, up `level - 1` packages
                package = _module_name(path).split(".")[:None if path.name == "__init__.py" else -1]
                base = ".".join([*package[:len(package) - node.level + 1], *([base] if base else [])])
            found += [(node.lineno, base), *((node.lineno, f"{base}.{a.name}") for a in node.names)]
    return found


def test_the_walk_covers_every_module_of_every_subpackage():
    """The rules below read what _modules walks: a subpackage it missed would escape them all."""
    walked = {path for package in LAYERS for path, _ in _modules(package)}
    on_disk = {Path(folder) / name for package in LAYERS for folder, _, names in os.walk(ROOT / package)
               for name in names if name.endswith(".py")}
    assert walked == on_disk
    subpackages = {p.parent.name for p in walked if p.parent.parent == ROOT / "service"}
    assert subpackages == set(SERVICE_LAYERS), f"place each service subpackage in SERVICE_LAYERS: {subpackages}"


def test_dependencies_point_one_way():
    wrong = []
    for package, allowed in LAYERS.items():
        for path, tree in _modules(package):
            for line, name in _imported(path, tree):
                top = name.split(".")[0]
                if top in LAYERS and top != package and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, wrong


def _service_layer(module: str) -> int:
    """-1 for the service's top-level modules, else the place of the module's subpackage in SERVICE_LAYERS."""
    parts = module.split(".")
    return SERVICE_LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in SERVICE_LAYERS else -1


def test_the_service_subpackages_lean_only_on_those_before_them():
    wrong = []
    for path, tree in _modules("service"):
        here = _service_layer(_module_name(path))
        for line, name in _imported(path, tree):
            parts = name.split(".")
            if parts[0] == "service" and len(parts) > 1 and parts[1] in SERVICE_LAYERS and len(parts) > 2:
                if _service_layer(name) > here:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name} (a later layer: "
                                 f"{' -> '.join(SERVICE_LAYERS)})")
    assert not wrong, wrong


def test_no_import_cycle():
    """Among the project's modules, every import counted (type-hint imports too: a reader follows them as well)."""
    names = {_module_name(path) for package in LAYERS for path in _files(package)}
    graph = {_module_name(path): {name for _line, name in _imported(path, tree) if name in names
                                  and name != _module_name(path)}
             for package in LAYERS for path, tree in _modules(package)}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"an import cycle: {' -> '.join(exc.args[1])}") from None


def test_no_function_is_longer_than_the_limit():
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for package in LAYERS for path, tree in _modules(package) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_the_records_connectors_and_command_line_load_without_the_numerical_stack():
    code = ("import sys, connectors.base, connectors.files, connectors.label_studio, service.app.cli, service.config;"
            " print(sorted({m.split('.')[0] for m in sys.modules} & {'autosklearn', 'sklearn', 'numpy', 'kili'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
