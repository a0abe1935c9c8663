"""The Label Studio connector, the worker and the HTTP API against a real Label Studio server (loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from conftest import example_rows
from connectors.label_studio import LabelStudioConnector
from connectors.label_studio_client import LabelStudioClient, LabelStudioError
from connectors.settings import LabelStudioSettings
from kili_project import ukcat_taxonomy
from label_studio_server import label_studio  # noqa: F401 - the session fixture
from service.app.factory import build_worker
from service.config import Secrets, load_settings
from service.cycle.worker import Worker

ROOTS = ("AN", "ED", "HE", "RL", "AR")
CLI = str(Path(sys.executable).parent / "classie-automl")


def taxonomy_config() -> str:
    tax = ukcat_taxonomy()

    def choices(code: str) -> str:
        kids = "".join(choices(c) for c in sorted(tax.children.get(code, [])))
        name = tax.nodes[code].name.replace("&", "and").replace('"', "'")
        return f'<Choice value="{name}" alias="{code}">{kids}</Choice>'

    return ('<View><Text name="text" value="$text"/><Taxonomy name="subject" toName="text">'
            + "".join(choices(c) for c in ROOTS) + "</Taxonomy></View>")


def annotation(codes: set[str]) -> list[dict]:
    tax = ukcat_taxonomy()
    paths = [list(reversed([c, *tax.ancestors(c)])) for c in sorted(codes)]
    return [{"from_name": "subject", "to_name": "text", "type": "taxonomy", "value": {"taxonomy": paths}}]


def labelled_rows(n: int) -> list[tuple[str, set[str]]]:
    """The first `n` UK-CAT training texts with a label under ROOTS, and those labels."""
    tax, rows = ukcat_taxonomy(), []
    for _, text, labels in example_rows("train.csv"):
        codes = {c for c in labels.split(";") if c in tax and tax.with_ancestors({c}) & set(ROOTS)}
        if codes:
            rows.append((text, codes))
        if len(rows) == n:
            break
    return rows


@pytest.fixture
def project(label_studio):
    tasks = [{"data": {"text": text}, "annotations": [{"result": annotation(codes)}]}
             for text, codes in labelled_rows(120)]
    tasks += [{"data": {"text": text}} for _, text, _ in example_rows("test.csv", 20)]
    created = label_studio.client.create_project("classie", taxonomy_config())
    label_studio.client.import_tasks(created["id"], tasks)
    return created["id"]


def worker(tmp_path, label_studio, project_id, label_issues: dict | None = None, **worker_settings) -> Worker:
    settings = load_settings(None, {
        "platform": "label-studio", "state_dir": str(tmp_path / "state"),
        "label_studio": {"project_id": project_id, "url": label_studio.url},
        "model": {"budget_seconds": 30, "max_evaluations": 2, "cv_folds": 3, "min_examples": 5,
                  "promote_tolerance": 10},  # this test follows the cycle; the gate has its own tests
        "worker": worker_settings, "label_issues": label_issues or {},
    })
    return build_worker(settings, Secrets(label_studio_api_key=label_studio.token))


def ours(label_studio, project_id) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for p in label_studio.client.predictions(project_id):
        out.setdefault(p["task"], []).append(p["model_version"])
    return out


def test_fail_fast(label_studio, project):
    with pytest.raises(LabelStudioError, match="refused the token"):
        LabelStudioConnector(LabelStudioSettings(project_id=project), LabelStudioClient(label_studio.url, "wrong"))
    with pytest.raises(LabelStudioError, match="not found"):
        LabelStudioConnector(LabelStudioSettings(project_id=99999),
                             LabelStudioClient(label_studio.url, label_studio.token))


def test_worker_cycle_pushes_versioned_predictions(tmp_path, label_studio, project):
    # No overlap window: every task here changed within the default one, and the filter itself is under test.
    w = worker(tmp_path, label_studio, project, cursor_overlap_seconds=0)
    first = w.run_once()
    assert (first.labelled, first.unlabelled) == (120, 20)
    assert first.trained and first.model_version == "v1" and first.written == 20
    predicted = ours(label_studio, project)
    assert len(predicted) == 20 and all(v == ["v1"] for v in predicted.values())
    assert label_studio.client.project(project)["model_version"] == "v1"
    # Each prediction's score is its task's priority: sorting by it, descending, gives the labelling order.
    scores = {p["task"]: p["score"] for p in label_studio.client.predictions(project)}
    assert scores == pytest.approx({int(p.asset_id): p.value for p in w.state.ranking("v1")}, abs=1e-4)
    assert len(set(scores.values())) > 1 and first.prioritised == 0  # nothing more to send than the scores
    tasks = {t["id"]: t for t in label_studio.client.tasks(project)}
    some = next(iter(predicted))
    result = tasks[some]["predictions"][0]["result"]
    assert all(r["from_name"] == "subject" and r["type"] == "taxonomy" for r in result)

    quiet = w.run_once()
    assert (quiet.trained, quiet.predicted, quiet.written) == (False, 0, 0)
    assert quiet.pulled <= 2 and not quiet.complete_pull  # incremental: the updated_at filter held

    label_studio.client.create_annotation(some, annotation({"ED101"}))
    third = w.run_once()
    assert third.trained and third.model_version == "v2"
    predicted = ours(label_studio, project)
    assert some in predicted and "v2" not in predicted[some]  # labelled now: not pre-annotated again
    assert sum("v2" in v for v in predicted.values()) == 19
    assert sum("v1" in v for v in predicted.values()) == 20  # earlier_versions = "keep" (the default)
    assert label_studio.client.project(project)["model_version"] == "v2"

    # earlier_versions = "remove": pushing a version deletes the other versions' predictions of those tasks.
    from automl.records import Proposal
    from connectors.base import PreAnnotation

    remover = LabelStudioConnector(LabelStudioSettings(project_id=project, earlier_versions="remove"),
                                   LabelStudioClient(label_studio.url, label_studio.token))
    target = next(t for t, versions in predicted.items() if "v2" in versions)
    remover.push([PreAnnotation(str(target), "h", {"subject": [Proposal("subject:AN", 0.9, "model")]})], "v3")
    assert ours(label_studio, project)[target] == ["v3"]
    assert label_studio.client.project(project)["model_version"] == "v3"


def _serve(tmp_path, label_studio, project, **env_settings):
    """`classie-automl serve` for the project on the state folder of `worker(...)`, connected as its ML backend."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CLASSIE_API_TOKEN": "tok", "LABEL_STUDIO_API_KEY": label_studio.token, **env_settings}
    server = subprocess.Popen([CLI, "serve", "--platform", "label-studio", "--project-id", str(project), "--url",
                               label_studio.url, "--state", str(tmp_path / "state"), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    backend = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{backend}/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.3)
    label_studio.client.connect_ml_backend(project, backend, basic_auth_user="classie", basic_auth_pass="tok")
    return server, backend


def _retrieve(label_studio, project, task_ids) -> None:
    """What the Data Manager's "Retrieve Predictions" does: Label Studio asks the backend and stores the answers."""
    label_studio.client.request("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions",
                                                                   "project": project},
                                json={"selectedItems": {"all": False, "included": list(task_ids)}})


