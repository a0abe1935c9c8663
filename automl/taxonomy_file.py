"""A taxonomy CSV read into a `Taxonomy`: every problem is found and reported at once, with its line and its fix.

A code may repeat where its place tells the rows apart (platforms only require keys to be unique among siblings):
a row's parent is its `parent_code`, resolved at the level above the row (its `level` column) where that code is on
several rows, or its optional `path` column (`I/A/A20`: the codes from the root). Such a node's identity is its path,
`/I/A/A20`; a code that is on one row only is its own identity, as always.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from automl.taxonomy import Node, Taxonomy, TaxonomyError, path_code

__all__ = ["check_taxonomy_path", "load_taxonomy"]

REQUIRED_COLUMNS = ("code", "name", "parent_code")
OPTIONAL_COLUMNS = ("level", "facet", "keywords", "include_regex", "exclude_regex", "path")


@dataclass
class _Row:
    line: int
    code: str
    values: dict[str, str]
    parent_code: str | None
    level: int | None  # the level column
    path: tuple[str, ...] | None  # the path column
    parent: int | None = None  # the line of the parent row, once resolved


def check_taxonomy_path(path: Path) -> None:
    """A taxonomy path that names a folder, said when a service starts rather than at every cycle: a folder mounted
    in a container stays a folder."""
    if Path(path).is_dir():
        raise _folder(path)


def _folder(path: Path) -> TaxonomyError:
    return TaxonomyError(f"{path} is a folder, not a taxonomy file. Fix: give the CSV in it (--taxonomy or"
                         " [taxonomy] path).")


def load_taxonomy(
    path: str | Path,
    facet_roots: Mapping[str, Iterable[str]] | None = None,
    default_facet: str = "subject",
    single_choice: Iterable[str] = (),
) -> Taxonomy:
    """Read a taxonomy CSV (`code,name,parent_code` and optional `level,facet,keywords,include_regex,exclude_regex,
    path`).

    A node's facet is its `facet` column, else the facet whose `facet_roots` lists it or one of its ancestors, else
    `default_facet`. Its level is the `level` column, else its depth in the tree (roots are level 1).
    `single_choice` names the facets whose texts have one path each.
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
    except IsADirectoryError:
        raise _folder(path) from None
    except FileNotFoundError:
        raise TaxonomyError(f"{path}: no such file. Fix: check --taxonomy or [taxonomy] path.") from None
    except OSError as exc:
        raise TaxonomyError(f"{path}: cannot read it ({exc.strerror}). Fix: check the path and its permissions.") \
            from None
    return build_taxonomy(rows, str(path), facet_roots or {}, default_facet, single_choice)


def build_taxonomy(
    rows: list[tuple[int, dict[str, str]]],
    source: str,
    facet_roots: Mapping[str, Iterable[str]],
    default_facet: str,
    single_choice: Iterable[str] = (),
) -> Taxonomy:
    errors: list[str] = []
    parsed = _parse(rows, source, errors)
    by_code: dict[str, list[_Row]] = {}
    for row in parsed.values():
        by_code.setdefault(row.code, []).append(row)
    _resolve_parents(parsed, by_code, source, errors)
    errors.extend(_cycle_errors(parsed, source))
    errors.extend(_duplicate_errors(parsed, source))
    errors.extend(_regex_errors(parsed, source))
    if errors:
        raise TaxonomyError(_summarise(errors))
    root_facet = _facet_roots(parsed, by_code, facet_roots, source)
    nodes = _nodes(parsed, by_code, root_facet, default_facet, source, errors)
    if errors:
        raise TaxonomyError(_summarise(errors))
    if not nodes:
        raise TaxonomyError(f"{source}: the taxonomy has no rows. Fix: add at least one code.")
    return Taxonomy(nodes, frozenset(single_choice))


def _parse(rows: list[tuple[int, dict[str, str]]], source: str, errors: list[str]) -> dict[int, _Row]:
    parsed: dict[int, _Row] = {}
    for line, values in rows:
        code, where = values.get("code", ""), f"{source}, line {line}"
        if not code:
            errors.append(f"{where}: empty code. Fix: give every row a code.")
            continue
        level = None
        if values.get("level"):
            try:
                level = int(float(values["level"]))
            except ValueError:
                errors.append(f"{where}: level {values['level']!r} is not a number. Fix: use 1, 2, 3...")
                continue
        row = _Row(line, code, values, values.get("parent_code") or None, level, None)
        if values.get("path"):
            row.path = path = tuple(p.strip() for p in values["path"].strip("/").split("/"))
            problem = _path_problem(row, path)
            if problem:
                errors.append(f"{where}: path {values['path']!r} {problem}")
                continue
            row.parent_code = path[-2] if len(path) > 1 else None
        parsed[line] = row
    return parsed


