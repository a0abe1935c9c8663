"""A training's plan: what each facet level learns (`LevelPlan`), and what the time budget affords (`plan_training`):
each level's fits estimated from a sample, the features without their character n-grams and fewer folds when even the
default models would overrun it, then search time shared among the levels in proportion to their trainable labels,
with no search where a level's share would be under auto-sklearn's minimum (`search_shares`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from automl.search import WeightedEnsemble, default_members
from automl.settings import ModelSettings

if TYPE_CHECKING:
    import scipy.sparse as sp

    from automl.features import TextFeatures

__all__ = ["COST_ROWS_EXPONENT", "COST_SAMPLE_LABELS", "COST_SAMPLE_ROWS", "Folds", "LevelCost", "LevelPlan",
           "TrainingBudget", "folds_within", "level_cost", "plan_training", "search_shares"]

log = logging.getLogger(__name__)
# What a level's fits are estimated from: its default model timed on this many of its labels (one-vs-rest: the
# time is per label) and texts, scaled up as n ** COST_ROWS_EXPONENT (liblinear grows a little faster than the texts:
# UK-CAT resampled, 4,000 to 17,000 texts took 4.5-4.9x the time for 4.25x the texts).
COST_SAMPLE_LABELS = 12
COST_SAMPLE_ROWS = 4000
COST_ROWS_EXPONENT = 1.1


@dataclass(frozen=True)
class LevelPlan:
    """One facet level's part of a training: its codes, their indicator matrix over the labelled texts, which of them
    have enough examples to learn, and the pipelines to refit instead of searching (None: search)."""

    facet: str
    level: int
    codes: list[str]
    truth: np.ndarray  # texts x codes, 0/1
    trainable: np.ndarray  # per code: enough positive and negative examples for the model
    refit: WeightedEnsemble | None = None

    @property
    def learned(self) -> np.ndarray:
        """The indicator matrix of the codes the level's model learns."""
        return self.truth[:, self.trainable]


@dataclass(frozen=True)
class LevelCost:
    trainable: int  # labels the level's model learns (0: keyword rules only)
    other_seconds: float  # estimated time of its out-of-fold and final fits once its pipelines are chosen
    unsearched_seconds: float | None = None  # the same if it is not searched (one default model); None: as searched

    def other(self, searched: bool) -> float:
        return self.other_seconds if searched or self.unsearched_seconds is None else self.unsearched_seconds

    def scaled(self, factor: float) -> LevelCost:
        unsearched = None if self.unsearched_seconds is None else self.unsearched_seconds * factor
        return LevelCost(self.trainable, self.other_seconds * factor, unsearched)


class Folds(NamedTuple):
    n: int  # folds of the out-of-fold predictions
    mean: bool  # the model for new texts is the mean of the fold models (no fit on all texts)
    costs: list[LevelCost]  # the levels' costs at those folds


@dataclass(frozen=True)
class TrainingBudget:
    """What a training can afford, decided before any level is fitted."""

    X: sp.csr_matrix  # the training texts' features (without character n-grams when they were dropped)
    costs: list[LevelCost]  # per level, in the plan's order
    cv_folds: int
    fold_mean: bool
    char_ngrams_dropped: bool


def plan_training(plan: Sequence[LevelPlan], features: TextFeatures, texts: Sequence[str], X: sp.csr_matrix,
                  hits: np.ndarray, settings: ModelSettings, deadline: float) -> TrainingBudget:
    """Each level's fits estimated; when even 2 folds of the default models would overrun the budget, the features
    without their character n-grams (estimated again; `features` then makes words-only rows for new texts too), then
    fewer folds (`folds_within`)."""
    def estimated(X: sp.csr_matrix) -> list[LevelCost]:
        return [level_cost(X, level.learned, level.refit is not None, settings) for level in plan]

    costs, dropped = estimated(X), False
    if _fewest_fits(costs, settings) > deadline - time.monotonic() and features.n_char_terms:
        log.warning("[model] budget_seconds = %d: %d labelled texts need about %.0f s of model fits with character "
                    "n-grams at the fewest folds (2), and %.0f s are left: this training uses the word terms alone "
                    "(fits ~4x cheaper, quality a little lower). Raise budget_seconds to keep them",
                    settings.budget_seconds, len(texts), _fewest_fits(costs, settings), deadline - time.monotonic())
        X, dropped = features.drop_characters(texts, hits), True
        costs = estimated(X)
    folds = folds_within(deadline - time.monotonic(), costs, settings, len(texts))
    return TrainingBudget(X, folds.costs, folds.n, folds.mean, dropped)