def _versions_per_task(label_studio, project) -> Counter:
    return Counter((p["task"], p["model_version"]) for p in label_studio.client.predictions(project))


def test_label_studio_uses_the_service_as_its_ml_backend(tmp_path, label_studio, project):
    client = label_studio.client
    worker(tmp_path, label_studio, project).run_once()  # v1, trained and pushed by the worker
    # Label Studio checks /health and /setup with the basic-auth credentials, then creates a webhook.
    server, backend = _serve(tmp_path, label_studio, project, CLASSIE_API__DEBOUNCE_SECONDS="1",
                             CLASSIE_MODEL__BUDGET_SECONDS="30", CLASSIE_MODEL__MAX_EVALUATIONS="2",
                             CLASSIE_MODEL__CV_FOLDS="3", CLASSIE_MODEL__MIN_EXAMPLES="5",
                             CLASSIE_MODEL__PROMOTE_TOLERANCE="10")  # follows the cycle, not the gate
    try:
        client.set_webhook_headers(project, backend, {"Authorization": "Bearer tok"})

        # A new task, without prediction: Label Studio asks the backend's /predict for it.
        [new_task] = client.import_tasks(project, [{"data": {"text": "A church choir and a Sunday school"}}])
        client.request("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
                       json={"selectedItems": {"all": False, "included": [new_task]}})
        got = [p for p in client.predictions(project) if p["task"] == new_task]
        assert got and got[0]["model_version"] == "v1"
        assert all(r["from_name"] == "subject" for r in got[0]["result"])

        # A human annotates: the webhook reaches the backend, which trains v2 in the background.
        client.create_annotation(new_task, annotation({"RL200"}))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and client.project(project)["model_version"] != "v2":
            time.sleep(1)
        assert client.project(project)["model_version"] == "v2"
        assert requests.get(f"{backend}/health", timeout=5).json()["model_version"] == "v2"
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-3000:]


