"""The promotion gate: a fixed evaluation slice, a worse candidate kept from serving, a forced rollback."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import example_rows, ukcat_project_config, write_assets
from service.quality.promotion import SliceFigures, comparable, in_holdout, split_holdout, worse

CLI = str(Path(sys.executable).parent / "classie-automl")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600)


def test_the_slice_is_fixed_by_the_id_and_has_the_asked_share():
    ids = [f"GB-CHC-{n}" for n in range(20000)]
    chosen = [i for i in ids if in_holdout(i, 0.15)]
    assert 0.14 < len(chosen) / len(ids) < 0.16
    assert chosen == [i for i in ids if in_holdout(i, 0.15)]  # the same on every call
    assert set(i for i in ids if in_holdout(i, 0.05)) <= set(chosen)  # a larger fraction keeps the smaller's slice
    assert not any(in_holdout(i, 0.0) for i in ids)

    class A:
        def __init__(self, id):
            self.id = id

    train, holdout = split_holdout([A(i) for i in ids[:1000]], 0.15)
    assert {a.id for a in holdout} == {i for i in ids[:1000] if in_holdout(i, 0.15)}
    assert len(train) + len(holdout) == 1000


def test_worse_means_lower_micro_f1_or_higher_effort_beyond_the_tolerance():
    now = {"subject": SliceFigures(0.60, 0.80, 0.7), "population": SliceFigures(0.50, 0.90, 0.6)}
    assert worse({"subject": SliceFigures(0.59, 0.81, 0.7), "population": SliceFigures(0.5, 0.9, 0.6)}, now,
                 0.02) == []
    found = worse({"subject": SliceFigures(0.57, 0.80, 0.7), "population": SliceFigures(0.5, 0.93, 0.6)}, now, 0.02)
    assert len(found) == 2 and found[0].startswith("subject micro-F1 0.570 < 0.600")
    assert found[1].startswith("population effort ratio 0.930 > 0.900")
    assert comparable({}, 0.15, "t") and comparable({"holdout_fraction": 0.1, "taxonomy_fingerprint": "t"}, 0.15, "t")
    assert comparable({"holdout_fraction": 0.15, "taxonomy_fingerprint": "old"}, 0.15, "t") == \
        "the taxonomy changed since"
    assert comparable({"holdout_fraction": 0.15, "taxonomy_fingerprint": "t"}, 0.15, "t") == ""


@pytest.mark.slow
def test_a_worse_candidate_is_rejected_and_the_current_version_keeps_serving(tmp_path):
    labelled = example_rows("train.csv", 360)
    unlabelled = [(i, t, "") for i, t, _ in example_rows("test.csv", 20)]
    write_assets(tmp_path / "assets.csv", labelled + unlabelled)
    config = ukcat_project_config(tmp_path, """
budget_seconds = 16
max_evaluations = 2
cv_folds = 3
refit_promoted = true
""")
    first = cli("run", "--once", "--config", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "model v1: trained (no model yet)" in first.stdout
    meta1 = json.loads((tmp_path / "state" / "models" / "v0001" / "meta.json").read_text())
    slice_ids = {i for i, _, _ in labelled if in_holdout(i, 0.15)}
    assert meta1["gate"]["promoted"] and meta1["gate"]["slice_assets"] == len(slice_ids) > 20
    # The candidate learnt without the slice; promoted, it was refitted on everything with the pipelines it found.
    assert meta1["gate"]["candidate_trained_on"] == len(labelled) - len(slice_ids)
    assert meta1["n_train"] == len(labelled)
    assert (tmp_path / "state" / "models" / "v0001" / "slice_model.joblib").is_file()
    assert all(level["refit"] and not level["pipelines_tried"] for level in meta1["summary"]["levels"]
               if level["model_labels"])
    report = (tmp_path / "state" / "models" / "v0001" / "report.html").read_text(encoding="utf-8")
    assert f"the evaluation slice: {len(slice_ids)} labelled assets that v1" in report  # written after training

    # The candidate learns from shuffled labels outside the slice; the slice keeps its true labels.
    outside = [row for row in labelled if row[0] not in slice_ids]
    shuffled = [row[2] for row in outside]
    random.Random(3).shuffle(shuffled)
    relabelled = {row[0]: label for row, label in zip(outside, shuffled, strict=True)}
    write_assets(tmp_path / "assets.csv", [(i, t, relabelled.get(i, ls)) for i, t, ls in labelled] + unlabelled)
    second = cli("run", "--once", "--config", str(config))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "model v1: current; a new version was trained" in second.stdout, second.stdout
    assert "REJECTED by the promotion gate, v2: worse than v1 on the evaluation slice" in second.stdout
    assert "v2 rejected by the promotion gate" in second.stderr and "models --promote 2" in second.stderr
    assert (tmp_path / "state" / "models" / "CURRENT").read_text().strip() == "1"
    assert not (tmp_path / "state" / "models" / "v0002" / "slice_model.joblib").exists()  # rejected: not refitted
    assert "REJECTED: worse than v1" in (tmp_path / "state" / "models" / "v0002" / "report.html").read_text()
    lines = [json.loads(line) for line in (tmp_path / "state" / "preannotations.jsonl").read_text().splitlines()]
    assert {r["model_version"] for r in lines} == {"v1"} and len(lines) == 20  # nothing of v2 was pushed

    listing = cli("models", "--config", str(config))
    rows = {line.split()[0]: line.split()[1] for line in listing.stdout.splitlines()}
    assert rows == {"v1": "current", "v2": "rejected"}, listing.stdout
    shown = cli("models", "--config", str(config), "--show", "2")
    assert shown.returncode == 0 and "promotion gate: REJECTED: worse than v1" in shown.stdout
    assert "  v1: slice population F1" in shown.stdout and "  this version: slice population F1" in shown.stdout
    missing = cli("models", "--config", str(config), "--show", "9")
    assert missing.returncode == 2 and "no model version 9" in missing.stderr and "Fix:" in missing.stderr

    third = cli("run", "--once", "--config", str(config))  # the same labels: the rejected candidate is not retrained
    assert third.returncode == 0 and "model v1: current, no training needed" in third.stdout, third.stdout

    forced = cli("models", "--config", str(config), "--promote", "2")  # a person may overrule the gate
    assert forced.returncode == 0
    rows = {line.split()[0]: line.split()[1] for line in forced.stdout.splitlines()}
    assert rows == {"v1": "previous", "v2": "current"}
    fourth = cli("run", "--once", "--config", str(config))
    assert fourth.returncode == 0 and "model v2: current, no training needed" in fourth.stdout, fourth.stdout
    assert "20 written" in fourth.stdout
