"""How a cycle grows with the pool: synthetic pools built from the bundled texts, through the files platform.

Per size n: n assets resampled from UK-CAT's 4,104 texts with light perturbation (each copy loses a random tenth of
its words and gains a few words of another text, so copies are not duplicates), 5% of them labelled with their
source's labels. One `run --once` on a fresh state folder (first cycle: pull, train, predict, prioritise, push), then
a second (nothing changed: pull and nothing else), then a polling worker's no-change cycles (`run`, every second:
the median of its cycles after the first, which loads the model). Recorded: the cycle's own timings (`timings:`
line), the wall time, the peak RSS of the largest process (the CLI or its training child,
`getrusage(RUSAGE_CHILDREN)`), and per part the growth exponent k of time ~ n^k between the smallest and the largest
size.
With `--scheduler`, the cycles predict (and search) on that Dask cluster ([compute] scheduler).

Variants: `keywords` (every label on its keyword rule: `min_examples` above any count, no model fitted) and `search`
(default settings but `--budget`).

    .venv/bin/python benchmarks/scale.py [--sizes 10000 30000 100000] [--variant keywords search] [--budget 60]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ukcat"
CLI = [sys.executable, "-m", "service.app.cli"]
LABELLED_SHARE = 0.05


def source_rows() -> list[dict]:
    with (EXAMPLE / "assets.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def perturbed(text: str, other: str, rng: random.Random) -> str:
    words = [w for w in text.split() if rng.random() > 0.1]
    extra = other.split()
    if extra:
        start = rng.randrange(len(extra))
        words += extra[start:start + rng.randint(1, 5)]
    return " ".join(words)


def write_pool(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = source_rows()
    labelled = [r for r in rows if r["labels"].strip()]
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "text", "labels"])
        for i in range(n):
            is_labelled = rng.random() < LABELLED_SHARE
            row = rng.choice(labelled if is_labelled else rows)
            text = perturbed(row["text"], rng.choice(rows)["text"], rng)
            out.writerow([f"S{i:07d}", text, row["labels"] if is_labelled else ""])


def config(state: Path, assets: Path, variant: str, budget: int, scheduler: str | None = None) -> Path:
    model = ["min_examples = 1000000000", "holdout_fraction = 0"] if variant == "keywords" else [
        f"budget_seconds = {budget}"]
    path = state / "config.toml"
    path.write_text("\n".join([
        'platform = "files"', f'state_dir = "{state}"', "[files]", f'assets = "{assets}"', "[taxonomy]",
        f'path = "{EXAMPLE / "taxonomy.csv"}"', 'facet_roots = { population = ["BE"] }', "[model]", *model,
        *(["[compute]", f'scheduler = "{scheduler}"'] if scheduler else []),
    ]) + "\n", encoding="utf-8")
    return path


# Runs a command and prints the peak RSS (KiB) of its largest process: a fresh process per cycle, since
# RUSAGE_CHILDREN's peak is the largest of every child a process ever waited for.
_PEAK = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]);"
         " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(done.returncode)")


def cycle(config_path: Path) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _PEAK, *CLI, "run", "--once", "--config", str(config_path)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - started
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    line = next((x for x in done.stdout.splitlines() if x.startswith("timings: ")), "")
    timings = {k: float(v.rstrip("s")) for k, v in re.findall(r"(\w+) ([\d.]+s)", line)}
    peak = int(done.stderr.strip().splitlines()[-1])
    return {"wall": round(wall, 2), "timings": timings, "peak_rss_mib": round(peak / 1024)}


def polling_cycles(config_path: Path, cycles: int = 4) -> list[float]:
    """The `total` of a polling worker's first `cycles` cycles (its JSON cycle log lines), then it is stopped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLASSIE_LOG_FORMAT": "json", "CLASSIE_WORKER__INTERVAL_SECONDS": "1"}
    worker = subprocess.Popen([*CLI, "run", "--config", str(config_path)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    totals: list[float] = []
    try:
        for line in worker.stderr:
            if '"event": "cycle"' in line:
                totals.append(json.loads(line)["cycle"]["timings"]["total"])
                if len(totals) >= cycles:
                    break
    finally:
        worker.terminate()
        worker.wait(timeout=120)
    return totals


def exponent(small: tuple[int, float], large: tuple[int, float]) -> float | None:
    (n1, t1), (n2, t2) = small, large
    if t1 <= 0 or t2 <= 0 or n1 == n2:
        return None
    return round(math.log(t2 / t1) / math.log(n2 / n1), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--variant", nargs="+", default=["keywords", "search"], choices=["keywords", "search"])
    parser.add_argument("--budget", type=int, default=60, help="search budget of the `search` variant (seconds)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scheduler", help="a Dask scheduler's address: predict (and search) there")
    parser.add_argument("--out", type=Path, default=ROOT / "state-benchmark" / "scale")
    args = parser.parse_args()
    results = []
    for variant in args.variant:
        for n in sorted(args.sizes):
            folder = (args.out / f"{variant}-{n}").resolve()
            folder.mkdir(parents=True, exist_ok=True)
            for stale in ("state.sqlite3", "preannotations.jsonl", "models"):
                target = folder / stale
                if target.is_dir():
                    subprocess.run(["rm", "-rf", str(target)], check=True)
                elif target.exists():
                    target.unlink()
            assets = folder / "assets.csv"
            write_pool(assets, n, args.seed)
            path = config(folder, assets, variant, args.budget, args.scheduler)
            first, again = cycle(path), cycle(path)
            polled = polling_cycles(path)
            row = {"variant": variant, "assets": n, "first": first, "no_change": again,
                   "no_change_polling_s": round(statistics.median(polled[1:]), 3) if len(polled) > 1 else None}
            first_push = first["timings"].get("predict", 0) + first["timings"].get("push", 0)
            row["predict_assets_per_s"] = round(n * (1 - LABELLED_SHARE) / first["timings"]["predict"], 1) \
                if first["timings"].get("predict") else None
            row["predict_and_push_s"] = round(first_push, 2)
            print(json.dumps(row), flush=True)
            results.append(row)
    for variant in args.variant:
        rows = [r for r in results if r["variant"] == variant]
        if len(rows) < 2:
            continue
        small, large = rows[0], rows[-1]
        parts = sorted(set(small["first"]["timings"]) & set(large["first"]["timings"]))
        growth = {p: exponent((small["assets"], small["first"]["timings"][p]),
                              (large["assets"], large["first"]["timings"][p])) for p in parts}
        print(json.dumps({"variant": variant, "growth_exponent": growth}), flush=True)


if __name__ == "__main__":
    main()
