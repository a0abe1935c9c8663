"""Multilabel metrics: per-level precision/recall/F1 (micro and macro) and the search's tuned-threshold F1."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class LabelScore:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class LevelScore:
    facet: str
    level: int
    n_labels: int
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_f1: float
    per_label: dict[str, LabelScore] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LevelScore:
        per_label = {code: LabelScore(**score) for code, score in (data.get("per_label") or {}).items()}
        return cls(**{**data, "per_label": per_label})


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
    )


def best_f1_thresholds(
    scores: np.ndarray, truth: np.ndarray, min_precision: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each column, the cut that maximises F1 of `score > cut` among the cuts whose precision is at least
    `min_precision`.

    Returns (cuts, true positives at the cut, predicted positives at the cut). Columns without positives, or where no
    cut reaches the precision, get an unreachable cut.
    """
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
        allowed = distinct & (tp >= min_precision * taken)
        f1 = np.where(allowed, 2 * tp / (taken + positives), -1.0)
        i = int(np.argmax(f1))
        if f1[i] < 0:
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