def level_cost(X: sp.csr_matrix, Y: np.ndarray, refit: bool, settings: ModelSettings) -> LevelCost:
    """What a level needs besides its search: its folds' fits and the one on all texts of up to `max_members`
    pipelines (one, the default, if it is not searched), `jobs` at a time, estimated from a timed fit of the
    default linear model on a sample of its labels and texts (the search space's members fit in similar time)."""
    s = settings
    if not Y.shape[1]:
        return LevelCost(0, 0.0)
    rng = np.random.RandomState(s.seed)
    labels = np.sort(rng.permutation(Y.shape[1])[:COST_SAMPLE_LABELS])
    rows = np.sort(rng.permutation(len(Y))[:COST_SAMPLE_ROWS])
    started = time.monotonic()
    WeightedEnsemble(default_members(s.seed)).fit(X[rows], Y[rows][:, labels])
    every = ((time.monotonic() - started) * Y.shape[1] / len(labels)  # all labels on all texts, one core
             * (len(Y) / len(rows)) ** COST_ROWS_EXPONENT)
    one = every * s.cv_folds / s.jobs  # k folds of (k-1)/k of the texts each, and one on all of them
    return LevelCost(0, one) if refit else LevelCost(Y.shape[1], one * s.max_members, one)


def folds_within(remaining: float, costs: list[LevelCost], settings: ModelSettings, n_train: int) -> Folds:
    """The folds the training can afford, whether the model for new texts is the mean of the fold models (no
    fit on all texts), and the levels' costs then. `cv_folds` and a fit on all texts, unless the levels'
    default models alone would take longer than the time left; then the fold models' mean, and if that is
    not enough fewer folds (2 at least; the fits take the time of k - 1 fits on all texts). Logged; a warning
    naming the fix when even 2 folds will not keep the budget."""
    s = settings
    least = sum(c.other(False) for c in costs)  # no search anywhere
    if least <= remaining:
        return Folds(s.cv_folds, False, costs)
    per_fit = _fewest_fits(costs, s)
    folds = int(min(s.cv_folds, max(2, remaining // per_fit + 1)))
    if per_fit > remaining:
        log.warning("[model] budget_seconds = %d: %d labelled texts need about %.0f s of model fits at the "
                    "fewest folds (2) after %.0f s of features and estimates; the training will take that long. "
                    "Raise budget_seconds", s.budget_seconds, n_train, per_fit, s.budget_seconds - remaining)
    else:
        log.info("%d-fold thresholds, the model for new texts the mean of the fold models: the default models' "
                 "fits at %d folds and on all texts (~%.0f s) would not fit the %.0f s left", folds, s.cv_folds,
                 least, remaining)
    return Folds(folds, True, [c.scaled((folds - 1) / s.cv_folds) for c in costs])


def _fewest_fits(costs: list[LevelCost], settings: ModelSettings) -> float:
    """The levels' default models' fits at the fewest folds (2: one fit's time on all texts)."""
    return sum(c.other(False) for c in costs) / settings.cv_folds


def search_shares(remaining: float, levels: Sequence[LevelCost], minimum: float) -> list[float]:
    """Search seconds per level out of `remaining`: what the levels' other work needs is set aside, the rest is
    shared in proportion to trainable labels. A level whose share falls under `minimum` gets 0 (it is not searched,
    and its other work is that of its default model) and its share goes to the others, smallest first, until every
    share left is at least `minimum`."""
    active = [i for i, level in enumerate(levels) if level.trainable]
    while active:
        pool = remaining - sum(level.other(i in active) for i, level in enumerate(levels))
        total = sum(levels[i].trainable for i in active)
        shares = {i: pool * levels[i].trainable / total for i in active}
        smallest = min(active, key=lambda i: shares[i])
        if shares[smallest] >= minimum:
            return [shares.get(i, 0.0) for i in range(len(levels))]
        active.remove(smallest)
    return [0.0] * len(levels)
