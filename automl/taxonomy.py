"""A hierarchical taxonomy: nodes, facets, levels, parent links and the keyword rule of each node."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from automl.errors import InputError

REQUIRED_COLUMNS = ("code", "name", "parent_code")
OPTIONAL_COLUMNS = ("level", "facet", "keywords", "include_regex", "exclude_regex")


class TaxonomyError(InputError):
    """The taxonomy cannot be used; the message lists every problem with its place and fix."""


@dataclass(frozen=True)
class Node:
    code: str
    name: str
    parent: str | None
    level: int
    facet: str
    keywords: tuple[str, ...] = ()
    include_regex: str = ""
    exclude_regex: str = ""

    @property
    def has_rule(self) -> bool:
        return bool(self.keywords or self.include_regex)


@dataclass
class Taxonomy:
    """Nodes keyed by a unique code. Codes are the service's node identities; connectors translate to them."""

    nodes: dict[str, Node]
    children: dict[str | None, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.children = {}
        for node in self.nodes.values():
            self.children.setdefault(node.parent, []).append(node.code)

    def __contains__(self, code: object) -> bool:
        return code in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def facets(self) -> list[str]:
        return sorted({n.facet for n in self.nodes.values()})

    def levels(self, facet: str) -> list[int]:
        return sorted({n.level for n in self.nodes.values() if n.facet == facet})

    def codes_at(self, facet: str, level: int) -> list[str]:
        return sorted(c for c, n in self.nodes.items() if n.facet == facet and n.level == level)

    def ancestors(self, code: str) -> list[str]:
        """Parent first, root last."""
        out = []
        parent = self.nodes[code].parent
        while parent is not None:
            out.append(parent)
            parent = self.nodes[parent].parent
        return out

    def with_ancestors(self, codes: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for code in codes:
            out.add(code)
            out.update(self.ancestors(code))
        return out

    def fingerprint_rows(self) -> list[tuple]:
        """A stable description of the taxonomy, for telling whether a model was trained on the same one."""
        return sorted(
            (n.code, n.parent or "", n.level, n.facet, n.keywords, n.include_regex, n.exclude_regex)
            for n in self.nodes.values()
        )


def load_taxonomy(
    path: str | Path,
    facet_roots: Mapping[str, Iterable[str]] | None = None,
    default_facet: str = "subject",
) -> Taxonomy:
    """Read a taxonomy CSV (`code,name,parent_code` and optional `level,facet,keywords,include_regex,exclude_regex`).

    A node's facet is its `facet` column, else the facet whose `facet_roots` lists it or one of its ancestors, else
    `default_facet`. Its level is the `level` column, else its depth in the tree (roots are level 1).
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = columns
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise TaxonomyError(
                    f"{path}: missing column(s) {', '.join(missing)}; the header has {', '.join(columns) or 'nothing'}."
                    f" Fix: the first line must name at least {', '.join(REQUIRED_COLUMNS)}"
                    f" (optional: {', '.join(OPTIONAL_COLUMNS)})."
                )
            rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]
    except UnicodeDecodeError as exc:
        raise TaxonomyError(f"{path}: not valid UTF-8 at byte {exc.start}. Fix: save the file as UTF-8.") from exc
    return build_taxonomy(rows, str(path), facet_roots or {}, default_facet)


def build_taxonomy(
    rows: list[tuple[int, dict[str, str]]],
    source: str,
    facet_roots: Mapping[str, Iterable[str]],
    default_facet: str,
) -> Taxonomy:
    errors: list[str] = []
    by_code = _rows_by_code(rows, source, errors)
    parents = _parents(by_code, source, errors)
    errors.extend(_cycle_errors(parents, by_code, source))
    errors.extend(_regex_errors(by_code, source))
    if errors:
        raise TaxonomyError(_summarise(errors))

    root_facet = {root: facet for facet, roots in facet_roots.items() for root in roots}
    unknown_roots = sorted(set(root_facet) - set(by_code))
    if unknown_roots:
        raise TaxonomyError(
            f"{source}: facet roots {', '.join(unknown_roots)} are not codes of the taxonomy."
            " Fix: correct the facet_roots setting."
        )
    nodes = _nodes(by_code, parents, root_facet, default_facet, source, errors)
    if errors:
        raise TaxonomyError(_summarise(errors))
    if not nodes:
        raise TaxonomyError(f"{source}: the taxonomy has no rows. Fix: add at least one code.")
    return Taxonomy(nodes)


_Rows = dict[str, tuple[int, dict[str, str]]]


def _rows_by_code(rows: list[tuple[int, dict[str, str]]], source: str, errors: list[str]) -> _Rows:
    by_code: _Rows = {}
    for line, row in rows:
        code = row.get("code", "")
        if not code:
            errors.append(f"{source}, line {line}: empty code. Fix: give every row a code.")
        elif code in by_code:
            errors.append(
                f"{source}, line {line}: duplicate code {code!r} (first on line {by_code[code][0]})."
                " Fix: codes must be unique; rename or remove one row."
            )
        else:
            by_code[code] = (line, row)
    return by_code


def _parents(by_code: _Rows, source: str, errors: list[str]) -> dict[str, str | None]:
    parents: dict[str, str | None] = {}
    for code, (line, row) in by_code.items():
        parent = row.get("parent_code") or None
        if parent is not None and parent not in by_code:
            errors.append(
                f"{source}, line {line}: code {code!r} has unknown parent_code {parent!r}."
                " Fix: add a row for that parent or correct parent_code (empty for a root)."
            )
            parent = None
        parents[code] = parent
    return parents


def _regex_errors(by_code: _Rows, source: str) -> list[str]:
    errors = []
    for code, (line, row) in by_code.items():
        for column in ("include_regex", "exclude_regex"):
            pattern = row.get(column, "")
            if pattern:
                try:
                    re.compile(pattern, re.IGNORECASE)
                except re.error as exc:
                    errors.append(
                        f"{source}, line {line}: {column} of {code!r} is not a valid regular expression ({exc})."
                        " Fix: correct the pattern (Python `re` syntax) or empty the cell."
                    )
    return errors


def _nodes(by_code: _Rows, parents: dict[str, str | None], root_facet: dict[str, str], default_facet: str,
           source: str, errors: list[str]) -> dict[str, Node]:
    """Nodes, parents first: a node's facet and level follow its parent's unless its row says otherwise."""
    nodes: dict[str, Node] = {}
    for code in _topological(parents):
        line, row = by_code[code]
        parent = parents[code]
        parent_node = nodes.get(parent) if parent else None
        facet = row.get("facet") or root_facet.get(code) or (parent_node.facet if parent_node else default_facet)
        if parent_node and facet != parent_node.facet:
            errors.append(
                f"{source}, line {line}: {code!r} is in facet {facet!r} but its parent {parent!r} is in"
                f" {parent_node.facet!r}. Fix: a node must share its parent's facet."
            )
        level_text = row.get("level", "")
        if level_text:
            try:
                level = int(float(level_text))
            except ValueError:
                errors.append(f"{source}, line {line}: level {level_text!r} is not a number. Fix: use 1, 2, 3...")
                continue
        else:
            level = parent_node.level + 1 if parent_node else 1
        if parent_node and level <= parent_node.level:
            errors.append(
                f"{source}, line {line}: {code!r} has level {level}, not deeper than its parent"
                f" {parent!r} (level {parent_node.level}). Fix: correct the level column."
            )
        nodes[code] = Node(
            code=code, name=row.get("name") or code, parent=parent, level=level, facet=facet,
            keywords=tuple(k.strip() for k in row.get("keywords", "").split(";") if k.strip()),
            include_regex=row.get("include_regex", ""), exclude_regex=row.get("exclude_regex", ""),
        )
    return nodes


def _cycle_errors(parents: dict[str, str | None], by_code: dict, source: str) -> list[str]:
    errors, done = [], set()
    for start in parents:
        path: list[str] = []
        code: str | None = start
        while code is not None and code not in done:
            if code in path:
                cycle = path[path.index(code):] + [code]
                line = by_code[code][0]
                errors.append(
                    f"{source}, line {line}: parent_code forms a cycle {' -> '.join(cycle)}."
                    " Fix: one of these codes must have another parent (or none)."
                )
                break
            path.append(code)
            code = parents[code]
        done.update(path)
    return errors


def _topological(parents: dict[str, str | None]) -> list[str]:
    """Parents before children (the caller has ruled out cycles)."""
    order, seen = [], set()
    for start in parents:
        chain = []
        code: str | None = start
        while code is not None and code not in seen:
            chain.append(code)
            code = parents[code]
        for c in reversed(chain):
            seen.add(c)
            order.append(c)
    return order


def _summarise(errors: list[str], limit: int = 20) -> str:
    head = "\n".join(f"  - {e}" for e in errors[:limit])
    more = f"\n  ... and {len(errors) - limit} more" if len(errors) > limit else ""
    return f"the taxonomy has {len(errors)} problem(s):\n{head}{more}"
