"""The pre-annotation model: one auto-sklearn ensemble per facet and level, keyword rules where examples are few,
per-label decision rules and thresholds tuned on out-of-fold predictions, and hierarchy-consistent output."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import KFold

from automl.budget import LevelPlan, TrainingBudget, plan_training, search_shares
from automl.decisions import (
    Decisions,
    calibrate,
    cross_calibrated,
    decode_path,
    fit_prefill_calibration,
    harmonise,
)
from automl.features import TextFeatures
from automl.label_issues import Evidence
from automl.metrics import Scores, best_f1_thresholds, indicator, score_facet, score_level
from automl.records import Prediction, Proposal, Source
from automl.rules import Rule, apply_rule, choose_rule, keyword_precision, logit
from automl.search import (
    MIN_SEARCH_SECONDS,
    LinearScores,
    SearchReport,
    SearchRun,
    WeightedEnsemble,
    Workspace,
    default_members,
    describe_members,
    pipeline_config,
    search_ensemble,
)
from automl.settings import ModelSettings
from automl.taxonomy import Taxonomy

__all__ = ["LevelModel", "PreAnnotator"]

log = logging.getLogger(__name__)
# Labelled texts, every one with one path in a facet, before the facet is taken for single-choice: of a multilabel
# facet with one text in 20 carrying two paths, 100 texts all have one with a chance under 1%.
SINGLE_CHOICE_EVIDENCE = 100


@dataclass
class LevelModel:
    facet: str
    level: int
    codes: list[str]
    rules: dict[str, Rule]  # per code: how the label is decided
    keyword_precision: dict[str, float]
    model_codes: list[str] = field(default_factory=list)
    ensemble: WeightedEnsemble | None = None
    cuts: dict[str, float] = field(default_factory=dict)  # where the rule's model part fires
    ref_cuts: dict[str, float] = field(default_factory=dict)  # the model's F1-best cut: margins are measured from it
    calibrator: IsotonicRegression | None = None  # margin -> how likely the label applies (the level's model labels)
    search: SearchReport | None = None
    train_positives: dict[str, int] = field(default_factory=dict)
    # Where the level's time went: its search share, its other work as estimated before and as it took.
    share_seconds: int = 0
    estimated_other_seconds: float = 0.0
    other_seconds: float = 0.0


class _FittedLevels(NamedTuple):
    models: list[LevelModel]
    out_of_fold: dict[str, dict[int, Decisions]]  # per facet and level: the decisions on the training texts


class _OutOfFold(NamedTuple):
    calibrators: dict[str, dict]  # per facet, fit_prefill_calibration's
    evidence: dict[str, Evidence]
    heldout: Scores


class PreAnnotator:
    """Learns from labelled texts and proposes labels, with confidence and source, for every facet of a taxonomy.
    `workspace` says where the searches may write (their scratch folders and auto-sklearn's log).

    What `fit` learns (a model saved by an earlier release may lack the last three; `summary` says so):
    - `features_`: the texts' features (TF-IDF words and character n-grams, keyword hits);
    - `levels_`: one `LevelModel` per facet and level, in the taxonomy's order;
    - `calibrators_`: per facet, the calibration of the pre-filled confidences;
    - `heldout_`: the out-of-fold quality (Scores); `evidence_`: per facet, the training texts' out-of-fold evidence
      on their labels, for label issues (not saved with the model);
    - `n_train_`, `fit_seconds_`: how many texts it learned from, and in how long;
    - `single_choice_`: the facets decoded as one path per text;
    - `cv_folds_`, `fold_mean_`, `char_ngrams_dropped_`: what the budget afforded (automl.budget.TrainingBudget).
    """

    def __init__(self, taxonomy: Taxonomy, settings: ModelSettings | None = None,
                 workspace: Workspace | None = None):
        self.taxonomy = taxonomy
        self.settings = settings or ModelSettings()
        self.workspace = workspace or Workspace()

    # ---- training -------------------------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[set[str]],
        progress: Callable[[str], None] | None = None,
        pipelines_from: PreAnnotator | None = None,
        warm_from: PreAnnotator | None = None,
    ) -> PreAnnotator:
        """Learn from labelled texts within [model] budget_seconds. With `pipelines_from` (a model fitted on part of
        these texts), each level refits the pipelines that model's search found instead of searching again (a level
        it did not search is searched). With `warm_from` (an earlier version), each level's search starts from the
        configurations of that version's ensemble at the level."""
        started = time.monotonic()
        s = self.settings
        deadline = started + s.budget_seconds
        labels = [self.taxonomy.with_ancestors(ls) for ls in labels]
        plan = self._plan(labels, pipelines_from)
        self.single_choice_ = self._single_choice(labels)
        # Character n-grams only serve a model: keyword rules alone (no label with enough examples) need none.
        self.features_ = TextFeatures(self.taxonomy, s).fit(texts, characters=any(p.trainable.any() for p in plan))
        X, hits = self.features_.transform(texts)
        self.n_train_ = len(texts)
        budget = plan_training(plan, self.features_, texts, X, hits, s, deadline)
        self.cv_folds_, self.fold_mean_ = budget.cv_folds, budget.fold_mean
        self.char_ngrams_dropped_ = budget.char_ngrams_dropped
        warm = _ensemble_configs(warm_from) if warm_from is not None else {}
        self.levels_, out_of_fold = self._fit_levels(plan, budget, hits, deadline, warm, progress)
        self.calibrators_, self.evidence_, self.heldout_ = self._judged_out_of_fold(out_of_fold, labels, hits)
        self.fit_seconds_ = time.monotonic() - started
        return self

    def _plan(self, labels: Sequence[set[str]], pipelines_from: PreAnnotator | None) -> list[LevelPlan]:
        """Per facet and level: its codes, their indicator matrix, which have enough examples to learn, and the
        pipelines `pipelines_from` found there (refitted instead of searched)."""
        plan, least = [], self.settings.min_examples
        searched = {(m.facet, m.level): m.ensemble for m in pipelines_from.levels_} if pipelines_from else {}
        for facet in self.taxonomy.facets:
            for level in self.taxonomy.levels(facet):
                codes = self.taxonomy.codes_at(facet, level)
                truth = indicator(labels, codes)
                positives = truth.sum(axis=0)
                trainable = (positives >= least) & (len(labels) - positives >= least)
                plan.append(LevelPlan(facet, level, codes, truth, trainable, searched.get((facet, level))))
        return plan

    def _fit_levels(self, plan: Sequence[LevelPlan], budget: TrainingBudget, hits: np.ndarray, deadline: float,
                    warm: dict[tuple[str, int], tuple[dict, ...]], progress: Callable[[str], None] | None
                    ) -> _FittedLevels:
        """Each level in turn, its search time shared out again before it (what the levels before took, over or
        under their share, is known by then)."""
        s, say = self.settings, progress or (lambda _msg: None)
        fitted = _FittedLevels([], {})
        for k, level in enumerate(plan):
            n = int(level.trainable.sum())
            shares = search_shares(deadline - time.monotonic(), budget.costs[k:], MIN_SEARCH_SECONDS)
            share = int(shares[0])
            later = sum(c.other(bool(x)) for c, x in zip(budget.costs[k + 1:], shares[1:], strict=True))
            run = SearchRun(share, s.seed + level.level, self.workspace,
                            initial_configs=warm.get((level.facet, level.level), ()), fits_until=deadline - later)
            say(f"{level.facet} level {level.level}: {n} of {len(level.codes)} labels have {s.min_examples}+ examples"
                + (f"; {_how(level.refit is not None, share)}, then {self.cv_folds_}-fold thresholds" if n
                   else "; keyword rules only"))
            model, decisions = self._fit_level(level, budget.X, hits, run)
            model.share_seconds, model.estimated_other_seconds = share, budget.costs[k].other(share > 0)
            fitted.models.append(model)
            fitted.out_of_fold.setdefault(level.facet, {})[level.level] = decisions
        return fitted

    def _judged_out_of_fold(self, out_of_fold: dict[str, dict[int, Decisions]], labels: Sequence[set[str]],
                            hits: np.ndarray) -> _OutOfFold:
        """Out-of-fold decisions, made hierarchy-consistent exactly as predictions are: they calibrate the pre-filled
        confidences, give the evidence for label issues and the held-out quality (calibrated across halves, as new
        texts would be)."""
        judged = _OutOfFold({}, {}, Scores([], []))
        merged = {}
        for facet, levels in out_of_fold.items():
            raw = self._consistent(facet, levels)
            truth = indicator(labels, raw.codes)
            judged.calibrators[facet] = fit_prefill_calibration(raw, truth, self._level_of)
            merged[facet] = cross_calibrated(raw, truth, self._level_of, self.settings.seed)
            judged.evidence[facet] = self._evidence(raw, truth, hits)
        return judged._replace(heldout=self.score_decisions(merged, labels))

    def _fit_level(self, plan: LevelPlan, X: sp.csr_matrix, hits: np.ndarray, run: SearchRun
                   ) -> tuple[LevelModel, Decisions]:
        s = self.settings
        codes, truth = plan.codes, plan.truth
        kw = self.features_.hits_for(hits, codes)
        has_rule = self.features_.matcher_.has_rule()[[self.features_.code_index_[c] for c in codes]]
        precision = keyword_precision(kw, truth)
        # A rule alone pre-fills where it is precise enough: as asked, or enough to save edits.
        alone = has_rule & (precision >= s.target_precision if s.target_precision else precision > self._worth)
        rules = {c: (Rule.KEYWORD if alone[j] else Rule.NONE) for j, c in enumerate(codes)}
        model = LevelModel(plan.facet, plan.level, codes, rules, dict(zip(codes, precision, strict=True)),
                           train_positives={c: int(n) for c, n in zip(codes, truth.sum(axis=0), strict=True)})
        proba = np.zeros((len(truth), 0))
        if plan.trainable.any():
            # Under a target precision a rule too loose for it is no option; otherwise the edits decide.
            proba = self._fit_models(model, plan, X, kw, alone if s.target_precision else has_rule, run)
        return model, self._level_decisions(model, proba, kw)

    def _fit_models(self, model: LevelModel, plan: LevelPlan, X: sp.csr_matrix, kw: np.ndarray,
                    usable_rule: np.ndarray, run: SearchRun) -> np.ndarray:
        """Search (or take the plan's pipelines to refit) and fit the level's ensemble; choose each trained label's
        rule and threshold out of fold, and the calibration of the model's margins. Returns the out-of-fold
        probabilities."""
        s = self.settings
        model_idx = np.flatnonzero(plan.trainable)
        model.model_codes = [model.codes[j] for j in model_idx]
        Y, truth = plan.learned, plan.truth
        if plan.refit is not None:
            ensemble = WeightedEnsemble(plan.refit.members)
            report = SearchReport(0.0, 0, describe_members(plan.refit.members), refit=True)
        elif run.budget_seconds:
            ensemble, report = search_ensemble(X, Y, s, run)
        else:
            ensemble = WeightedEnsemble(default_members(s.seed))
            report = SearchReport(0.0, 0, describe_members(ensemble.members),
                                  fallback=f"not searched: the level's share of the budget was under "
                                           f"{MIN_SEARCH_SECONDS} s")
        model.search = report
        log.info("%s level %s: search %.0fs, %d pipelines tried, ensemble %s%s", model.facet, model.level,
                 report.seconds, report.evaluations, "; ".join(report.members),
                 f" ({report.fallback})" if report.fallback else "")
        folds_started = time.monotonic()
        proba, model.ensemble, kept = _fit_with_folds(ensemble, X, Y, self.cv_folds_, s.seed, s.jobs,
                                                      run.fits_until, report.member_seconds, self.fold_mean_)
        model.other_seconds = time.monotonic() - folds_started
        if kept < len(ensemble.members):
            log.info("%s level %s: %d of %d ensemble members fitted (the level's time was up)", model.facet,
                     model.level, kept, len(ensemble.members))
            report.members = report.members[:kept]
        cost = None if s.target_precision else s.wrong_prefill_cost
        ref_cuts, _, _ = best_f1_thresholds(proba, Y.astype(bool))
        margins, outcomes = [], []
        for jj, j in enumerate(model_idx):
            code = model.codes[j]
            model.rules[code], model.cuts[code] = choose_rule(
                proba[:, jj], truth[:, j], kw[:, j] if usable_rule[j] else None, s.target_precision or 0.0, cost)
            model.ref_cuts[code] = float(ref_cuts[jj])
            if np.isfinite(ref_cuts[jj]):
                margins.append(logit(proba[:, jj]) - logit(ref_cuts[jj]))
                outcomes.append(truth[:, j])
        if margins:
            model.calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                np.concatenate(margins), np.concatenate(outcomes).astype(float)
            )
        return proba

    def __getstate__(self) -> dict:
        # The training rows' out-of-fold evidence is as large as the training set and only needed right after fit.
        return {k: v for k, v in self.__dict__.items() if k != "evidence_"}

    def evidence(self, texts: Sequence[str], labels: Sequence[set[str]]) -> dict[str, Evidence]:
        """Per facet, these labelled texts judged by this model: evidence on their labels where it did not learn
        from them (an evaluation slice). The training texts' own, out of fold, is `evidence_` after fit."""
        labels = [self.taxonomy.with_ancestors(ls) for ls in labels]
        decided, hits = self._decide(texts)
        return {facet: self._evidence(d, indicator(labels, d.codes), hits) for facet, d in decided.items()}

    def _evidence(self, decisions: Decisions, truth: np.ndarray, hits: np.ndarray) -> Evidence:
        judged = {c for m in self.levels_ for c in m.model_codes}
        likelihood = decisions.likelihood if decisions.likelihood is not None else decisions.confidence
        return Evidence(decisions.codes, likelihood, truth.astype(bool),
                        np.array([c in judged for c in decisions.codes], dtype=bool), decisions.margin,
                        self.features_.hits_for(hits, decisions.codes).astype(bool))

    @property
    def _worth(self) -> float:
        """The probability of being right above which a pre-fill saves edits: c / (1 + c)."""
        return self.settings.wrong_prefill_cost / (1 + self.settings.wrong_prefill_cost)

    @property
    def _level_of(self) -> dict[str, int]:
        return {code: node.level for code, node in self.taxonomy.nodes.items()}

    # ---- prediction -----------------------------------------------------------------------------------------
    def decide(self, texts: Sequence[str]) -> dict[str, Decisions]:
        return self._decide(texts)[0]

    def _decide(self, texts: Sequence[str]) -> tuple[dict[str, Decisions], np.ndarray]:
        """Per facet, the texts' decisions; and every code's keyword hits on them (label issues use those too)."""
        X, hits = self.features_.transform(texts)
        return self._decide_on(X, hits), hits

    def _decide_on(self, X: sp.csr_matrix, hits: np.ndarray) -> dict[str, Decisions]:
        per_facet: dict[str, dict[int, Decisions]] = {}
        for model in self.levels_:
            kw = self.features_.hits_for(hits, model.codes)
            proba = np.zeros((X.shape[0], len(model.model_codes)))
            if model.ensemble is not None and X.shape[0]:
                proba = model.ensemble.predict_proba(X)
            per_facet.setdefault(model.facet, {})[model.level] = self._level_decisions(model, proba, kw)
        return {facet: calibrate(self._consistent(facet, levels), self.calibrators_.get(facet, {}), self._level_of)
                for facet, levels in per_facet.items()}

    def _consistent(self, facet: str, levels: dict[int, Decisions]) -> Decisions:
        """A facet's level decisions made one tree-consistent set: one path per text in a single-choice facet."""
        if facet in getattr(self, "single_choice_", ()):  # models saved before single-choice facets have none
            return decode_path(self.taxonomy, levels)
        return harmonise(self.taxonomy, self.settings.hierarchy, levels)

    def _single_choice(self, labels: Sequence[set[str]]) -> frozenset[str]:
        """The taxonomy's single-choice facets, and ([model] detect_single_choice) those in which every labelled
        text has exactly one path, once there are SINGLE_CHOICE_EVIDENCE of them (a multilabel facet's few first
        labels often have one path each by chance)."""
        found = set(self.taxonomy.single_choice)
        detect = self.settings.detect_single_choice and len(labels) >= SINGLE_CHOICE_EVIDENCE
        for facet in sorted(set(self.taxonomy.facets) - found) if detect else ():
            levels = [Counter(self.taxonomy.nodes[c].level for c in ls if self.taxonomy.nodes[c].facet == facet)
                      for ls in labels]
            if all(per and max(per.values()) == 1 for per in levels):
                log.info("facet %s: every labelled text has one path; decoded as single-choice (one path each)",
                         facet)
                found.add(facet)
        return frozenset(found)

    def propose(self, texts: Sequence[str]) -> list[Prediction]:
        """Per text: the pre-filled codes per facet, most confident first; the suggestions (codes not pre-filled
        but at least [model] suggestion_min_confidence likely); and the edits a labeller is expected to make."""
        return self._proposals_of(self.decide(texts), len(texts))

    def propose_with_vectors(self, texts: Sequence[str]) -> tuple[list[Prediction], sp.csr_matrix]:
        """`propose`, and the texts' TF-IDF rows (`features_.vectors`) from the same featurisation."""
        X, hits, vectors = self.features_.featurise(texts)
        return self._proposals_of(self._decide_on(X, hits), len(texts)), vectors

    def _proposals_of(self, decided: dict[str, Decisions], n: int) -> list[Prediction]:
        floor = self.settings.suggestion_min_confidence
        by_model = {c for m in self.levels_ for c in m.model_codes}
        prefill: list[dict[str, list[Proposal]]] = [{} for _ in range(n)]
        suggestions: list[dict[str, list[Proposal]]] = [{} for _ in range(n)]
        edits = np.zeros(n)
        for facet, d in decided.items():
            likelihood = d.likelihood if d.likelihood is not None else d.confidence
            # A pre-fill is deleted if wrong, a missing label added if right: what a labeller is expected to do.
            edits += np.where(d.chosen, 1.0 - d.confidence, likelihood).sum(axis=1)
            suggested = ~d.chosen & (likelihood >= floor) & (likelihood > 0)
            for i in range(n):
                prefill[i][facet] = _proposals(d, i, d.chosen[i], d.confidence[i], by_model)
                suggestions[i][facet] = _proposals(d, i, suggested[i], likelihood[i], by_model)
        return [Prediction(p, g, round(float(e), 4)) for p, g, e in zip(prefill, suggestions, edits, strict=True)]

    def predict(self, texts: Sequence[str]) -> list[dict[str, list[Proposal]]]:
        """Per text, per facet: the pre-filled codes, most confident first."""
        return [p.prefill for p in self.propose(texts)]

    def score(self, texts: Sequence[str], labels: Sequence[set[str]]) -> Scores:
        """Precision, recall, F1 and effort per facet and level, and effort and calibration per facet, against known
        labels (ancestors implied)."""
        return self.score_decisions(self.decide(texts), [self.taxonomy.with_ancestors(ls) for ls in labels])

    def score_decisions(self, decisions: dict[str, Decisions], truth: Sequence[set[str]]) -> Scores:
        """Each facet's decisions scored level by level, and as a whole, against label sets that include their
        ancestors."""
        scores = Scores([], [])
        for facet, d in decisions.items():
            facet_truth = indicator(truth, d.codes)
            scores.facets.append(score_facet(facet, facet_truth, d.chosen, d.confidence))
            for level in self.taxonomy.levels(facet):
                codes = self.taxonomy.codes_at(facet, level)
                idx = [d.codes.index(c) for c in codes]
                scores.levels.append(score_level(facet, level, codes, facet_truth[:, idx], d.chosen[:, idx]))
        return scores

    # ---- helpers --------------------------------------------------------------------------------------------
    def _level_decisions(self, model: LevelModel, proba: np.ndarray, kw: np.ndarray) -> Decisions:
        """Each label's rule applied to the level's texts, the same in training (out of fold) and in prediction.
        Confidence: for model decisions, the calibrated chance that the label applies given the model's margin; for
        keyword decisions, the rule's (smoothed) precision on the training data. Likelihood: the same chances for
        every label, pre-filled or not (the model's where it has one)."""
        has_rule = np.array([model.rules[c] != Rule.NONE for c in model.codes], dtype=bool)
        chosen = kw & has_rule
        source = np.where(chosen, Source.KEYWORD, Source.NONE).astype(np.int8)
        likelihood = np.where(kw, np.array([model.keyword_precision[c] for c in model.codes]), 0.0)
        margin = np.full(kw.shape, np.nan)
        for jj, code in enumerate(model.model_codes):
            j = model.codes.index(code)
            fired, by_model = apply_rule(model.rules[code], proba[:, jj], model.cuts[code], kw[:, j])
            chosen[:, j] = fired
            source[:, j] = np.where(by_model, Source.MODEL, np.where(fired, Source.KEYWORD, Source.NONE))
            cut = model.ref_cuts.get(code, model.cuts[code])
            if np.isfinite(cut):
                margin[:, j] = logit(proba[:, jj]) - logit(cut)
                if model.calibrator is not None:
                    likelihood[:, j] = model.calibrator.predict(margin[:, j])
        kw_precision = np.array([model.keyword_precision[c] for c in model.codes])
        confidence = np.where(chosen, np.where(source == Source.MODEL, likelihood, kw_precision), 0.0)
        return Decisions(model.codes, chosen, np.clip(confidence, 0.0, 1.0), source, np.clip(likelihood, 0.0, 1.0),
                         margin)

    def summary(self) -> dict:
        return {
            "n_train": self.n_train_,
            "n_terms": self.features_.n_terms,
            "n_char_terms": self.features_.n_char_terms,
            "fit_seconds": round(self.fit_seconds_, 1),
            "cv_folds": getattr(self, "cv_folds_", self.settings.cv_folds),
            "fold_mean": getattr(self, "fold_mean_", False),
            "char_ngrams_dropped": getattr(self, "char_ngrams_dropped_", False),
            "single_choice": sorted(getattr(self, "single_choice_", ())),
            "levels": [
                {
                    "facet": m.facet,
                    "level": m.level,
                    "labels": len(m.codes),
                    "model_labels": len(m.model_codes),
                    "rules": dict(Counter(str(rule) for rule in m.rules.values())),
                    "search_seconds": round(m.search.seconds, 1) if m.search else 0.0,
                    "pipelines_tried": m.search.evaluations if m.search else 0,
                    "ensemble": m.search.members if m.search else [],
                    "fallback": m.search.fallback if m.search else "",
                    "refit": m.search.refit if m.search else False,
                    "warm_started": m.search.warm_started if m.search else 0,
                    "share_seconds": m.share_seconds,
                    "other_seconds": {"estimated": round(m.estimated_other_seconds, 1),
                                      "took": round(m.other_seconds, 1)},
                }
                for m in self.levels_
            ],
        }


