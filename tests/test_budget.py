from __future__ import annotations

import pytest

from automl import budget
from automl.budget import LevelCost, folds_within, search_shares
from automl.model import PreAnnotator
from automl.settings import ModelSettings
from automl.taxonomy_file import load_taxonomy
from conftest import EXAMPLE, example_rows


def test_search_time_is_what_is_left_after_the_other_work_shared_by_trainable_labels():
    shares = search_shares(300, [LevelCost(20, 10.0), LevelCost(60, 20.0), LevelCost(0, 0.0)], minimum=30)
    assert shares == pytest.approx([270 * 20 / 80, 270 * 60 / 80, 0.0])


def test_a_level_whose_share_is_under_the_minimum_is_not_searched_and_gives_its_time_to_the_others():
    shares = search_shares(100, [LevelCost(5, 0.0), LevelCost(95, 0.0)], minimum=30)
    assert shares == [0.0, 100.0]
    # Dropped smallest first, until every share left is above the minimum.
    assert search_shares(80, [LevelCost(1, 0), LevelCost(2, 0), LevelCost(3, 0)], minimum=30) == [0.0, 32.0, 48.0]


def test_no_search_at_all_when_the_other_work_takes_the_budget():
    assert search_shares(60, [LevelCost(10, 40.0), LevelCost(10, 15.0)], minimum=30) == [0.0, 0.0]
    assert search_shares(-5, [LevelCost(10, 1.0)], minimum=30) == [0.0]
    assert search_shares(100, [], minimum=30) == []


def test_a_budget_too_small_to_search_fits_the_default_model_on_every_level_and_says_so():
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", facet_roots={"population": ["BE"]})
    rows = example_rows("train.csv", 300)
    model = PreAnnotator(taxonomy, ModelSettings(budget_seconds=20, cv_folds=3)).fit(
        [t for _, t, _ in rows], [{c for c in ls.split(";") if c in taxonomy} for _, _, ls in rows])
    trained = [level for level in model.summary()["levels"] if level["model_labels"]]
    assert trained, "the sample has labels with enough examples"
    assert all(level["pipelines_tried"] == 0 and "not searched" in level["fallback"] for level in trained)
    assert model.decide(["a food bank for homeless people"])


