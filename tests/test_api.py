"""The HTTP API on a real server (uvicorn on loopback), serving a keyword-only model from a real registry; and
before any version exists: the first one trained in the background, the Label Studio project taken from /setup."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import threading
import time

import pytest
import requests
import uvicorn

from automl.model import PreAnnotator
from automl.settings import ModelSettings
from automl.taxonomy_file import load_taxonomy
from service.app.api import create_app
from service.app.served_project import ServedProject, project_from_state
from service.config import ApiSettings, ConfigError, load_settings
from service.store.registry import ModelRegistry

TOKEN = "s3cret-token"


class Cycles:
    def __init__(self, registry, model):
        self.registry, self.model, self.runs = registry, model, 0

    def __call__(self):
        self.runs += 1
        self.registry.register(self.model, f"fp{self.runs}", {})  # a training that promotes a new version


@contextlib.contextmanager
def running(app):
    """`app` on uvicorn, on a free loopback port, in a thread (its lifespan runs as in `serve`): its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(5)


@pytest.fixture
def server(tmp_path, small_taxonomy):
    registry = ModelRegistry(tmp_path / "models")
    model = PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings()).fit([], [])
    registry.register(model, "fp0", {})
    cycles = Cycles(ModelRegistry(tmp_path / "models"), model)
    app = create_app(ApiSettings(debounce_seconds=0.3, max_body_bytes=50_000), TOKEN, registry, cycles)
    with running(app) as url:
        yield url, cycles, registry


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def test_health_is_open_and_everything_else_needs_the_token(server):
    url, _, _ = server
    assert requests.get(f"{url}/health").json() == {"status": "UP", "model_version": "v1"}
    for method, path in (("post", "/setup"), ("post", "/predict"), ("post", "/webhook"), ("get", "/metrics"),
                         ("get", "/report"), ("get", "/openapi.json")):
        assert requests.request(method, url + path, json={}).status_code == 401
        assert requests.request(method, url + path, json={}, headers=auth("wrong")).status_code == 401
    basic = base64.b64encode(f"user:{TOKEN}".encode()).decode()
    assert requests.post(f"{url}/setup", headers={"Authorization": f"Basic {basic}"}).json() == {
        "model_version": "v1"}
    schema = requests.get(f"{url}/openapi.json", headers=auth()).json()  # the schema too, with the token
    assert {"/health", "/setup", "/predict", "/webhook", "/metrics", "/report"} <= set(schema["paths"])


def test_predict_batches_and_picks_up_a_new_version_without_restart(server):
    url, cycles, registry = server
    tasks = [{"id": 1, "data": {"text": "a shelter for cats"}}, {"id": 2, "data": {"text": "mental health"}}]
    answer = requests.post(f"{url}/predict", json={"tasks": tasks}, headers=auth()).json()["results"]
    assert [r["model_version"] for r in answer] == ["v1", "v1"]
    assert {p["code"] for p in answer[0]["proposals"]["subject"]} == {"AN", "AN1"}
    assert {p["code"] for p in answer[1]["proposals"]["subject"]} == {"HE", "HE1"}
    assert 0 < answer[0]["score"] <= 1
    assert set(answer[0]) == {"model_version", "score", "result", "proposals", "suggestions"}
    assert set(answer[0]["suggestions"]) == {"subject"} and not {p["code"] for p in answer[0]["suggestions"][
        "subject"]} & {p["code"] for p in answer[0]["proposals"]["subject"]}  # suggestions are not pre-filled
    cycles()  # another process promotes v2
    again = requests.post(f"{url}/predict", json={"tasks": tasks[:1]}, headers=auth()).json()["results"]
    assert again[0]["model_version"] == "v2"
    bad = requests.post(f"{url}/predict", json={"tasks": [{"id": 3, "data": {}}]}, headers=auth())
    assert bad.status_code == 422 and "data.text" in bad.json()["detail"]