def _path_problem(row: _Row, path: tuple[str, ...]) -> str:
    """What is wrong with `path`, the row's path column, against its code and parent_code; "" when nothing."""
    if path[-1] != row.code:
        return f"ends in {path[-1]!r}, not in the row's code {row.code!r}. Fix: end the path with the code."
    if row.parent_code and (len(path) < 2 or path[-2] != row.parent_code):
        return f"does not end in parent_code {row.parent_code!r} then the code. Fix: make the two agree."
    return ""


def _resolve_parents(parsed: dict[int, _Row], by_code: dict[str, list[_Row]], source: str,
                     errors: list[str]) -> None:
    """Each row's parent row. A parent code on one row is that row; on several, the one at the level above (or at
    the path) the row gives. Resolving one row's parent can place the candidates of another: repeat until stable."""
    pending = [(r, r.parent_code) for r in parsed.values() if r.parent_code is not None]  # each with its parent code
    for row, code in list(pending):
        candidates = by_code.get(code, [])
        if len(candidates) <= 1:
            pending.remove((row, code))
            row.parent = candidates[0].line if candidates else None
            if not candidates:
                errors.append(f"{source}, line {row.line}: code {row.code!r} has unknown parent_code"
                              f" {row.parent_code!r}. Fix: add a row for that parent or correct parent_code (empty"
                              " for a root).")
    while pending:
        placed = [(row, code) for row, code in pending if _place(row, by_code[code], parsed)]
        if not placed:
            break
        pending = [p for p in pending if p not in placed]
    for row, code in pending:
        lines = " and ".join(str(c.line) for c in by_code[code])
        errors.append(f"{source}, line {row.line}: parent_code {row.parent_code!r} of {row.code!r} is on lines"
                      f" {lines}, and the row does not say which. Fix: give the row its level (the parent is the one"
                      f" a level above) or a path column (e.g. {'/'.join(['...', code, row.code])}).")


def _place(row: _Row, candidates: list[_Row], parsed: dict[int, _Row]) -> bool:
    """Set `row.parent` when exactly one candidate fits the row's path or level; False while none can be told."""
    if row.path is None and row.level is None:
        return False
    fits = [_fits(c, row, parsed) for c in candidates]
    if None in fits or fits.count(True) != 1:  # a candidate not placed yet may fit too
        return False
    row.parent = candidates[fits.index(True)].line
    return True


def _fits(candidate: _Row, row: _Row, parsed: dict[int, _Row]) -> bool | None:
    """Whether `candidate` is at the place (path, else level) that `row` gives its parent; None while that cannot be
    told. A candidate whose own place is not resolved yet is ruled out where the part that is known cannot fit: so
    a candidate at or below the row (`A` under `A`) never keeps the row waiting for itself."""
    chain, complete = _reach(candidate, parsed)
    if row.path is not None:
        wanted = row.path[:-1]
        if candidate.path is not None:  # its own path column: its place, once it is placed
            return candidate.path == wanted
        keys = tuple(r.code for r in reversed(chain))
        if complete:
            return keys == wanted
        # Known: the path ends with the unplaced row's parent code, then these keys.
        above = len(wanted) - len(keys) - 1
        fit = above >= 0 and wanted[above + 1:] == keys and wanted[above] == chain[-1].parent_code
        return None if fit else False
    assert row.level is not None  # _place asks only about rows with a path or a level
    wanted_level = row.level - 1
    for distance, r in enumerate(chain):  # a level column fixes the levels below it (as `_nodes` counts them)
        if r.level is not None:
            return r.level + distance == wanted_level
    if complete:
        return len(chain) == wanted_level
    return None if wanted_level > len(chain) else False  # at least one level above the unplaced row


def _reach(row: _Row, parsed: dict[int, _Row]) -> tuple[list[_Row], bool]:
    """The row and its placed ancestors, root last; and whether that reaches a root (False: the last one's parent is
    not resolved yet, or the parents loop)."""
    chain, seen = [row], {row.line}
    while chain[-1].parent_code is not None:
        parent = chain[-1].parent
        if parent is None or parent in seen:
            return chain, False
        chain.append(parsed[parent])
        seen.add(parent)
    return chain, True


def _path_of(row: _Row, parsed: dict[int, _Row]) -> tuple[str, ...] | None:
    chain, complete = _reach(row, parsed)
    return tuple(r.code for r in reversed(chain)) if complete else None


def _cycle_errors(parsed: dict[int, _Row], source: str) -> list[str]:
    errors, done = [], set()
    for start in parsed:
        path: list[int] = []
        line: int | None = start
        while line is not None and line not in done:
            if line in path:
                cycle = [parsed[i].code for i in path[path.index(line):] + [line]]
                errors.append(
                    f"{source}, line {line}: parent_code forms a cycle {' -> '.join(cycle)}."
                    " Fix: one of these codes must have another parent (or none)."
                )
                break
            path.append(line)
            line = parsed[line].parent
        done.update(path)
    return errors


