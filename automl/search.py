"""The auto-sklearn search for one multilabel level, and the weighted ensemble it yields."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from distributed import Client, LocalCluster
from sklearn.base import clone

from automl.cluster import SmacClient, connect
from automl.components import (
    BUILTIN_CLASSIFIERS,
    CLASSIFIERS,
    DATA_PREPROCESSOR,
    OneVsRestLinear,
    SparseLinearSVC,
    register_components,
    sigmoid,
)
from automl.errors import ClusterError
from automl.settings import ModelSettings

__all__ = ["MIN_SEARCH_SECONDS", "LinearScores", "Member", "Pipeline", "SearchReport", "SearchRun", "WeightedEnsemble",
           "Workspace", "default_members", "describe_members", "pipeline_config", "search_ensemble"]

log = logging.getLogger(__name__)

# auto-sklearn refuses budgets under ~30 s (it reserves time for its own start-up and ensemble building).
MIN_SEARCH_SECONDS = 30
_IDENTITY_STEPS = {"KeepSparseFeatures", "DataPreprocessorChoice", "Balancing", "NoPreprocessing",
                   "FeaturePreprocessorChoice"}


@dataclass(frozen=True)
class Workspace:
    """Where a search may write: its scratch folder (None: the system's temporary folder) and auto-sklearn's log
    (None: no log); and where its evaluations run (None: this machine)."""

    scratch_dir: Path | None = None
    log_file: Path | None = None
    scheduler: str | None = None  # a Dask cluster's scheduler the evaluations run on ([compute] scheduler)
    connect_seconds: float = 30.0


@dataclass(frozen=True)
class SearchRun:
    """One level's search: its share of the training's budget, its seed, where it writes, what it may try."""

    budget_seconds: int
    seed: int
    workspace: Workspace = field(default_factory=Workspace)
    classifiers: tuple[str, ...] = CLASSIFIERS + BUILTIN_CLASSIFIERS
    # Configurations tried first (after the space's default), e.g. the current version's ensemble members: a
    # retrain starts where the last search ended instead of from scratch.
    initial_configs: tuple[dict, ...] = ()
    # When (time.monotonic()) the level's fits after the search should end: the training's deadline less what the
    # levels after it are estimated to need besides their searches.
    fits_until: float = math.inf


@dataclass
class SearchReport:
    seconds: float
    evaluations: int
    members: list[str] = field(default_factory=list)
    fallback: str = ""
    refit: bool = False  # the pipelines of an earlier search, refitted on more labels (no search)
    warm_started: int = 0  # earlier configurations (warm start) the search evaluated
    # Per member, what its evaluation took in the search (fit and score on the holdout split; None: not known):
    # how long its fold fits will take, relative to one another.
    member_seconds: list[float | None] = field(default_factory=list)


@contextlib.contextmanager
def _parallel_client(jobs: int, scratch: Path, workspace: Workspace):
    """The cluster named by `[compute] scheduler`, where there is one; else auto-sklearn's parallel set-up on this
    machine (`jobs` threads that start one pipeline-fit process each); None for one job (auto-sklearn's own
    single-threaded client)."""
    if workspace.scheduler:
        with connect(workspace.scheduler, workspace.connect_seconds) as client:
            yield client
        return
    if jobs <= 1:
        yield None
        return
    cluster = LocalCluster(n_workers=jobs, processes=False, threads_per_worker=1, local_directory=str(scratch),
                           memory_limit=0, dashboard_address=None)
    client = SmacClient(cluster, heartbeat_interval=10000)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


class Pipeline(Protocol):
    """What an ensemble member's model offers: an auto-sklearn pipeline or one of the components here (neither typed
    further: auto-sklearn and scikit-learn ship no type information)."""

    def fit(self, X: Any, Y: Any) -> Any: ...

    def predict_proba(self, X: Any) -> Any: ...


Member = tuple[float, Pipeline]  # its weight in the ensemble, and its model


class WeightedEnsemble:
    """A weighted average of per-label probabilities from fitted pipelines (what auto-sklearn's ensemble does)."""

    def __init__(self, members: list[Member]):
        self.members = members

    def fit(self, X, Y) -> WeightedEnsemble:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.fit_quietly(X, Y)

    def fit_quietly(self, X, Y) -> WeightedEnsemble:
        """`fit` for callers that have silenced warnings themselves (catch_warnings is not thread-safe)."""
        target = _target(Y)
        self.members_ = [(weight, _compact(copy.deepcopy(pipeline).fit(X, target)))
                         for weight, pipeline in self.members]
        self.n_labels_ = Y.shape[1]
        return self

    @classmethod
    def of_fitted(cls, member: Member, fitted, n_labels: int) -> WeightedEnsemble:
        """The ensemble of one member, given it fitted."""
        ensemble = cls([member])
        ensemble.members_, ensemble.n_labels_ = [(member[0], fitted)], n_labels
        return ensemble

    @classmethod
    def joined(cls, parts: list[WeightedEnsemble]) -> WeightedEnsemble:
        """One fitted ensemble of the members of fitted ensembles (fitted on the same rows)."""
        ensemble = cls([m for part in parts for m in part.members])
        ensemble.members_ = [m for part in parts for m in part.members_]
        ensemble.n_labels_ = parts[0].n_labels_
        return ensemble

    def predict_proba(self, X) -> np.ndarray:
        total = sum(w for w, _ in self.members_)
        out = np.zeros((X.shape[0], self.n_labels_))
        for weight, pipeline in self.members_:
            proba = np.asarray(pipeline.predict_proba(X), dtype=float)
            if self.n_labels_ == 1:
                proba = proba[:, -1:] if proba.ndim == 2 else proba.reshape(-1, 1)
            out += weight * proba
        return out / total


class LinearScores:
    """A fitted one-vs-rest linear model reduced to its weights: per-label logistic link of X @ W.T + b."""

    def __init__(self, weights: np.ndarray, intercepts: np.ndarray):
        # Stored as (features x labels), C-contiguous: sparse @ a transposed view makes scipy copy the whole matrix
        # on every call (most of a one-text prediction's time).
        self.weights_t = np.ascontiguousarray(weights.T)
        self.intercepts = intercepts

    def __setstate__(self, state: dict) -> None:
        if "weights" in state:  # saved before the transposed layout
            state["weights_t"] = np.ascontiguousarray(state.pop("weights").T)
        self.__dict__.update(state)

    def predict_proba(self, X) -> np.ndarray:
        return sigmoid(np.asarray(X @ self.weights_t, dtype=float) + self.intercepts)

    @classmethod
    def of_labels(cls, parts: Sequence[LinearScores], columns: Sequence[np.ndarray]) -> LinearScores:
        """One model of the labels of models fitted on the same rows: part i's labels are the columns `columns[i]`
        (one-vs-rest, so a label's model does not depend on the others fitted beside it)."""
        n = sum(len(c) for c in columns)
        weights_t = np.empty((parts[0].weights_t.shape[0], n), dtype=np.float32)
        intercepts = np.empty(n)
        for part, cols in zip(parts, columns, strict=True):
            weights_t[:, cols], intercepts[cols] = part.weights_t, part.intercepts
        return cls(weights_t.T, intercepts)

    @classmethod
    def mean(cls, parts: Sequence[LinearScores]) -> LinearScores:
        """The model whose scores are the mean of the parts' scores (of the same labels)."""
        weights_t = parts[0].weights_t.astype(np.float32, copy=True)
        for part in parts[1:]:
            weights_t += part.weights_t
        return cls((weights_t / len(parts)).T, np.mean([p.intercepts for p in parts], axis=0))


def _compact(fitted):
    """Reduce a fitted member to its weights (float32) when its probabilities are a logistic link of a linear score:
    our linear components by construction, multinomial naive Bayes exactly (its two-class log-odds are linear).
    A level with 100 labels otherwise pickles to ~100 MB."""
    component = fitted
    if hasattr(fitted, "steps"):
        # Our search space makes every step before the classifier an identity; verify rather than assume.
        names = [getattr(step, "choice", step).__class__.__name__ for _, step in fitted.steps[:-1]]
        if any(n not in _IDENTITY_STEPS for n in names):
            return fitted
        component = getattr(fitted.steps[-1][1], "choice", fitted.steps[-1][1])
    if not (isinstance(component, OneVsRestLinear) or component.__class__.__name__ == "MultinomialNB"):
        return fitted
    estimator = component.estimator
    weights, intercepts = [], []
    for binary in getattr(estimator, "estimators_", [estimator]):
        if hasattr(binary, "coef_") and not hasattr(binary, "feature_log_prob_"):
            weights.append(np.ravel(binary.coef_))
            intercepts.append(float(np.ravel(binary.intercept_)[0]))
        elif hasattr(binary, "feature_log_prob_") and len(binary.classes_) == 2:
            weights.append(binary.feature_log_prob_[1] - binary.feature_log_prob_[0])
            intercepts.append(float(binary.class_log_prior_[1] - binary.class_log_prior_[0]))
        else:  # e.g. a label that was constant in this fold: keep the member as it is
            return fitted
    return LinearScores(np.vstack(weights).astype(np.float32), np.array(intercepts))


def _target(Y: np.ndarray) -> np.ndarray:
    """auto-sklearn reads a single-column indicator matrix as multiclass: hand it a binary vector instead."""
    Y = np.asarray(Y, dtype=int)
    return Y[:, 0] if Y.shape[1] == 1 else Y


@contextlib.contextmanager
def _root_logger_kept():
    """auto-sklearn applies its logging config to the root logger; give the service its own handlers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


def _logging_config(log_file: str | None) -> dict:
    handler = (
        {"class": "logging.FileHandler", "filename": log_file, "level": "WARNING", "formatter": "plain"}
        if log_file
        else {"class": "logging.NullHandler"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {"out": handler},
        "root": {"handlers": ["out"], "level": "WARNING"},
    }


def search_ensemble(X, Y: np.ndarray, settings: ModelSettings, run: SearchRun) -> tuple[WeightedEnsemble, SearchReport]:
    """Search pipelines for the indicator matrix `Y` with auto-sklearn; return an (unfitted) weighted ensemble of the
    best ones. Falls back to a default linear model, with the reason in the report, when the search finds nothing."""
    parent, log_file = run.workspace.scratch_dir, run.workspace.log_file
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="search-", dir=parent))
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = SearchReport(seconds=0.0, evaluations=0)
    durations: list[tuple[dict, float]] = []  # each configuration tried, and what its evaluation took
    try:
        with (warnings.catch_warnings(), _root_logger_kept(),
              _parallel_client(settings.jobs, scratch, run.workspace) as client):
            warnings.simplefilter("ignore")
            automl = _classifier(settings, run, scratch, client)
            automl.fit(X, _target(Y))
            members = _members(automl)
            if not members and len(automl.cv_results_["params"]):
                # In parallel, the search can end before the ensemble builder has seen its last runs.
                automl.fit_ensemble(_target(Y), ensemble_kwargs={"ensemble_size": settings.ensemble_size})
                members = _members(automl)
        tried = automl.cv_results_["params"]
        durations = [(values, float(t)) for values, t in zip(tried, automl.cv_results_["mean_fit_time"], strict=True)]
        report.evaluations = len(tried)
        report.warm_started = sum(1 for values in run.initial_configs if values in tried)
        if report.warm_started < len(run.initial_configs):
            log.info("warm start: %d of %d earlier configurations evaluated (the others no longer fit the search "
                     "space, repeat one, or did not fit in the budget)", report.warm_started, len(run.initial_configs))
    except ClusterError:  # the cluster the user named is not there: no quiet fallback to a weaker model
        raise
    except Exception as exc:  # auto-sklearn raises many kinds; the fallback below keeps the service working
        log.warning("auto-sklearn search failed (%s: %s); using the default linear model", type(exc).__name__, exc,
                    exc_info=log.isEnabledFor(logging.DEBUG))
        members, report.fallback = [], f"search failed: {type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # Unfitted copies: the ensemble refits them anyway, and auto-sklearn's fitted ones would be saved with the model.
    members = [(w, clone(p)) for w, p in sorted(members, key=lambda m: -m[0])[: settings.max_members]]
    if not members:
        report.fallback = report.fallback or "no pipeline finished within the budget"
        members = default_members(run.seed)
    report.members = describe_members(members)
    report.member_seconds = [next((t for values, t in durations if values == pipeline_config(p)), None)
                             for _, p in members]
    report.seconds = time.monotonic() - started
    return WeightedEnsemble(members), report


def _members(automl) -> list[Member]:
    return [(float(w), p) for w, p in automl.get_models_with_weights()
            if "Dummy" not in type(p).__name__ and _classifier_name(p) != "dummy"]


def default_members(seed: int) -> list[Member]:
    """The model of a level that is not searched (or whose search found nothing): the search space's default."""
    return [(1.0, SparseLinearSVC(C=0.5, class_weight="none", random_state=seed))]


class _SearchScore:
    """The search's score: the F1 that is deployed (thresholds tuned per label). In parallel, auto-sklearn fits
    pipelines in fresh interpreters (forkserver) that know nothing of this project; unpickling the score, which
    every pipeline fit receives, registers the project's components there first."""

    def __call__(self, y_true, y_pred) -> float:
        from automl.metrics import tuned_threshold_f1

        return tuned_threshold_f1(y_true, y_pred)

    def __reduce__(self):
        return _registered_score, ()


def _registered_score() -> _SearchScore:
    register_components()
    return _SearchScore()


def _classifier(settings: ModelSettings, run: SearchRun, scratch: Path, client: Client | None):
    """auto-sklearn's classifier over the project's search space, scored by the F1 that is deployed."""
    import autosklearn.classification
    import autosklearn.metrics

    register_components()
    budget = max(MIN_SEARCH_SECONDS, int(run.budget_seconds))
    per_run = settings.per_run_seconds or max(10, budget // 4)
    log_file = run.workspace.log_file
    return autosklearn.classification.AutoSklearnClassifier(
        time_left_for_this_task=budget,
        per_run_time_limit=min(per_run, budget),
        memory_limit=settings.memory_mb,
        seed=run.seed,
        n_jobs=settings.jobs,
        dask_client=client,
        metric=autosklearn.metrics.make_scorer("tuned_threshold_f1", _SearchScore(), needs_proba=True),
        include={
            "classifier": list(run.classifiers),
            "feature_preprocessor": ["no_preprocessing"],
            "data_preprocessor": [DATA_PREPROCESSOR],
        },
        # Warm starts propose configurations outside the restricted space and flood the log.
        initial_configurations_via_metalearning=0,
        ensemble_kwargs={"ensemble_size": settings.ensemble_size},
        smac_scenario_args={"runcount_limit": settings.max_evaluations} if settings.max_evaluations else None,
        get_smac_object_callback=_WarmSmac(run.initial_configs) if run.initial_configs else None,
        tmp_folder=str(scratch / "autosklearn"),
        delete_tmp_folder_after_terminate=False,  # fit_ensemble may need the runs; the scratch folder goes after
        logging_config=_logging_config(str(log_file) if log_file else None),
    )


@dataclass(frozen=True)
class _WarmSmac:
    """auto-sklearn's own SMAC set-up, with `configs` as its initial configurations (auto-sklearn's metalearning
    hook; it puts the space's default first). A configuration that no longer fits the space (a component gone, a
    range changed) is skipped. A class, not a closure, so that it pickles."""

    configs: tuple[dict, ...]

    def __call__(self, **smac_args):
        from autosklearn.smbo import get_smac_object
        from ConfigSpace import Configuration

        space = smac_args["scenario_dict"]["cs"]
        initial = []
        for values in self.configs:
            try:
                config = Configuration(space, values=values)
                config.is_valid_configuration()
            except Exception:  # ConfigSpace raises ValueError and its own kinds; search_ensemble logs the skip
                continue
            if config not in initial:
                initial.append(config)
        return get_smac_object(**{**smac_args, "metalearning_configurations": initial})


def pipeline_config(pipeline) -> dict | None:
    """An auto-sklearn pipeline's configuration as plain values (None for a model that is not a searched one)."""
    config = getattr(pipeline, "config", None)
    if config is None or not hasattr(config, "get_dictionary"):
        return None
    return dict(config.get_dictionary())


def _classifier_name(pipeline) -> str:
    try:
        return pipeline.config["classifier:__choice__"]
    except (AttributeError, KeyError, TypeError):
        return type(pipeline).__name__


def describe_members(members: list[Member]) -> list[str]:
    return [f"{w:.2f} {describe_pipeline(p)}" for w, p in members]


def describe_pipeline(pipeline) -> str:
    name = _classifier_name(pipeline)
    try:
        params = {k.split(":")[-1]: v for k, v in pipeline.config.get_dictionary().items()
                  if k.startswith(f"classifier:{name}:")}
    except AttributeError:
        params = {k: v for k, v in vars(pipeline).items() if k in ("C", "class_weight")}
    return f"{name}({', '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}' for k, v in params.items())})"
