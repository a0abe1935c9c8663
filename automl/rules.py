"""How each label is decided: its rule (keyword, model over a threshold, either, both) and threshold, chosen on
out-of-fold predictions, and applied the same way in training and in prediction."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from automl.metrics import best_f1_thresholds, best_saving_thresholds, expected_saving

__all__ = ["Rule", "apply_rule", "choose_rule", "keyword_precision", "logit"]


class Rule(StrEnum):
    """How a label is decided. A trained label takes whichever rule did best out of fold on the training data."""

    KEYWORD = "keyword"  # the keyword rule alone (also every label with too few examples)
    MODEL = "model"  # the model's probability over the label's threshold
    UNION = "model_or_keyword"  # either fires
    GATED = "keyword_and_model"  # the keyword fires and the model agrees
    NONE = "none"  # nothing is worth pre-filling (or too few examples and no keyword rule): never pre-filled


def choose_rule(proba: np.ndarray, truth: np.ndarray, kw: np.ndarray | None, min_precision: float = 0.0,
                wrong_cost: float | None = None) -> tuple[Rule, float]:
    """The rule and threshold that do best out of fold; ties go to the simpler rule (keyword first).

    With `wrong_cost`: the one expected to save a labeller the most edits (a right pre-fill saves an addition, a
    wrong one costs a deletion weighing `wrong_cost`; see `expected_saving`). Without: the best F1 among those whose
    precision reaches `min_precision`. Rule.NONE when no rule saves anything, or none reaches the precision."""
    col = truth.reshape(-1, 1)
    positives = truth.sum()

    def value(tp: float, picked: float) -> float:
        return expected_saving(tp, picked, wrong_cost) if wrong_cost is not None else 2 * tp / (picked + positives)

    candidates = []
    if kw is not None and kw.any():
        tp, picked = float((kw & truth).sum()), float(kw.sum())
        worth = value(tp, picked) > 0 if wrong_cost is not None else tp >= min_precision * picked
        if worth:
            candidates.append((value(tp, picked), Rule.KEYWORD, np.inf))
    options = [(Rule.MODEL, proba)]
    if kw is not None:
        options += [(Rule.UNION, np.where(kw, np.inf, proba)), (Rule.GATED, np.where(kw, proba, -np.inf))]
    for rule, scores in options:
        if wrong_cost is not None:
            c, t, p = best_saving_thresholds(scores.reshape(-1, 1), col, wrong_cost)
        else:
            c, t, p = best_f1_thresholds(scores.reshape(-1, 1), col, min_precision)
        if np.isfinite(c[0]):
            candidates.append((value(t[0], p[0]), rule, c[0]))
    if not candidates:
        return Rule.NONE, float("inf")
    best = max(candidates, key=lambda c: c[0])  # max keeps the first of equals
    return best[1], float(best[2])


def apply_rule(rule: str, proba: np.ndarray, cut: float, kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fired, fired because of the model) for one label."""
    over = proba > cut
    if rule == Rule.MODEL:
        return over, over
    if rule == Rule.UNION:
        return over | kw, over
    if rule == Rule.GATED:
        return over & kw, np.zeros_like(over)
    if rule == Rule.KEYWORD:
        return kw.copy(), np.zeros_like(over)
    return np.zeros_like(over), np.zeros_like(over)


# What a keyword rule is trusted at before any labelled text has tested a rule of its level: the taxonomy's author
# wrote it to be right more often than not (it pre-fills until the labels say otherwise).
UNTESTED_RULE_PRECISION = 2 / 3


def keyword_precision(kw: np.ndarray, truth: np.ndarray, strength: float = 2.0) -> np.ndarray:
    """Each rule's precision on the training data, shrunk toward the pooled precision of all the level's rules."""
    hits, correct = kw.sum(axis=0), (kw & truth).sum(axis=0)
    pooled = correct.sum() / hits.sum() if hits.sum() else UNTESTED_RULE_PRECISION
    return (correct + strength * pooled) / (hits + strength)


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
