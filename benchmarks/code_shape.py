"""The code's shape, as someone who carries it on sees it: files per folder, import arrows among the service's
modules and the cycles they close (type-hint imports included: they are arrows a reader follows too), the classes with
the most methods, and the functions over 40 lines.

    .venv/bin/python benchmarks/code_shape.py [--root DIR] [--json]

`--root` reads another checkout (e.g. `git worktree add /tmp/before <commit>`), to compare before and after.
"""

from __future__ import annotations

import argparse
import ast
import json
from collections import Counter
from pathlib import Path

PACKAGES = ("automl", "connectors", "service")
LONG_FUNCTION = 40


def modules(root: Path, package: str) -> dict[str, ast.Module]:
    """{dotted name: tree} of every module under `package`."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` imports, wherever the import stands."""
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")[: -node.level] if node.level else []
                base = ".".join([*parent, base] if base else parent)
            candidates = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        targets |= {c for c in candidates if c in known and c != name}
    return targets


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def depth(graph: dict[str, set[str]]) -> int:
    """The longest chain of imports (in modules), cycles cut where they close."""
    memo: dict[str, int] = {}

    def longest(node: str, seen: frozenset[str]) -> int:
        if node in memo:
            return memo[node]
        below = [longest(t, seen | {node}) for t in graph.get(node, ()) if t not in seen]
        memo[node] = 1 + max(below, default=0)
        return memo[node]

    return max((longest(n, frozenset()) for n in graph), default=0)


def shape(root: Path) -> dict:
    trees = {name: tree for package in PACKAGES for name, tree in modules(root, package).items()}
    folders = Counter(str(path.parent.relative_to(root)) for package in PACKAGES
                      for path in (root / package).rglob("*.py"))
    packages = {".".join(path.relative_to(root).parent.parts) for package in PACKAGES
                for path in (root / package).rglob("__init__.py")}
    service = {n for n in trees if n.split(".")[0] == "service" and n not in packages}
    graph = {n: imports(n, trees[n], service) for n in service}
    automl = {n for n in trees if n.split(".")[0] == "automl" and n not in packages}
    automl_graph = {n: imports(n, trees[n], automl) for n in automl}
    # Between roles: the arrows that cross from one of service's subpackages to another (a flat service has none).
    role = {n: n.split(".")[1] if f"service.{n.split('.')[1]}" in packages else "(top)" for n in service}
    between = Counter(f"{role[s]} -> {role[t]}" for s, targets in graph.items() for t in targets if role[s] != role[t])
    classes = sorted(((sum(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) for b in node.body),
                       f"{name}.{node.name}") for name, tree in trees.items() for node in ast.walk(tree)
                      if isinstance(node, ast.ClassDef)), reverse=True)
    long_functions = sorted((node.end_lineno - node.lineno + 1, f"{name}.{node.name}")
                            for name, tree in trees.items() for node in ast.walk(tree)
                            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                            and node.end_lineno - node.lineno + 1 > LONG_FUNCTION)
    return {
        "files_per_folder": dict(sorted(folders.items())),
        "service_import_arrows": sum(len(t) for t in graph.values()),
        "service_import_depth": depth(graph),
        "service_import_cycles": cycles(graph),
        "service_modules": len(service),
        "service_arrows_between_roles": dict(sorted(between.items())),
        "automl_import_cycles": cycles(automl_graph),
        "largest_classes": [f"{n} methods: {c}" for n, c in classes[:6]],
        "functions_over_40_lines": [f"{n} lines: {f}" for n, f in sorted(long_functions, reverse=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    found = shape(args.root)
    if args.json:
        print(json.dumps(found, indent=1))
        return
    for key, value in found.items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"  {item}")
        elif isinstance(value, dict):
            print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        else:
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
