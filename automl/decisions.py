"""A batch of texts' decisions over a facet's codes (what is pre-filled, how sure, by what), made consistent with the
tree, and the calibration that turns every pre-filled confidence into the probability that the label is right."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

from automl.records import Source
from automl.taxonomy import Taxonomy

# A level's pre-fill calibration needs this many out-of-fold pre-fills, right and wrong ones among them.
MIN_CALIBRATION_POINTS = 30


@dataclass
class Decisions:
    """Per facet, for a batch of texts (rows) and the facet's codes (columns)."""

    codes: list[str]
    chosen: np.ndarray  # bool: pre-filled
    confidence: np.ndarray  # float: how sure each pre-fill is (0 where nothing is pre-filled)
    source: np.ndarray  # int8 values of Source
    likelihood: np.ndarray | None = None  # float: how likely each label applies, pre-filled or not
    margin: np.ndarray | None = None  # float: each label's own model's logit over its cut (NaN: no model)


def harmonise(taxonomy: Taxonomy, hierarchy: str, levels: Mapping[int, Decisions]) -> Decisions:
    """Join a facet's levels and make them consistent with the tree: a pre-filled code brings its ancestors
    (`imply_parents`, with the child's confidence where higher), or is dropped without its parent
    (`require_parent`)."""
    order = sorted(levels)
    codes = [c for lv in order for c in levels[lv].codes]
    chosen = np.hstack([levels[lv].chosen for lv in order]).copy()
    confidence = np.hstack([levels[lv].confidence for lv in order]).copy()
    source = np.hstack([levels[lv].source for lv in order]).copy()
    likelihood = np.hstack([levels[lv].likelihood if levels[lv].likelihood is not None else levels[lv].confidence
                            for lv in order]).copy()
    margins = [levels[lv].margin for lv in order]
    margin = (np.hstack([m if m is not None else np.full(levels[lv].chosen.shape, np.nan)
                         for m, lv in zip(margins, order)]) if any(m is not None for m in margins) else None)
    index = {c: j for j, c in enumerate(codes)}
    nodes = taxonomy.nodes
    if hierarchy == "imply_parents":
        # Deepest first, so that a proposal lifts its whole ancestry.
        for code in sorted(codes, key=lambda c: -nodes[c].level):
            parent = nodes[code].parent
            if parent is None:
                continue
            j, p = index[code], index[parent]
            child = chosen[:, j]
            lifted = child & ~chosen[:, p]
            source[lifted, p] = source[lifted, j]
            confidence[:, p] = np.where(child, np.maximum(confidence[:, p], confidence[:, j]), confidence[:, p])
            chosen[:, p] |= child
            likelihood[:, p] = np.maximum(likelihood[:, p], likelihood[:, j])  # a child's chance is its parent's
    else:
        for code in sorted(codes, key=lambda c: nodes[c].level):
            parent = nodes[code].parent
            if parent is not None:
                chosen[:, index[code]] &= chosen[:, index[parent]]
    confidence = np.where(chosen, confidence, 0.0)
    source = np.where(chosen, source, Source.NONE).astype(np.int8)
    return Decisions(codes, chosen, confidence, source, likelihood, margin)


def fit_prefill_calibration(decisions: Decisions, truth: np.ndarray,
                            level_of: Mapping[str, int]) -> dict[int, IsotonicRegression]:
    """Per level, the map from a pre-fill's raw confidence (a model's calibrated margin, a keyword rule's precision,
    a child's confidence lifted to its parent) to how often such pre-fills were right, out of fold."""
    out = {}
    for level in sorted(set(level_of.values())):
        idx = [j for j, c in enumerate(decisions.codes) if level_of[c] == level]
        chosen = decisions.chosen[:, idx]
        raw, right = decisions.confidence[:, idx][chosen], truth[:, idx][chosen]
        if len(raw) >= MIN_CALIBRATION_POINTS and 0 < right.sum() < len(right):
            # Never "certainly wrong" or "certainly right" on finite evidence (the rule of succession's bounds): a
            # pre-fill always carries a confidence above 0.
            bound = 1.0 / (len(raw) + 2)
            out[level] = IsotonicRegression(y_min=bound, y_max=1.0 - bound, out_of_bounds="clip").fit(
                raw, right.astype(float))
    return out


def cross_calibrated(decisions: Decisions, truth: np.ndarray, level_of: Mapping[str, int],
                     seed: int = 0) -> Decisions:
    """The decisions calibrated as a new text's would be: each half of the rows by a calibration fitted on the other
    half. What the held-out figures (calibration error above all) are measured on."""
    halves = np.random.RandomState(seed).permutation(len(decisions.chosen)) % 2 == 0
    confidence = decisions.confidence.copy()
    for rows in (halves, ~halves):
        fitted = fit_prefill_calibration(_rows(decisions, ~rows), truth[~rows], level_of)
        confidence[rows] = calibrate(_rows(decisions, rows), fitted, level_of).confidence
    return Decisions(decisions.codes, decisions.chosen, confidence, decisions.source, decisions.likelihood,
                     decisions.margin)


def _rows(d: Decisions, rows: np.ndarray) -> Decisions:
    return Decisions(d.codes, d.chosen[rows], d.confidence[rows], d.source[rows],
                     d.likelihood[rows] if d.likelihood is not None else None)


def calibrate(decisions: Decisions, calibrators: Mapping[int, IsotonicRegression],
              level_of: Mapping[str, int]) -> Decisions:
    """The decisions with their pre-filled confidences mapped through their level's calibration."""
    confidence = decisions.confidence.copy()
    for j, code in enumerate(decisions.codes):
        calibrator = calibrators.get(level_of[code])
        rows = decisions.chosen[:, j]
        if calibrator is not None and rows.any():
            confidence[rows, j] = calibrator.predict(confidence[rows, j])
    return Decisions(decisions.codes, decisions.chosen, confidence, decisions.source, decisions.likelihood,
                     decisions.margin)
