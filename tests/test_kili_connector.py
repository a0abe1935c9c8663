"""The Kili connector and the worker on the real SDK against the local emulator (start-up checks on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from pydantic import SecretStr

from automl.records import Proposal
from connectors.kili import KiliConnector, KiliError
from connectors.kili_schema import parse_interface
from connectors.settings import KiliSettings
from kili_emulator import KiliEmulator, isolate_kili_sdk
from kili_project import answer, fill, interface, ukcat_taxonomy
from service.app.factory import build_worker
from service.config import Secrets, load_settings
from service.cycle.worker import Worker

KEY = "test-key-0123"
CLI = str(Path(sys.executable).parent / "classie-automl")


@pytest.fixture
def taxonomy():
    return ukcat_taxonomy()


@pytest.fixture
def emulator(tmp_path, monkeypatch, taxonomy):
    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("KILI_API_KEY", KEY)
    with KiliEmulator(api_key=KEY, project_id="p1", json_interface=interface(taxonomy)) as emu:
        yield emu


def worker(tmp_path: Path, emulator: KiliEmulator, overlap: float = 10.0, label_issues: dict | None = None,
           **model) -> Worker:
    settings = load_settings(None, {
        "platform": "kili", "state_dir": str(tmp_path / "state"),
        "kili": {"project_id": "p1", "endpoint": emulator.endpoint, "push_batch": 10},
        "model": {"budget_seconds": 30, "max_evaluations": 2, "cv_folds": 3, **model},
        "worker": {"batch_size": 10, "cursor_overlap_seconds": overlap}, "label_issues": label_issues or {},
    })
    return build_worker(settings, Secrets(kili_api_key=KEY))


def predictions(emulator: KiliEmulator) -> Counter:
    """(asset id, model name) -> how many PREDICTION labels of ours it holds."""
    return Counter((lb["assetId"], lb["modelName"]) for lb in emulator.labels
                   if lb["labelType"] == "PREDICTION" and (lb["modelName"] or "").startswith("classie-automl"))


KEYWORDS_ONLY = {"min_examples": 100000}  # no search: these tests are about the platform, not the model


def test_schema_answers_and_radio_jobs(taxonomy):
    schema = parse_interface(interface(taxonomy))
    tax = schema.taxonomy()
    assert tax.nodes["SUBJECT/HE"].level == 1 and tax.nodes["HE_SUB/HE200"].parent == "SUBJECT/HE"
    assert tax.nodes["HE200_SUB/HE201"].level == 3 and set(tax.facets) == {"SUBJECT", "POPULATION"}
    unknown: list[str] = []
    human = answer(taxonomy, {"HE201", "BE101", "BE102"})
    assert schema.codes_of(human, unknown) == {"SUBJECT/HE", "HE_SUB/HE200", "HE200_SUB/HE201", "POPULATION/BE101"}
    assert schema.codes_of({"SUBJECT": {"categories": [{"name": "NOPE"}]}, "OTHER": {"categories": []}},
                           unknown) == set()
    assert unknown == ["category 'SUBJECT/NOPE', not in the interface", "job 'OTHER', not in the interface"]
    out = schema.answer([Proposal("SUBJECT/HE", 0.9, "model"), Proposal("HE_SUB/HE200", 0.456, "keyword"),
                         Proposal("POPULATION/BE101", 0.4, "model"), Proposal("POPULATION/BE102", 0.7, "model")])
    assert out == {
        "SUBJECT": {"categories": [{"name": "HE", "confidence": 90, "children": {
            "HE_SUB": {"categories": [{"name": "HE200", "confidence": 46}]}}}]},
        "POPULATION": {"categories": [{"name": "BE102", "confidence": 70}]},  # radio: the most confident only
    }


def test_fail_fast_without_key_with_a_wrong_key_or_an_unknown_project(emulator, monkeypatch):
    monkeypatch.delenv("KILI_API_KEY")
    with pytest.raises(KiliError, match="KILI_API_KEY"):
        KiliConnector(KiliSettings(project_id="p1", endpoint=emulator.endpoint), None)
    with pytest.raises(KiliError, match="refused the API key"):
        KiliConnector(KiliSettings(project_id="p1", endpoint=emulator.endpoint), SecretStr("wrong"))
    with pytest.raises(KiliError, match="no Kili project 'nope'"):
        KiliConnector(KiliSettings(project_id="nope", endpoint=emulator.endpoint), SecretStr(KEY))
    assert "wrong" not in repr(Secrets(kili_api_key="wrong"))


def test_pull_truth_texts_once_and_incrementally(tmp_path, emulator, taxonomy):
    unlabelled = fill(emulator, taxonomy, labelled=30, unlabelled=5)
    # No overlap window: every asset here changed within the default one, and the filter itself is under test.
    w = worker(tmp_path, emulator, overlap=0, **KEYWORDS_ONLY)
    w.run_once()
    assets = {a.id: a for a in w.state.labelled_assets()}
    assert len(assets) == 30 and w.state.count_assets() == (30, 5)
    first_id = next(iter(sorted(emulator.assets)))  # the first labelled asset was reviewed
    reviewed = assets[first_id]
    assert "SUBJECT/HE" in reviewed.labels  # the REVIEW label (with HE added) won over DEFAULT and AUTOSAVE
    assert emulator.calls("files") == 35  # every text fetched once
    emulator.set_text(unlabelled[0], "a new text about cats and dogs")
    before = len(emulator.requests)
    report = w.run_once()
    # The changed asset comes back (with the four our own predictions touched); only its text is fetched again.
    assert report.pulled == 5 and emulator.calls("files") == 36
    assert (report.trained, report.written) == (False, 1)
    assert len(emulator.requests) - before <= 10


def test_worker_pushes_reads_back_and_retrains_on_new_labels(tmp_path, emulator, taxonomy):
    unlabelled = fill(emulator, taxonomy, labelled=150, unlabelled=25)
    w = worker(tmp_path, emulator)
    first = w.run_once()
    assert first.trained and first.model_version == "v1" and first.written == 25
    assert first.heldout and all(0 <= m.micro_f1 <= 1 for m in first.heldout)
    assert predictions(emulator) == Counter({(u, "classie-automl-v1"): 1 for u in unlabelled})

    # The SDK reads them back: our model name, nested children under their parent, integer confidences.
    from kili.client import Kili

    kili = Kili(api_key=KEY, api_endpoint=emulator.endpoint)
    labels = kili.labels(project_id="p1", type_in=["PREDICTION"], disable_tqdm=True,
                         fields=["labelOf.id", "modelName", "jsonResponse"])
    ours = [lb for lb in labels if lb["modelName"] == "classie-automl-v1"]
    assert len(ours) == 25
    schema = parse_interface(interface(taxonomy))
    nested = 0
    for lb in ours:
        codes = schema.codes_of(lb["jsonResponse"], unknown := [])
        assert not unknown
        for job in lb["jsonResponse"].values():
            for cat in job["categories"]:
                assert isinstance(cat["confidence"], int) and 0 <= cat["confidence"] <= 100
                nested += bool(cat.get("children"))
        assert all(schema.categories[c].parent in codes for c in codes if schema.categories[c].parent)
        assert len(lb["jsonResponse"].get("POPULATION", {}).get("categories", [])) <= 1
    assert nested > 0

    # Nothing changed: no training, no push, a handful of API calls.
    before = len(emulator.requests)
    quiet = w.run_once()
    calls = [r["operation"] for r in emulator.requests[before:]]
    assert (quiet.trained, quiet.written, quiet.predicted) == (False, 0, 0)
    assert "appendManyLabels" not in calls and len(calls) <= 8, calls

    # Humans label two more assets: a new version, pushed to every unlabelled asset.
    for asset_id in unlabelled[:2]:
        emulator.add_label(asset_id, "DEFAULT", answer(taxonomy, {"ED101"}))
    third = w.run_once()
    assert third.trained and third.model_version == "v2"
    assert third.train_reason == "2 labelled asset(s) added, changed or removed since v1"
    assert predictions(emulator)[(unlabelled[2], "classie-automl-v2")] == 1
    assert (unlabelled[0], "classie-automl-v2") not in predictions(emulator)  # now labelled by a human


def test_faults_are_survived_without_duplicates(tmp_path, emulator, taxonomy):
    unlabelled = fill(emulator, taxonomy, labelled=20, unlabelled=30)
    emulator.retry_after = 0
    emulator.inject("429", "assets")
    emulator.inject("drop", "assets")
    emulator.inject("500", "files")
    emulator.inject("502", "appendManyLabels", apply_first=True)  # landed, but the answer was lost
    emulator.inject("drop", "appendManyLabels", times=1)  # did not land, answer lost
    w = worker(tmp_path, emulator, **KEYWORDS_ONLY)
    # A query that times out: the SDK's 60 s read limit shortened so that the test stays quick.
    w.connector.kili.graphql_client._gql_transport.default_timeout = 0.5
    emulator.timeout_seconds = 2
    emulator.inject("timeout", "countAssets")
    report = w.run_once()
    assert emulator.pending_faults == []
    assert report.written == 30
    assert predictions(emulator) == Counter({(u, "classie-automl-v1"): 1 for u in unlabelled})


def test_kill_9_during_a_push_then_restart(tmp_path, emulator, taxonomy):
    unlabelled = fill(emulator, taxonomy, labelled=20, unlabelled=40)
    env = {**os.environ, "KILI_API_KEY": KEY}
    args = [CLI, "run", "--once", "--platform", "kili", "--project-id", "p1", "--state", str(tmp_path / "state")]
    config = tmp_path / "c.toml"
    config.write_text(f'[kili]\nendpoint = "{emulator.endpoint}"\npush_batch = 10\n[worker]\nbatch_size = 10\n'
                      f'[model]\nmin_examples = 100000\n')
    emulator.timeout_seconds = 30
    emulator.inject("timeout", "appendManyLabels", apply_first=True)  # the first push lands, then hangs
    proc = subprocess.Popen([*args, "--config", str(config)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while emulator.calls("appendManyLabels") < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert emulator.calls("appendManyLabels") == 1, proc.communicate()[1][-2000:]
    time.sleep(0.5)
    assert emulator.pending_faults == []
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    landed = predictions(emulator)
    assert sum(landed.values()) == 10  # the batch in flight landed; the worker never heard back

    emulator.timeout_seconds = 0
    done = subprocess.run([*args, "--config", str(config)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert predictions(emulator) == Counter({(u, "classie-automl-v1"): 1 for u in unlabelled})


def test_taxonomy_file_disagreements_are_reported(taxonomy, tmp_path):
    from automl.taxonomy import with_rules
    from automl.taxonomy_file import load_taxonomy

    schema = parse_interface(interface(taxonomy))
    rules = tmp_path / "rules.csv"
    rules.write_text("code,name,parent_code,keywords\nHE,Health,,health\nED,Education,,\nHE200,x,ED,\nZZ,z,,zebra\n")
    tax, problems = with_rules(schema.taxonomy(), load_taxonomy(rules))
    assert "taxonomy code 'ZZ' is not a category of the interface (its rule is unused)" in problems
    assert "HE_SUB/HE200: the interface's parent is HE, the taxonomy file's is ED" in problems
    assert tax.nodes["SUBJECT/HE"].keywords == ("health",) and not tax.nodes["SUBJECT/ED"].has_rule


def test_a_project_gone_mid_run_stops_with_a_message(tmp_path, emulator, taxonomy):
    fill(emulator, taxonomy, labelled=5, unlabelled=2)
    w = worker(tmp_path, emulator, **KEYWORDS_ONLY)
    w.connector.settings = KiliSettings(project_id="gone", endpoint=emulator.endpoint)
    with pytest.raises(KiliError, match="Kili refused pulling assets"):
        w.run_once()


def test_priorities_are_set_grouped_by_value_and_read_back(tmp_path, emulator, taxonomy):
    unlabelled = fill(emulator, taxonomy, labelled=20, unlabelled=30)
    w = worker(tmp_path, emulator, **KEYWORDS_ONLY)
    report = w.run_once()
    assert report.prioritised == 30
    from kili.client import Kili

    kili = Kili(api_key=KEY, api_endpoint=emulator.endpoint)
    read = {a["id"]: a["priority"] for a in kili.assets(project_id="p1", fields=["id", "priority"], disable_tqdm=True)}
    assert all(1 <= read[u] <= 100 for u in unlabelled) and all(v == 0 for a, v in read.items() if a not in unlabelled)
    ranking = [p.asset_id for p in w.state.ranking("v1")]
    assert [read[a] for a in ranking] == sorted((read[a] for a in ranking), reverse=True)  # Kili's order is ours
    calls = emulator.calls("setAssetsPriority")
    assert calls == len(set(read[u] for u in unlabelled))  # one call per value (fewer than 100 assets each)
    quiet = w.run_once()
    assert (quiet.prioritised, emulator.calls("setAssetsPriority")) == (0, calls)  # nothing new: none set


def test_label_issues_are_opened_once_on_the_truth_label_never_on_a_fresh_review(tmp_path, emulator, taxonomy):
    fill(emulator, taxonomy, labelled=100, unlabelled=5)
    emulator.inject("502", "createIssues", apply_first=True)  # the issues landed, the answer was lost
    w = worker(tmp_path, emulator, label_issues={"push": True, "top": 15})
    first = w.run_once()
    assert first.trained and first.label_issues_shown > 0 and emulator.pending_faults == []
    assert len(emulator.issues) == first.label_issues_shown  # read back after the lost answer, not sent again
    truth = {a.id: a for a in w.state.labelled_assets()}
    reviews = {lb["id"] for lb in emulator.labels if lb["labelType"] == "REVIEW"}
    for issue in emulator.issues:
        asset = truth[issue["assetId"]]
        assert issue["labelId"] == asset.label_ref and issue["labelId"] not in reviews
        assert issue["content"].startswith("classie-automl: ")
    # The version's list may flag reviewed labels too; none is shown, as no earlier version learned from them.
    from service.quality.label_issues import ISSUES_FILE, read_flags

    top = read_flags(w.registry.file_path(w.registry.current(), ISSUES_FILE))[:15]
    assert len(top) == 15 and first.label_issues_shown == sum(not f.reviewed_at for f in top)

    before = len(emulator.requests)
    again = w.run_once()
    assert (again.trained, again.label_issues_shown) == (False, 0)
    assert "createIssues" not in [r["operation"] for r in emulator.requests[before:]]
