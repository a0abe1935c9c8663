"""How much a second human coder's labels would save a labeller: the reference the service's effort ratio is read
against (README, "How good is it").

The bundled sample holds charities coded twice, by two coders (the same id on two rows of examples/ukcat/assets.csv;
for the test split, the first coder's labels are in test.csv and the second's on the second row). Taking the first
coder's labels as the truth and the second's as the pre-fills, this prints per facet of the demo's configuration (two
facets: population = BE and its descendants, subject = the rest; ancestors implied, as the service scores) the
effort ratio, pre-fill precision and coverage, and the micro-F1 per level; then the same the other way round, and
the mean effort ratio of the two directions (the README's reference: neither coder is the truth).

    .venv/bin/python benchmarks/second_coder_ukcat.py [--sample ukcat_sample_4203_textlabels.csv] [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from automl.metrics import effort  # noqa: E402
from automl.taxonomy_file import load_taxonomy  # noqa: E402

EXAMPLE = ROOT / "examples" / "ukcat"


def coded_twice(sample: Path | None) -> dict[str, tuple[set[str], set[str]]]:
    """The ids on two rows, with (first coder's codes, second coder's codes): from UK-CAT's sample file when given
    (columns org_id, UKCAT), else from the bundled files, where the test split's second rows lost their labels."""
    rows: dict[str, list[str]] = defaultdict(list)
    source, id_column, labels_column = (sample, "org_id", "UKCAT") if sample else (EXAMPLE / "assets.csv", "id",
                                                                                     "labels")
    with open(source, newline="") as f:
        for row in csv.DictReader(f):
            rows[row[id_column]].append(row[labels_column])
    with open(EXAMPLE / "test.csv", newline="") as f:
        held_out = {row["id"]: row["labels"] for row in csv.DictReader(f)}
    pairs = {}
    for asset_id, labels in rows.items():
        if len(labels) == 2:
            first = labels[0] or held_out.get(asset_id, "")
            pairs[asset_id] = (set(filter(None, first.split(";"))), set(filter(None, labels[1].split(";"))))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=Path, help="UK-CAT's sample CSV (ukcat_sample_4203_textlabels.csv): "
                        "all the charities coded twice; without it, those the bundled files keep both codings of")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", facet_roots={"population": ["BE"]})

    def closed(codes: set[str]) -> set[str]:
        known = {c for c in codes if c in taxonomy.nodes}
        return known | {a for c in known for a in taxonomy.ancestors(c)}

    pairs = {i: (closed(a), closed(b)) for i, (a, b) in coded_twice(args.sample).items()}
    pairs = {i: p for i, p in pairs.items() if p[0] and p[1]}  # both coders gave a code the taxonomy has
    result: dict = {"charities": len(pairs)}
    for direction, (truth_of, prefill_of) in {"second coder as pre-fills": (0, 1),
                                              "first coder as pre-fills": (1, 0)}.items():
        result[direction] = {}
        for facet in sorted({taxonomy.nodes[c].facet for c in taxonomy.nodes}):
            codes = sorted(c for c in taxonomy.nodes if taxonomy.nodes[c].facet == facet)
            index = {c: k for k, c in enumerate(codes)}
            truth, prefill = (np.zeros((len(pairs), len(codes)), bool) for _ in range(2))
            for row, pair in enumerate(pairs.values()):
                for matrix, which in ((truth, truth_of), (prefill, prefill_of)):
                    for code in pair[which] & set(index):
                        matrix[row, index[code]] = True
            levels = {}
            for level in sorted({taxonomy.nodes[c].level for c in codes}):
                cols = [index[c] for c in codes if taxonomy.nodes[c].level == level]
                t, p = truth[:, cols], prefill[:, cols]
                hits = int((t & p).sum())
                levels[level] = round(2 * hits / (t.sum() + p.sum()), 3) if t.sum() + p.sum() else None
            e = effort(truth, prefill)
            result[direction][facet] = {"effort_ratio": round(e.ratio, 3),
                                        "prefill_precision": round(e.prefill_precision, 3),
                                        "coverage": round(e.coverage, 3), "micro_f1_by_level": levels}
    result["effort ratio, mean of the two directions"] = {
        facet: round(statistics.mean(result[d][facet]["effort_ratio"] for d in ("second coder as pre-fills",
                                                                              "first coder as pre-fills")), 3)
        for facet in result["second coder as pre-fills"]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
