from __future__ import annotations

import json

import pytest

from automl.records import Proposal
from automl.settings import TaxonomySettings
from conftest import write, write_assets
from connectors.base import LabelFlag, PreAnnotation, text_hash
from connectors.files import AssetFileError, FilesConnector
from connectors.settings import FilesSettings


def connector(tmp_path, assets, taxonomy, **kwargs) -> FilesConnector:
    return FilesConnector(FilesSettings(assets=assets, **kwargs), TaxonomySettings(path=taxonomy),
                          tmp_path / "out.jsonl")


def test_reads_labelled_and_unlabelled_assets(tmp_path, small_taxonomy):
    assets = write_assets(tmp_path / "a.csv", [("1", "cats", "AN1"), ("2", "school", ""), ("3", "dogs", "AN2; ED")])
    got = list(connector(tmp_path, assets, small_taxonomy).pull_assets())
    assert [(a.id, a.labels) for a in got] == [
        ("1", frozenset({"AN1"})), ("2", None), ("3", frozenset({"AN2", "ED"}))]


def test_missing_columns_name_the_file_the_column_and_the_fix(tmp_path, small_taxonomy):
    assets = write(tmp_path / "a.csv", "org_id,body\n1,cats\n")
    with pytest.raises(AssetFileError) as err:
        list(connector(tmp_path, assets, small_taxonomy).pull_assets())
    assert "a.csv" in str(err.value) and "'id', 'text'" in str(err.value) and "id_column" in str(err.value)
    # ...and configured column names fix it.
    got = list(connector(tmp_path, assets, small_taxonomy, id_column="org_id", text_column="body").pull_assets())
    assert [a.id for a in got] == ["1"]


def test_bad_records_are_skipped_counted_and_placed(tmp_path, small_taxonomy, caplog):
    assets = write_assets(tmp_path / "a.csv", [
        ("1", "cats", "AN1"),
        ("1", "cats again", "AN2"),  # duplicate id: the first is kept
        ("2", "   ", "ED"),  # empty text
        ("3", "dogs", "AN2;NOPE"),  # one unknown label: dropped, asset kept
        ("4", "dogs", "NOPE"),  # only unknown labels: asset left out rather than treated as unlabelled
        ("5", "fine", ""),
    ])
    c = connector(tmp_path, assets, small_taxonomy)
    got = {a.id: a.labels for a in c.pull_assets()}
    assert got == {"1": frozenset({"AN1"}), "3": frozenset({"AN2"}), "5": None}
    counts = c.skipped.as_dict()
    assert counts["duplicate id (the first record is kept)"] == 1
    assert counts["empty text"] == 1
    assert counts["label 'NOPE' is not in the taxonomy (label dropped)"] == 2
    assert counts["every label is outside the taxonomy (asset left out)"] == 1
    assert "a.csv:3 (first at a.csv:2)" in caplog.text


def test_undecodable_bytes_skip_only_their_record(tmp_path, small_taxonomy):
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,text,labels\n1,cats,AN1\n2,caf\xe9 \xff school,ED\n3,dogs,AN2\n")
    c = connector(tmp_path, path, small_taxonomy)
    assert [a.id for a in c.pull_assets()] == ["1", "3"]
    [(reason, n)] = c.skipped.as_dict().items()
    assert n == 1 and "not valid utf-8" in reason and "encoding" in reason
    assert c.skipped.places[reason] == ["a.csv:3"]
    # The fix the message names works: the same file read as latin-1 keeps every record.
    assert len(list(connector(tmp_path, path, small_taxonomy, encoding="latin-1").pull_assets())) == 3


def test_jsonl_with_broken_lines(tmp_path, small_taxonomy):
    path = write(tmp_path / "a.jsonl", "\n".join([
        json.dumps({"id": 1, "text": "cats", "labels": ["AN1"]}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"id": 2, "text": 42}),
        json.dumps({"id": 3, "text": "school", "labels": None}),
    ]) + "\n")
    c = connector(tmp_path, path, small_taxonomy)
    assert [(a.id, a.labels) for a in c.pull_assets()] == [("1", frozenset({"AN1"})), ("3", None)]
    assert set(c.skipped.as_dict()) == {"not valid JSON (Expecting property name enclosed in double quotes)",
                                        "not a JSON object", "text is missing or not a string"}


def test_missing_file_and_unknown_format(tmp_path, small_taxonomy):
    with pytest.raises(AssetFileError, match="no such file"):
        list(connector(tmp_path, tmp_path / "nope.csv", small_taxonomy).pull_assets())
    with pytest.raises(AssetFileError, match="unknown format"):
        list(connector(tmp_path, write(tmp_path / "a.xlsx", "x"), small_taxonomy).pull_assets())


def _item(asset_id: str, text: str) -> PreAnnotation:
    return PreAnnotation(asset_id, text_hash(text), {"subject": [Proposal("AN1", 0.9, "model")]})


def test_push_is_idempotent_per_version_and_text(tmp_path, small_taxonomy):
    assets = write_assets(tmp_path / "a.csv", [("1", "cats", "")])
    c = connector(tmp_path, assets, small_taxonomy)
    assert c.push([_item("1", "cats"), _item("2", "dogs")], "v1").written == 2
    again = connector(tmp_path, assets, small_taxonomy)  # a new process reads what the file holds
    report = again.push([_item("1", "cats"), _item("2", "dogs, changed")], "v1")
    assert (report.written, report.already) == (1, 1)
    assert again.push([_item("1", "cats")], "v2").written == 1
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["asset_id"], r["model_version"]) for r in lines] == [("1", "v1"), ("2", "v1"), ("2", "v1"),
                                                                    ("1", "v2")]
    assert lines[0]["facets"]["subject"] == [{"code": "AN1", "name": "Cats", "confidence": 0.9, "source": "model"}]


