"""The promotion gate on the bundled example: `run --once` with the demo's configuration trains v1 on the 3,283
labelled charities; then the labels of half of those outside the evaluation slice are removed (the slice keeps its
labels) and `run --once` trains a candidate on what is left. Prints the gate's verdict with both versions' slice
figures, the training times, and what the refit on everything brings on the test split (served model against the
slice-free fit of the same version).

    .venv/bin/python benchmarks/gate_ukcat.py [--out state-benchmark/gate] [--seed 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ukcat"
CLI = [sys.executable, "-m", "service.app.cli"]


def run_once(config: Path) -> str:
    done = subprocess.run([*CLI, "run", "--once", "--config", str(config)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return done.stdout


def halve_labels(source: Path, target: Path, fraction: float, seed: int) -> int:
    """Copy of the assets file with the labels of half of the labelled assets outside the slice removed."""
    from service.quality.promotion import in_holdout

    with source.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    outside = [r for r in rows if r["labels"] and not in_holdout(r["id"], fraction)]
    dropped = {id(r) for r in random.Random(seed).sample(outside, len(outside) // 2)}
    for r in rows:
        if id(r) in dropped:
            r["labels"] = ""
    with target.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(dropped)


def test_scores(state: Path, number: int) -> dict:
    """Micro-F1 per level and effort per facet on the test split of the served model and of its slice-free fit."""
    import joblib

    from automl.taxonomy_file import load_taxonomy
    from connectors.files import load_assets
    from connectors.settings import FilesSettings

    folder = state / "models" / f"v{number:04d}"
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", facet_roots={"population": ["BE"]})
    assets = load_assets(EXAMPLE / "test.csv", taxonomy, FilesSettings(), require_labels=True)
    out = {}
    for name in ("model.joblib", "slice_model.joblib"):
        if (folder / name).is_file():
            scores = joblib.load(folder / name).score([a.text for a in assets], [set(a.labels) for a in assets])
            out[name] = {**{f"{m.facet} L{m.level} micro-F1": round(m.micro_f1, 3) for m in scores.levels},
                         **{f"{f.facet} effort": round(f.effort.ratio, 3) for f in scores.facets}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "state-benchmark" / "gate")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = out / "config.toml"
    demo = (EXAMPLE / "config.toml").read_text(encoding="utf-8")
    config.write_text(demo.replace(
        'path = "taxonomy.csv"', f'path = "{EXAMPLE / "taxonomy.csv"}"').replace(
        'test = "test.csv"', f'test = "{EXAMPLE / "test.csv"}"'), encoding="utf-8")
    assets = out / "assets.csv"
    if not (out / "state" / "models" / "v0001").is_dir():
        assets.write_bytes((EXAMPLE / "assets.csv").read_bytes())
        print(run_once(config))
    if not (out / "state" / "models" / "v0002").is_dir():
        dropped = halve_labels(EXAMPLE / "assets.csv", assets, 0.15, args.seed)
        print(f"labels removed from {dropped} assets outside the slice")
        print(run_once(config))
    metas = [json.loads((out / "state" / "models" / f"v{n:04d}" / "meta.json").read_text()) for n in (1, 2)]
    print(json.dumps({f"v{m['number']}": {"gate": m["gate"], "n_train": m["n_train"],
                                          "fit_seconds": m["summary"]["fit_seconds"]} for m in metas}, indent=1))
    print(json.dumps({"v1 on the test split": test_scores(out / "state", 1)}, indent=1))


if __name__ == "__main__":
    main()
