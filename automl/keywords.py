r"""Keyword rules: a node matches a text when one of its keywords or its include pattern does, and its exclude
pattern does not.

Python's `re` tries each rule's pattern on each text (UK-CAT's 240 rules: ~9 ms a text). An RE2 set reads a text once
for all patterns (linear time, about 0.05 ms a text once its DFA is built) and names the rules that may match;
Python's `re` then decides each of those, so every match is one `re` makes. The set is asked only about texts in
which RE2 and `re` read every character alike: RE2's `\b`, `\w` and `\s` know ASCII only, so a text holding a
non-ASCII letter, digit or space ("café") is tried by `re` with every rule, as are the patterns RE2 cannot read
(look-arounds, back-references, some escapes). A `$` is left out of the set's patterns (`re`'s also matches before a
final newline)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import re2

from automl.taxonomy import Node, Taxonomy

__all__ = ["KeywordMatcher", "KeywordRule"]

# A character RE2 and Python's `re` classify apart: non-ASCII and a letter, digit, underscore or space to `re`.
_READ_APART = re.compile(r"(?![\x00-\x7f])[\w\s]")
_SET_MEMORY = 64 << 20


@dataclass(frozen=True)
class KeywordRule:
    code: str
    include: re.Pattern | None
    exclude: re.Pattern | None

    @classmethod
    def from_node(cls, node: Node) -> KeywordRule:
        alternatives = []
        if node.keywords:
            # Word boundaries only where the phrase starts/ends with a word character, so "C++" or "(NHS)" still match.
            alternatives.append(
                "|".join(
                    (r"\b" if k[0].isalnum() or k[0] == "_" else "")
                    + re.escape(k)
                    + (r"\b" if k[-1].isalnum() or k[-1] == "_" else "")
                    for k in node.keywords
                )
            )
        if node.include_regex:
            alternatives.append(node.include_regex)
        include = re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE) if alternatives else None
        exclude = re.compile(node.exclude_regex, re.IGNORECASE) if node.exclude_regex else None
        return cls(node.code, include, exclude)

    def matches(self, text: str) -> bool:
        if self.include is None or not self.include.search(text):
            return False
        return not (self.exclude and self.exclude.search(text))


class KeywordMatcher:
    """Applies the rules of a fixed list of codes to texts, returning a boolean matrix (texts x codes)."""

    def __init__(self, taxonomy: Taxonomy, codes: Sequence[str]):
        self.codes = list(codes)
        self.rules = [KeywordRule.from_node(taxonomy.nodes[c]) for c in self.codes]
        self._prefilter: _Re2Prefilter | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_prefilter": None}  # RE2 objects do not pickle: rebuilt on first use

    def has_rule(self) -> np.ndarray:
        return np.array([r.include is not None for r in self.rules], dtype=bool)

    def match(self, texts: Sequence[str]) -> np.ndarray:
        prefilter: _Re2Prefilter | None = getattr(self, "_prefilter", None)
        if prefilter is None:
            prefilter = self._prefilter = _Re2Prefilter(self.rules)
        out = np.zeros((len(texts), len(self.rules)), dtype=bool)
        for i, text in enumerate(texts):
            for j in prefilter.candidates(text):
                out[i, j] = self.rules[j].matches(text)
        return out


class _Re2Prefilter:
    """The rules whose include pattern may match a text: RE2's hits among the patterns it reads, and every rule whose
    pattern it cannot read."""

    def __init__(self, rules: Sequence[KeywordRule]):
        options = re2.Options()
        options.case_sensitive = False
        options.log_errors = False
        # RE2 builds its DFA lazily within max_mem and falls back to a far slower NFA when that is spent: at the 8 MiB
        # default UK-CAT's 240 rules run out, and a warm set reads a text in 0.47 ms instead of 0.04 ms at 64 MiB.
        options.max_mem = _SET_MEMORY
        self.set = re2.Set.SearchSet(options)
        self.index: list[int] = []  # the set's pattern number -> the rule's
        self.always: list[int] = []  # rules RE2 cannot read
        self.every = [j for j, rule in enumerate(rules) if rule.include is not None]
        for j, rule in enumerate(rules):
            if rule.include is None:
                continue
            try:
                self.set.Add(_without_end_anchors(rule.include.pattern))
                self.index.append(j)
            except re2.error:
                self.always.append(j)
        self.set.Compile()

    def candidates(self, text: str) -> list[int]:
        if _READ_APART.search(text):
            return self.every
        found = self.set.Match(text) if self.index else None
        return [self.index[k] for k in found or ()] + self.always


def _without_end_anchors(pattern: str) -> str:
    """`pattern` without its `$` assertions (outside character classes): it matches wherever `pattern` does."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            start = i + 1 + (pattern[i + 1:i + 2] == "^")
            if pattern[start:start + 1] == "]":  # a ']' first in a class is a literal
                start += 1
            out.append(pattern[i:start])
            i = start
            continue
        if ch == "]" and in_class:
            in_class = False
        if ch != "$" or in_class:
            out.append(ch)
        i += 1
    return "".join(out)
