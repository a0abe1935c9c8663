"""The model figures of the README on the bundled UK-CAT split (the whole taxonomy as one facet, default settings):
per budget, number of jobs and seed, one `classie-automl train` in its own state folder, then `evaluate` on the test
split. Prints, per run, the training's wall time (the whole command) and the model's fit time, the peak RSS of the
largest process, the pipelines tried and search seconds per level, and micro/macro-F1 per level; then medians.

    .venv/bin/python benchmarks/model_ukcat.py [--budgets 60 120 300] [--jobs 1 2] [--seeds 1 2 3] [--out DIR]
    .venv/bin/python benchmarks/model_ukcat.py --warm-start [--budgets 300] [--seeds 1]
        # trains on the train split less a seeded 1/11, then on all of it: cold with the full budget, and warm
        # (from the first version's configurations) with a third of it
    .venv/bin/python benchmarks/model_ukcat.py --assets-scale 20000 --budgets 60
        # the train split resampled to this many assets (texts lightly perturbed): memory at size

Runs already done (their scores.json exists under --out) are read, not repeated.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "service.app.cli"]  # the code beside this script (a copy of the tree works too)
CONFIG = ROOT / "examples" / "ukcat" / "benchmark.toml"
TRAIN = ROOT / "examples" / "ukcat" / "train.csv"
TEST = ROOT / "examples" / "ukcat" / "test.csv"


def cli(args: list[str], env: dict) -> tuple[float, int]:
    """Run the CLI; return its wall seconds and the peak RSS (MiB) of its largest process."""
    rss_file = Path(env["CLASSIE_STATE_DIR"]) / "rss.txt"
    rss_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-o", str(rss_file), "-f", "%M", *CLI, *args], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - started
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, int(rss_file.read_text().split()[-1]) // 1024


def train_and_score(state: Path, assets: Path, settings: dict[str, str], config: Path = CONFIG,
                    test: Path = TEST) -> dict:
    """One training (in `state`, which may hold earlier versions) and its test scores; cached in state."""
    out = state / "run.json"
    if out.exists():
        return json.loads(out.read_text())
    env = {**os.environ, "CLASSIE_STATE_DIR": str(state), "PYTHONPATH": str(ROOT),
           **{f"CLASSIE_MODEL__{k.upper()}": str(v) for k, v in settings.items()}}
    common = ["--config", str(config), "--assets", str(assets)]
    wall, rss = cli(["train", *common], env)
    scores = state / "scores.json"
    cli(["evaluate", "--test", str(test), "--json", str(scores), *common], env)
    meta = json.loads(sorted((state / "models").glob("v*/meta.json"))[-1].read_text())
    summary = meta["summary"]
    levels = {f"L{x['level']}": x for x in json.loads(scores.read_text())["levels"]}
    run = {
        "settings": settings, "train_wall_s": round(wall, 1), "fit_s": summary["fit_seconds"], "peak_rss_mib": rss,
        "n_train": summary["n_train"], "single_choice": summary.get("single_choice", []),
        "levels": {f"L{x['level']}": {"pipelines": x["pipelines_tried"], "search_s": x["search_seconds"],
                                      "warm": x.get("warm_started", 0), "share_s": x.get("share_seconds"),
                                      "other_s": x.get("other_seconds"), "ensemble": x.get("ensemble")}
                   for x in summary["levels"]},
        "f1": {k: {"micro": round(v["micro_f1"], 4), "macro": round(v["macro_f1"], 4)} for k, v in levels.items()},
        "effort_ratio": {k: v["effort"]["ratio"] for k, v in levels.items()},
        "prefill_precision": {k: round(v["micro_precision"], 4) for k, v in levels.items()},
    }
    out.write_text(json.dumps(run, indent=1))
    return run


def split_for_warm_start(out: Path, seed: int) -> tuple[Path, Path]:
    """The train split less a seeded 1/11 (so that the whole is 10% more), and the whole."""
    rows = list(csv.DictReader(TRAIN.open(encoding="utf-8")))
    random.Random(seed).shuffle(rows)
    base = out / f"base-seed{seed}.csv"
    write_rows(base, rows[: round(len(rows) / 1.1)])
    return base, TRAIN


def resampled(out: Path, n: int, seed: int = 0) -> Path:
    """The train split resampled to n assets, each copy's text lightly perturbed (a few words dropped) and given a
    new id, so that duplicates do not make the features trivial."""
    path = out / f"train-{n}.csv"
    if path.exists():
        return path
    rows = list(csv.DictReader(TRAIN.open(encoding="utf-8")))
    rng = random.Random(seed)
    picked = []
    for i in range(n):
        row = dict(rng.choice(rows))
        words = row["text"].split()
        row["text"] = " ".join(w for w in words if rng.random() > 0.1) or row["text"]
        row["id"] = f"{row['id']}-r{i}"
        picked.append(row)
    write_rows(path, picked)
    return path


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def warm_start_runs(out: Path, budget: int, jobs: int, seed: int) -> dict:
    base, whole = split_for_warm_start(out, seed)
    common = {"seed": seed, "n_jobs": jobs}
    first = out / f"warm-b{budget}-j{jobs}-s{seed}"
    first_run = train_and_score(first / "state", base, {**common, "budget_seconds": budget, "warm_start": "false"})
    cold = train_and_score(out / f"cold-b{budget}-j{jobs}-s{seed}", whole,
                           {**common, "budget_seconds": budget, "warm_start": "false"})
    warm_state = first / "retrain"
    if not (warm_state / "run.json").exists():
        shutil.rmtree(warm_state, ignore_errors=True)
        shutil.copytree(first / "state", warm_state, ignore=shutil.ignore_patterns("run.json", "scores.json"))
    warm = train_and_score(warm_state, whole, {**common, "budget_seconds": max(1, budget // 3), "warm_start": "true"})
    return {"first": first_run, "cold": cold, "warm": warm}


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 \
        else f"{values[0]:.3f}"


def print_runs(title: str, runs: list[dict]) -> None:
    print(f"\n## {title} ({len(runs)} run(s))")
    for key in ("train_wall_s", "fit_s", "peak_rss_mib"):
        print(f"  {key}: {median_range([r[key] for r in runs])}")
    for level in runs[0]["f1"]:
        micro = median_range([r["f1"][level]["micro"] for r in runs])
        macro = median_range([r["f1"][level]["macro"] for r in runs])
        pipelines = [r["levels"][level]["pipelines"] for r in runs]
        print(f"  {level}: micro-F1 {micro}  macro-F1 {macro}  pipelines {pipelines}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", type=int, nargs="+", default=[60, 120, 300])
    parser.add_argument("--jobs", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--out", type=Path, default=ROOT / "state-benchmark" / "model")
    parser.add_argument("--warm-start", action="store_true")
    parser.add_argument("--assets-scale", type=int, default=None)
    args = parser.parse_args()
    out = args.out.resolve()
    results: dict = {}
    for budget in args.budgets:
        for jobs in args.jobs:
            key = f"budget {budget} s, {jobs} job(s)"
            if args.warm_start:
                runs = [warm_start_runs(out, budget, jobs, seed) for seed in args.seeds]
                for kind in ("first", "cold", "warm"):
                    print_runs(f"{key}: {kind}", [r[kind] for r in runs])
            else:
                assets = resampled(out, args.assets_scale) if args.assets_scale else TRAIN
                tag = f"-n{args.assets_scale}" if args.assets_scale else ""
                runs = [train_and_score(out / f"b{budget}-j{jobs}-s{seed}{tag}", assets,
                                        {"budget_seconds": budget, "n_jobs": jobs, "seed": seed})
                        for seed in args.seeds]
                print_runs(key, runs)
            results[key] = runs
    (out / "summary.json").write_text(json.dumps(results, indent=1))
    print(f"\nall runs: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
