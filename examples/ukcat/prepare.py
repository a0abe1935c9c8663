"""Rebuild the shipped UK-CAT example files from the source data (../shared/data/ukcat in the steering repo).

    python examples/ukcat/prepare.py SOURCE_DIR

Writes, beside this script:
- taxonomy.csv: the UK-CAT codes in this service's taxonomy format (code,name,parent_code,level,include_regex,
  exclude_regex).
- assets.csv: every charity (id,text,labels) with the labels of the fixed test split removed, so that the demo
  pre-annotates them. Duplicate ids are kept as in the source: the service skips later duplicates and says so.
- test.csv: the test split with its labels, for `classie-automl evaluate --test`.
- train.csv: the train split with its labels (the benchmark trains on it).
- icnptso/taxonomy.csv and icnptso/labels.csv: the second scheme of the sample, ICNP/TSO, one code per charity, as
  the 3-level tree its codes spell (section letter > group > class: I > I1 > I10; codes as names), and each
  charity's code (id,labels). benchmarks/single_choice_ukcat.py joins them to the texts of train.csv and test.csv.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(source: Path) -> None:
    with (source / "ukcat_hierarchy_with_parents.csv").open(encoding="utf-8", newline="") as f:
        codes = list(csv.DictReader(f))
    with (HERE / "taxonomy.csv").open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["code", "name", "parent_code", "level", "include_regex", "exclude_regex"])
        for row in codes:
            out.writerow([row["Code"], row["tag"], row["parent_code"], row["Level"], row["Regular expression"],
                          row["Exclude regular expression"]])

    with (source / "split.csv").open(encoding="utf-8", newline="") as f:
        split = {row["org_id"]: row["split"] for row in csv.DictReader(f)}
    with (source / "ukcat_sample_4203_textlabels.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))

    first: dict[str, dict] = {}
    for row in rows:
        first.setdefault(row["org_id"], row)
    columns = ["id", "text", "labels"]
    with (HERE / "assets.csv").open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(columns)
        for row in rows:
            held_out = split.get(row["org_id"]) == "test"
            out.writerow([row["org_id"], row["text"], "" if held_out else row["UKCAT"]])
    for part in ("train", "test"):
        with (HERE / f"{part}.csv").open("w", encoding="utf-8", newline="") as f:
            out = csv.writer(f)
            out.writerow(columns)
            for org_id, row in first.items():
                if split.get(org_id) == part:
                    out.writerow([org_id, row["text"], row["UKCAT"]])
    write_icnptso(first)


def write_icnptso(first: dict[str, dict]) -> None:
    folder = HERE / "icnptso"
    folder.mkdir(exist_ok=True)
    classes = sorted({row["ICNPTSO"] for row in first.values() if row["ICNPTSO"]})
    tree = {c[:1]: None for c in classes} | {c[:2]: c[:1] for c in classes} | {c: c[:2] for c in classes}
    with (folder / "taxonomy.csv").open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["code", "name", "parent_code", "level"])
        for code in sorted(tree, key=lambda c: (len(c), c)):
            out.writerow([code, code, tree[code] or "", len(code)])
    with (folder / "labels.csv").open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "labels"])
        for org_id, row in first.items():
            out.writerow([org_id, row["ICNPTSO"]])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data" / "ukcat")
