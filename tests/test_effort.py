"""The labeller's effort and the calibration error, on cases worked out by hand."""

from __future__ import annotations

import numpy as np

from automl.metrics import Effort, calibration_error, effort, score_facet


def test_edits_with_and_without_pre_annotations():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=bool)
    prefilled = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    e = effort(truth, prefilled)
    # 4 gold labels; asset 1: add 1, delete 1; asset 2: nothing; asset 3: add 1.
    assert (e.gold, e.added, e.deleted, e.edits, e.untouched, e.assets) == (4, 2, 1, 3, 1, 3)
    assert (e.ratio, e.prefill_precision, e.coverage, round(e.no_edit_share, 3)) == (0.75, 2 / 3, 0.5, 0.333)
    nothing = effort(truth, np.zeros_like(truth))
    assert nothing.ratio == 1.0 and nothing.prefill_precision == 0.0  # no help: as many edits as from scratch
    everything = effort(truth, np.ones_like(truth))
    assert everything.ratio == 5 / 4  # 5 deletions: worse than nothing
    assert Effort.from_dict(e.to_dict()) == e and e.to_dict()["ratio"] == 0.75


def test_a_facet_counts_every_level_and_an_asset_without_any_edit():
    # Two levels side by side (parent, child), ancestors in the truth as in the metrics.
    truth = np.array([[1, 1], [1, 0]], dtype=bool)
    prefilled = np.array([[1, 1], [1, 1]], dtype=bool)  # asset 2: a wrong child under a right parent
    confidence = np.array([[0.9, 0.8], [0.9, 0.8]])
    facet = score_facet("subject", truth, prefilled, confidence)
    assert (facet.effort.gold, facet.effort.deleted, facet.effort.untouched, facet.prefilled) == (3, 1, 1, 4)
    # Bin 0.9: both right (gap 0.1); bin 0.8: one of two right (gap 0.3).
    assert round(facet.calibration_error, 6) == round((2 * 0.1 + 2 * 0.3) / 4, 6)


def test_calibration_error_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.RandomState(0)
    confidence = rng.uniform(0, 1, 20000)
    assert calibration_error(confidence, rng.uniform(0, 1, 20000) < confidence) < 0.02
    assert calibration_error(np.full(100, 0.95), np.arange(100) < 60) == 0.95 - 0.6
    assert calibration_error(np.array([]), np.array([])) == 0.0