def test_webhook_schedules_one_debounced_background_cycle(server):
    url, cycles, _ = server
    started = time.monotonic()
    for action in ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED",
                   "START_TRAINING"):  # what Label Studio sends (plural for bulk actions), and the train button
        r = requests.post(f"{url}/webhook", json={"action": action}, headers=auth())
        assert r.json() == {"status": "scheduled", "action": action}
    assert time.monotonic() - started < 1.0  # answered at once: nothing trains inside a request
    assert requests.post(f"{url}/webhook", json={"action": "PROJECT_UPDATED"}, headers=auth()).json()[
        "status"] == "ignored"
    deadline = time.monotonic() + 10
    while cycles.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert cycles.runs == 1  # five events, one cycle
    assert requests.get(f"{url}/health").json()["model_version"] == "v2"


def test_metrics_and_size_limit(server):
    url, _, registry = server
    requests.post(f"{url}/predict", json={"tasks": [{"data": {"text": "cats"}}]}, headers=auth())
    text = requests.get(f"{url}/metrics", headers=auth()).text
    assert "classie_predicted_tasks_total 1.0" in text
    assert "classie_model_version 1.0" in text
    assert 'classie_heldout_f1{facet="subject",kind="micro",level="1"}' in text
    assert 'classie_heldout_effort_ratio{facet="subject",level="all"}' in text
    assert 'classie_heldout_calibration_error{facet="subject"}' in text
    assert 'classie_request_seconds_count{path="/predict"} 1.0' in text
    assert 'classie_model_versions{status="current"} 1.0' in text and "classie_latest_version_rejected 0.0" in text
    model = registry.load(registry.current())
    registry.register(model, "fp-worse", {}, promote=False, gate={"promoted": False, "reason": "worse"})
    text = requests.get(f"{url}/metrics", headers=auth()).text
    assert 'classie_model_versions{status="rejected"} 1.0' in text and "classie_latest_version_rejected 1.0" in text
    assert "classie_model_version 1.0" in text  # the current one goes on serving
    big = requests.post(f"{url}/predict", data=b"x" * 60_000, headers={**auth(), "Content-Type": "application/json"})
    assert big.status_code == 413


def test_a_token_is_required():
    with pytest.raises(ValueError, match="CLASSIE_API_TOKEN"):
        create_app(ApiSettings(), "", None, lambda: None)


def test_predict_answers_in_label_studio_format_when_given_its_config(tmp_path):
    from connectors.label_studio_schema import parse_label_config

    config = ("<View><Text name='body' value='$body'/><Taxonomy name='subject' toName='body'>"
              "<Choice value='Animals' alias='AN'><Choice value='Cats' alias='AN1'/></Choice>"
              "<Choice value='Health' alias='HE'/></Taxonomy></View>")
    schema = parse_label_config(config)
    tax = schema.taxonomy()
    rules = tmp_path / "t.csv"
    rules.write_text("code,name,parent_code,keywords\n" + "".join(
        f"{code},{node.name},{node.parent or ''},{'cat' if code.endswith('AN1') else ''}\n"
        for code, node in tax.nodes.items()))
    from automl.taxonomy_file import load_taxonomy

    registry = ModelRegistry(tmp_path / "models")
    registry.register(PreAnnotator(load_taxonomy(rules), ModelSettings()).fit([], []), "fp", {})
    app = create_app(ApiSettings(), TOKEN, registry, lambda: None)
    from fastapi.testclient import TestClient

    client = TestClient(app)
    answer = client.post("/predict", headers=auth(), json={
        "tasks": [{"id": 7, "data": {"body": "a cat"}}], "label_config": config}).json()["results"][0]
    assert answer["result"] == [{"from_name": "subject", "to_name": "body", "type": "taxonomy",
                                 "value": {"taxonomy": [["AN", "AN1"]]}}]
    assert client.post("/predict", headers=auth(), json={"tasks": [], "label_config": "<View"}).status_code == 422


