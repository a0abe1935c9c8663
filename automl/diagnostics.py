"""What a version's decisions on labelled texts say beyond its scores: per-label figures with the rule that decides
each label, precision-recall curves, the calibration of the pre-filled confidences, the confusions that matter in a
hierarchy, and the most confident wrong pre-fills. Pure functions over a model's decisions and the gold labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

from automl.decisions import Decisions
from automl.rules import Rule
from automl.taxonomy import Taxonomy

__all__ = ["Confusion", "Curve", "LabelRow", "ReliabilityBin", "WrongBranch", "WrongExample", "confident_mistakes",
           "hierarchy_confusions", "label_rows", "pr_curves", "reliability"]

# Where each rule's confidence comes from, in words.
CONFIDENCE_SOURCE = {
    Rule.MODEL: "model margin, calibrated out of fold",
    Rule.UNION: "model margin (or keyword precision where only the keyword fires)",
    Rule.GATED: "model margin, calibrated out of fold",
    Rule.KEYWORD: "keyword precision on the training labels",
    Rule.NONE: "never pre-filled",
}


@dataclass(frozen=True)
class LabelRow:
    code: str
    name: str
    support: int  # gold positives among the scored texts
    prefilled: int
    precision: float
    recall: float
    f1: float
    rule: str  # Rule value
    threshold: float | None  # the model part's cut on the ensemble probability (None: no model part)
    train_positives: int
    confidence_from: str


@dataclass(frozen=True)
class Curve:
    code: str
    name: str
    support: int
    precision: np.ndarray
    recall: np.ndarray
    average_precision: float


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_confidence: float
    accuracy: float


@dataclass(frozen=True)
class Confusion:
    proposed: str
    instead_of: str
    relation: str  # "sibling" (same parent) or "cousin" (same grandparent)
    count: int


@dataclass(frozen=True)
class WrongBranch:
    """A pre-filled code whose parent the gold labels do not have: the model went down the wrong branch."""

    code: str
    parent: str
    count: int


@dataclass(frozen=True)
class WrongExample:
    asset_id: str
    text: str
    code: str
    confidence: float
    gold: list[str]  # the gold codes at the same level


def label_rows(taxonomy: Taxonomy, level_model, d: Decisions, truth: np.ndarray) -> list[LabelRow]:
    """One row per code of the level (`level_model`: the fitted LevelModel), most frequent first."""
    rows = []
    for code in level_model.codes:
        j = d.codes.index(code)
        gold, chosen = truth[:, j].astype(bool), d.chosen[:, j].astype(bool)
        tp = int((gold & chosen).sum())
        p = tp / chosen.sum() if chosen.any() else 0.0
        r = tp / gold.sum() if gold.any() else 0.0
        rule = Rule(level_model.rules.get(code, Rule.NONE))
        cut = level_model.cuts.get(code)
        rows.append(LabelRow(code, taxonomy.nodes[code].name, int(gold.sum()), int(chosen.sum()), p, r,
                             2 * p * r / (p + r) if p + r else 0.0, str(rule),
                             float(cut) if cut is not None and rule in (Rule.MODEL, Rule.UNION, Rule.GATED) else None,
                             int(level_model.train_positives.get(code, 0)), CONFIDENCE_SOURCE[rule]))
    return sorted(rows, key=lambda r: (-r.support, -r.train_positives, r.code))


def pr_curves(taxonomy: Taxonomy, codes: Sequence[str], d: Decisions, truth: np.ndarray, top: int = 6) -> list[Curve]:
    """Precision against recall as the likelihood threshold moves, for the `top` most frequent of `codes`."""
    scores = d.likelihood if d.likelihood is not None else d.confidence
    support = {c: int(truth[:, d.codes.index(c)].sum()) for c in codes}
    out = []
    for code in sorted((c for c in codes if support[c]), key=lambda c: -support[c])[:top]:
        j = d.codes.index(code)
        gold = truth[:, j].astype(bool)
        if gold.all():  # a curve needs negatives too
            continue
        precision, recall, _ = precision_recall_curve(gold, scores[:, j])
        out.append(Curve(code, taxonomy.nodes[code].name, support[code], precision, recall,
                         float(average_precision_score(gold, scores[:, j]))))
    return out


def reliability(d: Decisions, truth: np.ndarray, bins: int = 10) -> list[ReliabilityBin]:
    """The pre-filled labels by stated confidence, against how often they were right."""
    chosen = d.chosen.astype(bool)
    confidence, correct = d.confidence[chosen], truth[chosen].astype(bool)
    out = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
        if inside.any():
            out.append(ReliabilityBin(float(low), float(high), int(inside.sum()), float(confidence[inside].mean()),
                                      float(correct[inside].mean())))
    return out


def hierarchy_confusions(taxonomy: Taxonomy, d: Decisions, truth: np.ndarray,
                         top: int = 10) -> tuple[list[Confusion], list[WrongBranch], int]:
    """(the commonest pairs where a sibling or cousin was pre-filled in place of a missed gold code; the commonest
    wrong-branch pre-fills; the number of wrong pre-fills in all)."""
    chosen, gold = d.chosen.astype(bool), truth.astype(bool)
    pairs: Counter = Counter()
    branches: Counter = Counter()
    wrong_total = 0
    for row in range(len(chosen)):
        wrong = [d.codes[j] for j in np.flatnonzero(chosen[row] & ~gold[row])]
        missed = [d.codes[j] for j in np.flatnonzero(gold[row] & ~chosen[row])]
        held = {d.codes[j] for j in np.flatnonzero(gold[row])}
        wrong_total += len(wrong)
        for w in wrong:
            node = taxonomy.nodes[w]
            if node.parent is not None and node.parent not in held:
                branches[(w, node.parent)] += 1
            for m in missed:
                relation = _relation(taxonomy, w, m)
                if relation:
                    pairs[(w, m, relation)] += 1
    return ([Confusion(w, m, rel, n) for (w, m, rel), n in pairs.most_common(top)],
            [WrongBranch(c, p, n) for (c, p), n in branches.most_common(top)], wrong_total)


def _relation(taxonomy: Taxonomy, a: str, b: str) -> str:
    na, nb = taxonomy.nodes[a], taxonomy.nodes[b]
    if na.level != nb.level or a == b:
        return ""
    if na.parent == nb.parent:
        return "sibling"
    grand = taxonomy.nodes[na.parent].parent if na.parent else None
    if grand is not None and nb.parent and taxonomy.nodes[nb.parent].parent == grand:
        return "cousin"  # under one grandparent (two top-level branches are no cousins)
    return ""


def confident_mistakes(codes: Sequence[str], d: Decisions, truth: np.ndarray, ids: Sequence[str],
                       texts: Sequence[str], top: int = 5, chars: int = 240) -> list[WrongExample]:
    """The `top` wrong pre-fills among `codes` (one level) with the highest confidence, one per asset."""
    idx = [d.codes.index(c) for c in codes]
    chosen, gold = d.chosen[:, idx].astype(bool), truth[:, idx].astype(bool)
    wrong = np.argwhere(chosen & ~gold)
    ranked = sorted(wrong.tolist(), key=lambda rc: -d.confidence[rc[0], idx[rc[1]]])
    out, seen = [], set()
    for row, col in ranked:
        if row in seen:
            continue
        seen.add(row)
        text = texts[row] if len(texts[row]) <= chars else texts[row][:chars].rsplit(" ", 1)[0] + " …"
        out.append(WrongExample(ids[row], text, codes[col], float(d.confidence[row, idx[col]]),
                                [codes[k] for k in np.flatnonzero(gold[row])]))
        if len(out) == top:
            break
    return out
