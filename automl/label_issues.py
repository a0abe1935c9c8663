"""Likely mistakes in the human labels, found from probabilities of models that did not learn from the labels they
judge (out of fold, or a held-out slice), by confident learning applied to each label as a yes/no class.

Per label, confident learning (Northcutt et al., the method behind cleanlab) sets two thresholds from the labels
themselves: the mean probability the model gives the label where a human gave it, and the mean probability it gives
its absence where no human did. A human "yes" is doubted when the label's absence is at least as sure as absences
usually are; a human "no" when the label is at least as likely as given labels usually are. cleanlab itself needs
scikit-learn >= 1.1, which auto-sklearn's pin rules out, hence these few lines.

The hierarchy shapes what a labeller is shown: a doubted code takes its doubted descendants along (one row for the
branch); a doubted code and a sibling the model expects instead become one "Y instead of X" row; and a wrong branch
(a top-level code) outranks a mistake between siblings at the same probability (a tie-break: a weight on the
probability, tried at 0.9, buried the sibling swaps under top-level flags of lesser odds).

A given code whose keyword rule fires on the text (or a given descendant's does) is never doubted: the taxonomy's
own rule sides with the human, and on the bundled example such flags were nearly all on labels nobody had changed
(1 in 49 of the first 400 named an injected error, against 1 in 4 of the others).

Each label is judged by its own model's margins (`Evidence.per_label`), not by the level's shared calibration: that
calibration maps every label's low margins to one bottom bucket, so rare labels whose models tell little apart
filled the top of the list with ties (measured: benchmarks/label_issues_ukcat.py).

The text's nearest labelled neighbours weigh in (`with_neighbours`): a code that the most similar texts were given
too is less likely a slip, one they carry but this text lacks more likely an omission. Their share moves the
chance that the human is wrong by up to NEIGHBOUR_WEIGHT in log-odds (benchmarks/label_issues_variants.py: the
injected errors' precision@100 up on 5 seeds of 6).

So does the model's reading of the text's other labels (`AGREEMENT_WEIGHT`): where it gives the asset's other human
codes high probabilities, it reads this text well, and its doubt about one code is likelier a slip of the human's;
where it doubts them all, the text (short, generic, about something the scheme codes oddly) is what it cannot read.
The mean log-probability of the other given codes (outside the flag's own branch) moves the chance in log-odds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from automl.taxonomy import Taxonomy

__all__ = ["AGREEMENT_WEIGHT", "CHUNK_ROWS", "COMPARED", "GIVEN", "MISSING", "NEIGHBOURS", "NEIGHBOUR_WEIGHT",
           "Evidence", "LabelIssue", "Neighbours", "find_label_issues", "thresholds"]

GIVEN, MISSING = "given", "missing"
NEIGHBOURS = 10  # the most similar labelled texts a text is compared with
NEIGHBOUR_WEIGHT = 1.0  # log-odds by which their full agreement moves the chance that a label is wrong
AGREEMENT_WEIGHT = 0.25  # log-odds per unit of the mean log-probability of the text's other given codes
LEAST_PROBABILITY = 1e-4  # a code's probability floored here before its log: one code cannot outweigh the rest
CHUNK_ROWS = 500  # texts compared with all the others at a time (memory: this x COMPARED, dense)
COMPARED = 5000  # at most this many labelled texts (a fixed sample) are searched for each text's neighbours


@dataclass(frozen=True)
class Evidence:
    """A facet's labelled rows, judged by models that did not learn from them."""

    codes: list[str]
    likelihood: np.ndarray  # rows x codes: how likely each code applies
    given: np.ndarray  # rows x codes, bool: the human labels, ancestors included
    judged: np.ndarray  # per code, bool: has a model's probability (a keyword rule's hit rate is no evidence)
    margin: np.ndarray | None = None  # rows x codes: each code's own model's logit over its cut (NaN: none)
    rule_hits: np.ndarray | None = None  # rows x codes, bool: the code's keyword rule fires on the text
    neighbours: np.ndarray | None = None  # rows x codes: share of the row's nearest labelled texts given the code

    def __post_init__(self) -> None:
        if self.likelihood.shape != self.given.shape or self.likelihood.shape[1:] != (len(self.codes),):
            raise ValueError(f"evidence shapes differ: likelihood {self.likelihood.shape}, given {self.given.shape},"
                             f" {len(self.codes)} codes")

    @staticmethod
    def stacked(parts: Sequence[Evidence]) -> Evidence:
        """The rows of several batches of the same codes, in order."""
        first = parts[0]

        def rows(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return np.vstack(arrays) if all(a is not None for a in arrays) else None

        def required(name: str) -> np.ndarray:  # a field every part has
            return np.vstack([getattr(p, name) for p in parts])

        return Evidence(first.codes, required("likelihood"), required("given"), first.judged, rows("margin"),
                        rows("rule_hits"), rows("neighbours"))

    def with_neighbours(self, near: Neighbours) -> Evidence:
        """This evidence with `neighbours`: per row, the similarity-weighted share of its nearest other rows
        (`near`, of the same rows in the same order) that were given each code."""
        if len(near.index) != len(self.given):
            raise ValueError(f"neighbours of {len(near.index)} rows for {len(self.given)} rows of evidence")
        given = self.given.astype(np.float32)
        shares = (np.einsum("ik,ikj->ij", near.weight, given[near.index])
                  / np.maximum(near.weight.sum(axis=1, keepdims=True), 1e-9))
        return dataclasses.replace(self, neighbours=shares)

    def per_label(self) -> np.ndarray:
        """How likely each code applies by its own model alone: a logistic fit of the human labels on the code's
        margin, per code. The level's shared calibration puts every label's low margins in one bucket; this keeps
        what a rare label's model can and cannot tell apart."""
        from sklearn.linear_model import LogisticRegression

        p = self.likelihood.copy()
        if self.margin is None:
            return p
        for j in np.flatnonzero(self.judged):
            m, y = self.margin[:, j], self.given[:, j]
            if not np.isfinite(m).all() or y.all() or not y.any():
                continue
            fit = LogisticRegression(C=100.0).fit(m[:, None], y)
            p[:, j] = fit.predict_proba(m[:, None])[:, 1]
        return p


@dataclass(frozen=True)
class Neighbours:
    """Each text's NEIGHBOURS most similar other texts (rows x k indices) and their cosine similarity, at least 0."""

    index: np.ndarray
    weight: np.ndarray

    @staticmethod
    def of(vectors: sp.csr_matrix) -> Neighbours:
        """From the texts as L2-normalised rows, CHUNK_ROWS texts at a time against all of them, or, past COMPARED
        texts, against a fixed sample of COMPARED (the time grows with the texts, not their square)."""
        n = vectors.shape[0]
        k = max(0, min(NEIGHBOURS, n - 1))
        among = np.arange(n) if n <= COMPARED else np.sort(np.random.RandomState(0).choice(n, COMPARED, False))
        place = np.full(n, -1)
        place[among] = np.arange(len(among))  # each text's column among those compared, -1 if not compared
        index, weight = np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=np.float32)
        transposed = vectors[among].T.tocsr()  # once: a product with a CSC matrix converts it for every chunk
        for start in range(0, n if k else 0, CHUNK_ROWS):
            rows = slice(start, min(start + CHUNK_ROWS, n))
            similar = (vectors[rows] @ transposed).toarray()
            mine = np.flatnonzero(place[rows] >= 0)
            similar[mine, place[rows][mine]] = -1.0  # not itself
            nearest = np.argpartition(-similar, k - 1, axis=1)[:, :k]
            index[rows], weight[rows] = among[nearest], np.take_along_axis(similar, nearest, axis=1).clip(0)
        return Neighbours(index, weight)


