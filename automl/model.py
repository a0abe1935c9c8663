"""The pre-annotation model: one auto-sklearn ensemble per facet and level, keyword rules where examples are few,
per-label decision rules and thresholds tuned on out-of-fold predictions, and hierarchy-consistent output."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import KFold

from automl.features import TextFeatures
from automl.metrics import LevelScore, best_f1_thresholds, score_level
from automl.records import Proposal, Source
from automl.search import MIN_SEARCH_SECONDS, SearchReport, SearchRun, WeightedEnsemble, Workspace, search_ensemble
from automl.settings import ModelSettings
from automl.taxonomy import Taxonomy

log = logging.getLogger(__name__)


class Rule(StrEnum):
    """How a label is decided. A trained label takes whichever rule scored best out of fold on the training data."""

    KEYWORD = "keyword"  # the keyword rule alone (also every label with too few examples)
    MODEL = "model"  # the model's probability over the label's threshold
    UNION = "model_or_keyword"  # either fires
    GATED = "keyword_and_model"  # the keyword fires and the model agrees
    NONE = "none"  # too few examples and no keyword rule: never proposed


@dataclass
class LevelModel:
    facet: str
    level: int
    codes: list[str]
    rules: dict[str, str]
    keyword_precision: dict[str, float]
    model_codes: list[str] = field(default_factory=list)
    ensemble: WeightedEnsemble | None = None
    cuts: dict[str, float] = field(default_factory=dict)
    calibrator: IsotonicRegression | None = None
    search: SearchReport | None = None
    train_positives: dict[str, int] = field(default_factory=dict)


@dataclass
class Decisions:
    """Per facet: decisions, confidences and sources over the facet's codes, for a batch of texts."""

    codes: list[str]
    chosen: np.ndarray  # bool (texts x codes)
    confidence: np.ndarray  # float
    source: np.ndarray  # int8 values of Source


