"""The exit-codes reference: the error family (`automl.errors.ClassieError` and every class of the packages that
derives from it, found in their source without importing the model's libraries) grouped by the `exit_code` each
declares or inherits; the one place the command line maps them; the other exits its code makes; which errors the
polling worker outlives; and what the container's restart policy and health check do with them."""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reference_pages.markdown import code, definition, first_sentence, heading, inline, paragraphs, table
from reference_pages.source import (
    PACKAGES,
    ROOT,
    comments_above_and_beside,
    module_name,
    modules,
    name_comment,
    parse,
    text_of,
)

__all__ = ["ErrorClass", "family", "literal_exits", "page"]

CLI = ROOT / "service" / "app" / "cli.py"
# What Docker does with a container's exit under each restart policy (Docker's documentation, "Restart policies").
RESTART_POLICIES = {
    "no": "never restarts it",
    "always": "restarts it whatever its exit code (0 too), also after the engine restarts",
    "unless-stopped": "restarts it whatever its exit code (0 too), unless it was stopped by hand",
    "on-failure": "restarts it when its exit code is not 0",
}


@dataclass(frozen=True)
class ErrorClass:
    name: str  # module.Class
    bases: tuple[str, ...]  # resolved, in order (classes outside the packages as their names)
    own_code: int | None  # its own `exit_code = N`
    doc: str


