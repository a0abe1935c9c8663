"""Score a pre-annotations file (the files platform's JSONL output) against a labelled file: the labeller's effort
(edits with the pre-annotations against edits without), pre-fill precision, coverage, no-edit share and the
calibration of the confidences, per facet and level, with ancestors implied (as `evaluate` scores them).

    .venv/bin/python benchmarks/score_preannotations.py --pre examples/ukcat/state/preannotations.jsonl \
        --test examples/ukcat/test.csv --taxonomy examples/ukcat/taxonomy.csv --facet-root population=BE \
        [--min-confidence 0.5]

Only the latest model version of each asset counts. `--min-confidence` keeps only the pre-fills at least that
confident (what a stricter cut of the same output would have cost).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl.metrics import score_facet, score_level  # noqa: E402
from automl.taxonomy_file import load_taxonomy  # noqa: E402
from connectors.files import load_assets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pre", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--taxonomy", type=Path, required=True)
    parser.add_argument("--facet-root", action="append", default=[], help="facet=CODE (repeatable)")
    parser.add_argument("--min-confidence", type=float, default=0.0)
    args = parser.parse_args()
    roots: dict[str, list[str]] = {}
    for item in args.facet_root:
        facet, code = item.split("=", 1)
        roots.setdefault(facet, []).append(code)
    tax = load_taxonomy(args.taxonomy, roots)
    gold = {a.id: tax.with_ancestors(a.labels) for a in load_assets(args.test, tax, require_labels=True)}
    latest: dict[str, dict] = {}
    for line in args.pre.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["asset_id"] in gold:
            latest[record["asset_id"]] = record  # appended in order: the last line is the latest version
    ids = sorted(set(gold) & set(latest))
    out = {"assets": len(ids), "levels": [], "facets": []}
    for facet in tax.facets:
        codes = [c for lv in tax.levels(facet) for c in tax.codes_at(facet, lv)]
        index = {c: j for j, c in enumerate(codes)}
        truth, chosen, confidence = (np.zeros((len(ids), len(codes))) for _ in range(3))
        for i, asset_id in enumerate(ids):
            for code in gold[asset_id]:
                if code in index:
                    truth[i, index[code]] = 1
            for p in latest[asset_id]["facets"].get(facet, []):
                if p["confidence"] >= args.min_confidence:
                    chosen[i, index[p["code"]]], confidence[i, index[p["code"]]] = 1, p["confidence"]
        truth, chosen = truth.astype(bool), chosen.astype(bool)
        out["facets"].append(score_facet(facet, truth, chosen, confidence).to_dict())
        for level in tax.levels(facet):
            idx = [index[c] for c in tax.codes_at(facet, level)]
            score = score_level(facet, level, [codes[j] for j in idx], truth[:, idx], chosen[:, idx])
            out["levels"].append({"facet": facet, "level": level, "micro_f1": round(score.micro_f1, 4),
                                  **score.effort.to_dict()})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
