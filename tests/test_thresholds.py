from __future__ import annotations

import numpy as np

from automl.metrics import best_f1_thresholds, score_level, tuned_threshold_f1
from automl.rules import Rule
from automl.rules import apply_rule as _apply_rule
from automl.rules import choose_rule as _choose_rule


def test_best_threshold_maximises_f1_and_respects_ties():
    scores = np.array([[0.9], [0.8], [0.7], [0.7], [0.2]])
    truth = np.array([[1], [1], [0], [1], [0]], dtype=bool)
    cuts, tp, picked = best_f1_thresholds(scores, truth)
    # Taking the top 4 (both 0.7s: ties cannot be split) gives F1 = 6/7, the best reachable.
    assert 0.2 < cuts[0] < 0.7
    assert (tp[0], picked[0]) == (3, 4)
    assert ((scores[:, 0] > cuts[0]) == [True, True, True, True, False]).all()


def test_label_without_positives_is_never_proposed():
    cuts, _, _ = best_f1_thresholds(np.array([[0.9], [0.1]]), np.array([[0], [0]], dtype=bool))
    assert np.isinf(cuts[0])


def test_tuned_threshold_f1_is_one_for_a_perfect_ranking_and_lower_otherwise():
    truth = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    assert tuned_threshold_f1(truth, np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.2]])) == 1.0
    assert tuned_threshold_f1(truth, np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.9, 0.8]])) < 0.8


def test_rule_choice_prefers_a_perfect_keyword_and_uses_the_model_otherwise():
    truth = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    perfect_kw = truth.copy()
    noisy_proba = np.array([0.6, 0.4, 0.5, 0.1, 0.7, 0.3])
    assert _choose_rule(noisy_proba, truth, perfect_kw)[0] == Rule.KEYWORD
    good_proba = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.3])
    useless_kw = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    rule, cut = _choose_rule(good_proba, truth, useless_kw)
    assert rule == Rule.MODEL and 0.3 < cut < 0.7
    assert _choose_rule(good_proba, truth, None)[0] == Rule.MODEL


def test_union_and_gated_rules():
    proba = np.array([0.9, 0.1, 0.9, 0.1])
    kw = np.array([False, True, True, False])
    fired, by_model = _apply_rule(Rule.UNION, proba, 0.5, kw)
    assert fired.tolist() == [True, True, True, False] and by_model.tolist() == [True, False, True, False]
    fired, by_model = _apply_rule(Rule.GATED, proba, 0.5, kw)
    assert fired.tolist() == [False, False, True, False] and not by_model.any()


def test_score_level_micro_and_macro():
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    pred = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)
    s = score_level("f", 1, ["a", "b", "c"], truth, pred)
    assert s.n_labels == 2  # c has no positive in truth: out of the macro average
    assert (s.micro_precision, s.micro_recall) == (2 / 3, 2 / 3)
    assert abs(s.macro_f1 - (2 / 3 + 1.0) / 2) < 1e-9
    assert s.per_label["c"].precision == 0.0 and s.per_label["c"].support == 0


def test_target_precision_moves_the_cut_up_or_gives_up():
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5], [0.4]])
    truth = np.array([[1], [1], [0], [1], [0], [1]], dtype=bool)
    free, _, _ = best_f1_thresholds(scores, truth)
    strict, tp, picked = best_f1_thresholds(scores, truth, min_precision=0.9)
    assert free[0] < 0.5 and 0.7 < strict[0] < 0.8 and (tp[0], picked[0]) == (2, 2)
    never, _, _ = best_f1_thresholds(np.array([[0.9], [0.8]]), np.array([[0], [1]], dtype=bool), min_precision=0.9)
    assert np.isinf(never[0])


def test_rule_choice_under_a_target_precision():
    truth = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    loose_kw = np.array([1, 1, 1, 1, 1, 0], dtype=bool)  # precision 0.6
    proba = np.array([0.9, 0.8, 0.7, 0.1, 0.6, 0.3])
    rule, cut = _choose_rule(proba, truth, loose_kw, min_precision=0.95)
    assert rule in (Rule.MODEL, Rule.GATED) and 0.7 < cut < 0.8  # only the top two are sure
    assert _choose_rule(np.zeros(6), truth, loose_kw, min_precision=0.95)[0] == "none"


def test_keyword_only_labels_under_the_target_are_not_proposed(small_taxonomy):
    from automl.model import PreAnnotator
    from automl.settings import ModelSettings
    from automl.taxonomy_file import load_taxonomy

    texts = ["cats here", "cats there", "cats again", "school cats"]
    labels = [{"AN1"}, {"AN1"}, {"ED"}, {"ED"}]  # the "cat" rule is right half of the time
    tax = load_taxonomy(small_taxonomy)
    loose = PreAnnotator(tax, ModelSettings(wrong_prefill_cost=0.5)).fit(texts, labels)  # worth it above 1/3
    strict = PreAnnotator(tax, ModelSettings(target_precision=0.8)).fit(texts, labels)
    default = PreAnnotator(tax, ModelSettings()).fit(texts, labels)  # right half the time: saves nothing
    codes = lambda m: {p.code for ps in m.predict(["a cat"])[0].values() for p in ps}  # noqa: E731
    assert "AN1" in codes(loose) and "AN1" not in codes(strict) and "AN1" not in codes(default)
    suggested = {p.code: p.confidence for p in default.propose(["a cat"])[0].suggestions["subject"]}
    assert suggested["AN1"] == 0.5  # offered, not pre-filled


def test_the_cut_that_saves_the_most_edits_and_no_cut_chosen_by_luck():
    from automl.metrics import best_saving_thresholds, expected_saving

    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5], [0.4], [0.3], [0.2]])
    truth = np.array([[1], [1], [1], [1], [0], [1], [0], [0]], dtype=bool)
    cut, tp, picked = best_saving_thresholds(scores, truth)
    # Four of four, or five of six, save four edits each out of fold; the larger is the surer (shrunk toward 1/3).
    assert 0.3 < cut[0] < 0.4 and (tp[0], picked[0]) == (5, 6)
    assert round(expected_saving(5, 6, 1.0), 9) == round(6 * (6 / 9 * 2 - 1), 9) > expected_saving(4, 4, 1.0)
    # One right text at the top, then noise: one lucky pre-fill is no evidence, nothing is pre-filled.
    lucky = np.array([[1], [0], [0], [1], [0], [0]], dtype=bool)
    assert np.isinf(best_saving_thresholds(scores[:6], lucky)[0][0])
    # A wrong pre-fill costing three missing ones moves the cut up.
    strict, _, _ = best_saving_thresholds(scores, truth, wrong_cost=3.0)
    assert strict[0] >= cut[0]
