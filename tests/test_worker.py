"""The worker's decisions, in process, on a keyword-only model (no search: milliseconds per training)."""

from __future__ import annotations

import os

import pytest

from conftest import write_assets
from service.app.factory import build_worker
from service.config import Secrets, load_settings
from service.cycle.worker import Worker
from service.store.registry import ModelRegistry

ROWS = [("1", "a shelter for cats", "AN1"), ("2", "dogs and walks", "AN2"), ("u1", "our cat rescue", ""),
        ("u2", "a school for all", "")]


def make_worker(tmp_path, taxonomy, **worker_settings) -> Worker:
    settings = load_settings(None, {"state_dir": str(tmp_path / "state"), "worker": worker_settings,
                                    "files": {"assets": str(tmp_path / "a.csv")}, "taxonomy": {"path": str(taxonomy)}})
    return build_worker(settings, Secrets())


@pytest.fixture
def project(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", ROWS)
    return tmp_path, small_taxonomy


def test_no_change_cycle_trains_and_predicts_nothing(project):
    tmp_path, taxonomy = project
    first = make_worker(tmp_path, taxonomy).run_once()
    assert (first.trained, first.train_reason, first.written) == (True, "no model yet", 2)
    second = make_worker(tmp_path, taxonomy).run_once()  # a restarted worker: state comes from disk
    assert (second.trained, second.predicted, second.written, second.already) == (False, 0, 0, 2)
    assert (second.pulled, second.labelled, second.unlabelled) == (0, 2, 2)  # the file is unchanged: not read


def test_a_file_changed_after_a_no_change_cycle_is_read_whole(project):
    tmp_path, taxonomy = project
    worker = make_worker(tmp_path, taxonomy)
    worker.run_once()
    assert worker.run_once().pulled == 0
    write_assets(tmp_path / "a.csv", ROWS[:3])  # u2 deleted
    report = worker.run_once()
    assert (report.pulled, report.complete_pull, report.unlabelled) == (3, True, 1)


def test_retrain_rule_counts_label_changes(project):
    tmp_path, taxonomy = project
    make_worker(tmp_path, taxonomy, retrain_min_changes=2).run_once()
    write_assets(tmp_path / "a.csv", ROWS + [("3", "dog grooming", "AN2")])
    one = make_worker(tmp_path, taxonomy, retrain_min_changes=2).run_once()
    assert not one.trained and one.model_version == "v1"
    write_assets(tmp_path / "a.csv", ROWS[:1] + [("2", "dogs and walks", "AN2;ED"), ("3", "dog grooming", "AN2")]
                 + ROWS[2:])
    two = make_worker(tmp_path, taxonomy, retrain_min_changes=2).run_once()
    assert two.trained and two.model_version == "v2"
    assert two.train_reason == "2 labelled asset(s) added, changed or removed since v1"
    assert two.written == 2  # a new version pre-annotates every unlabelled asset again


def test_taxonomy_change_retrains_and_a_changed_text_is_predicted_again(project):
    tmp_path, taxonomy = project
    make_worker(tmp_path, taxonomy).run_once()
    write_assets(tmp_path / "a.csv", ROWS[:3] + [("u2", "a school for all ages", "")])
    changed = make_worker(tmp_path, taxonomy).run_once()
    assert not changed.trained and (changed.written, changed.already) == (1, 1)
    taxonomy.write_text(taxonomy.read_text() + "ED1,Schools,ED,primary school,,\n")
    os.utime(taxonomy, ns=(1, 1))
    retrained = make_worker(tmp_path, taxonomy).run_once()
    assert retrained.train_reason == "taxonomy or model settings changed" and retrained.model_version == "v2"


def test_crash_between_write_and_ledger_writes_nothing_twice(project):
    tmp_path, taxonomy = project
    make_worker(tmp_path, taxonomy).run_once()
    (tmp_path / "state" / "state.sqlite3").unlink()  # the ledger is lost; the output file still has everything
    for suffix in ("-wal", "-shm"):
        (tmp_path / "state" / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    again = make_worker(tmp_path, taxonomy).run_once()
    assert again.written == 0 and again.predicted == 2
    lines = (tmp_path / "state" / "preannotations.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_a_version_this_release_cannot_load_is_replaced(project):
    """An upgrade whose libraries cannot read the current version: the worker trains one they can, and pushes it."""
    tmp_path, taxonomy = project
    make_worker(tmp_path, taxonomy).run_once()
    meta = ModelRegistry(tmp_path / "state" / "models").current()
    assert meta.software["scikit-learn"] == "0.24.2" and "classie-automl" in meta.software
    (tmp_path / "state" / "models" / "v0001" / "model.joblib").write_bytes(b"written by another release")
    report = make_worker(tmp_path, taxonomy).run_once()
    assert report.trained and "v1 cannot be loaded by this release" in report.train_reason
    assert (report.model_version, report.written) == ("v2", 2)
    assert make_worker(tmp_path, taxonomy).run_once().trained is False  # v2 loads: back to normal