@dataclass(frozen=True)
class LabelIssue:
    row: int
    facet: str
    level: int
    code: str  # the code given (kind "given") or not given (kind "missing")
    kind: str
    probability: float  # the model's, that `code` applies
    suggestion: str = ""  # for a doubted code: the sibling the model expects instead, if any
    suggestion_probability: float = 0.0
    along: tuple[str, ...] = ()  # doubted descendants of a doubted code, or expected ones of an expected code
    score: float = 0.0  # how likely the human's decision is wrong; higher first, a wrong branch first at a tie

    @property
    def advice(self) -> str:
        """What the labeller is asked to look at, in words."""
        along = f" (and {', '.join(self.along)})" if self.along else ""
        if self.kind == MISSING:
            return f"add {self.code}{along}: the model gives it {self.probability:.0%}"
        if self.suggestion:
            return (f"{self.suggestion} instead of {self.code}{along}: the model gives {self.suggestion}"
                    f" {self.suggestion_probability:.0%} and {self.code} {self.probability:.0%}")
        return f"remove {self.code}{along}: the model gives it {self.probability:.0%}"


def thresholds(evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """Per code: the mean likelihood where given, and the mean likelihood of absence where not given (NaN where a
    side has no row)."""
    p, given = evidence.likelihood, evidence.given
    with np.errstate(invalid="ignore", divide="ignore"):
        yes = np.where(given, p, 0.0).sum(axis=0) / given.sum(axis=0)
        no = np.where(~given, 1.0 - p, 0.0).sum(axis=0) / (~given).sum(axis=0)
    return yes, no


def find_label_issues(taxonomy: Taxonomy, evidence: Mapping[str, Evidence], top: int | None = None
                      ) -> list[LabelIssue]:
    """Every facet's likely label mistakes, most likely first (at most `top`)."""
    issues = [issue for facet, ev in evidence.items() for issue in _facet_issues(taxonomy, facet, ev)]
    issues.sort(key=lambda i: (-i.score, i.level, i.row, i.code))
    return issues[:top] if top is not None else issues


def _facet_issues(taxonomy: Taxonomy, facet: str, ev: Evidence) -> list[LabelIssue]:
    ev = dataclasses.replace(ev, likelihood=ev.per_label(), margin=None)  # each label by its own model
    yes, no = thresholds(ev)
    p, given = ev.likelihood, ev.given
    usable = ev.judged & np.isfinite(yes) & np.isfinite(no)
    doubted = given & usable & (1.0 - p >= no) & ~((p >= yes) & (p >= 0.5))
    if ev.rule_hits is not None:  # the taxonomy's own rule agrees with the human: not called a mistake
        doubted &= ~_rule_supported(taxonomy, ev)
    expected = ~given & usable & (p >= yes) & ~((1.0 - p >= no) & (p < 0.5))
    out = []
    shares = ev.neighbours if ev.neighbours is not None else np.zeros(p.shape)
    held = given & ev.judged  # the human codes the model has a say on
    for row in np.flatnonzero(doubted.any(axis=1) | expected.any(axis=1)):
        out.extend(_row_issues(taxonomy, facet, ev.codes, row, p[row],
                               _RowFlags(doubted[row], expected[row], shares[row], held[row])))
    return out


@dataclass(frozen=True)
class _RowFlags:
    doubted: np.ndarray  # per code, bool: given, and doubted
    expected: np.ndarray  # per code, bool: not given, and expected
    shares: np.ndarray  # per code: share of the row's nearest labelled texts given it
    held: np.ndarray  # per code, bool: given, and judged by a model


def _weighed(chance: float, shift: float) -> float:
    """`chance` (that the human is wrong) moved by `shift` in log-odds."""
    chance = min(max(chance, 1e-9), 1.0 - 1e-9)
    return float(1.0 / (1.0 + np.exp(-(np.log(chance / (1.0 - chance)) + shift))))


def _agreement(p: np.ndarray, held: np.ndarray, branch: set[int]) -> float:
    """The mean log-probability of the row's judged human codes outside `branch` (0 when there are none)."""
    others = [j for j in np.flatnonzero(held) if j not in branch]
    return float(np.log(np.clip(p[others], LEAST_PROBABILITY, 1.0)).mean()) if others else 0.0


def _rule_supported(taxonomy: Taxonomy, ev: Evidence) -> np.ndarray:
    """Given codes whose keyword rule, or a given descendant's, fires on the text."""
    supported = ev.given & ev.rule_hits
    index = {c: j for j, c in enumerate(ev.codes)}
    for j, code in enumerate(ev.codes):
        for above in taxonomy.ancestors(code):
            if above in index:
                supported[:, index[above]] |= supported[:, j]
    return supported & ev.given


def _row_issues(taxonomy: Taxonomy, facet: str, codes: list[str], row: int, p: np.ndarray, flags: _RowFlags
                ) -> list[LabelIssue]:
    index = {c: j for j, c in enumerate(codes)}
    nodes = taxonomy.nodes
    shares = flags.shares

    def shift(*branch: str, along: Sequence[str], against: float) -> float:
        """The neighbours' and the other labels' say, in log-odds, on a flag about `branch` and `along`."""
        named = {a for code in branch if code for a in (code, *taxonomy.ancestors(code))} | set(along)
        agreement = _agreement(p, flags.held, {index[c] for c in named if c in index})
        return NEIGHBOUR_WEIGHT * against + AGREEMENT_WEIGHT * agreement

    def topmost(marked: np.ndarray) -> dict[str, list[str]]:
        """Flagged codes with no flagged ancestor, each with its flagged descendants."""
        flagged = {codes[j] for j in np.flatnonzero(marked)}
        tops: dict[str, list[str]] = {}
        for code in sorted(flagged, key=lambda c: nodes[c].level):
            above = [a for a in taxonomy.ancestors(code) if a in flagged]
            if above:
                tops[above[-1]].append(code)
            else:
                tops[code] = []
        return tops

    wrong, missing = topmost(flags.doubted), topmost(flags.expected)
    out = []
    for code, along in wrong.items():
        siblings = [m for m in missing if nodes[m].parent == nodes[code].parent]
        instead = max(siblings, key=lambda m: p[index[m]], default="")
        if instead:
            missing.pop(instead)
        right, alternative = p[index[code]], p[index[instead]] if instead else 0.0
        wrong_chance = 1.0 - right * (1.0 - alternative)  # either the given code or the sibling's absence is wrong
        # Neighbours given the code side with the human; neighbours given the sibling instead, against.
        against = shares[index[instead]] - shares[index[code]] if instead else -shares[index[code]]
        out.append(LabelIssue(row, facet, nodes[code].level, code, GIVEN, round(float(right), 4), instead,
                              round(float(alternative), 4), tuple(along),
                              round(_weighed(wrong_chance, shift(code, instead, along=along, against=against)), 6)))
    for code, along in missing.items():
        moved = shift(code, along=along, against=shares[index[code]])
        out.append(LabelIssue(row, facet, nodes[code].level, code, MISSING, round(float(p[index[code]]), 4),
                              along=tuple(along), score=round(_weighed(p[index[code]], moved), 6)))
    return out