def _imports(tree: ast.Module, module: str) -> dict[str, str]:
    """Local name -> the qualified name it was imported as (top-level imports)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            found.update({a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                          for a in node.names})
    return found


def _classes() -> Iterator[ErrorClass]:
    for package in PACKAGES:
        for path in modules(package):
            module = module_name(path)
            tree = parse(path)
            names = _imports(tree, module)
            local = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
            for node in tree.body:
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = []
                for base in node.bases:
                    text = ast.unparse(base)
                    head, _, rest = text.partition(".")
                    bases.append(f"{module}.{text}" if text in local
                                 else names[head] + (f".{rest}" if rest else "") if head in names else text)
                own = next((s.value.value for s in node.body if isinstance(s, ast.Assign)
                            and any(isinstance(t, ast.Name) and t.id == "exit_code" for t in s.targets)
                            and isinstance(s.value, ast.Constant) and isinstance(s.value.value, int)), None)
                yield ErrorClass(f"{module}.{node.name}", tuple(bases), own, ast.get_docstring(node) or "")


def family() -> dict[str, tuple[ErrorClass, int]]:
    """Every class of the error family, module.Class -> (the class, its exit code: its own or the nearest
    ancestor's, in the order of its bases)."""
    from automl.errors import ClassieError

    root = f"{ClassieError.__module__}.{ClassieError.__qualname__}"
    classes = {c.name: c for c in _classes()}

    def code_of(name: str) -> int | None:
        found = classes.get(name)
        if found is None:
            return None
        if found.own_code is not None:
            return found.own_code
        return next((c for c in (code_of(b) for b in found.bases) if c is not None), None)

    def derives(name: str) -> bool:
        return name == root or any(derives(b) for b in classes[name].bases if b in classes)

    out = {}
    for name, found in classes.items():
        exit_code = code_of(name)
        if derives(name) and exit_code is not None:
            out[name] = (found, exit_code)
    return out


def ancestors(name: str, classes: dict[str, tuple[ErrorClass, int]]) -> set[str]:
    found = {name}
    for base in classes[name][0].bases if name in classes else ():
        found |= ancestors(base, classes)
    return found


@dataclass(frozen=True)
class LiteralExit:
    codes: tuple[int, ...]
    function: str
    handler: str  # the exception an enclosing `except` catches, "" when none
    guarded: str  # the first statement of that `try`, and the comments beside it
    mapping: bool  # exits with an error's own exit_code: the family's one mapping


def literal_exits(path: Path = CLI) -> list[LiteralExit]:
    """Every `typer.Exit(...)`, `sys.exit(...)` or `raise SystemExit(...)` in the command line, with the codes it
    names (both arms of a conditional), the function it is in, and the exception it handles."""
    found = []
    for function in ast.walk(parse(path)):
        if not isinstance(function, ast.FunctionDef):
            continue
        handlers = {n: (t, h) for t in ast.walk(function) if isinstance(t, ast.Try) for h in t.handlers
                    for n in ast.walk(h)}
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("typer.Exit", "sys.exit", "SystemExit",
                                                                          "Exit", "exit") and node.args:
                argument = node.args[0]
                codes = tuple(c.value for c in ast.walk(argument) if isinstance(c, ast.Constant)
                              and isinstance(c.value, int) and not isinstance(c.value, bool))
                mapping = isinstance(argument, ast.Attribute) and argument.attr == "exit_code"
                handler, guarded = "", ""
                if node in handlers:
                    attempt, caught = handlers[node]
                    handler = ast.unparse(caught.type) if caught.type else "any exception"
                    comment = comments_above_and_beside(path, attempt.body[0], attempt.body[0])
                    guarded = code(ast.unparse(attempt.body[0])) + (f" ({inline(comment)})" if comment else "")
                found.append(LiteralExit(codes, function.name, handler, guarded, mapping))
    return found


def _family_list(classes: dict[str, tuple[ErrorClass, int]], outlived: set[str]) -> str:
    """Each exit code: what the classes that declare it say, then every error with it, split by whether the
    polling worker goes on after it."""
    items = []
    for exit_code in sorted({c for _, c in classes.values()}):
        declaring = [c for c, n in classes.values() if n == exit_code and c.own_code == exit_code]
        meaning = " ".join(f"{code(c.name.rsplit('.', 1)[1])}: " + inline(first_sentence(c.doc)) for c in declaring)
        members = sorted((c.name for c, n in classes.values() if n == exit_code))
        goes_on = [m for m in members if ancestors(m, classes) & outlived]
        stops = [m for m in members if m not in goes_on]
        said = [meaning]
        said += ["Stops the polling worker: " + ", ".join(code(m) for m in stops) + "."] if stops else []
        said += ["The polling worker logs it and goes on: " + ", ".join(code(m) for m in goes_on) + "."] \
            if goes_on else []
        items.append(definition(f"Exit {code(exit_code)}", *said))
    return "\n\n".join(items)


def _container() -> str:
    import yaml

    compose = yaml.safe_load(text_of(ROOT / "docker" / "compose.yaml"))
    dockerfile = text_of(ROOT / "docker" / "Dockerfile")
    default_command = json.loads(next((line[4:] for line in dockerfile.splitlines() if line.startswith("CMD ")),
                                      "[]"))
    lines = []
    for name, service in compose.get("services", {}).items():
        if "build" not in service or "entrypoint" in service:  # another image, or another program than the service
            continue
        policy = str(service.get("restart", "no"))
        command = "classie-automl " + " ".join(service.get("command") or default_command)
        lines.append(f"- {code(name)} ({code(command)}): `restart: {policy}`: Docker "
                     + RESTART_POLICIES.get(policy, "applies its own rule") + ".")
        for other, condition in (service.get("depends_on") or {}).items():
            if isinstance(condition, dict) and condition.get("condition") == "service_completed_successfully":
                lines.append(f"  It starts only once {code(other)} has exited 0.")
    health = next((line for line in dockerfile.splitlines() if line.startswith("HEALTHCHECK")), "")
    said = ["In `docker/compose.yaml`:", "\n".join(lines)]
    if health:
        said.append(f"The image's health check (`docker/Dockerfile`): {code(health)}. Docker runs it in the"
                    " container and counts an exit other than 0 as a failed check; after the retries the container"
                    " is marked unhealthy (Docker does not restart it for that; an orchestrator may).")
    return "\n\n".join(said)


def page() -> str:
    import typer

    from automl import errors
    from service.app import polling

    classes = family()
    outlived = {f"{c.__module__}.{c.__qualname__}" for c in polling.RECOVERABLE}
    exits = literal_exits()
    mapping = next(e for e in exits if e.mapping)
    others = [e for e in exits if not e.mapping]
    rows = [[", ".join(code(c) for c in e.codes), code(e.function),
             f"{code(e.handler)} from {e.guarded}." if e.handler else inline(first_sentence(_doc(e.function)))]
            for e in others]
    rows.append([code(typer.BadParameter.exit_code), "the command-line parser",
                 "A command line it cannot parse: an unknown command or option, a value of the wrong type or out of"
                 " bounds (it prints the usage and the problem)."])
    rows.append([code(0), "every command", "It ended without error."])
    return "\n\n".join([
        heading(1, "Exit codes", "reference-exit-codes"),
        "Generated from the code at each build (`automl/errors.py` and the classes derived from its"
        " `ClassieError`, `service/app/cli.py`, `service/app/polling.py`, `docker/`).",
        heading(2, "The error family", "exit-codes-family"),
        paragraphs(inspect.getdoc(errors) or ""),
        f"That place is {code(mapping.function)} in `service/app/cli.py`: " + inline(_doc(mapping.function))
        + " An error outside the family is a bug: Python prints its traceback and exits 1.",
        _family_list(classes, outlived),
        heading(2, "Other exits", "exit-codes-other"),
        table(["Exit", "Where", "When"], rows),
        heading(2, "The polling worker", "exit-codes-polling"),
        "`run` without `--once` repeats its cycle; a cycle that fails with one of these errors (or an error derived"
        " from one) is logged and counted, and the next cycle tries again (`service.app.polling.RECOVERABLE`): "
        + ", ".join(code(n) for n in sorted(outlived)) + ". " + inline(name_comment(Path(polling.__file__),
                                                                              "RECOVERABLE"))
        + " Any other error ends the worker with its exit code.",
        heading(2, "In a container", "exit-codes-container"),
        _container()]) + "\n"


def _doc(function: str) -> str:
    from service.app import cli

    return inspect.getdoc(getattr(cli, function)) or ""