def test_answers_label_studio_stores_are_recorded_once_and_never_duplicate_the_workers(tmp_path, small_taxonomy):
    """With the worker's ledger, a task gets one prediction of a version whichever path makes it."""
    from fastapi.testclient import TestClient

    from connectors.base import text_hash
    from service.store.state import StateStore

    registry = ModelRegistry(tmp_path / "models")
    registry.register(PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings()).fit([], []), "fp", {})
    ledger = StateStore(tmp_path / "state.sqlite3")
    client = TestClient(create_app(ApiSettings(), TOKEN, registry, lambda: None, ledger, project_id=3))

    def ask(*tasks, project="3.1767225600"):
        body = {"tasks": [{"id": i, "project": p, "data": {"text": t}} for i, p, t in tasks], "project": project}
        return client.post("/predict", headers=auth(), json=body).json()["results"]

    assert len(ask((5, 3, "our cats"))) == 1  # answered, and recorded: Label Studio stores it
    assert ask((5, 3, "our cats")) == [[]]  # asked again (the same version): no second prediction
    assert ledger.claim("v1", [("5", text_hash("our cats"))]) == set()  # the worker will not push it either
    assert ledger.claim("v1", [("6", text_hash("dogs"))]) == {"6"}  # the worker is pushing task 6...
    assert ask((6, 3, "dogs")) == [[]]  # ...so the API does not answer for it
    # In a batch, each task keeps its place (Label Studio pairs answers with tasks by position and drops a batch
    # whose count differs): an empty list where there is no prediction.
    mixed = ask((6, 3, "dogs"), (8, 3, "a cat shelter"), (5, 3, "our cats"), (9, 3, "birds"))
    assert [bool(r) for r in mixed] == [False, True, False, True]
    assert all(r["model_version"] == "v1" for r in mixed if r)
    assert len(ask((7, 9, "cats"), project="9.1")) == 1 and ledger.claim("v1", [("7", text_hash("cats"))]) == {"7"}
    # another project's tasks, or a caller that is not Label Studio storing them, are answered and not recorded


def test_report_of_the_current_version(server):
    from service.quality.report import write_report

    url, _, registry = server
    missing = requests.get(f"{url}/report", headers=auth())
    assert missing.status_code == 404 and "Fix: `classie-automl report --out" in missing.json()["detail"]
    write_report(registry, registry.current(), None)
    page = requests.get(f"{url}/report", headers=auth())
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Model v1" in page.text and "Across versions" in page.text


def test_malformed_requests_are_the_clients_error_not_the_servers(server):
    url, _, _ = server
    json_headers = {**auth(), "Content-Type": "application/json"}
    for path in ("/predict", "/webhook"):
        for body in (b"{not json", b"\xff\xfe", b""):
            answer = requests.post(url + path, data=body, headers=json_headers)
            assert answer.status_code == 400 and "not JSON" in answer.json()["detail"], (path, body, answer.text)
    cases = [({"tasks": [{"data": ["a", "list"]}]}, "every task needs data.text"),
             ({"tasks": [{"data": {"text": "cats"}}], "label_config": 42}, "label_config must be"),
             ({"tasks": ["not an object"]}, "every task needs data.text"),
             (["not", "an", "object"], "expected {")]
    for body, says in cases:
        answer = requests.post(f"{url}/predict", json=body, headers=auth())
        assert answer.status_code == 422 and says in answer.json()["detail"], (body, answer.text)
    assert requests.post(f"{url}/webhook", json=["a list"], headers=auth()).json()["status"] == "ignored"


# ---- before the first version ---------------------------------------------------------------------------------

class FirstTraining:
    """A cycle that trains the first version when `release` is set (or fails with `fails`)."""

    def __init__(self, registry, model, fails: str = ""):
        self.registry, self.model, self.fails = registry, model, fails
        self.started, self.release, self.runs = threading.Event(), threading.Event(), 0

    def __call__(self):
        self.runs += 1
        self.started.set()
        self.release.wait(30)
        if self.fails:
            raise RuntimeError(self.fails)
        self.registry.register(self.model, f"fp{self.runs}", {})


def until(check, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)
    return value


