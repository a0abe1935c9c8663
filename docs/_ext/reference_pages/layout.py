"""The layout reference: the map of the code, each package and module said by the first sentence of its
docstring; the rules of its shape as tests/test_layout.py holds them; and the other folders' files, each said by its
own header (a docstring, a title, a first comment)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from reference_pages.markdown import code, first_sentence, heading, inline, table
from reference_pages.source import PACKAGES, ROOT, header, literal, modules

__all__ = ["files", "package_rows", "page"]

LAYOUT_TEST = ROOT / "tests" / "test_layout.py"
# Files whose header is read (others are listed by name): code, scripts, configuration, pages.
_TEXT_SUFFIXES = {".py", ".sh", ".md", ".yaml", ".yml", ".toml", ".in", ".txt", ".env", ".example", ".cfg", ""}
SITE = "docs"
_SKIPPED_PARTS = {"__pycache__", ".git", ".venv", ".ls-venv", "node_modules"}


def files(root: Path = ROOT) -> list[Path]:
    """The project's files: those git tracks or would (its ignore rules applied), else every file but the
    environments' and caches'."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                                capture_output=True, check=True, text=True).stdout.split("\0")
        return sorted(root / name for name in listed if name and (root / name).is_file())
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in root.rglob("*") if p.is_file() and not _SKIPPED_PARTS & set(p.parts))


def package_rows(package: Path) -> list[list[str]]:
    """A package folder's modules (its __init__ said above them), each with the first sentence of its docstring."""
    rows = []
    for path in sorted(p for p in package.glob("*.py") if p.name != "__init__.py"):
        rows.append([code(path.name), inline(first_sentence(header(path))) or "(no docstring)"])
    return rows


def _packages() -> list[str]:
    parts = []
    for package in PACKAGES:
        folders = sorted({p.parent for p in modules(package)}, key=lambda p: (len(p.parts), p.name))
        for folder in folders:
            relative = folder.relative_to(ROOT).as_posix()
            level = 2 if folder.parent == ROOT else 3
            parts.append(heading(level, code(relative + "/"), "layout-" + relative.replace("/", "-")))
            parts.append(inline(first_sentence(header(folder / "__init__.py"))))
            parts.append(table(["Module", "What it holds"], package_rows(folder)))
    return parts


def _rules() -> str:
    layers = literal(LAYOUT_TEST, "LAYERS")
    service_layers = literal(LAYOUT_TEST, "SERVICE_LAYERS")
    longest = literal(LAYOUT_TEST, "MAX_FUNCTION_LINES")
    assert isinstance(layers, dict) and isinstance(service_layers, tuple)
    uses = "; ".join(f"{code(name)} uses " + (", ".join(code(u) for u in sorted(used)) if used else "no other")
                     for name, used in layers.items())
    return (f"Dependencies point one way: {uses}. Inside `service/`, each subpackage uses only those before it in"
            f" {', '.join(code(s) for s in service_layers)}, and the service's own top-level modules may be used by"
            f" all. No import closes a cycle and no function is longer than {longest} lines. `tests/test_layout.py`"
            " checks these rules; this page reads them from it.")


def _folder_section(name: str, found: Iterable[Path]) -> str:
    said, quiet = [], []
    for path in found:
        relative = path.relative_to(ROOT / name) if name else path.relative_to(ROOT)
        text = header(path) if path.suffix in _TEXT_SUFFIXES or path.name.endswith("Dockerfile") else ""
        if text and not path.name.endswith(".csv"):
            said.append([code(relative.as_posix()), inline(first_sentence(text))])
        else:
            quiet.append(code(relative.as_posix()))
    parts = [heading(3, code(name + "/") if name else "The root", "layout-" + (name.strip(".") or "root"))]
    if said:
        parts.append(table(["File", "What it is"], said))
    if quiet:
        parts.append("Also: " + ", ".join(quiet) + ".")
    return "\n\n".join(parts)


def page() -> str:
    others: dict[str, list[Path]] = {}
    for path in files():
        top = path.relative_to(ROOT).parts
        folder = top[0] if len(top) > 1 else ""
        if folder == SITE and path.suffix == ".md":  # the site's own pages: its navigation maps them
            continue
        if folder not in PACKAGES:
            others.setdefault(folder, []).append(path)
    sections = [_folder_section(name, others[name]) for name in sorted(others, key=lambda n: (n == "", n))]
    return "\n\n".join([
        heading(1, "Layout", "reference-layout"),
        "Generated from the code at each build: each package and module, said by the first sentence of its"
        " docstring; then every other folder's files, each said by its own header (a module's docstring, a page's"
        " title, a script's first comment).",
        _rules(), *_packages(),
        heading(2, "Other folders", "layout-other-folders"), *sections]) + "\n"
