from __future__ import annotations

import copy
import logging

import numpy as np
import scipy.sparse as sp
from autosklearn.pipeline.components.classification.multinomial_nb import MultinomialNB

from automl.components import SparseLinearSVC, SparseLogisticRegression
from automl.search import LinearScores, SearchRun, WeightedEnsemble, Workspace, pipeline_config, search_ensemble
from automl.settings import ModelSettings


def data(n=240, d=60, k=3, seed=0):
    rng = np.random.RandomState(seed)
    X = sp.csr_matrix(rng.rand(n, d) * (rng.rand(n, d) > 0.7))
    Y = (X[:, :k].toarray() > 0.2).astype(int)
    return X, Y


def test_compacted_members_predict_exactly_as_the_fitted_ones():
    X, Y = data()
    members = [
        (0.5, SparseLinearSVC(C=0.5, class_weight="none", random_state=1)),
        (0.3, SparseLogisticRegression(C=10.0, class_weight="balanced", random_state=1)),
        (0.2, MultinomialNB(alpha=0.5, fit_prior="True", random_state=1)),
    ]
    ensemble = WeightedEnsemble(members).fit(X, Y)
    assert all(isinstance(m, LinearScores) for _, m in ensemble.members_)
    expected = sum(w * copy.deepcopy(m).fit(X, Y).predict_proba(X) for w, m in members)
    np.testing.assert_allclose(ensemble.predict_proba(X), expected, atol=1e-5)


def test_single_label_target():
    X, Y = data(k=1)
    ensemble = WeightedEnsemble([(1.0, SparseLinearSVC(C=1.0, class_weight="none"))]).fit(X, Y)
    proba = ensemble.predict_proba(X)
    assert proba.shape == (X.shape[0], 1) and ((proba > 0.5)[:, 0] == Y[:, 0]).mean() > 0.8


def test_real_search_returns_a_working_ensemble(tmp_path):
    X, Y = data()
    run = SearchRun(budget_seconds=30, seed=1, workspace=Workspace(tmp_path, tmp_path / "logs" / "autosklearn.log"))
    ensemble, report = search_ensemble(X, Y, ModelSettings(max_evaluations=3), run)
    assert report.fallback == "" and report.evaluations >= 1 and report.members
    assert report.seconds < 60
    proba = ensemble.fit(X, Y).predict_proba(X)
    assert proba.shape == Y.shape and 0 <= proba.min() and proba.max() <= 1
    assert not list(tmp_path.glob("search-*")), "the search's scratch folder is removed"
    # Members come back unfitted (auto-sklearn's fitted copies would otherwise be saved with every model).
    assert all(member.steps[-1][1].choice.estimator is None for _, member in ensemble.members)


def test_a_failing_search_falls_back_to_the_default_linear_model(tmp_path):
    X, Y = data()
    run = SearchRun(budget_seconds=30, seed=1, workspace=Workspace(tmp_path), classifiers=("no_such_classifier",))
    ensemble, report = search_ensemble(X, Y, ModelSettings(), run)
    assert "search failed" in report.fallback and "no_such_classifier" in report.fallback
    assert ensemble.fit(X, Y).predict_proba(X).shape == Y.shape


def test_same_seed_same_search(tmp_path):
    X, Y = data(seed=3)
    settings = ModelSettings(max_evaluations=4, n_jobs=1)  # parallel evaluations finish in any order
    run = SearchRun(budget_seconds=30, seed=7, workspace=Workspace(tmp_path))
    first = search_ensemble(X, Y, settings, run)[1].members
    again = search_ensemble(X, Y, settings, run)[1].members
    assert first == again


def test_a_warm_start_evaluates_the_earlier_configurations_and_skips_those_that_no_longer_fit(tmp_path, caplog):
    X, Y = data(seed=2)
    settings = ModelSettings(max_evaluations=3, n_jobs=1)
    first, _ = search_ensemble(X, Y, settings, SearchRun(30, seed=4, workspace=Workspace(tmp_path)))
    earlier = [pipeline_config(p) for _, p in first.members]
    assert all(earlier)
    stale = {**earlier[0], "classifier:__choice__": "no_longer_there"}
    run = SearchRun(30, seed=5, workspace=Workspace(tmp_path), initial_configs=(stale, *earlier))
    with caplog.at_level(logging.INFO, logger="automl.search"):
        _, report = search_ensemble(X, Y, ModelSettings(max_evaluations=len(earlier) + 1, n_jobs=1), run)
    # The space's default first (auto-sklearn's rule), then the earlier configurations: all of them evaluated.
    assert report.fallback == "" and report.warm_started == len({str(c) for c in earlier})
    assert f"{report.warm_started} of {len(earlier) + 1} earlier configurations evaluated" in caplog.text