def test_one_prediction_of_a_version_per_task_whichever_path_makes_it(tmp_path, label_studio, project):
    """The ML backend's answers (which Label Studio stores) and the worker's pushes share one ledger: backend first
    then worker, worker first then backend, and both at once."""
    import threading

    w = worker(tmp_path, label_studio, project, batch_size=1)
    w.train_now()  # v1, nothing pushed yet
    unlabelled = sorted(int(t["id"]) for t in label_studio.client.tasks(project) if not t["annotations"])
    server, _ = _serve(tmp_path, label_studio, project)
    try:
        _retrieve(label_studio, project, unlabelled[:5])  # the backend first...
        assert {t for (t, v), n in _versions_per_task(label_studio, project).items() if v == "v1"} == set(
            unlabelled[:5])
        first = w.run_once()  # ...then the worker: it pushes the others only
        assert first.written == len(unlabelled) - 5 and first.already == 5
        _retrieve(label_studio, project, unlabelled)  # the worker first, then the backend: nothing new
        counts = _versions_per_task(label_studio, project)
        assert all(counts[(t, "v1")] == 1 for t in unlabelled), counts

        new = label_studio.client.import_tasks(project, [{"data": {"text": f"{text} (new)"}}
                                                          for _, text, _ in example_rows("test.csv", 60)[20:45]])
        # The worker is pushing two of a batch the backend is asked for: Label Studio stores the other three (it
        # pairs answers with tasks by position, and drops a whole batch whose count differs).
        being_pushed = {str(t) for t in new[1:3]}
        assert w.state.claim("v1", [(t, "any text") for t in being_pushed]) == being_pushed
        _retrieve(label_studio, project, new[:5])
        counts = _versions_per_task(label_studio, project)
        assert {t: counts[(t, "v1")] for t in new[:5]} == {t: int(str(t) not in being_pushed) for t in new[:5]}
        w.state.release("v1", being_pushed)

        # Both at once: the worker pushing the new tasks one by one while the backend is asked for all of them.
        failed: list[BaseException] = []

        def push() -> None:
            try:
                w.run_once()
            except BaseException as exc:  # seen by the test, not lost in the thread
                failed.append(exc)

        pushing = threading.Thread(target=push)
        pushing.start()
        for start in range(0, len(new), 5):
            _retrieve(label_studio, project, new[start:start + 5])
        pushing.join(120)
        assert not pushing.is_alive() and not failed, failed or "the worker's cycle did not end within 120 s"
        counts = _versions_per_task(label_studio, project)
        assert all(counts[(t, "v1")] == 1 for t in new), {t: counts[(t, "v1")] for t in new}
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)


def _noted(label_studio, project) -> list[int]:
    """The tasks the Data Manager lists under the filter "classie_label_issue is not empty"."""
    query = {"filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:data.classie_label_issue",
                                                          "operator": "not_empty", "type": "String", "value": ""}]}}
    body = label_studio.client.request("GET", "/api/tasks", params={"project": project, "page_size": 500,
                                                                    "query": json.dumps(query)}).json()
    return sorted(t["id"] for t in body["tasks"])


def test_label_issues_become_task_notes_the_data_manager_filters_on(tmp_path, label_studio, project):
    from connectors.label_studio import NOTE_KEY, NOTE_ON_KEY

    w = worker(tmp_path, label_studio, project, label_issues={"push": True, "top": 12})
    first = w.run_once()
    assert first.trained and first.label_issues_shown > 0
    before = {t["id"]: t for t in label_studio.client.tasks(project)}
    noted = sorted(i for i, t in before.items() if NOTE_KEY in t["data"])
    assert noted and _noted(label_studio, project) == noted
    assert 0 < len(noted) <= first.label_issues_shown
    for task_id in noted:
        task = before[task_id]
        assert task["data"][NOTE_KEY].startswith("classie-automl: ") and task["annotations"]
        assert task["data"][NOTE_ON_KEY].startswith(f"{task['annotations'][-1]['id']}@")
        assert set(task["data"]) == {"text", NOTE_KEY, NOTE_ON_KEY}  # the text kept, nothing else added

    again = w.run_once()  # the notes moved the tasks' updated_at: pulled again, nothing changes, nothing is re-sent
    assert (again.trained, again.label_issues_shown) == (False, 0)
    assert {i: t["data"] for i, t in ((t["id"], t) for t in label_studio.client.tasks(project))} == {
        i: t["data"] for i, t in before.items()}

    # Labelled again: the note is about a label no longer there, and is taken down at the next push.
    relabelled = noted[0]
    label_studio.client.create_annotation(relabelled, annotation({"ED101"}))
    connector = w.connector
    list(connector.pull(None).assets)
    assert connector.outdated_notes == {str(relabelled)}
    assert connector.push_label_issues([], "v1") == []
    data = label_studio.client.task(relabelled)["data"]
    assert NOTE_KEY not in data and NOTE_ON_KEY not in data and data["text"] == before[relabelled]["data"]["text"]
    assert _noted(label_studio, project) == noted[1:]
