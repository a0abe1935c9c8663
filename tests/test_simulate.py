"""`classie-automl simulate`: a small campaign on the example, its curves, and carrying on after an interruption."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLE, example_rows, write, write_assets

CLI = str(Path(sys.executable).parent / "classie-automl")


def test_a_campaign_writes_its_rounds_and_curves_and_carries_on(tmp_path):
    write_assets(tmp_path / "pool.csv", example_rows("train.csv", 120))
    write_assets(tmp_path / "test.csv", example_rows("test.csv", 60))
    write(tmp_path / "c.toml", f'[files]\nassets = "pool.csv"\n[taxonomy]\npath = "{EXAMPLE / "taxonomy.csv"}"\n'
                               'facet_roots = { population = ["BE"] }\n[model]\nmin_examples = 100000\n')
    args = [CLI, "simulate", "--config", str(tmp_path / "c.toml"), "--test", str(tmp_path / "test.csv"),
            "--out", str(tmp_path / "sim"), "--seed-labels", "20", "--rounds", "2", "--per-round", "15"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "priority round 2: 50 labels" in done.stdout and "random round 0: 20 labels" in done.stdout
    rows = [json.loads(x) for x in (tmp_path / "sim" / "rounds.jsonl").read_text().splitlines()]
    assert [(r["strategy"], r["round"], r["labels"]) for r in rows] == [
        ("priority", 0, 20), ("priority", 1, 35), ("priority", 2, 50),
        ("random", 0, 20), ("random", 1, 35), ("random", 2, 50)]
    assert rows[0]["labelled_ids"] == rows[3]["labelled_ids"]  # the same seed labels for both strategies
    assert rows[1]["next_ids"] != rows[4]["next_ids"] and len(set(rows[1]["next_ids"])) == 15
    assert not set(rows[1]["next_ids"]) & set(rows[1]["labelled_ids"])
    with (tmp_path / "sim" / "curves.csv").open(encoding="utf-8") as f:
        curves = list(csv.DictReader(f))
    assert {(c["strategy"], c["level"]) for c in curves} >= {("priority", "1"), ("random", "all")}
    assert (tmp_path / "sim" / "curves.png").read_bytes()[:4] == b"\x89PNG"

    # Interrupted during its last round: a rerun computes that round only.
    (tmp_path / "sim" / "rounds.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:-1]) + "\n{\"strat")
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(" round ") == 1 and "random round 2: 50 labels" in again.stdout
    rerun = [json.loads(x) for x in (tmp_path / "sim" / "rounds.jsonl").read_text().splitlines() if x.endswith("}")]
    assert rerun[-1]["next_ids"] == [] and rerun[-1]["labelled_ids"] == rows[-1]["labelled_ids"]


def test_a_campaign_larger_than_the_pool_is_refused_with_the_fix(tmp_path):
    write_assets(tmp_path / "pool.csv", example_rows("train.csv", 30))
    done = subprocess.run([CLI, "simulate", "--assets", str(tmp_path / "pool.csv"), "--taxonomy",
                           str(EXAMPLE / "taxonomy.csv"), "--out", str(tmp_path / "sim"), "--seed-labels", "20"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "the campaign labels 1620 assets but the pool has" in done.stderr
    assert "Fix: lower --seed-labels" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "sim" / "split.csv").exists()  # the held-out split is kept for a corrected rerun
    wrong = subprocess.run([CLI, "simulate", "--assets", str(tmp_path / "pool.csv"), "--taxonomy",
                            str(EXAMPLE / "taxonomy.csv"), "--strategy", "clever"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "--strategy priority, random or both" in wrong.stderr
