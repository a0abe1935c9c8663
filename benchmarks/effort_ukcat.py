"""The labeller-effort figures of the README on the bundled example: trains with the demo's configuration
(examples/ukcat/config.toml: two facets, budget 240 s) once per seed, scores each version on the test split, and prints
per facet the effort ratio, pre-fill precision, coverage, no-edit share and calibration error, per level the effort
ratio, pre-fill precision and micro-F1, with the medians over the seeds.

    .venv/bin/python benchmarks/effort_ukcat.py [--seeds 1 2 3] [--target-precision 0.8] [--out DIR]
        [--config examples/ukcat/benchmark.toml]   # the quality benchmark: the whole taxonomy as one facet
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "service.app.cli"]  # the code beside this script (a copy of the tree works too)
CONFIG = ROOT / "examples" / "ukcat" / "config.toml"
TEST = ROOT / "examples" / "ukcat" / "test.csv"


def run(seed: int, target_precision: float | None, out: Path, config: Path) -> dict:
    state = out / (f"seed{seed}" + (f"-tp{target_precision}" if target_precision else ""))
    scores = state / "scores.json"
    if not scores.exists():
        env = {**os.environ, "CLASSIE_MODEL__SEED": str(seed), "CLASSIE_STATE_DIR": str(state),
               "PYTHONPATH": str(ROOT)}
        if target_precision:
            env["CLASSIE_MODEL__TARGET_PRECISION"] = str(target_precision)
        for args in (["train"], ["evaluate", "--test", str(TEST), "--json", str(scores)]):
            done = subprocess.run([*CLI, *args, "--config", str(config)], env=env, capture_output=True, text=True,
                                  cwd=ROOT)
            if done.returncode:
                sys.exit(done.stderr[-3000:])
    return json.loads(scores.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--target-precision", type=float, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "state-benchmark" / "effort")
    parser.add_argument("--config", type=Path, default=CONFIG)
    args = parser.parse_args()
    reports = [run(seed, args.target_precision, args.out, args.config.resolve()) for seed in args.seeds]
    summary: dict = {"seeds": args.seeds, "target_precision": args.target_precision, "facets": {}, "levels": {}}
    for facet in (f["facet"] for f in reports[0]["facets"]):
        runs = [next(f for f in r["facets"] if f["facet"] == facet) for r in reports]
        summary["facets"][facet] = {k: [round(r["effort"][k], 3) for r in runs]
                                    for k in ("ratio", "prefill_precision", "coverage", "no_edit_share")}
        summary["facets"][facet]["calibration_error"] = [round(r["calibration_error"], 3) for r in runs]
    for level in reports[0]["levels"]:
        key = f"{level['facet']} L{level['level']}"
        runs = [next(x for x in r["levels"] if (x["facet"], x["level"]) == (level["facet"], level["level"]))
                for r in reports]
        summary["levels"][key] = {"ratio": [r["effort"]["ratio"] for r in runs],
                                  "prefill_precision": [round(r["effort"]["prefill_precision"], 3) for r in runs],
                                  "prefilled": [r["effort"]["gold"] - r["effort"]["added"] + r["effort"]["deleted"]
                                                for r in runs],
                                  "micro_f1": [round(r["micro_f1"], 3) for r in runs],
                                  "macro_f1": [round(r["macro_f1"], 3) for r in runs]}
    for group in (summary["facets"], summary["levels"]):
        for figures in group.values():
            for k in list(figures):
                figures[f"median_{k}"] = round(statistics.median(figures[k]), 3)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