class PreAnnotator:
    """Learns from labelled texts and proposes labels, with confidence and source, for every facet of a taxonomy.
    `workspace` says where the searches may write (their scratch folders and auto-sklearn's log)."""

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
    ) -> PreAnnotator:
        started = time.monotonic()
        s = self.settings
        say = progress or (lambda _msg: None)
        labels = [self.taxonomy.with_ancestors(ls) for ls in labels]
        self.features_ = TextFeatures(self.taxonomy, s).fit(texts)
        X, hits = self.features_.transform(texts)
        self.n_train_ = len(texts)

        plan = []
        for facet in self.taxonomy.facets:
            for level in self.taxonomy.levels(facet):
                codes = self.taxonomy.codes_at(facet, level)
                truth = _indicator(labels, codes)
                positives = truth.sum(axis=0)
                trainable = (positives >= s.min_examples) & (len(texts) - positives >= s.min_examples)
                plan.append((facet, level, codes, truth, trainable))
        # A pipeline's fit time grows with the number of labels: share the budget in proportion to them, so that
        # every search can try a similar number of pipelines.
        trainable_total = sum(int(t.sum()) for *_, t in plan)

        self.levels_: list[LevelModel] = []
        oof: dict[tuple[str, int], Decisions] = {}
        for facet, level, codes, truth, trainable in plan:
            n = int(trainable.sum())
            per_search = max(MIN_SEARCH_SECONDS, int(s.budget_seconds * n / trainable_total)) if n else 0
            say(f"{facet} level {level}: {n} of {len(codes)} labels have {s.min_examples}+ examples"
                + (f"; searching pipelines for {per_search} s, then {s.cv_folds}-fold"
                   " thresholds" if n else "; keyword rules only"))
            model, decisions = self._fit_level(facet, level, codes, truth, trainable, X, hits, per_search)
            self.levels_.append(model)
            oof[(facet, level)] = decisions

        # Held-out quality: out-of-fold decisions, made hierarchy-consistent exactly as predictions are.
        merged = {facet: self._harmonise(facet, {lv: d for (f, lv), d in oof.items() if f == facet})
                  for facet in self.taxonomy.facets}
        self.heldout_: list[LevelScore] = self._scores(merged, labels)
        self.fit_seconds_ = time.monotonic() - started
        return self

    def _fit_level(self, facet, level, codes, truth, trainable, X, hits, budget):
        s = self.settings
        kw = self.features_.hits_for(hits, codes)
        has_rule = self.features_.matcher_.has_rule()[[self.features_.code_index_[c] for c in codes]]
        precision = _keyword_precision(kw, truth)
        if s.target_precision:  # a rule less precise than asked for pre-fills nothing
            has_rule = has_rule & (precision >= s.target_precision)
        rules = {c: (Rule.KEYWORD if has_rule[j] else Rule.NONE) for j, c in enumerate(codes)}
        model = LevelModel(facet, level, codes, rules, dict(zip(codes, precision)),
                           train_positives={c: int(n) for c, n in zip(codes, truth.sum(axis=0))})
        proba = np.zeros((len(truth), 0))
        if trainable.any():
            proba = self._fit_models(model, trainable, truth, X, kw, has_rule, budget)
        chosen, source = _decide(model, proba, kw)
        return model, Decisions(codes, chosen, self._confidence(model, proba, kw, chosen, source), source)

    def _fit_models(self, model: LevelModel, trainable, truth, X, kw, has_rule, budget) -> np.ndarray:
        """Search and fit the level's ensemble; choose each trained label's rule and threshold out of fold, and the
        calibration of the model's margins. Returns the out-of-fold probabilities."""
        s = self.settings
        model_idx = np.flatnonzero(trainable)
        model.model_codes = [model.codes[j] for j in model_idx]
        Y = truth[:, model_idx]
        ensemble, report = search_ensemble(X, Y, s, SearchRun(budget, s.seed + model.level, self.workspace))
        model.search = report
        log.info("%s level %s: search %.0fs, %d pipelines tried, ensemble %s%s", model.facet, model.level,
                 report.seconds, report.evaluations, "; ".join(report.members),
                 f" ({report.fallback})" if report.fallback else "")
        proba = _out_of_fold(ensemble, X, Y, s.cv_folds, s.seed)
        model.ensemble = ensemble.fit(X, Y)
        margins, outcomes = [], []
        for jj, j in enumerate(model_idx):
            code = model.codes[j]
            model.rules[code], model.cuts[code] = _choose_rule(
                proba[:, jj], truth[:, j], kw[:, j] if has_rule[j] else None, s.target_precision or 0.0)
            if np.isfinite(model.cuts[code]):
                margins.append(_logit(proba[:, jj]) - _logit(model.cuts[code]))
                outcomes.append(truth[:, j])
        if margins:
            model.calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                np.concatenate(margins), np.concatenate(outcomes).astype(float)
            )
        return proba

    # ---- prediction -----------------------------------------------------------------------------------------
    def decide(self, texts: Sequence[str]) -> dict[str, Decisions]:
        X, hits = self.features_.transform(texts)
        per_facet: dict[str, dict[int, Decisions]] = {}
        for model in self.levels_:
            kw = self.features_.hits_for(hits, model.codes)
            proba = np.zeros((len(texts), len(model.model_codes)))
            if model.ensemble is not None and len(texts):
                proba = model.ensemble.predict_proba(X)
            chosen, source = _decide(model, proba, kw)
            confidence = self._confidence(model, proba, kw, chosen, source)
            per_facet.setdefault(model.facet, {})[model.level] = Decisions(model.codes, chosen, confidence, source)
        return {facet: self._harmonise(facet, levels) for facet, levels in per_facet.items()}

    def predict(self, texts: Sequence[str]) -> list[dict[str, list[Proposal]]]:
        """Per text, per facet: the proposed codes, most confident first."""
        out: list[dict[str, list[Proposal]]] = [{} for _ in texts]
        for facet, d in self.decide(texts).items():
            for i in range(len(texts)):
                picks = [
                    Proposal(d.codes[j], round(float(d.confidence[i, j]), 4), Source(int(d.source[i, j])).label)
                    for j in np.flatnonzero(d.chosen[i])
                ]
                out[i][facet] = sorted(picks, key=lambda p: (-p.confidence, p.code))
        return out

    def score(self, texts: Sequence[str], labels: Sequence[set[str]]) -> list[LevelScore]:
        """Precision, recall and F1 per facet and level against known labels (ancestors implied)."""
        return self._scores(self.decide(texts), [self.taxonomy.with_ancestors(ls) for ls in labels])

    def _scores(self, decisions: dict[str, Decisions], truth: Sequence[set[str]]) -> list[LevelScore]:
        """Each facet's decisions scored level by level against label sets that include their ancestors."""
        out = []
        for facet, d in decisions.items():
            for level in self.taxonomy.levels(facet):
                codes = self.taxonomy.codes_at(facet, level)
                idx = [d.codes.index(c) for c in codes]
                out.append(score_level(facet, level, codes, _indicator(truth, codes), d.chosen[:, idx]))
        return out

    # ---- helpers --------------------------------------------------------------------------------------------
    def _confidence(self, model: LevelModel, proba, kw, chosen, source) -> np.ndarray:
        """Model-decided labels: calibrated probability that the label is right given its margin over the threshold.
        Keyword-decided labels: the rule's (smoothed) precision on the training data."""
        confidence = np.tile(np.array([model.keyword_precision[c] for c in model.codes]), (len(chosen), 1))
        if model.calibrator is not None:
            for jj, code in enumerate(model.model_codes):
                j = model.codes.index(code)
                cut = model.cuts[code]
                if not np.isfinite(cut):
                    continue
                by_model = source[:, j] == Source.MODEL
                if by_model.any():
                    margin = _logit(proba[by_model, jj]) - _logit(cut)
                    confidence[by_model, j] = model.calibrator.predict(margin)
        return np.where(chosen, np.clip(confidence, 0.0, 1.0), 0.0)

    def _harmonise(self, facet: str, levels: dict[int, Decisions]) -> Decisions:
        """Join a facet's levels and make them consistent with the tree."""
        codes = [c for lv in sorted(levels) for c in levels[lv].codes]
        chosen = np.hstack([levels[lv].chosen for lv in sorted(levels)]).copy()
        confidence = np.hstack([levels[lv].confidence for lv in sorted(levels)]).copy()
        source = np.hstack([levels[lv].source for lv in sorted(levels)]).copy()
        index = {c: j for j, c in enumerate(codes)}
        nodes = self.taxonomy.nodes
        if self.settings.hierarchy == "imply_parents":
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
        else:
            for code in sorted(codes, key=lambda c: nodes[c].level):
                parent = nodes[code].parent
                if parent is not None:
                    chosen[:, index[code]] &= chosen[:, index[parent]]
        confidence = np.where(chosen, confidence, 0.0)
        source = np.where(chosen, source, Source.NONE).astype(np.int8)
        return Decisions(codes, chosen, confidence, source)

    def summary(self) -> dict:
        return {
            "n_train": self.n_train_,
            "n_terms": self.features_.n_terms,
            "fit_seconds": round(self.fit_seconds_, 1),
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
                }
                for m in self.levels_
            ],
        }