def _how(refit: bool, share: int) -> str:
    if refit:
        return "refitting the pipelines found before"
    return f"searching pipelines for {share} s" if share else "the default linear model (no time left to search)"


def _fit_with_folds(ensemble: WeightedEnsemble, X, Y: np.ndarray, folds: int, seed: int, jobs: int,
                    until: float = math.inf, member_seconds: Sequence[float | None] = (), fold_mean: bool = False
                    ) -> tuple[np.ndarray, WeightedEnsemble, int]:
    """Probabilities for every training text from ensembles that did not see it, and the ensemble for new texts,
    with the number of members fitted. Member by member (best first), its fits (the folds', then the one on all
    texts) run `jobs` at a time (threads: liblinear releases the GIL), each fit's labels dealt among them
    (one-vs-rest: a label's model is the same whatever is fitted beside it), so that every core is busy to the end.
    With `fold_mean` (when time is short), a member's model for new texts is the mean of its linear fold models'
    scores instead, one fit fewer: each saw (k-1)/k of the texts, together all of them; on UK-CAT it pre-fills
    fewer, more precise codes (benchmarks/model_ukcat.py). A member whose fits would end after `until` is left out,
    the first never: judged before it starts (what the last member took, scaled by the two members' times in the
    search) and again after its first `jobs` fits (those, times the fits still to come)."""
    folds = max(2, min(folds, len(Y) // 2))
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(X))
    fits = [train for train, _ in splits] + ([] if fold_mean else [np.arange(len(Y))])
    columns = _label_columns(Y.shape[1], jobs)
    tasks = [(rows, cols) for rows in fits for cols in columns]
    parts: list[list[WeightedEnsemble]] = []
    took, searched = 0.0, list(member_seconds) + [None] * len(ensemble.members)
    for k, member in enumerate(ensemble.members):
        if k and time.monotonic() + took * _ratio(searched[k], searched[k - 1]) > until:
            break
        started = time.monotonic()
        fitted = _fit_tasks(member, X, Y, tasks[:jobs], jobs)
        if k and time.monotonic() + (time.monotonic() - started) * (len(tasks) - jobs) / jobs > until:
            break
        fitted += _fit_tasks(member, X, Y, tasks[jobs:], jobs)
        joined = [_combined(member, fitted[i:i + len(columns)], lambda m: LinearScores.of_labels(m, columns),
                            X[rows], Y[rows])
                  for i, rows in zip(range(0, len(tasks), len(columns)), fits, strict=True)]
        parts.append(joined + [_combined(member, joined, LinearScores.mean, X, Y)] if fold_mean else joined)
        took = time.monotonic() - started
    fitted = [WeightedEnsemble.joined([member[i] for member in parts]) for i in range(folds + 1)]
    proba = np.zeros(Y.shape)
    for (_, held), fold in zip(splits, fitted[:-1], strict=True):  # the last: the model for new texts
        proba[held] = fold.predict_proba(X[held])
    return proba, fitted[-1], len(parts)


def _label_columns(n_labels: int, jobs: int) -> list[np.ndarray]:
    """A level's labels dealt among `jobs` fits (two labels each at least), interleaved: neighbouring codes are
    often alike in cost."""
    parts = max(1, min(jobs, n_labels // 2))
    return [np.arange(c, n_labels, parts) for c in range(parts)]


def _fit_tasks(member, X, Y: np.ndarray, tasks: Sequence[tuple[np.ndarray, np.ndarray]], jobs: int
               ) -> list[WeightedEnsemble]:
    if not tasks:
        return []
    with warnings.catch_warnings():  # once, here: catch_warnings is not thread-safe
        warnings.simplefilter("ignore")
        return Parallel(n_jobs=min(jobs, len(tasks)), prefer="threads")(
            delayed(WeightedEnsemble([member]).fit_quietly)(X[rows], Y[rows][:, cols]) for rows, cols in tasks)


def _combined(member, parts: list[WeightedEnsemble], combine: Callable[[list[LinearScores]], LinearScores], X,
              Y: np.ndarray) -> WeightedEnsemble:
    """`member` as one model made by `combine` of its fitted `parts` (its labels' parts, or its folds), or, where a
    part did not reduce to weights (a label constant in a fold, a member that is not linear), fitted on X, Y."""
    if len(parts) == 1:
        return parts[0]
    models = [p.members_[0][1] for p in parts]
    if all(isinstance(m, LinearScores) for m in models):
        return WeightedEnsemble.of_fitted(member, combine(models), Y.shape[1])
    return WeightedEnsemble([member]).fit(X, Y)


def _ratio(this: float | None, last: float | None) -> float:
    return this / last if this and last else 1.0


def _ensemble_configs(model: PreAnnotator) -> dict[tuple[str, int], tuple[dict, ...]]:
    """Per facet and level, the configurations of an earlier model's searched ensemble members."""
    configs = {}
    for level in model.levels_:
        members = level.ensemble.members if level.ensemble is not None else []
        found = tuple(c for c in (pipeline_config(p) for _, p in members) if c is not None)
        if found:
            configs[(level.facet, level.level)] = found
    return configs


def _proposals(d: Decisions, row: int, which: np.ndarray, confidence: np.ndarray,
               by_model: set[str]) -> list[Proposal]:
    """The codes of `which` in one row, most confident first; a pre-fill names what decided it, a suggestion the
    evidence it rests on (the model where the label has one, else its keyword rule)."""
    def source(j: int) -> str:
        if d.chosen[row, j]:
            return Source(int(d.source[row, j])).label
        return (Source.MODEL if d.codes[j] in by_model else Source.KEYWORD).label

    picks = [Proposal(d.codes[j], round(float(confidence[j]), 4), source(j)) for j in np.flatnonzero(which)]
    return sorted(picks, key=lambda p: (-p.confidence, p.code))