TASKS = {"tasks": [{"id": 1, "data": {"text": "a shelter for cats"}}]}
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_serve_without_a_version_trains_the_first_and_predict_says_since_when(tmp_path, small_taxonomy):
    registry = ModelRegistry(tmp_path / "models")
    first = FirstTraining(registry, PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings()).fit([], []))
    app = create_app(ApiSettings(), TOKEN, registry, first, train_first=True, training_seconds=40)
    with running(app) as url:
        assert first.started.wait(10)  # at start, in the background: the server answers meanwhile
        early = requests.post(f"{url}/predict", json=TASKS, headers=auth())
        assert early.status_code == 503 and 5 <= int(early.headers["Retry-After"]) <= 40
        detail = early.json()["detail"]
        assert re.fullmatch(f"no model version yet: first version training since {STAMP}. Retry after it lands"
                            r" \(Retry-After: a guess from the search budget\); /health says when it has", detail)
        since = detail.split("since ")[1][:20]
        assert requests.get(f"{url}/health").json() == {"status": "UP", "model_version": None,
                                                       "first_version": f"first version training since {since}"}
        assert requests.get(f"{url}/report", headers=auth()).status_code == 503
        first.release.set()
        until(lambda: requests.get(f"{url}/health").json()["model_version"] == "v1")
        assert requests.get(f"{url}/health").json() == {"status": "UP", "model_version": "v1"}
        assert requests.post(f"{url}/predict", json=TASKS, headers=auth()).json()["results"][0]["model_version"] == "v1"
    assert first.runs == 1


def test_a_first_training_that_failed_is_said_with_its_cause_and_the_fix(tmp_path, small_taxonomy):
    registry = ModelRegistry(tmp_path / "models")
    failing = FirstTraining(registry, None, fails="Label Studio at http://ls.example refused the token (401)")
    failing.release.set()
    app = create_app(ApiSettings(), TOKEN, registry, failing, train_first=True)
    with running(app) as url:
        until(lambda: "failed" in requests.get(f"{url}/health").json()["first_version"])
        answer = requests.post(f"{url}/predict", json=TASKS, headers=auth())
        assert answer.status_code == 503 and "Retry-After" not in answer.headers
        assert re.fullmatch(f"no model version yet: the first training failed at {STAMP}: RuntimeError: Label Studio"
                            r" at http://ls.example refused the token \(401\). Fix: see serve's log for the cause;"
                            " the next annotation \\(the webhook\\) or `classie-automl train` on this state folder"
                            " tries again", answer.json()["detail"]), answer.json()["detail"]
        # /health is open to all: the cause stays in the log
        assert re.fullmatch(f"the first training failed at {STAMP}: see serve's log",
                            requests.get(f"{url}/health").json()["first_version"])
        assert failing.runs == 1  # not retried in a loop: the next webhook event does
        requests.post(f"{url}/webhook", json={"action": "ANNOTATION_CREATED"}, headers=auth())
        until(lambda: failing.runs == 2)


def test_without_a_project_setup_names_it_and_serve_takes_records_and_trains_for_it(tmp_path, small_taxonomy):
    registry = ModelRegistry(tmp_path / "models")
    first = FirstTraining(registry, PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings()).fit([], []))
    first.release.set()
    project = ServedProject(state_dir=tmp_path, url="http://ls.example:8080/")
    app = create_app(ApiSettings(), TOKEN, registry, first, project_id=project, train_first=True)
    record = tmp_path / "label_studio_project.json"
    with running(app) as url:
        assert requests.get(f"{url}/health").json() == {"status": "UP", "model_version": None, "project": None,
                                                       "first_version": "serve has no Label Studio project yet"}
        waiting = requests.post(f"{url}/predict", json=TASKS, headers=auth())
        assert waiting.status_code == 503 and waiting.json()["detail"] == (
            "no model version yet: serve has no Label Studio project yet. Fix: connect serve as the project's ML"
            " backend (`classie-automl label-studio-init --ml-backend-url <serve's URL>`, or the project's Settings"
            " > Model): Label Studio's /setup call names the project, and serve trains the first version then; or"
            " start serve with --project-id")
        # What Label Studio 1.23.2 sends: the project as "<id>.<created_at>", and a token of its own.
        setup = {"project": "7.1767225600", "schema": "<View/>", "hostname": "http://ls.example:8080",
                 "access_token": "ls-token-0123456789", "extra_params": None}
        assert requests.post(f"{url}/setup", json=setup, headers=auth("wrong")).status_code == 401
        assert requests.post(f"{url}/setup", headers=auth()).json() == {"model_version": "none"}  # a plain check
        assert not record.exists() and first.runs == 0
        assert requests.post(f"{url}/setup", json=setup, headers=auth()).status_code == 200
        kept = json.loads(record.read_text())
        assert {k: kept[k] for k in ("project_id", "url", "uid")} == {"project_id": 7, "url": "http://ls.example:8080",
                                                                      "uid": "7.1767225600"}
        assert "ls-token" not in record.read_text()
        until(lambda: requests.get(f"{url}/health").json() == {"status": "UP", "model_version": "v1", "project": 7})
        # Another project connected to the same backend is answered, not taken.
        other = requests.post(f"{url}/setup", json={**setup, "project": "8.1767229999"}, headers=auth())
        assert other.json() == {"model_version": "v1"} and project.id == 7 and json.loads(record.read_text()) == kept
    assert first.runs == 1


