"""What the code says about itself without running it: modules and their docstrings, the comments beside a class's
fields or a module's names, the environment variables a module reads, and a file's header."""

from __future__ import annotations

import ast
import functools
import inspect
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "EnvRead", "comments_above_and_beside", "env_reads", "field_comments", "header", "module_name",
           "modules", "parse", "sentence_naming", "text_of"]

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("automl", "connectors", "service")  # the code, in the order its dependencies point


def modules(package: str, root: Path = ROOT) -> list[Path]:
    """Every module of `package` (a folder under `root`), its subpackages' included, sorted."""
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


@functools.cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@functools.cache
def _comments(path: Path) -> dict[int, tuple[str, bool]]:
    """Line -> (comment text, whether the line holds nothing else)."""
    found = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for token in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if token.type == tokenize.COMMENT:
            line = token.start[0]
            alone = not lines[line - 1][:token.start[1]].strip()
            found[line] = (token.string.lstrip("#").strip(), alone)
    return found


def comments_above_and_beside(path: Path, node: ast.stmt, beside: ast.AST | None = None) -> str:
    """The comment lines right above `node` (no blank line between) and the comments at the end of its lines (of
    the lines of `beside` instead, when given: a part of a compound statement)."""
    comments = _comments(path)
    above: list[str] = []
    line = node.lineno - 1
    while line in comments and comments[line][1]:
        above.insert(0, comments[line][0])
        line -= 1
    span = beside or node
    end = getattr(span, "end_lineno", None) or span.lineno  # type: ignore[attr-defined]
    after = [comments[n][0] for n in range(span.lineno, end + 1)  # type: ignore[attr-defined]
             if n in comments and not comments[n][1]]
    return " ".join(above + after)


def _class_node(cls: type) -> tuple[Path, ast.ClassDef]:
    path = Path(inspect.getfile(cls))
    for node in parse(path).body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return path, node
    raise LookupError(f"{path}: no class {cls.__name__} at the top level of its module")


def field_comments(cls: type) -> dict[str, str]:
    """Each field that `cls` itself declares (`name: type = ...`), with the comments above and beside it."""
    path, node = _class_node(cls)
    return {stmt.target.id: comments_above_and_beside(path, stmt) for stmt in node.body
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)}


def function_comment(function: object) -> str:
    """A function's docstring, else the comments at the top of its body."""
    doc = inspect.getdoc(function)
    if doc:
        return doc
    path = Path(inspect.getfile(function))  # type: ignore[arg-type]
    lines, first = inspect.getsourcelines(function)  # type: ignore[arg-type]
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == getattr(function, "__name__", "") \
                and first <= node.lineno < first + len(lines):
            return comments_above_and_beside(path, node.body[0])
    return ""


def sentence_naming(text: str, name: str) -> str:
    """The first sentence of `text` that names `name`; "" when none does."""
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        if re.search(rf"\b{re.escape(name)}\b", sentence):
            return sentence
    return ""


def name_comment(module_path: Path, name: str) -> str:
    """The comments above and beside the top-level assignment of `name` in a module."""
    for node in parse(module_path).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return comments_above_and_beside(module_path, node)
    raise LookupError(f"{module_path}: no top-level assignment of {name}")


def literal(module_path: Path, name: str) -> object:
    """The value of a top-level assignment of a literal, read without importing the module."""
    for node in parse(module_path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{module_path}: no top-level literal {name}")


@dataclass(frozen=True)
class EnvRead:
    """An environment variable read by the code: where, the default given there, and how."""

    name: str
    module: str
    function: str  # "" at module level
    default: str | None  # the second argument of a .get(), when a literal
    how: str  # "read", "option" (a command-line option's envvar) or "set when unset" (os.environ.setdefault)
    path: Path
    comment: str  # the comments above and beside the statement that reads it


def _owners(tree: ast.Module) -> dict[ast.AST, tuple[str, ast.stmt | None]]:
    """Each node -> (the function it is in, "" at module level; the innermost statement that holds it)."""
    owner: dict[ast.AST, tuple[str, ast.stmt | None]] = {}

    def visit(node: ast.AST, name: str, statement: ast.stmt | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else name
            held = child if isinstance(child, ast.stmt) else statement
            owner[child] = (inner, held)
            visit(child, inner, held)

    visit(tree, "", None)
    return owner


def _is_environ(node: ast.AST) -> bool:
    """`os.environ`, or a name or parameter called `environ` (the code passes the environment so)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def env_reads(path: Path, root: Path = ROOT) -> Iterator[EnvRead]:
    """Every variable name the module reads from the environment as a literal: `environ.get("X", default)`,
    `os.environ["X"]`, `os.getenv("X")`, `os.environ.setdefault("X", ...)`, and a Typer option's `envvar="X"`."""
    tree = parse(path)
    owner = _owners(tree)
    module = module_name(path, root)
    for node in ast.walk(tree):
        found: tuple[ast.AST, ast.AST | None, str] | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr == "get" and _is_environ(node.func.value):
                found = (node.args[0], node.args[1] if len(node.args) > 1 else None, "read")
            elif node.func.attr == "setdefault" and _is_environ(node.func.value):
                found = (node.args[0], None, "set when unset")
            elif node.func.attr == "getenv":
                found = (node.args[0], node.args[1] if len(node.args) > 1 else None, "read")
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            found = (node.slice, None, "read")
        elif isinstance(node, ast.keyword) and node.arg == "envvar":
            found = (node.value, None, "option")
        if found and isinstance(found[0], ast.Constant) and isinstance(found[0].value, str):
            default = found[1].value if isinstance(found[1], ast.Constant) else None
            function, statement = owner.get(node, ("", None))
            comment = comments_above_and_beside(path, statement, node) if statement is not None else ""
            yield EnvRead(found[0].value, module, function, None if default is None else str(default), found[2],
                          path, comment)


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def header(path: Path) -> str:
    """What a file says it is: a Python module's docstring, the title of a Markdown file, or the first comment
    block of a script or configuration file (after its #! line); "" when it says nothing."""
    if path.suffix == ".py":
        try:
            return ast.get_docstring(parse(path)) or ""
        except SyntaxError:
            return ""
    if path.suffix == ".md":
        title = re.search(r"^# (.+)$", text_of(path), re.MULTILINE)
        return title.group(1) if title else ""
    lines = text_of(path).splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    block = []
    for line in lines:
        if not line.startswith("#"):
            break
        block.append(line.lstrip("#").strip())
    return " ".join(block)