def _indicator(label_sets: Sequence[set[str]], codes: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(label_sets), len(codes)), dtype=bool)
    index = {c: j for j, c in enumerate(codes)}
    for i, labels in enumerate(label_sets):
        for code in labels:
            j = index.get(code)
            if j is not None:
                out[i, j] = True
    return out


def _keyword_precision(kw: np.ndarray, truth: np.ndarray, strength: float = 2.0) -> np.ndarray:
    """Each rule's precision on the training data, shrunk toward the pooled precision of all rules."""
    hits, correct = kw.sum(axis=0), (kw & truth).sum(axis=0)
    pooled = correct.sum() / hits.sum() if hits.sum() else 0.5
    return (correct + strength * pooled) / (hits + strength)


def _out_of_fold(ensemble: WeightedEnsemble, X, Y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Probabilities for every training text from ensembles that did not see it."""
    folds = max(2, min(folds, len(Y) // 2))
    proba = np.zeros(Y.shape)
    for train, held in KFold(folds, shuffle=True, random_state=seed).split(X):
        fold = WeightedEnsemble(ensemble.members).fit(X[train], Y[train])
        proba[held] = fold.predict_proba(X[held])
    return proba


def _choose_rule(proba: np.ndarray, truth: np.ndarray, kw: np.ndarray | None,
                 min_precision: float = 0.0) -> tuple[Rule, float]:
    """The rule and threshold with the best out-of-fold F1 among those whose precision reaches `min_precision`;
    ties go to the simpler rule (keyword first). Rule.NONE when no rule reaches it."""
    col = truth.reshape(-1, 1)
    positives = truth.sum()
    candidates = []
    if kw is not None and kw.any() and (kw & truth).sum() >= min_precision * kw.sum():
        candidates.append((2 * (kw & truth).sum() / (kw.sum() + positives), Rule.KEYWORD, np.inf))
    options = [(Rule.MODEL, proba)]
    if kw is not None:
        options += [(Rule.UNION, np.where(kw, np.inf, proba)), (Rule.GATED, np.where(kw, proba, -np.inf))]
    for rule, scores in options:
        c, t, p = best_f1_thresholds(scores.reshape(-1, 1), col, min_precision)
        if np.isfinite(c[0]):
            candidates.append((2 * t[0] / (p[0] + positives), rule, c[0]))
    if not candidates:
        return Rule.NONE, float("inf")
    best = max(candidates, key=lambda c: c[0])  # max keeps the first of equals
    return best[1], float(best[2])


def _apply_rule(rule: str, proba: np.ndarray, cut: float, kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _decide(model: LevelModel, proba: np.ndarray, kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each label's rule applied to the level's texts: (chosen, source), the same in training and in prediction.
    `proba` holds the model's probabilities of the labels in `model.model_codes`, `kw` the keyword hits of all."""
    has_rule = np.array([model.rules[c] != Rule.NONE for c in model.codes], dtype=bool)
    chosen = kw & has_rule
    source = np.where(chosen, Source.KEYWORD, Source.NONE).astype(np.int8)
    for jj, code in enumerate(model.model_codes):
        j = model.codes.index(code)
        fired, by_model = _apply_rule(model.rules[code], proba[:, jj], model.cuts[code], kw[:, j])
        chosen[:, j] = fired
        source[:, j] = np.where(by_model, Source.MODEL, np.where(fired, Source.KEYWORD, Source.NONE))
    return chosen, source


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