def _duplicate_errors(parsed: dict[int, _Row], source: str) -> list[str]:
    """A code twice under the same parent (or twice as a root) is one node written twice."""
    first: dict[tuple[str, int | None], int] = {}
    errors = []
    for row in parsed.values():
        if row.parent_code is not None and row.parent is None:
            continue  # its parent is not resolved (reported): it is no root
        key = (row.code, row.parent)
        if key in first:
            errors.append(
                f"{source}, line {row.line}: duplicate code {row.code!r} (first on line {first[key]})."
                " Fix: codes must be unique among siblings; rename or remove one row (a code may repeat elsewhere,"
                " under another parent)."
            )
        else:
            first[key] = row.line
    return errors


def _regex_errors(parsed: dict[int, _Row], source: str) -> list[str]:
    errors = []
    for row in parsed.values():
        for column in ("include_regex", "exclude_regex"):
            pattern = row.values.get(column, "")
            if pattern:
                try:
                    re.compile(pattern, re.IGNORECASE)
                except re.error as exc:
                    errors.append(
                        f"{source}, line {row.line}: {column} of {row.code!r} is not a valid regular expression"
                        f" ({exc}). Fix: correct the pattern (Python `re` syntax) or empty the cell."
                    )
    return errors


def _facet_roots(parsed: dict[int, _Row], by_code: dict[str, list[_Row]], facet_roots: Mapping[str, Iterable[str]],
                 source: str) -> dict[int, str]:
    """The rows that `facet_roots` names (by code, or by path where the code repeats), with their facets."""
    out: dict[int, str] = {}
    unknown: list[str] = []
    ambiguous: list[str] = []
    for facet, roots in facet_roots.items():
        for name in roots:
            if "/" in name:
                wanted = tuple(name.strip("/").split("/"))
                rows = [r for r in by_code.get(wanted[-1], []) if _path_of(r, parsed) == wanted]
            else:
                rows = by_code.get(name, [])
            if len(rows) == 1:
                out[rows[0].line] = facet
            else:
                (ambiguous if rows else unknown).append(name)
    if unknown:
        raise TaxonomyError(f"{source}: facet roots {', '.join(sorted(unknown))} are not codes of the taxonomy."
                            " Fix: correct the facet_roots setting.")
    if ambiguous:
        raise TaxonomyError(f"{source}: facet roots {', '.join(sorted(ambiguous))} are on several rows. Fix: name"
                            " them by path in facet_roots (e.g. \"I/A\").")
    return out


def _nodes(parsed: dict[int, _Row], by_code: dict[str, list[_Row]], root_facet: dict[int, str],
           default_facet: str, source: str, errors: list[str]) -> dict[str, Node]:
    """Nodes, parents first: a node's facet and level follow its parent's unless its row says otherwise."""
    ids: dict[int, str] = {}
    nodes: dict[str, Node] = {}
    for line in _topological(parsed):
        row = parsed[line]
        path = _path_of(row, parsed) or (row.code,)
        ids[line] = row.code if len(by_code[row.code]) == 1 else path_code(path)
        parent = ids.get(row.parent) if row.parent is not None else None
        parent_node = nodes.get(parent) if parent else None
        facet = (row.values.get("facet") or root_facet.get(line)
                 or (parent_node.facet if parent_node else default_facet))
        if parent_node and facet != parent_node.facet:
            errors.append(
                f"{source}, line {line}: {row.code!r} is in facet {facet!r} but its parent {parent_node.key!r} is in"
                f" {parent_node.facet!r}. Fix: a node must share its parent's facet."
            )
        level = row.level if row.level is not None else (parent_node.level + 1 if parent_node else 1)
        if parent_node and level <= parent_node.level:
            errors.append(
                f"{source}, line {line}: {row.code!r} has level {level}, not deeper than its parent"
                f" {parent_node.key!r} (level {parent_node.level}). Fix: correct the level column."
            )
        v = row.values
        nodes[ids[line]] = Node(
            code=ids[line], name=v.get("name") or row.code, parent=parent, level=level, facet=facet,
            keywords=tuple(k.strip() for k in v.get("keywords", "").split(";") if k.strip()),
            include_regex=v.get("include_regex", ""), exclude_regex=v.get("exclude_regex", ""), path=path,
        )
    return nodes


def _topological(parsed: dict[int, _Row]) -> list[int]:
    """Parents before children (the caller has ruled out cycles)."""
    order: list[int] = []
    seen: set[int] = set()
    for start in parsed:
        chain = []
        line: int | None = start
        while line is not None and line not in seen:
            chain.append(line)
            line = parsed[line].parent
        for i in reversed(chain):
            seen.add(i)
            order.append(i)
    return order


def _summarise(errors: list[str], limit: int = 20) -> str:
    head = "\n".join(f"  - {e}" for e in errors[:limit])
    more = f"\n  ... and {len(errors) - limit} more" if len(errors) > limit else ""
    return f"the taxonomy has {len(errors)} problem(s):\n{head}{more}"
