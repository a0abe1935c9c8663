"""Does a second stage over the out-of-fold margins help? On the bundled UK-CAT split (the subject taxonomy as one
facet, the labels with enough examples), the default linear model's 5-fold margins feed, per label, a logistic
regression over: its own margin ("own"); plus its descendants' highest margin, their noisy-or and its ancestors'
lowest ("hier"); plus the margins of every other label of its level ("co": labels' company); or both ("both").
Each second stage's cut is its own out-of-fold F1-best; the base keeps the first stage's. Prints micro/macro-F1
per level on the test split, base against second stage.

    .venv/bin/python benchmarks/second_stage_ukcat.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_predict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from automl.features import TextFeatures  # noqa: E402
from automl.metrics import best_f1_thresholds, indicator  # noqa: E402
from automl.rules import logit  # noqa: E402
from automl.search import LinearScores, WeightedEnsemble, default_members  # noqa: E402
from automl.settings import ModelSettings  # noqa: E402
from automl.taxonomy_file import load_taxonomy  # noqa: E402

EXAMPLE = ROOT / "examples" / "ukcat"


def read(path: Path, taxonomy) -> tuple[list[str], list[set[str]]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return ([r["text"] for r in rows],
            [taxonomy.with_ancestors({c for c in r["labels"].split(";") if c in taxonomy}) for r in rows])


def main() -> None:
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv")
    texts, labels = read(EXAMPLE / "train.csv", taxonomy)
    test_texts, test_labels = read(EXAMPLE / "test.csv", taxonomy)
    features = TextFeatures(taxonomy, ModelSettings()).fit(texts)
    X, _ = features.transform(texts)
    Xt, _ = features.transform(test_texts)
    codes, parts, test_parts = [], [], []
    for level in taxonomy.levels("subject"):
        level_codes = taxonomy.codes_at("subject", level)
        y = indicator(labels, level_codes)
        ok = (y.sum(axis=0) >= 10) & (len(y) - y.sum(axis=0) >= 10)
        codes += [c for c, keep in zip(level_codes, ok, strict=True) if keep]
        parts.append(y[:, ok])
        test_parts.append(indicator(test_labels, level_codes)[:, ok])
    Y, Yt = np.hstack(parts), np.hstack(test_parts)

    oof, folds = np.zeros(Y.shape), []
    for train, held in KFold(5, shuffle=True, random_state=1).split(X):
        fold = WeightedEnsemble(default_members(1)).fit(X[train], Y[train])
        oof[held] = fold.predict_proba(X[held])
        folds.append(fold.members_[0][1])
    M, Mt = logit(oof), logit(LinearScores.mean(folds).predict_proba(Xt))
    base = 1 / (1 + np.exp(-Mt))

    index = {c: j for j, c in enumerate(codes)}
    level_of = np.array([taxonomy.nodes[c].level for c in codes])
    below = {c: [index[d] for d in codes if d != c and c in taxonomy.ancestors(d)] for c in codes}
    above = {c: [index[a] for a in taxonomy.ancestors(c) if a in index] for c in codes}

    def inputs(margins: np.ndarray, j: int, kind: str) -> np.ndarray:
        code, cols = codes[j], [margins[:, j]]
        if kind in ("hier", "both"):
            d, a = below[code], above[code]
            cols.append(margins[:, d].max(axis=1) if d else np.full(len(margins), -10.0))
            children = 1 / (1 + np.exp(-margins[:, d])) if d else np.zeros((len(margins), 1))
            cols.append(logit(1 - np.prod(1 - children, axis=1)))
            cols.append(margins[:, a].min(axis=1) if a else np.full(len(margins), 10.0))
        if kind in ("co", "both"):
            cols += [margins[:, k] for k in np.flatnonzero(level_of == level_of[j]) if k != j]
        return np.column_stack(cols)

    def f1(proba: np.ndarray, cuts: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
        pred, truth = (proba >= cuts)[:, mask], (Yt > 0)[:, mask]
        tp, total = (pred & truth).sum(axis=0), pred.sum(axis=0) + truth.sum(axis=0)
        has = truth.sum(axis=0) > 0
        return 2 * tp.sum() / total.sum(), float(np.mean(2 * tp[has] / np.maximum(total[has], 1)))

    base_cuts, _, _ = best_f1_thresholds(oof, Y.astype(bool))
    for kind in ("own", "hier", "co", "both"):
        second_oof, second = np.zeros(Y.shape), np.zeros(Yt.shape)
        for j in range(len(codes)):
            F, Ft = inputs(M, j, kind), inputs(Mt, j, kind)
            stage = LogisticRegression(C=1.0, max_iter=1000)
            second_oof[:, j] = cross_val_predict(stage, F, Y[:, j], cv=KFold(5, shuffle=True, random_state=2),
                                                 method="predict_proba")[:, 1]
            second[:, j] = stage.fit(F, Y[:, j]).predict_proba(Ft)[:, 1]
        cuts, _, _ = best_f1_thresholds(second_oof, Y.astype(bool))
        for level in (1, 2, 3):
            mask = level_of == level
            (bm, bM), (sm, sM) = f1(base, base_cuts, mask), f1(second, cuts, mask)
            print(f"{kind:5s} level {level}: base {bm:.3f} / {bM:.3f}   second stage {sm:.3f} / {sM:.3f}", flush=True)


if __name__ == "__main__":
    main()
