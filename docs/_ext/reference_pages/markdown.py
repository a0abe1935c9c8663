"""Markdown for MyST, written safely: text from docstrings, comments and help strings escaped (its `code spans`
kept), tables, headings with their labels, and the first sentence of a text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["code", "definition", "first_sentence", "heading", "inline", "paragraphs", "table"]

# Characters that MyST could read as markup in running text: emphasis, links, raw HTML, table cells, roles.
_SPECIAL = re.compile(r"([\\*_\[\]<>|{}#])")
_CODE_SPAN = re.compile(r"(`[^`]+`)")
# A command-line option named in running text: shown as code (Sphinx's smart quotes would make its -- a dash).
_OPTION = re.compile(r"(?<![\w`-])(--[a-z][\w-]*)")
# Abbreviations whose full stop ends no sentence.
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.")


def escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text)


def inline(text: str) -> str:
    """`text` on one line, escaped, its `code spans` kept as code (docstrings and help use them so)."""
    text = " ".join(text.split())
    return "".join(part if _CODE_SPAN.fullmatch(part) else _OPTION.sub(r"`\1`", escape(part))
                   for part in _CODE_SPAN.split(text))


def paragraphs(text: str) -> str:
    """A docstring or help text as Markdown paragraphs (blank lines part them; each is joined into one line)."""
    blocks = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(inline(block) for block in blocks if block.strip())


def code(value: object) -> str:
    """`value` as inline code, whatever backticks it holds."""
    text = str(value)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A pipe table; cells are Markdown already (made with `inline` or `code`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def definition(term: str, *blocks: str) -> str:
    """A definition list's item (MyST's deflist): `term`, then each block (Markdown) as a paragraph of it."""
    lines = "\n\n".join(b for b in blocks if b).splitlines() or [""]
    return term + "\n: " + lines[0] + "".join(f"\n  {line}" if line else "\n" for line in lines[1:])


def _cell(text: str) -> str:
    """One line; a `|` (in a code span too) escaped, as GFM tables need."""
    return re.sub(r"(?<!\\)\|", r"\\|", text.replace("\n", " ")) or " "


def heading(level: int, text: str, label: str | None = None) -> str:
    """A heading (Markdown already), with a MyST target `label` before it for {ref} links."""
    return (f"({label})=\n" if label else "") + "#" * level + " " + text


def first_sentence(text: str | None) -> str:
    """The first sentence of `text` (up to a full stop, question or exclamation mark that a space or the end
    follows, "e.g." and the like excepted), on one line; "" for no text."""
    flat = " ".join((text or "").split())
    for match in re.finditer(r"[.!?](?=\s|$)", flat):
        if not flat[:match.end()].endswith(_ABBREVIATIONS):
            return flat[:match.end()]
    return flat
