"""A hierarchical taxonomy: nodes, facets, levels, parent links and the keyword rule of each node."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from automl.errors import InputError

__all__ = ["CodeNotFound", "Node", "Taxonomy", "TaxonomyError", "path_code", "with_rules"]


class TaxonomyError(InputError):
    """The taxonomy cannot be used; the message lists every problem with its place and fix."""


class CodeNotFound(InputError):
    """A name that is no node of the taxonomy (`candidates` empty), or that names several (`candidates`)."""

    def __init__(self, name: str, candidates: list[str]):
        self.name, self.candidates = name, candidates
        super().__init__(f"{name!r} is on {len(candidates)} places of the taxonomy ({', '.join(candidates)}): write"
                         " its path" if candidates else f"{name!r} is not in the taxonomy")


def path_code(path: Iterable[str]) -> str:
    """The identity of a node whose key repeats elsewhere in its taxonomy: its path of keys from the root."""
    return "/" + "/".join(path)


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
    path: tuple[str, ...] = ()  # the keys from the root to this node (empty: the code is the only key)

    @property
    def has_rule(self) -> bool:
        return bool(self.keywords or self.include_regex)

    @property
    def key(self) -> str:
        """What the node is called among its siblings (its code in a taxonomy file, its key on a platform)."""
        return self.path[-1] if self.path else self.code


@dataclass
class Taxonomy:
    """Nodes keyed by a unique code. Codes are the service's node identities; connectors translate to them.
    `single_choice`: the facets whose every text has one path of codes (a platform's one-answer job, a setting)."""

    nodes: dict[str, Node]
    single_choice: frozenset[str] = frozenset()
    children: dict[str | None, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.single_choice = frozenset(self.single_choice)
        unknown = sorted(self.single_choice - {n.facet for n in self.nodes.values()})
        if unknown:
            raise TaxonomyError(f"single-choice facet(s) {', '.join(unknown)} are not facets of the taxonomy (it has"
                                f" {', '.join(self.facets) or 'none'}). Fix: name facets it has in [taxonomy]"
                                " single_choice.")
        self.children = {}
        self._by_key: dict[str, list[str]] = {}
        self._by_path: dict[tuple[str, ...], list[str]] = {}
        for node in self.nodes.values():
            self.children.setdefault(node.parent, []).append(node.code)
            self._by_key.setdefault(node.key, []).append(node.code)
            if node.path:
                self._by_path.setdefault(node.path, []).append(node.code)

    def places(self, key: str) -> list[str]:
        """The codes of the nodes called `key` among their siblings."""
        return list(self._by_key.get(key, []))

    def resolve(self, name: str) -> str:
        """The code of the node `name` names: a code; a path of keys (`I/A/A20`, a leading `/` optional); or a key
        found at one place only. Raises CodeNotFound when it names no node, or several."""
        if name in self.nodes:
            return name
        if "/" in name:
            found = self._by_path.get(tuple(p.strip() for p in name.strip("/").split("/")), [])
        else:
            found = self._by_key.get(name, [])
        if len(found) == 1:
            return found[0]
        raise CodeNotFound(name, sorted(found))

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
        rows = sorted(
            (n.code, n.parent or "", n.level, n.facet, n.keywords, n.include_regex, n.exclude_regex)
            for n in self.nodes.values()
        )
        # Only where set, so that the fingerprints of taxonomies without it stay as they were.
        return rows + ([("single_choice", *sorted(self.single_choice))] if self.single_choice else [])


def with_rules(target: Taxonomy, rules: Taxonomy) -> tuple[Taxonomy, list[str]]:
    """`target` (a platform's interface) with the keyword rules of a taxonomy file, and what did not fit.

    A file's row applies to the node at its place: the same keys from the root. A row whose place is not in the
    interface applies to the node with its key where that key is on one row and one node only (the parents then
    disagree, which is reported). Any other row is unused, and reported."""
    by_path: dict[tuple[str, ...], list[str]] = {}
    for code, node in target.nodes.items():
        by_path.setdefault(node.path or (node.key,), []).append(code)
    file_keys: dict[str, int] = {}
    for rule in rules.nodes.values():
        file_keys[rule.key] = file_keys.get(rule.key, 0) + 1
    matched: dict[str, Node] = {}
    problems = []
    for rule in rules.nodes.values():
        at_place = by_path.get(rule.path or (rule.key,), [])
        if len(at_place) == 1:
            matched[at_place[0]] = rule
            continue
        by_key = target.places(rule.key)
        if not at_place and len(by_key) == 1 and file_keys[rule.key] == 1:
            matched[by_key[0]] = rule
            problems.extend(_parent_disagreement(target, by_key[0], rules, rule))
        else:
            problems.append(_unused_rule(rule, at_place or by_key))
    nodes = {code: (_ruled(node, matched[code]) if code in matched else node) for code, node in target.nodes.items()}
    return Taxonomy(nodes, target.single_choice), problems


def _ruled(node: Node, rule: Node) -> Node:
    return Node(node.code, node.name, node.parent, node.level, node.facet, rule.keywords, rule.include_regex,
                rule.exclude_regex, node.path)


def _parent_disagreement(target: Taxonomy, code: str, rules: Taxonomy, rule: Node) -> list[str]:
    node = target.nodes[code]
    theirs = target.nodes[node.parent].key if node.parent else None
    ours = rules.nodes[rule.parent].key if rule.parent else None
    if theirs == ours:
        return []
    return [f"{code}: the interface's parent is {theirs or 'none'}, the taxonomy file's is {ours or 'none'}"]


def _unused_rule(rule: Node, found: list[str]) -> str:
    if not found:
        return f"taxonomy code {rule.key!r} is not a category of the interface (its rule is unused)"
    return (f"taxonomy code {rule.key!r} fits {len(found)} places of the interface ({', '.join(sorted(found)[:3])}),"
            f" none at its place {'/'.join(rule.path) or rule.key} (its rule is unused). Fix: give the row the"
            " parent (or path) it has there")
