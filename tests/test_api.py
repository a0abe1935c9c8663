"""The HTTP API on a real server (uvicorn on loopback), serving a keyword-only model from a real registry."""

from __future__ import annotations

import base64
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
from service.config import ApiSettings
from service.store.registry import ModelRegistry

TOKEN = "s3cret-token"


class Cycles:
    def __init__(self, registry, model):
        self.registry, self.model, self.runs = registry, model, 0

    def __call__(self):
        self.runs += 1
        self.registry.register(self.model, f"fp{self.runs}", {})  # a training that promotes a new version


@pytest.fixture
def server(tmp_path, small_taxonomy):
    registry = ModelRegistry(tmp_path / "models")
    model = PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings()).fit([], [])
    registry.register(model, "fp0", {})
    cycles = Cycles(ModelRegistry(tmp_path / "models"), model)
    app = create_app(ApiSettings(debounce_seconds=0.3, max_body_bytes=50_000), TOKEN, registry, cycles)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", cycles, registry
    srv.should_exit = True
    thread.join(5)


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def test_health_is_open_and_everything_else_needs_the_token(server):
    url, _, _ = server
    assert requests.get(f"{url}/health").json() == {"status": "UP", "model_version": "v1"}
    for method, path in (("post", "/setup"), ("post", "/predict"), ("post", "/webhook"), ("get", "/metrics"),
                         ("get", "/report")):
        assert requests.request(method, url + path, json={}).status_code == 401
        assert requests.request(method, url + path, json={}, headers=auth("wrong")).status_code == 401
    basic = base64.b64encode(f"user:{TOKEN}".encode()).decode()
    assert requests.post(f"{url}/setup", headers={"Authorization": f"Basic {basic}"}).json() == {
        "model_version": "v1"}


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
