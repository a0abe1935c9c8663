"""A batch of texts' decisions over a facet's codes (what is pre-filled, how sure, by what), made consistent with the
tree, and the calibration that turns every pre-filled confidence into the probability that the label is right."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

from automl.records import Source
from automl.taxonomy import Taxonomy

__all__ = ["Decisions", "calibrate", "cross_calibrated", "decode_path", "fit_prefill_calibration", "harmonise"]

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


def _joined(levels: Mapping[int, Decisions]) -> Decisions:
    """A facet's levels side by side, top level first (copies: callers change them)."""
    order = sorted(levels)
    likelihood = np.hstack([d.likelihood if d.likelihood is not None else d.confidence
                            for d in (levels[lv] for lv in order)])
    margins = [levels[lv].margin for lv in order]
    margin = (np.hstack([m if m is not None else np.full(levels[lv].chosen.shape, np.nan)
                         for m, lv in zip(margins, order, strict=True)])
              if any(m is not None for m in margins) else None)
    return Decisions([c for lv in order for c in levels[lv].codes],
                     np.hstack([levels[lv].chosen for lv in order]).copy(),
                     np.hstack([levels[lv].confidence for lv in order]).copy(),
                     np.hstack([levels[lv].source for lv in order]).copy(), likelihood.copy(), margin)


def harmonise(taxonomy: Taxonomy, hierarchy: str, levels: Mapping[int, Decisions]) -> Decisions:
    """Join a facet's levels and make them consistent with the tree: a pre-filled code brings its ancestors
    (`imply_parents`, with the child's confidence where higher), or is dropped without its parent
    (`require_parent`)."""
    joined = _joined(levels)
    codes, chosen, confidence, source, likelihood = (joined.codes, joined.chosen, joined.confidence, joined.source,
                                                     joined.likelihood)
    assert likelihood is not None  # _joined always fills it (a level without one: its confidence)
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
    return Decisions(codes, chosen, confidence, source, likelihood, joined.margin)


def decode_path(taxonomy: Taxonomy, levels: Mapping[int, Decisions]) -> Decisions:
    """A single-choice facet's decisions: one path per text, always. The most likely top-level code, then the most
    likely child of the code chosen, level by level, down to a code none of whose children has any evidence (a
    model's or a keyword's); a child a level further down (a tree that skips a level) is found at its level. Each
    code of the path is pre-filled with its own likelihood as its confidence (the pre-fill calibration then maps it,
    as for any pre-fill); its source is its model where it has one."""
    joined = _joined(levels)
    likelihood = joined.likelihood
    assert likelihood is not None  # _joined always fills it (a level without one: its confidence)
    n = len(joined.chosen)
    margin = joined.margin if joined.margin is not None else np.full(joined.chosen.shape, np.nan)
    # Calibrated likelihoods come in steps: ties go to the larger margin over the label's own cut.
    tiebreak = np.where(np.isfinite(margin), 1.0 / (1.0 + np.exp(-np.nan_to_num(margin))), 0.0)
    score = likelihood + 1e-6 * tiebreak
    index = {c: j for j, c in enumerate(joined.codes)}
    nodes = taxonomy.nodes
    chosen = np.zeros_like(joined.chosen)
    current = np.full(n, -1)  # the column of each row's deepest chosen code (-1: none yet)
    for level in sorted(levels):
        cols = np.array([index[c] for c in levels[level].codes])
        parents = np.array([-1 if (parent := nodes[c].parent) is None else index.get(parent, -1)
                            for c in levels[level].codes])  # -1: a top code
        # A code can be chosen where its parent is the row's deepest code so far (a top code: where there is none).
        allowed = parents[None, :] == current[:, None]
        candidates = np.where(allowed & (likelihood[:, cols] > 0), score[:, cols], -np.inf)
        best = candidates.argmax(axis=1)
        found = np.isfinite(candidates[np.arange(n), best])
        if level == min(levels):  # the top level always answers, on no evidence with its likeliest code
            fallback = np.where(np.isfinite(score[:, cols]), score[:, cols], -np.inf).argmax(axis=1)
            best, found = np.where(found, best, fallback), np.ones(n, dtype=bool)
        rows = np.flatnonzero(found)
        chosen[rows, cols[best[rows]]] = True
        current = np.where(found, cols[best], current)  # unchanged: a child may still come a level further down
    confidence = np.where(chosen, likelihood, 0.0)
    source = np.where(chosen, np.where(np.isfinite(margin), Source.MODEL, Source.KEYWORD), Source.NONE)
    return Decisions(joined.codes, chosen, confidence, source.astype(np.int8), likelihood, joined.margin)


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
