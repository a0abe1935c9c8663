"""End to end: the installed `classie-automl` command on a small UK-CAT subset with a tiny search budget."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from automl.taxonomy_file import load_taxonomy
from conftest import EXAMPLE, example_rows, ukcat_project_config, write, write_assets

CLI = str(Path(sys.executable).parent / "classie-automl")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    labelled = example_rows("train.csv", 400)
    unlabelled = [(i, t, "") for i, t, _ in example_rows("test.csv", 40)]
    bad = [(labelled[0][0], "a duplicate of the first id", "ED"), ("empty-1", "  ", "")]
    write_assets(root / "assets.csv", labelled + unlabelled + bad)
    write_assets(root / "test.csv", example_rows("test.csv")[40:120])
    ukcat_project_config(root, """
budget_seconds = 150  # a real search on the levels with most labels (3 pipelines each)
max_evaluations = 3
cv_folds = 3
promote_tolerance = 10  # these tests follow the cycle; the gate's own are in test_promotion.py
""")
    return root, {i for i, _, _ in unlabelled}


def records(root: Path) -> list[dict]:
    path = root / "state" / "preannotations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_once_trains_pre_annotates_and_is_idempotent(project):
    root, unlabelled_ids = project
    first = cli("run", "--once", "--config", str(root / "config.toml"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "model v1: trained (no model yet)" in first.stdout
    assert "40 written" in first.stdout
    assert "1 duplicate id" in first.stdout and "1 empty text" in first.stdout

    written = records(root)
    assert {r["asset_id"] for r in written} == unlabelled_ids and len(written) == 40
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", facet_roots={"population": ["BE"]})
    sources = set()
    for rec in written:
        assert rec["model_version"] == "v1" and rec["created_at"] and len(rec["text_sha256"]) == 64
        assert set(rec["facets"]) == {"subject", "population"}
        for facet, proposals in rec["facets"].items():
            codes = {p["code"] for p in proposals}
            for p in proposals:
                assert taxonomy.nodes[p["code"]].facet == facet
                assert 0.0 < p["confidence"] <= 1.0
                sources.add(p["source"])
                parent = taxonomy.nodes[p["code"]].parent
                assert parent is None or parent in codes, f"{p['code']} proposed without {parent}"
    assert sources == {"model", "keyword"}
    assert sum(bool(r["facets"]["subject"]) for r in written) >= 30  # nearly every charity gets a subject

    second = cli("run", "--once", "--config", str(root / "config.toml"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "current, no training needed" in second.stdout
    assert "0 written, 40 already there" in second.stdout
    assert len(records(root)) == 40


def test_evaluate_writes_scores_per_facet_and_level(project):
    root, _ = project
    out = root / "scores.json"
    done = cli("evaluate", "--config", str(root / "config.toml"), "--test", str(root / "test.csv"), "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert (report["model_version"], report["assets"]) == ("v1", 80)
    scores = report["levels"]
    assert {(s["facet"], s["level"]) for s in scores} == {("subject", 1), ("subject", 2), ("subject", 3),
                                                          ("population", 1), ("population", 2), ("population", 3)}
    for s in scores:
        assert set(s) == {"facet", "level", "n_labels", "micro_precision", "micro_recall", "micro_f1", "macro_f1",
                          "per_label", "effort"}
        for label in s["per_label"].values():
            assert set(label) == {"precision", "recall", "f1", "support"}
        effort = s["effort"]
        assert effort["edits"] == effort["added"] + effort["deleted"] and effort["assets"] == 80
        assert effort["ratio"] == round(effort["edits"] / effort["gold"], 4) if effort["gold"] else True
        assert effort["prefill_precision"] == round(s["micro_precision"], 4)
    subject1 = next(s for s in scores if (s["facet"], s["level"]) == ("subject", 1))
    assert subject1["micro_f1"] > 0.3  # far above chance even with 400 examples and 3 pipelines per search
    facets = {f["facet"]: f for f in report["facets"]}
    assert set(facets) == {"subject", "population"}
    subject = facets["subject"]["effort"]
    assert subject["gold"] == sum(s["effort"]["gold"] for s in scores if s["facet"] == "subject")
    assert 0 <= facets["subject"]["calibration_error"] <= 1 and facets["subject"]["prefilled"] > 0
    assert "micro F1" in done.stdout and "subject, all levels: effort" in done.stdout


def test_label_issues_are_listed_and_shown_once_beside_the_output(project):
    root, _ = project
    config = str(root / "config.toml")
    listed = cli("label-issues", "--config", config, "--top", "5")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "v1: " in listed.stdout and "likely mistakes in the human labels; the 5 most likely:" in listed.stdout
    out = root / "flags.csv"
    assert cli("label-issues", "--config", config, "--out", str(out)).returncode == 0
    flags = list(csv.DictReader(out.open(encoding="utf-8")))
    assert flags and [int(f["rank"]) for f in flags] == list(range(1, len(flags) + 1))
    assert [float(f["score"]) for f in flags] == sorted((float(f["score"]) for f in flags), reverse=True)
    labelled = {i for i, _, _ in example_rows("train.csv", 400)}
    assert {f["asset_id"] for f in flags} <= labelled and {f["kind"] for f in flags} <= {"given", "missing"}

    push = {**os.environ, "CLASSIE_LABEL_ISSUES__PUSH": "true", "CLASSIE_LABEL_ISSUES__TOP": "8"}
    shown = subprocess.run([CLI, "run", "--once", "--config", config], capture_output=True, text=True, timeout=600,
                           env=push)
    assert shown.returncode == 0, shown.stderr[-3000:]
    beside = root / "state" / "label_issues.csv"
    rows = list(csv.DictReader(beside.open(encoding="utf-8")))
    assert [(r["asset_id"], r["code"], r["kind"]) for r in rows] == [
        (f["asset_id"], f["code"], f["kind"]) for f in flags[:8]]
    assert all(r["model_version"] == "v1" and r["message"].startswith("classie-automl: ") for r in rows)
    again = subprocess.run([CLI, "run", "--once", "--config", config], capture_output=True, text=True, timeout=600,
                           env=push)
    assert again.returncode == 0 and len(list(csv.DictReader(beside.open(encoding="utf-8")))) == 8  # once each


def test_changed_human_labels_train_a_new_version(project):
    root, unlabelled_ids = project
    labelled = example_rows("train.csv", 400)
    labelled[0] = (labelled[0][0], labelled[0][1], labelled[0][2] + ";HE")  # a human adds a label
    unlabelled = [(i, t, "") for i, t, _ in example_rows("test.csv", 40)]
    write_assets(root / "assets.csv", labelled + unlabelled)

    third = cli("run", "--once", "--config", str(root / "config.toml"))
    assert third.returncode == 0, third.stderr[-3000:]
    assert "model v2: trained (1 labelled asset(s) added, changed or removed since v1)" in third.stdout
    v2 = [r for r in records(root) if r["model_version"] == "v2"]
    assert {r["asset_id"] for r in v2} == unlabelled_ids
    listing = cli("models", "--config", str(root / "config.toml"))
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert lines["v2"].split()[1] == "current" and lines["v1"].split()[1] == "previous"
    assert "not worse than v1 on the evaluation slice" in lines["v2"] and "slice population F1" in lines["v2"]


def test_bad_taxonomy_fails_cleanly_before_anything_is_written(tmp_path):
    write(tmp_path / "tax.csv", "code,name,parent_code\nA,a,B\nB,b,A\n")
    write_assets(tmp_path / "a.csv", [("1", "text", "")])
    done = cli("run", "--once", "--platform", "files", "--assets", str(tmp_path / "a.csv"), "--taxonomy",
               str(tmp_path / "tax.csv"), "--state", str(tmp_path / "state"))
    assert done.returncode == 2
    assert "cycle" in done.stderr and "Fix:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "state" / "preannotations.jsonl").exists()


def test_an_evaluation_that_cannot_be_done_does_not_fail_the_cycle(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "AN1"), ("u1", "our cats", "")])
    write_assets(tmp_path / "test.csv", [("t1", "cats", "NOT-A-CODE")])
    write(tmp_path / "c.toml", f'state_dir = "st"\n[files]\nassets = "a.csv"\n[taxonomy]\npath = "{small_taxonomy}"\n'
                               '[evaluation]\ntest = "test.csv"\n')
    done = cli("run", "--once", "--config", str(tmp_path / "c.toml"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 written" in done.stdout and "evaluation skipped: " in done.stdout and "no labelled asset" in done.stdout
