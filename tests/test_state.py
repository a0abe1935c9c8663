from __future__ import annotations

from connectors.base import Asset
from service.store.state import PullMarks, StateStore


def a(asset_id: str, text: str = "t", labels=None, version: str = "") -> Asset:
    return Asset(asset_id, text, frozenset(labels) if labels is not None else None, version)


def test_incremental_and_complete_pulls(tmp_path):
    store = StateStore(tmp_path / "s.sqlite3")
    assert store.merge_assets(iter([a("1", labels={"X"}), a("2"), a("3")]), complete=True, chunk=2) == 3
    assert store.count_assets() == (1, 2)
    store.merge_assets(iter([a("2", labels={"Y"}, version="v2")]), complete=False)  # labelled since
    assert store.count_assets() == (2, 1)
    assert store.cached_text("2", "v2") == "t" and store.cached_text("2", "old") is None
    store.merge_assets(iter([a("1", labels={"X"}), a("2", labels={"Y"})]), complete=True)  # 3 was deleted
    assert [x.id for x in store.labelled_assets()] == ["1", "2"] and store.count_assets() == (2, 0)


def test_unlabelled_without_a_pre_annotation_of_the_version(tmp_path):
    store = StateStore(tmp_path / "s.sqlite3")
    store.merge_assets(iter([a(str(i), text=f"text {i}") for i in range(7)]), complete=True)
    store.record_pushed("v1", [("0", a("0", "text 0").text_hash, None), ("1", "stale-hash", None)])
    batches = list(store.unlabelled_without("v1", batch=3))
    assert [[x.id for x in b] for b in batches] == [["1", "2", "3"], ["4", "5", "6"]]
    assert store.count_unlabelled_without("v1") == 6 and store.count_unlabelled_without("v2") == 7


def test_label_changes_and_cursors(tmp_path):
    store = StateStore(tmp_path / "s.sqlite3")
    base = [a("1", labels={"X"}), a("2", labels={"Y"})]
    store.record_training_set("v1", base)
    assert store.knows_training_set("v1") and not store.knows_training_set("v2")
    assert store.label_changes("v1", base) == 0
    assert store.label_changes("v1", [a("1", labels={"X", "Z"}), a("3", labels={"Y"})]) == 3  # changed, new, gone
    assert store.remembered.pull_marks().cursor is None
    store.remembered.save_pull_marks(PullMarks(cursor="2026-11-21T10:00:00.000Z"))
    assert StateStore(tmp_path / "s.sqlite3").remembered.pull_marks().cursor == "2026-11-21T10:00:00.000Z"


def test_a_ledger_of_an_earlier_release_gains_the_label_columns_and_keeps_its_assets(tmp_path):
    import sqlite3

    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:  # the assets table as the release before label issues made it
        db.execute("CREATE TABLE assets (asset_id TEXT PRIMARY KEY, text TEXT NOT NULL, text_hash TEXT NOT NULL,"
                   " labels TEXT, version TEXT NOT NULL, pull INTEGER NOT NULL)")
        db.execute("INSERT INTO assets VALUES ('1', 't', 'h', '[\"ED\"]', 'v', 1)")
    store = StateStore(path)
    assert store.labelled_assets() == [Asset("1", "t", frozenset({"ED"}), "v")]
    store.merge_assets([Asset("1", "t", frozenset({"ED"}), "v", label_ref="L9", reviewed_at="2026-12-01T00:00:00Z")],
                       complete=True)
    assert store.labelled_assets()[0].label_ref == "L9" and store.labelled_assets()[0].reviewed_at.startswith("2026")


def test_label_issues_shown_are_kept_per_destination(tmp_path):
    store = StateStore(tmp_path / "state.sqlite3")
    store.record_issues_pushed("files:a", "v1", [("1", "d", "ED", "given"), ("2", "d", "HE", "missing")])
    store.record_issues_pushed("files:a", "v2", [("1", "d", "ED", "given")])  # once: the first record stays
    assert store.issues_pushed("files:a", ["1", "2", "3"]) == {("1", "d", "ED", "given"), ("2", "d", "HE", "missing")}
    assert store.issues_pushed("files:b", ["1"]) == set()
    assert store.issues_pushed("files:a", [str(i) for i in range(1200)]) == store.issues_pushed("files:a", ["1", "2"])
