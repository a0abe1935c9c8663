"""Pipelines one search evaluates in the same budget: on this machine with 1 and 2 jobs, and on a Dask cluster of 1
and 2 worker processes behind a separate scheduler process on loopback (`[compute] scheduler`).

The search is the one a training runs for UK-CAT's subject level 1 (the bundled train split, TF-IDF and keyword-hit
features, labels with 10+ examples), with the same budget and seed in every set-up.

    .venv/bin/python benchmarks/cluster_search.py [--budget 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from automl.features import TextFeatures  # noqa: E402
from automl.metrics import indicator  # noqa: E402
from automl.search import SearchRun, Workspace, search_ensemble  # noqa: E402
from automl.settings import ModelSettings  # noqa: E402
from automl.taxonomy_file import load_taxonomy  # noqa: E402
from tests.dask_cluster import LocalDaskCluster, tasks_run  # noqa: E402

EXAMPLE = ROOT / "examples" / "ukcat"


def level_one_problem(settings: ModelSettings):
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", {"population": ["BE"]}, "subject")
    with (EXAMPLE / "train.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    labels = [taxonomy.with_ancestors(c for c in r["labels"].split(";") if c.strip() in taxonomy) for r in rows]
    codes = sorted(c for c, n in taxonomy.nodes.items() if n.level == 1 and n.facet == "subject")
    Y = indicator(labels, codes)
    Y = Y[:, (Y.sum(axis=0) >= settings.min_examples) & ((1 - Y).sum(axis=0) >= settings.min_examples)]
    X, _ = TextFeatures(taxonomy, settings).fit(texts).transform(texts)
    return X, Y


def search(X, Y, budget: int, seed: int, jobs: int, scheduler: str | None, scratch: Path) -> dict:
    settings = ModelSettings(n_jobs=jobs, seed=seed)
    _, report = search_ensemble(X, Y, settings, SearchRun(budget, seed, Workspace(scratch, scheduler=scheduler)))
    return {"evaluations": report.evaluations, "search_seconds": round(report.seconds, 1),
            "fallback": report.fallback}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    X, Y = level_one_problem(ModelSettings())
    scratch = Path(tempfile.mkdtemp(prefix="cluster-search-"))
    rows = []
    try:
        for jobs in (1, 2):
            rows.append({"where": "this machine", "jobs": jobs,
                         **search(X, Y, args.budget, args.seed, jobs, None, scratch / f"local{jobs}")})
            print(json.dumps(rows[-1]), flush=True)
        for workers in (1, 2):
            with LocalDaskCluster(scratch / f"cluster{workers}", workers=workers) as cluster:
                row = {"where": "dask cluster (scheduler process, loopback)", "workers": workers,
                       **search(X, Y, args.budget, args.seed, workers, cluster.address, scratch / f"run{workers}")}
                row["ran_on_the_cluster"] = bool(tasks_run(cluster.address).get("run_wrapper"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = {(r["where"], r.get("jobs", r.get("workers"))): r["evaluations"] for r in rows}
    print(json.dumps({"speedup_this_machine": round(base[("this machine", 2)] / max(1, base[("this machine", 1)]), 2),
                      "speedup_cluster": round(base[(rows[-1]["where"], 2)] / max(1, base[(rows[-1]["where"], 1)]),
                                               2)}))


if __name__ == "__main__":
    main()
