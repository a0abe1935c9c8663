"""Multilabel metrics: per-level precision/recall/F1 (micro and macro), the labeller's effort with and without the
pre-annotations, the calibration of their confidences, and the search's tuned-threshold F1.

Effort, as a labeller meets it: from scratch, every gold label is one edit (an addition). With pre-annotations, a gold
label that was pre-filled costs nothing, one that was not is still an addition, and a pre-filled label that is not
gold is a deletion. The effort ratio is the edits with pre-annotations over the edits without: below 1.0 they save
work, above 1.0 they cost more than they save. Ancestors count as labels (they are part of what is filled in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["Effort", "FacetScore", "LabelScore", "LevelScore", "Scores", "best_f1_thresholds", "best_saving_thresholds",
           "calibration_error", "effort", "expected_saving", "indicator", "score_facet", "score_level",
           "tuned_threshold_f1"]


@dataclass
class LabelScore:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Effort:
    """A labeller's edits over a set of assets, with the pre-annotations and without them."""

    assets: int = 0
    gold: int = 0  # the labels a labeller gives from scratch: the edits without pre-annotations
    added: int = 0  # gold labels that were not pre-filled: still to add
    deleted: int = 0  # pre-filled labels that are not gold: to delete
    untouched: int = 0  # assets whose pre-annotation needs no edit at all

    @property
    def edits(self) -> int:
        """Edits with the pre-annotations."""
        return self.added + self.deleted

    @property
    def ratio(self) -> float:
        """Edits with the pre-annotations over edits without (1.0: no help; above: they cost more than they save)."""
        return _ratio(self.edits, self.gold) if self.gold else float(self.edits > 0)

    @property
    def prefilled(self) -> int:
        return self.gold - self.added + self.deleted

    @property
    def prefill_precision(self) -> float:
        return _ratio(self.prefilled - self.deleted, self.prefilled)

    @property
    def coverage(self) -> float:
        """The share of gold labels that were pre-filled."""
        return _ratio(self.gold - self.added, self.gold)

    @property
    def no_edit_share(self) -> float:
        return _ratio(self.untouched, self.assets)

    def to_dict(self) -> dict:
        return {**asdict(self), "edits": self.edits, "ratio": round(self.ratio, 4),
                "prefill_precision": round(self.prefill_precision, 4), "coverage": round(self.coverage, 4),
                "no_edit_share": round(self.no_edit_share, 4)}

    @classmethod
    def from_dict(cls, data: dict | None) -> Effort:
        return cls(**{k: int(data[k]) for k in ("assets", "gold", "added", "deleted", "untouched")}) if data else cls()


def effort(truth: np.ndarray, prefilled: np.ndarray) -> Effort:
    """The effort over assets (rows) and labels (columns) of boolean indicator matrices."""
    truth, prefilled = truth.astype(bool), prefilled.astype(bool)
    added, deleted = truth & ~prefilled, prefilled & ~truth
    return Effort(assets=len(truth), gold=int(truth.sum()), added=int(added.sum()), deleted=int(deleted.sum()),
                  untouched=int((~(added | deleted)).all(axis=1).sum()))


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: over equal-width confidence bins, the gap between the mean confidence and the
    share that was right, weighted by the bin's size (0.0 for no prediction)."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if not len(confidence):
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in np.unique(which):
        inside = which == b
        gap += inside.sum() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(gap / len(confidence))