def test_every_command_on_the_state_folder_finds_the_recorded_project(tmp_path):
    def settings(url: str, project_id: str | None = None):
        return load_settings(None, {"platform": "label-studio", "state_dir": str(tmp_path),
                                    "label_studio": {"url": url}}, project_id)

    with pytest.raises(ConfigError, match=r"platform label-studio needs a project, and none is set or recorded in"
                                          r".*Fix: pass --project-id N \(or set CLASSIE_LABEL_STUDIO__PROJECT_ID=N"):
        project_from_state(settings("http://ls.example:8080"))
    ServedProject(state_dir=tmp_path, url="http://ls.example:8080").adopt("5.1767225600")
    assert project_from_state(settings("http://ls.example:8080/")) == 5
    served = ServedProject.of(settings("http://ls.example:8080"))
    assert (served.id, served.source.split(" (")[0]) == (5, str(tmp_path / "label_studio_project.json"))
    assert ServedProject.of(settings("http://ls.example:8080", "9")).id == 9  # a project set wins
    with pytest.raises(ConfigError, match=r"records project 5 of the Label Studio at http://ls.example:8080, not of"
                                          r" http://other.example:8080\. Fix: pass --url http://ls.example:8080"):
        project_from_state(settings("http://other.example:8080"))
    (tmp_path / "label_studio_project.json").write_text("{half")
    with pytest.raises(ConfigError, match="not a readable project record"):
        ServedProject.of(settings("http://ls.example:8080"))


def test_serve_trains_the_first_version_at_start_and_a_stop_abandons_it(tmp_path):
    """The real `serve` on a state folder without a version (files platform: no project to wait for)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from conftest import EXAMPLE, example_rows, write_assets
    from label_studio_server import free_port

    write_assets(tmp_path / "a.csv", example_rows("train.csv", 300) + [("u1", "a school", "")])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "classie-automl"), "serve", "--platform", "files",
                               "--assets", str(tmp_path / "a.csv"), "--taxonomy", str(EXAMPLE / "taxonomy.csv"),
                               "--state", str(tmp_path / "state"), "--port", str(port)],
                              env={**os.environ, "CLASSIE_API_TOKEN": TOKEN, "CLASSIE_MODEL__BUDGET_SECONDS": "600"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def training() -> bool:
            assert server.poll() is None, server.communicate()[1][-3000:]
            try:
                first = requests.get(f"{url}/health", timeout=2).json().get("first_version", "")
            except requests.RequestException:
                return False
            return first.startswith("first version training since ")

        until(training, 60)
        early = requests.post(f"{url}/predict", json=TASKS, headers=auth(), timeout=10)
        assert early.status_code == 503 and int(early.headers["Retry-After"]) == 60  # 600 s of budget: at most 60
        assert "first version training since" in early.json()["detail"]
        until(lambda: (tmp_path / "state" / "logs").exists(), 60)  # the search has started
    finally:
        stopped = time.monotonic()
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-3000:]
    assert time.monotonic() - stopped < 30
    assert "no model version in the state folder: training the first one now, in the background (serve started)" in err
    assert "background cycle stopped: stop requested: training abandoned" in err, err[-3000:]
    assert not list((tmp_path / "state" / "models").glob("v*"))