def test_partial_last_line_from_a_crash_is_cut_and_nothing_else_lost(tmp_path, small_taxonomy):
    assets = write_assets(tmp_path / "a.csv", [("1", "cats", "")])
    c = connector(tmp_path, assets, small_taxonomy)
    c.push([_item("1", "cats")], "v1")
    with (tmp_path / "out.jsonl").open("a") as f:
        f.write('{"asset_id": "2", "model_ver')  # killed mid-write
    again = connector(tmp_path, assets, small_taxonomy)
    assert again.push([_item("1", "cats"), _item("2", "dogs")], "v1").written == 1
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["asset_id"] for line in lines] == ["1", "2"]


def test_label_issues_are_appended_beside_the_output_with_one_header_and_no_partial_row(tmp_path, small_taxonomy):
    import csv

    assets = write_assets(tmp_path / "a.csv", [("1", "cats", "AN1")])
    c = connector(tmp_path, assets, small_taxonomy)
    first = [LabelFlag("1", "", "AN1", "given", "remove AN1, with a comma")]
    assert c.push_label_issues(first, "v1") == first
    with (tmp_path / "label_issues.csv").open("a") as f:
        f.write("2026-12-01,v1,2,giv")  # killed mid-write
    connector(tmp_path, assets, small_taxonomy).push_label_issues([LabelFlag("1", "", "ED", "missing", "add ED")], "v2")
    rows = list(csv.DictReader((tmp_path / "label_issues.csv").open(encoding="utf-8")))
    assert [(r["model_version"], r["code"], r["name"], r["message"]) for r in rows] == [
        ("v1", "AN1", "Cats", "remove AN1, with a comma"), ("v2", "ED", "Education", "add ED")]


def test_taxonomy_is_reread_when_it_changes_and_a_missing_one_is_named(tmp_path, small_taxonomy):
    import os

    from automl.taxonomy import TaxonomyError

    assets = write_assets(tmp_path / "a.csv", [("1", "cats", "")])
    c = connector(tmp_path, assets, small_taxonomy)
    assert "ZZ" not in c.pull_taxonomy()
    small_taxonomy.write_text(small_taxonomy.read_text() + "ZZ,Zebras,AN,zebra,,\n")
    os.utime(small_taxonomy, ns=(1, 1))  # a different mtime even on coarse clocks
    assert "ZZ" in c.pull_taxonomy()
    with pytest.raises(TaxonomyError, match="no such file"):
        connector(tmp_path, assets, tmp_path / "missing.csv").pull_taxonomy()


def test_an_unchanged_file_is_not_read_again_and_any_change_is(tmp_path, small_taxonomy):
    import os

    assets = write_assets(tmp_path / "a.csv", [("1", "cats", "AN1"), ("2", "school", "")])
    c = connector(tmp_path, assets, small_taxonomy)
    first = c.pull()
    assert [a.id for a in first.assets] == ["1", "2"] and first.complete
    cursor = first.cursor()
    again = c.pull(cursor)
    assert list(again.assets) == [] and not again.complete and again.cursor() == cursor
    # One byte changed, same size and mtime: the fingerprint is of the content, not of the file's stat.
    stat = assets.stat()
    assets.write_bytes(assets.read_bytes().replace(b"cats", b"bats"))
    os.utime(assets, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = c.pull(cursor)
    assert [a.text for a in changed.assets] == ["bats", "school"] and changed.complete
    cursor = changed.cursor()
    assert list(c.pull(cursor).assets) == []
    # What the same bytes mean depends on the taxonomy and the [files] settings: either changed, the file is read.
    small_taxonomy.write_text(small_taxonomy.read_text() + "ZZ,Zebras,AN,zebra,,\n")
    os.utime(small_taxonomy, ns=(1, 1))
    assert [a.id for a in c.pull(cursor).assets] == ["1", "2"]
    cursor = c.pull(None).cursor()
    other = connector(tmp_path, assets, small_taxonomy, label_separator="|")
    assert [a.id for a in other.pull(cursor).assets] == ["1", "2"]
    # A file that is gone is read (and named), not taken for unchanged.
    assets.unlink()
    with pytest.raises(AssetFileError, match="no such file"):
        list(c.pull(cursor).assets)


@pytest.mark.parametrize("name", ["a.csv", "a.jsonl"])
def test_a_byte_order_mark_and_unicode_line_separators_in_texts_are_read_as_written(tmp_path, small_taxonomy, name):
    text = "cats\u2028and dogs\x0cat home"  # splitlines() would cut a JSONL record at either
    if name.endswith(".csv"):
        body = f'id,text,labels\r\n1,"{text}",AN1\r\n2,school,\r\n'
    else:
        body = "\n".join(json.dumps({"id": i, "text": t, "labels": ls}, ensure_ascii=False)
                         for i, t, ls in [(1, text, ["AN1"]), (2, "school", None)]) + "\n"
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    c = connector(tmp_path, path, small_taxonomy)
    assert [(a.id, a.text, a.labels) for a in c.pull_assets()] == [
        ("1", text, frozenset({"AN1"})), ("2", "school", None)]
    assert not c.skipped.as_dict()