@dataclass
class LevelScore:
    facet: str
    level: int
    n_labels: int
    micro_precision: float  # also the pre-fill precision
    micro_recall: float  # also the coverage
    micro_f1: float
    macro_f1: float
    per_label: dict[str, LabelScore] = field(default_factory=dict)
    effort: Effort = field(default_factory=Effort)

    def to_dict(self) -> dict:
        return {**asdict(self), "effort": self.effort.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> LevelScore:
        per_label = {code: LabelScore(**score) for code, score in (data.get("per_label") or {}).items()}
        return cls(**{**data, "per_label": per_label, "effort": Effort.from_dict(data.get("effort"))})


@dataclass
class FacetScore:
    """A facet's levels together: the effort summed over them (an asset needs no edit when no level needs one) and
    the calibration of the confidences of every pre-filled label."""

    facet: str
    effort: Effort
    calibration_error: float
    prefilled: int

    def to_dict(self) -> dict:
        return {**asdict(self), "effort": self.effort.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> FacetScore:
        return cls(**{**data, "effort": Effort.from_dict(data.get("effort"))})


@dataclass
class Scores:
    levels: list[LevelScore]
    facets: list[FacetScore]

    def to_dict(self) -> dict:
        return {"levels": [s.to_dict() for s in self.levels], "facets": [s.to_dict() for s in self.facets]}


def indicator(label_sets: Sequence[set[str]], codes: Sequence[str]) -> np.ndarray:
    """Rows: label sets; columns: codes; True where the set holds the code."""
    out = np.zeros((len(label_sets), len(codes)), dtype=bool)
    index = {c: j for j, c in enumerate(codes)}
    for i, labels in enumerate(label_sets):
        for code in labels:
            j = index.get(code)
            if j is not None:
                out[i, j] = True
    return out


def score_facet(facet: str, truth: np.ndarray, prefilled: np.ndarray, confidence: np.ndarray) -> FacetScore:
    """`truth`, `prefilled` and `confidence` over all of the facet's codes (ancestors included in the truth)."""
    chosen = prefilled.astype(bool)
    return FacetScore(facet, effort(truth, chosen), calibration_error(confidence[chosen], truth[chosen]),
                      int(chosen.sum()))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def score_level(facet: str, level: int, codes: list[str], truth: np.ndarray, predicted: np.ndarray) -> LevelScore:
    """Micro scores over every code of the level; macro F1 over codes with at least one positive in `truth`."""
    truth = truth.astype(bool)
    predicted = predicted.astype(bool)
    tp = (truth & predicted).sum(axis=0)
    fp = (~truth & predicted).sum(axis=0)
    fn = (truth & ~predicted).sum(axis=0)
    per_label = {}
    for j, code in enumerate(codes):
        if truth[:, j].any() or predicted[:, j].any():
            p, r = _ratio(tp[j], tp[j] + fp[j]), _ratio(tp[j], tp[j] + fn[j])
            per_label[code] = LabelScore(p, r, _ratio(2 * tp[j], 2 * tp[j] + fp[j] + fn[j]), int(truth[:, j].sum()))
    present = [per_label[c].f1 for j, c in enumerate(codes) if truth[:, j].any()]
    return LevelScore(
        facet=facet,
        level=level,
        n_labels=len(present),
        micro_precision=_ratio(tp.sum(), tp.sum() + fp.sum()),
        micro_recall=_ratio(tp.sum(), tp.sum() + fn.sum()),
        micro_f1=_ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()),
        macro_f1=float(np.mean(present)) if present else 0.0,
        per_label=per_label,
        effort=effort(truth, predicted),
    )


def best_f1_thresholds(
    scores: np.ndarray, truth: np.ndarray, min_precision: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each column, the cut that maximises F1 of `score > cut` among the cuts whose precision is at least
    `min_precision`.

    Returns (cuts, true positives at the cut, predicted positives at the cut). Columns without positives, or where no
    cut reaches the precision, get an unreachable cut.
    """
    def f1(tp, taken, positives):
        return np.where(tp >= min_precision * taken, 2 * tp / (taken + positives), -1.0)

    return _best_cuts(scores, truth, f1)


# A cut's saving on new texts is estimated with its out-of-fold precision shrunk toward 1/3, as if it had also made
# these right and wrong pre-fills: a cut chosen among many on a handful of texts must not pre-fill by luck.
PRIOR_RIGHT, PRIOR_WRONG = 1.0, 2.0


def expected_saving(tp, taken, wrong_cost: float):
    """The edits a rule that pre-filled `taken` texts, `tp` of them right, is expected to save on as many new ones."""
    precision = (tp + PRIOR_RIGHT) / (taken + PRIOR_RIGHT + PRIOR_WRONG)
    return taken * (precision * (1 + wrong_cost) - wrong_cost)


def best_saving_thresholds(
    scores: np.ndarray, truth: np.ndarray, wrong_cost: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each column, the cut of `score > cut` expected to save a labeller the most edits: each right pre-fill
    saves an addition, each wrong one costs a deletion weighing `wrong_cost` additions. Columns where no cut saves
    anything get an unreachable cut (nothing pre-filled). Returns (cuts, true positives, predicted positives)."""
    def saved(tp, taken, _positives):
        gain = expected_saving(tp, taken, wrong_cost)
        return np.where(gain > 0, gain, -1.0)

    return _best_cuts(scores, truth, saved)


def _best_cuts(scores: np.ndarray, truth: np.ndarray, objective) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column, the cut between distinct scores where `objective(tp, taken, positives)` is highest (negative
    values are never chosen); the first of equals, i.e. the highest cut, wins."""
    n, k = scores.shape
    cuts = np.full(k, np.inf)
    tps = np.zeros(k)
    picks = np.zeros(k)
    for j in range(k):
        positives = truth[:, j].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, j], kind="stable")
        ranked = scores[order, j]
        tp = np.cumsum(truth[order, j])
        taken = np.arange(1, n + 1)
        # Only cut between distinct scores: tied items are all in or all out.
        distinct = np.r_[ranked[1:] < ranked[:-1], True]
        value = np.where(distinct, objective(tp, taken, positives), -1.0)
        i = int(np.argmax(value))
        if value[i] < 0:
            continue
        cuts[j] = (ranked[i] + ranked[i + 1]) / 2 if i + 1 < n else ranked[i] - 1e-9
        tps[j], picks[j] = tp[i], taken[i]
    return cuts, tps, picks


def tuned_threshold_f1(y_true, y_proba) -> float:
    """Mean of micro and macro F1 with each label cut at its best threshold.

    This is what the service deploys (per-label thresholds), so the search ranks pipelines by it rather than by a
    fixed 0.5 cut. Picklable at module level, as auto-sklearn's worker processes need.
    """
    truth = np.asarray(y_true).astype(bool)
    scores = np.asarray(y_proba, dtype=float)
    if scores.ndim == 2 and truth.ndim == 1 and scores.shape[1] == 2:
        scores = scores[:, 1]
    scores = scores.reshape(len(scores), -1)
    truth = truth.reshape(len(truth), -1)
    _, tps, picks = best_f1_thresholds(scores, truth)
    positives = truth.sum(axis=0)
    present = positives > 0
    if not present.any():
        return 0.0
    micro = _ratio(2 * tps[present].sum(), picks[present].sum() + positives[present].sum())
    macro = float(np.mean(2 * tps[present] / (picks[present] + positives[present])))
    return 0.5 * (micro + macro)
