"""Top-1 path decoding against independent thresholds on a single-choice hierarchy: the bundled UK-CAT sample's
ICNP/TSO scheme (one code per charity; section > group > class, e.g. I > I1 > I10), on the fixed train/test split.
Per seed, two `classie-automl train` + `evaluate` runs with default settings and the same budget: the facet declared
single-choice ([taxonomy] single_choice), and decoded label by label ([model] detect_single_choice = false). Prints
micro/macro-F1, pre-fill precision and effort ratio per level, medians over the seeds.

    .venv/bin/python benchmarks/single_choice_ukcat.py [--budget 300] [--seeds 1 2 3] [--out DIR]

Runs already done (their run.json exists under --out) are read, not repeated.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_ukcat import ROOT, TEST, TRAIN, median_range, train_and_score, write_rows  # noqa: E402

SCHEME = ROOT / "examples" / "ukcat" / "icnptso"
VARIANTS = {"path": 'single_choice = ["icnptso"]', "independent": ""}


def with_icnptso_labels(source: Path, out: Path) -> Path:
    """`source`'s texts with their ICNP/TSO code as the labels."""
    codes = {row["id"]: row["labels"] for row in csv.DictReader((SCHEME / "labels.csv").open(encoding="utf-8"))}
    rows = [{**row, "labels": codes[row["id"]]} for row in csv.DictReader(source.open(encoding="utf-8"))
            if codes.get(row["id"])]
    path = out / source.name
    write_rows(path, rows)
    return path


def config(out: Path, variant: str) -> Path:
    path = out / f"{variant}.toml"
    path.write_text(f"""platform = "files"
[taxonomy]
path = "{SCHEME / 'taxonomy.csv'}"
default_facet = "icnptso"
{VARIANTS[variant]}
""")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--out", type=Path, default=ROOT / "state-benchmark" / "single-choice")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    train, test = with_icnptso_labels(TRAIN, out), with_icnptso_labels(TEST, out)
    results = {}
    for variant in VARIANTS:
        detect = "true" if variant == "path" else "false"
        results[variant] = [
            train_and_score(out / f"{variant}-b{args.budget}-s{seed}", train,
                            {"budget_seconds": args.budget, "seed": seed, "detect_single_choice": detect},
                            config=config(out, variant), test=test)
            for seed in args.seeds]
    for variant, runs in results.items():
        print(f"\n## {variant} ({len(runs)} run(s), budget {args.budget} s; single-choice facets:"
              f" {runs[0]['single_choice'] or 'none'})")
        print(f"  train_wall_s: {median_range([r['train_wall_s'] for r in runs])}")
        for level in runs[0]["f1"]:
            figures = {"micro-F1": [r["f1"][level]["micro"] for r in runs],
                       "macro-F1": [r["f1"][level]["macro"] for r in runs],
                       "pre-fill precision": [r["prefill_precision"][level] for r in runs],
                       "effort ratio": [r["effort_ratio"][level] for r in runs]}
            print(f"  {level}: " + "  ".join(f"{k} {median_range(v)}" for k, v in figures.items()))
    (out / "summary.json").write_text(json.dumps(results, indent=1))
    print(f"\nall runs: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
