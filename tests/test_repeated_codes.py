"""Taxonomies whose codes repeat at different places of the tree: the file, asset labels, and matching a file's
rows to a Kili interface and a Label Studio labelling config by place."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pydantic import SecretStr

from automl.records import Proposal
from automl.taxonomy import CodeNotFound, Taxonomy, TaxonomyError
from automl.taxonomy_file import load_taxonomy
from conftest import REPEATED_TAXONOMY, write, write_assets
from connectors.base import PreAnnotation, SkipLog
from connectors.files import read_assets
from connectors.kili import KiliConnector
from connectors.kili_schema import parse_interface
from connectors.settings import KiliSettings
from kili_emulator import KiliEmulator, isolate_kili_sdk
from label_studio_server import label_studio  # noqa: F401 - the session fixture
from service.app.factory import build_worker
from service.config import Secrets, load_settings

CLI = str(Path(sys.executable).parent / "classie-automl")
IDS = {"/I", "/V", "X", "/I/A", "/V/I", "/X/V", "/X/A", "A20", "I10", "/I/A/OTHER", "/V/I/OTHER", "V5"}


def test_rows_are_told_apart_by_level_parent_and_path(repeated_taxonomy):
    tax = load_taxonomy(repeated_taxonomy)
    assert set(tax.nodes) == IDS
    assert tax.nodes["I10"].parent == "/V/I" and tax.nodes["/V/I"].parent == "/V"  # parent I one level up
    assert tax.nodes["A20"].parent == "/I/A" and tax.nodes["/I/A/OTHER"].parent == "/I/A"  # by the path column
    assert tax.nodes["/V/I/OTHER"].parent == "/V/I" and tax.nodes["V5"].parent == "/X/V"
    assert tax.nodes["/V/I"].name == "Group I of part V" and tax.nodes["/V/I"].level == 2
    assert tax.with_ancestors({"I10"}) == {"I10", "/V/I", "/V"}
    # A name resolves as a code, a path (leading "/" optional) or a key found at one place only.
    assert [tax.resolve(n) for n in ("I10", "V/I/I10", "/V/I", "V/I", "X", "I/A/OTHER")] == [
        "I10", "I10", "/V/I", "/V/I", "X", "/I/A/OTHER"]
    with pytest.raises(CodeNotFound) as ambiguous:
        tax.resolve("OTHER")
    assert ambiguous.value.candidates == ["/I/A/OTHER", "/V/I/OTHER"]
    with pytest.raises(CodeNotFound) as unknown:
        tax.resolve("V/A")
    assert unknown.value.candidates == []
    # A facet root may be named by path where its code repeats.
    assert load_taxonomy(repeated_taxonomy, facet_roots={"one": ["/I"]}).nodes["A20"].facet == "one"
    with pytest.raises(TaxonomyError, match="facet roots I are on several rows"):
        load_taxonomy(repeated_taxonomy, facet_roots={"one": ["I"]})


@pytest.mark.parametrize("extra, expected", [
    ("B,Group B,A,,,\n", ["line 14: parent_code 'A' of 'B' is on lines 5 and 8", "Fix: give the row its level"]),
    ("OTHER,Again,,3,,I/A/OTHER\n", ["line 14: duplicate code 'OTHER' (first on line 11)"]),
    ("B,Group B,,2,,X/B/C\n", ["line 14: path 'X/B/C' ends in 'C', not in the row's code 'B'"]),
    ("B,Group B,I,9,,\n", ["line 14: parent_code 'I' of 'B' is on lines 2 and 6"]),
])
def test_a_code_that_stays_ambiguous_names_its_rows_and_the_fix(tmp_path, extra, expected):
    path = write(tmp_path / "t.csv", REPEATED_TAXONOMY + extra)
    with pytest.raises(TaxonomyError) as error:
        load_taxonomy(path)
    for part in expected:
        assert part in str(error.value)
    assert "Fix:" in str(error.value)


def test_asset_labels_by_path_or_unique_code_and_an_ambiguous_one_is_a_counted_skip(tmp_path, repeated_taxonomy):
    assets = write_assets(tmp_path / "a.csv", [("1", "x", "I10"), ("2", "y", "I/A/OTHER;V5"), ("3", "z", "OTHER"),
                                               ("4", "w", "OTHER;/X/A"), ("5", "v", "I")])
    skipped = SkipLog()
    got = {a.id: a.labels for a in read_assets(assets, load_taxonomy(repeated_taxonomy), skipped)}
    assert got == {"1": {"I10"}, "2": {"/I/A/OTHER", "V5"}, "4": {"/X/A"}}
    reason = ("label 'OTHER' is at 2 places of the taxonomy (/I/A/OTHER, /V/I/OTHER; label dropped; fix: write its"
              " path)")
    assert skipped.counts[reason] == 2 and skipped.places[reason] == ["a.csv:4", "a.csv:5"]
    assert skipped.counts["no label could be placed in the taxonomy (asset left out)"] == 2  # assets 3 and 5


def test_files_platform_end_to_end(tmp_path, repeated_taxonomy):
    rows = [("1", "an x-ray scanner for the clinic", "I10"), ("2", "pets and other animals", "I/A/A20"),
            ("3", "sundry items", "V/I/OTHER"), ("4", "a vaccine drive", "OTHER"),
            ("u1", "a new x-ray unit", ""), ("u2", "miscellaneous pets", ""), ("u3", "vaccine and sundry", "")]
    write_assets(tmp_path / "a.csv", rows)
    write_assets(tmp_path / "test.csv", [("t1", "an x-ray", "V/I/I10"), ("t2", "sundry things", "V/I/OTHER")])
    write(tmp_path / "c.toml", f'state_dir = "st"\n[files]\nassets = "a.csv"\n[taxonomy]\n'
                               f'path = "{repeated_taxonomy}"\n[model]\nmin_examples = 1000\n'
                               '[evaluation]\ntest = "test.csv"\n')
    done = subprocess.run([CLI, "run", "--once", "--config", str(tmp_path / "c.toml")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 label 'OTHER' is at 2 places" in done.stdout  # asset 4, counted and reported
    out = [json.loads(line) for line in (tmp_path / "st" / "preannotations.jsonl").read_text().splitlines()]
    codes = {r["asset_id"]: {p["code"] for p in r["facets"]["subject"]} for r in out}
    assert codes == {"u1": {"I10", "/V/I", "/V"}, "u2": {"A20", "/I/A/OTHER", "/I/A", "/I"},
                     "u3": {"V5", "/X/V", "X", "/V/I/OTHER", "/V/I", "/V"}}
    names = {p["code"]: p["name"] for r in out for p in r["facets"]["subject"]}
    assert names["/V/I"] == "Group I of part V" and names["/I"] == "Part I"
    scores = json.loads((tmp_path / "st" / "evaluation.json").read_text())
    assert {s["level"]: s["micro_f1"] for s in scores["levels"]}[3] == 1.0  # the test file's paths resolved


# ---- Kili: the interface repeats keys in different child jobs ---------------------------------------------------

def kili_interface(tax: Taxonomy) -> dict:
    """One checkbox job for the roots; each node's children in a child job named by the node's path."""
    jobs: dict[str, dict] = {}

    def add(job: str, codes: list[str], is_child: bool) -> None:
        categories = {}
        for code in sorted(codes, key=lambda c: tax.nodes[c].key):
            node, children = tax.nodes[code], tax.children.get(code, [])
            child = "J_" + "_".join(node.path)
            categories[node.key] = {"name": node.name, "children": [child] if children else []}
            if children:
                add(child, children, True)
        jobs[job] = {"mlTask": "CLASSIFICATION", "instruction": job, "required": 0, "isChild": is_child,
                     "content": {"input": "checkbox", "categories": categories}}

    add("SUBJECT", tax.children[None], False)
    return {"jobs": jobs}


@pytest.fixture
def emulator(tmp_path, monkeypatch, repeated_taxonomy):
    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    interface = kili_interface(load_taxonomy(repeated_taxonomy))
    with KiliEmulator(api_key="k-0123", project_id="p1", json_interface=interface) as emu:
        yield emu


def test_kili_rules_apply_by_place_and_what_fits_nowhere_is_logged_once(tmp_path, emulator, repeated_taxonomy,
                                                                         caplog):
    schema = parse_interface(kili_interface(load_taxonomy(repeated_taxonomy)))
    assert {"J_V/I", "J_V_I/OTHER", "J_I_A/OTHER", "SUBJECT/I"} <= set(schema.categories)  # keys repeat by job
    rules = write(tmp_path / "rules.csv", REPEATED_TAXONOMY + "OTHER,Unplaced,,,zzz,\nZZ,Nowhere,,,zebra,\n")
    connector = KiliConnector(KiliSettings(project_id="p1", endpoint=emulator.endpoint), SecretStr("k-0123"), rules)
    tax = connector.pull_taxonomy()
    assert tax.nodes["J_V_I/I10"].keywords == ("x-ray", "scanner")
    assert tax.nodes["J_I_A/OTHER"].keywords == ("miscellaneous",) and tax.nodes["J_V_I/OTHER"].keywords == ("sundry",)
    assert not tax.nodes["SUBJECT/I"].has_rule and tax.nodes["J_X_V/V5"].keywords == ("vaccine",)
    warnings = [r.getMessage() for r in caplog.records if "taxonomy file" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert any("'ZZ' is not a category of the interface" in w for w in warnings)
    assert any("'OTHER' fits 2 places of the interface (J_I_A/OTHER, J_V_I/OTHER)" in w for w in warnings)


def test_kili_worker_pushes_keyword_proposals_nested_at_their_places(tmp_path, emulator, repeated_taxonomy):
    for asset_id, text in (("u1", "a new x-ray unit"), ("u2", "sundry supplies")):
        emulator.add_asset(asset_id, text)
    settings = load_settings(None, {"platform": "kili", "state_dir": str(tmp_path / "state"),
                                    "kili": {"project_id": "p1", "endpoint": emulator.endpoint},
                                    "taxonomy": {"path": str(repeated_taxonomy)}, "model": {"min_examples": 1000}})
    report = build_worker(settings, Secrets(kili_api_key="k-0123")).run_once()
    assert report.written == 2
    pushed = {lb["assetId"]: lb["jsonResponse"] for lb in emulator.labels if lb["labelType"] == "PREDICTION"}
    [v] = pushed["u1"]["SUBJECT"]["categories"]
    [i] = v["children"]["J_V"]["categories"]
    assert (v["name"], i["name"], [c["name"] for c in i["children"]["J_V_I"]["categories"]]) == ("V", "I", ["I10"])
    [v] = pushed["u2"]["SUBJECT"]["categories"]
    assert [c["name"] for c in v["children"]["J_V"]["categories"][0]["children"]["J_V_I"]["categories"]] == ["OTHER"]
    assert Counter(lb["modelName"] for lb in emulator.labels) == Counter({"classie-automl-v1": 2})


# ---- Label Studio: choices repeat keys under different parents -------------------------------------------------

def test_label_studio_rules_apply_by_place(label_studio, tmp_path, repeated_taxonomy):  # noqa: F811
    from connectors.label_studio_setup import label_config_from_taxonomy

    config = label_config_from_taxonomy(load_taxonomy(repeated_taxonomy))
    project = label_studio.client.create_project("repeated codes", config)["id"]
    tasks = label_studio.client.import_tasks(project, [{"data": {"text": "a new x-ray unit"}},
                                                       {"data": {"text": "sundry supplies"}}])
    settings = load_settings(None, {"platform": "label-studio", "state_dir": str(tmp_path / "state"),
                                    "label_studio": {"project_id": project, "url": label_studio.url},
                                    "taxonomy": {"path": str(repeated_taxonomy)}, "model": {"min_examples": 1000}})
    worker = build_worker(settings, Secrets(label_studio_api_key=label_studio.token))
    tax = worker.connector.pull_taxonomy()
    assert tax.nodes["subject:V/I/I10"].keywords == ("x-ray", "scanner")
    assert tax.nodes["subject:V/I/OTHER"].keywords == ("sundry",) and not tax.nodes["subject:I"].has_rule
    assert worker.run_once().written == 2
    results = {p["task"]: p["result"][0]["value"]["taxonomy"] for p in label_studio.client.predictions(project)}
    assert results == {tasks[0]: [["V", "I", "I10"]], tasks[1]: [["V", "I", "OTHER"]]}
    item = PreAnnotation(str(tasks[0]), "h", {"subject": [Proposal("subject:I/A/OTHER", 0.9, "model")]})
    assert worker.connector.schema.result(item.proposals["subject"])[0]["value"] == {"taxonomy": [["I", "A", "OTHER"]]}
