"""`run --once --dry-run`: what a cycle would train and push, with nothing written to the platform or the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import write_assets
from kili_emulator import KiliEmulator, isolate_kili_sdk
from kili_project import answer, fill, interface, ukcat_taxonomy
from label_studio_server import label_studio  # noqa: F401 - the session fixture
from service.app.factory import build_worker
from service.config import Secrets, load_settings

CLI = str(Path(sys.executable).parent / "classie-automl")
ROWS = [("1", "a shelter for cats", "AN1"), ("2", "dogs and walks", "AN2"), ("u1", "our cat rescue", ""),
        ("u2", "a school for all", "")]
KEY = "dry-run-key"
KEYWORDS_ONLY = {"min_examples": 100000}  # no search: these tests are about what is sent


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix not in (".sqlite3", ".sqlite3-wal", ".sqlite3-shm", ".lock")
            and "logs" not in p.parts}


def test_files_dry_run_lists_what_would_change_and_writes_nothing(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", ROWS)
    flags = ["--platform", "files", "--assets", str(tmp_path / "a.csv"), "--taxonomy", str(small_taxonomy),
             "--state", str(tmp_path / "state")]
    first = subprocess.run([CLI, "run", "--once", *flags], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    quiet = subprocess.run([CLI, "run", "--once", "--dry-run", *flags], capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    assert "would not train: nothing changed" in quiet.stdout
    assert "would push 0 pre-annotation(s) of v1 (2 already there)" in quiet.stdout

    # A text changed (other keywords), a new asset, a human label: a retrain, two pre-annotations.
    write_assets(tmp_path / "a.csv", ROWS[:2] + [("u1", "a school for dogs", ""), ("u2", "a school for all", "ED"),
                                                 ("u3", "feline friends", "")])
    before = snapshot(tmp_path / "state")
    done = subprocess.run([CLI, "run", "--once", "--dry-run", *flags], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("dry run: nothing was written to the platform or the model registry")
    assert "would train a new version (1 labelled asset(s) added, changed or removed since v1)" in out
    assert ("would push 2 pre-annotation(s) of v1 (0 already there): 1 for assets without one, 1 changing an"
            " asset's pre-fill, 0 with the same codes") in out, out
    assert "  u1: +subject:AN2 +subject:ED -subject:AN1" in out, out
    assert "priorities that would be set or change: 2" in out
    assert snapshot(tmp_path / "state") == before  # pre-annotations, ranking, registry: untouched

    again = subprocess.run([CLI, "run", "--once", *flags], capture_output=True, text=True)  # the real cycle
    assert again.returncode == 0 and "model v2: trained" in again.stdout

    refused = subprocess.run([CLI, "run", "--dry-run", *flags], capture_output=True, text=True)
    assert refused.returncode == 2 and "Fix: add --once" in refused.stderr


def test_kili_dry_run_sends_no_mutation(tmp_path, monkeypatch):
    taxonomy = ukcat_taxonomy()
    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    with KiliEmulator(api_key=KEY, project_id="p1", json_interface=interface(taxonomy)) as emulator:
        unlabelled = fill(emulator, taxonomy, labelled=60, unlabelled=12)
        settings = load_settings(None, {
            "platform": "kili", "state_dir": str(tmp_path / "state"),
            "kili": {"project_id": "p1", "endpoint": emulator.endpoint, "push_batch": 5},
            "model": KEYWORDS_ONLY, "worker": {"batch_size": 5}})
        worker = build_worker(settings, Secrets(kili_api_key=KEY))
        assert worker.run_once().written == 12
        emulator.set_text(unlabelled[0], "a church choir and bible study group for the parish")
        emulator.add_label(unlabelled[1], "DEFAULT", answer(taxonomy, {"ED101"}))
        labels_before = len(emulator.labels)
        start = len(emulator.requests)
        run = build_worker(settings, Secrets(kili_api_key=KEY)).dry_run()
        sent = [r["operation"] for r in emulator.requests[start:]]
        assert sent and emulator.writes(start) == [], sent  # read calls only
        assert len(emulator.labels) == labels_before
        assert run.would_train and run.cycle.train_reason.startswith("1 labelled asset(s)")
        assert run.would_push == 1 and run.new == 0 and len(run.changes) + run.unchanged == 1
        print(f"dry run against the emulated Kili: {len(sent)} requests, {sorted(set(sent))}")


def test_label_studio_dry_run_sends_only_reads(tmp_path, label_studio):
    created = label_studio.client.create_project(
        "dry-run", '<View><Text name="text" value="$text"/><Choices name="subject" toName="text" choice="multiple">'
                   '<Choice value="Animals" alias="AN"/><Choice value="Education" alias="ED"/></Choices></View>')
    tasks = [{"data": {"text": "cats and dogs"}, "annotations": [{"result": [
        {"from_name": "subject", "to_name": "text", "type": "choices", "value": {"choices": ["Animals"]}}]}]},
        {"data": {"text": "a school"}}, {"data": {"text": "pets at home"}}]
    label_studio.client.import_tasks(created["id"], tasks)
    settings = load_settings(None, {
        "platform": "label-studio", "state_dir": str(tmp_path / "state"),
        "label_studio": {"project_id": created["id"], "url": label_studio.url}, "model": KEYWORDS_ONLY})
    secrets = Secrets(label_studio_api_key=label_studio.token)
    assert build_worker(settings, secrets).run_once().model_version == "v1"
    predictions = len(label_studio.client.predictions(created["id"]))
    label_studio.client.import_tasks(created["id"], [{"data": {"text": "a new school for cats"}}])

    worker = build_worker(settings, secrets)
    methods: list[str] = []
    worker.connector.client.http.hooks["response"].append(lambda r, *a, **k: methods.append(r.request.method))
    run = worker.dry_run()
    assert methods and set(methods) == {"GET"}, methods
    assert run.would_push == 1 and run.new == 1 and not run.would_train
    assert len(label_studio.client.predictions(created["id"])) == predictions
