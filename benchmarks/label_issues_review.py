"""The top flags of a `label_issues_ukcat.py` run set out for a person to review, and the reviewed sheet scored.

Precision against injected errors counts every other flag as wrong, yet many of the others sit on UK-CAT's own labels
(`--natural`: the same training without the injected noise raises them too) and read as real mistakes of its coders.
This puts a number on that: a reviewer reads each flag that names no injected error beside the charity's text and
its labels, and writes a verdict:
- `mistake`: following the flag mends the labels: the given code does not fit the text, or the code suggested or
  missing plainly applies and was left out (for "Y instead of X", Y missing is enough even where X can stand);
- `defensible`: the human label can stand (a reading of the text, or a judgment call the scheme leaves open);
- `unclear`: the text does not tell.

    .venv/bin/python benchmarks/label_issues_review.py sheet --out DIR --seed 1 [--top 100] > sheet.csv
    .venv/bin/python benchmarks/label_issues_review.py score sheet.csv

`sheet` needs a run with `--natural` (DIR/seedN and DIR/seedN-clean). `score` prints, of the top flags: the share
naming an injected error, the verdicts on the others, and the share worth a labeller's look (injected or `mistake`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
import label_issues_ukcat as noise  # noqa: E402

from automl.taxonomy_file import load_taxonomy  # noqa: E402

VERDICTS = ("mistake", "defensible", "unclear")
COLUMNS = ["rank", "asset_id", "kind", "code", "suggestion", "advice", "injected", "natural", "labels", "text",
           "verdict"]


def sheet(out: Path, seed: int, top: int) -> list[dict]:
    """The top flags of the seed's noisy training, each with what the reviewer needs; injected ones come judged."""
    taxonomy = load_taxonomy(noise.EXAMPLE / "taxonomy.csv", noise.FACETS, "subject")
    rows = noise.read_rows(noise.EXAMPLE / "train.csv")
    first = {r["id"]: noise.split_codes(r["labels"]) for r in rows}
    injected = noise.inject(rows, taxonomy, 0.05, seed, set(noise.second_codings(set(first))))
    noisy = {r["id"]: r for r in noise.read_rows(out / f"seed{seed}" / "noisy_train.csv")}
    clean = out / f"seed{seed}-clean" / "flags.csv"
    if not clean.exists():
        sys.exit(f"{clean}: not there. Run label_issues_ukcat.py --natural --seeds {seed} --out {out} first")
    natural = {noise.flag_key(f) for f in noise.read_rows(clean)}

    def named(codes: list[str]) -> str:
        return "; ".join(f"{c} {taxonomy.nodes[c].name}" for c in codes if c in taxonomy)

    out_rows = []
    for flag in noise.read_rows(out / f"seed{seed}" / "flags.csv")[:top]:
        asset = noisy[flag["asset_id"]]
        kind = noise.hits(flag, injected)
        out_rows.append({"rank": flag["rank"], "asset_id": flag["asset_id"], "kind": flag["kind"],
                         "code": named([flag["code"]]), "suggestion": named([flag["suggestion"]]),
                         "advice": flag["advice"], "injected": kind, "natural": int(noise.flag_key(flag) in natural),
                         "labels": named(noise.split_codes(asset["labels"])), "text": asset["text"],
                         "verdict": "mistake" if kind else ""})
    return out_rows


def score(rows: list[dict]) -> dict:
    others = [r for r in rows if not r["injected"]]
    unknown = [r["rank"] for r in others if r["verdict"] not in VERDICTS]
    if unknown:
        sys.exit(f"ranks {', '.join(unknown)}: no verdict; write one of {', '.join(VERDICTS)}")
    verdicts = Counter(r["verdict"] for r in others)
    n = len(rows)
    return {"flags": n, "injected": round((n - len(others)) / n, 3),
            "others": {v: verdicts[v] for v in VERDICTS},
            "others_natural": sum(int(r["natural"]) for r in others),
            "worth_a_look": round((n - len(others) + verdicts["mistake"]) / n, 3),
            "worth_a_look_at_most": round((n - verdicts["defensible"]) / n, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("sheet")
    make.add_argument("--out", type=Path, required=True, help="a label_issues_ukcat.py --natural run's folder")
    make.add_argument("--seed", type=int, default=1)
    make.add_argument("--top", type=int, default=100)
    judge = commands.add_parser("score")
    judge.add_argument("sheet", type=Path)
    args = parser.parse_args()
    if args.command == "sheet":
        writer = csv.DictWriter(sys.stdout, COLUMNS)
        writer.writeheader()
        writer.writerows(sheet(args.out.resolve(), args.seed, args.top))
    else:
        print(json.dumps(score(noise.read_rows(args.sheet)), indent=1))


if __name__ == "__main__":
    main()