def test_a_budget_the_default_models_cannot_keep_takes_two_folds_and_their_mean_and_warns(caplog, monkeypatch):
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", facet_roots={"population": ["BE"]})
    rows = example_rows("train.csv", 300)
    # Every level's default model estimated at 100 s (as at many texts): more than the budget at any folds.
    monkeypatch.setattr(budget, "level_cost", lambda X, Y, refit, settings: LevelCost(Y.shape[1], 300.0, 100.0))
    model = PreAnnotator(taxonomy, ModelSettings(budget_seconds=60, cv_folds=5)).fit(
        [t for _, t, _ in rows], [{c for c in ls.split(";") if c in taxonomy} for _, _, ls in rows])
    summary = model.summary()
    assert summary["cv_folds"] == 2 and summary["fold_mean"]
    assert summary["char_ngrams_dropped"] and summary["n_char_terms"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("budget_seconds = 60" in w and "Raise" in w for w in warnings)
    assert "word terms alone" in warnings[0]
    assert model.decide(["a food bank for homeless people"])


def test_a_budget_character_n_grams_cannot_keep_trains_on_the_words_alone_and_warns(caplog, monkeypatch):
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", facet_roots={"population": ["BE"]})
    rows = example_rows("train.csv", 300)
    texts, labels = [t for _, t, _ in rows], [{c for c in ls.split(";") if c in taxonomy} for _, _, ls in rows]
    seen, characters_cost, fitting = [], [100.0], []

    def cost(X, Y, refit, settings):  # a level's default model: 100 s with character n-grams, 2 s with the words alone
        features = fitting[-1].features_
        words_only = X.shape[1] == features.n_terms + len(features.code_index_)
        seen.append(words_only)
        unsearched = 2.0 if words_only else characters_cost[0]
        return LevelCost(Y.shape[1], 60.0, unsearched)  # searched: more than the budget, so never

    monkeypatch.setattr(budget, "level_cost", cost)
    fitting.append(PreAnnotator(taxonomy, ModelSettings(budget_seconds=60, cv_folds=5)))
    model = fitting[-1].fit(texts, labels)
    summary = model.summary()
    assert summary["char_ngrams_dropped"] and summary["n_char_terms"] == 0 and summary["n_terms"] > 0
    assert summary["cv_folds"] == 5 and not summary["fold_mean"]  # the words alone keep the budget
    assert seen == [False] * 6 + [True] * 6  # every level estimated again on the words alone
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "word terms alone" in warning and "Raise budget_seconds" in warning
    # New texts are featurised as the training was: the words alone.
    X, _ = model.features_.transform(["a food bank for homeless people"])
    assert X.shape[1] == model.features_.n_terms + len(model.features_.code_index_)
    assert model.decide(["a food bank for homeless people"])
    # Character n-grams the budget can afford stay (5 s of fits at 2 folds, 4 s a level at 5).
    characters_cost[0], seen[:] = 4.0, []
    fitting.append(PreAnnotator(taxonomy, ModelSettings(budget_seconds=60, cv_folds=5)))
    kept = fitting[-1].fit(texts, labels)
    assert not kept.summary()["char_ngrams_dropped"] and kept.summary()["n_char_terms"] > 0
    assert seen == [False] * 6


def test_ensemble_members_whose_fold_fits_would_end_after_the_level_time_are_left_out():
    import time

    import numpy as np
    import scipy.sparse as sp

    from automl.components import SparseLinearSVC, SparseLogisticRegression
    from automl.model import _fit_with_folds
    from automl.search import WeightedEnsemble

    rng = np.random.RandomState(0)
    X = sp.csr_matrix(rng.rand(80, 20))
    Y = (X[:, :2].toarray() > 0.5).astype(int)
    members = [(0.5, SparseLinearSVC(C=0.5, class_weight="none")), (0.3, SparseLogisticRegression(C=1.0,
               class_weight="none")), (0.2, SparseLinearSVC(C=2.0, class_weight="none"))]
    proba, ensemble, kept = _fit_with_folds(WeightedEnsemble(members), X, Y, 3, 1, 2)
    assert kept == 3 and len(ensemble.members_) == 3 and proba.shape == Y.shape
    # Time is up: the best member still fits (a level always has a model), the others are left out.
    proba, ensemble, kept = _fit_with_folds(WeightedEnsemble(members), X, Y, 3, 1, 2, until=time.monotonic(),
                                            member_seconds=[1.0, 2.0, 1.0])
    assert kept == 1 and len(ensemble.members_) == 1 and ((proba >= 0) & (proba <= 1)).all()
    # Out-of-fold probabilities of the one member equal those of an ensemble made of it alone.
    alone, _, _ = _fit_with_folds(WeightedEnsemble(members[:1]), X, Y, 3, 1, 2)
    assert np.allclose(proba, alone, atol=1e-4)  # float32 weights


def test_a_level_not_searched_sets_aside_only_its_default_model_s_fits():
    # Searched, each level's three members would need 30 s; the small level's share is under the minimum, so it
    # fits its default model (10 s) and the 20 s it no longer needs go to the other level's search.
    levels = [LevelCost(2, 30.0, 10.0), LevelCost(98, 30.0, 10.0)]
    assert search_shares(100, levels, minimum=30) == [0.0, 60.0]
    assert LevelCost(2, 30.0).other(False) == 30.0  # a refit level: as estimated


def test_a_member_whose_first_fits_show_it_would_end_late_is_left_out(monkeypatch):
    import numpy as np
    import scipy.sparse as sp

    from automl import model as model_module
    from automl.components import SparseLinearSVC
    from automl.search import WeightedEnsemble

    # A clock that moves 10 s with every fit: the second member's first round shows it would end after `until`,
    # though the search's times (equal) said it would fit.
    now = [1000.0]
    monkeypatch.setattr(model_module.time, "monotonic", lambda: now[0])
    real_fit = WeightedEnsemble.fit_quietly

    def slow_fit(self, X, Y):
        now[0] += 10.0
        return real_fit(self, X, Y)

    monkeypatch.setattr(WeightedEnsemble, "fit_quietly", slow_fit)
    rng = np.random.RandomState(0)
    X = sp.csr_matrix(rng.rand(60, 10))
    Y = (X[:, :2].toarray() > 0.5).astype(int)
    members = [(0.6, SparseLinearSVC(C=0.5, class_weight="none")), (0.4, SparseLinearSVC(C=1.0, class_weight="none"))]
    # 3 folds + the final fit, one at a time: the first member takes 40 s; until leaves room for 60 s.
    _, ensemble, kept = model_module._fit_with_folds(WeightedEnsemble(members), X, Y, 3, 1, 1, until=1060.0,
                                                     member_seconds=[1.0, 0.2])
    assert kept == 1 and len(ensemble.members_) == 1


class _NotLinear:
    """A member that does not reduce to weights (stands for any non-linear pipeline)."""

    def __init__(self):
        from automl.components import SparseLinearSVC

        self.inner = SparseLinearSVC(C=0.5, class_weight="none")

    def fit(self, X, Y):
        self.inner.fit(X, Y)
        return self

    def predict_proba(self, X):
        return self.inner.predict_proba(X)


def _small_level(labels: int = 6):
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.RandomState(0)
    X = sp.csr_matrix(rng.rand(90, 30))
    return X, (X[:, :labels].toarray() > 0.5).astype(int)


def test_fold_fits_shared_by_label_among_jobs_give_the_models_of_one_fit_per_fold():
    import numpy as np

    from automl.components import SparseLinearSVC
    from automl.model import _fit_with_folds
    from automl.search import LinearScores, WeightedEnsemble

    X, Y = _small_level()
    members = [(1.0, SparseLinearSVC(C=0.5, class_weight="none", random_state=1))]
    one, final_one, _ = _fit_with_folds(WeightedEnsemble(members), X, Y, 3, 1, 1)
    split, final_split, _ = _fit_with_folds(WeightedEnsemble(members), X, Y, 3, 1, 2)
    # Within liblinear's tolerance: its random generator is the C library's, shared by threads fitting at once.
    assert np.allclose(one, split, atol=1e-4)
    a, b = final_one.members_[0][1], final_split.members_[0][1]
    assert isinstance(a, LinearScores) and np.allclose(a.weights_t, b.weights_t, atol=1e-4)
    assert np.allclose(a.intercepts, b.intercepts, atol=1e-4)


def test_when_time_is_short_the_model_for_new_texts_is_the_fold_models_mean_or_if_not_linear_a_full_fit():
    import numpy as np
    from sklearn.model_selection import KFold

    from automl.components import SparseLinearSVC
    from automl.model import _fit_with_folds
    from automl.search import LinearScores, WeightedEnsemble

    X, Y = _small_level()
    linear = (1.0, SparseLinearSVC(C=0.5, class_weight="none", random_state=1))
    _, final, _ = _fit_with_folds(WeightedEnsemble([linear]), X, Y, 3, 1, 2, fold_mean=True)
    folds = [WeightedEnsemble([linear]).fit(X[train], Y[train]).members_[0][1]
             for train, _ in KFold(3, shuffle=True, random_state=1).split(X)]
    margins = np.mean([X @ f.weights_t + f.intercepts for f in folds], axis=0)
    assert np.allclose(final.predict_proba(X), 1 / (1 + np.exp(-margins)), atol=1e-5)

    other = (1.0, _NotLinear())
    proba, final, kept = _fit_with_folds(WeightedEnsemble([other]), X, Y, 3, 1, 2, fold_mean=True)
    assert kept == 1 and not isinstance(final.members_[0][1], LinearScores) and ((proba >= 0) & (proba <= 1)).all()
    assert np.allclose(final.predict_proba(X), WeightedEnsemble([other]).fit(X, Y).predict_proba(X), atol=1e-4)


def test_a_level_s_fits_are_estimated_from_a_sample_of_its_labels(monkeypatch):
    from automl.search import WeightedEnsemble

    now, seen = [0.0], []
    monkeypatch.setattr(budget.time, "monotonic", lambda: now[0])

    def timed_fit(self, X, Y):
        seen.append(Y.shape)
        now[0] += 0.5 * Y.shape[1]  # half a second per label
        return self

    monkeypatch.setattr(WeightedEnsemble, "fit", timed_fit)
    X, Y = _small_level(labels=30)
    annotator = PreAnnotator(load_taxonomy(EXAMPLE / "taxonomy.csv"), ModelSettings(cv_folds=5, n_jobs=2,
                                                                                    max_members=3))
    cost = budget.level_cost(X, Y, refit=False, settings=annotator.settings)
    assert seen == [(len(Y), budget.COST_SAMPLE_LABELS)]
    # 15 s for all 30 labels on all texts; 5 folds of 4/5 of the texts and one on all = 5 such fits, two at a time.
    assert cost.other(False) == pytest.approx(37.5) and cost.other(True) == pytest.approx(112.5)
    # Many texts: a sample of them, its time scaled up a little faster than the texts.
    monkeypatch.setattr(budget, "COST_SAMPLE_ROWS", 30)
    seen.clear()
    cost = budget.level_cost(X, Y, refit=False, settings=annotator.settings)
    assert seen == [(30, budget.COST_SAMPLE_LABELS)]
    assert cost.other(False) == pytest.approx(37.5 * 3 ** budget.COST_ROWS_EXPONENT)


def test_when_the_default_models_alone_would_overrun_the_budget_the_fold_mean_then_fewer_folds(caplog):
    settings = ModelSettings(cv_folds=5, budget_seconds=60)
    costs = [LevelCost(10, 90.0, 40.0), LevelCost(5, 60.0, 20.0)]  # 60 s unsearched: 12 s per fit on all texts
    assert folds_within(100.0, costs, settings, 1000) == (5, False, costs)
    folds, mean, scaled = folds_within(50.0, costs, settings, 1000)  # the 5 folds' fits alone: 48 s
    assert (folds, mean) == (5, True) and [c.other(False) for c in scaled] == [32.0, 16.0]
    folds, mean, scaled = folds_within(35.0, costs, settings, 1000)
    assert (folds, mean) == (3, True) and [c.other(False) for c in scaled] == [16.0, 8.0]
    assert scaled[0].trainable == 10 and scaled[0].other(True) == 36.0
    assert not any(r.levelname == "WARNING" for r in caplog.records)
    assert folds_within(10.0, costs, settings, 1000)[:2] == (2, True)
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "budget_seconds = 60" in warning and "1000 labelled texts" in warning and "Raise" in warning
