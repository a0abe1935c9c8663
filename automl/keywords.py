"""Keyword rules: a node matches a text when one of its keywords or its include pattern does, and its exclude
pattern does not."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from automl.taxonomy import Node, Taxonomy


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

    def has_rule(self) -> np.ndarray:
        return np.array([r.include is not None for r in self.rules], dtype=bool)

    def match(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.rules)), dtype=bool)
        for j, rule in enumerate(self.rules):
            if rule.include is None:
                continue
            for i, text in enumerate(texts):
                out[i, j] = rule.matches(text)
        return out
