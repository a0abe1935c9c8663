"""The HTTP API under hostile requests (hypothesis): generated bodies never get a 5xx, requests without the token
change nothing, bodies over the limit are refused before they are read whole (chunked ones too), and a token in a
query string stays out of the access log."""

from __future__ import annotations

import base64
import json
import logging
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import service.app.api
from automl.model import PreAnnotator
from automl.settings import ModelSettings
from automl.taxonomy_file import load_taxonomy
from conftest import SMALL_TAXONOMY, write
from connectors.label_studio_client import TRAINING_EVENTS
from service.app.api import create_app
from service.app.logs import setup_logging
from service.config import ApiSettings
from service.store.registry import ModelRegistry
from service.store.state import StateStore

TOKEN = "s3cret-token"
PROJECT = 3
LIMIT = 20_000
HOSTILE = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CONFIG = ("<View><Text name='text' value='$text'/><Taxonomy name='subject' toName='text'>"
          "<Choice value='Animals' alias='AN'><Choice value='Cats' alias='AN1'/></Choice></Taxonomy></View>")


@dataclass
class World:
    app: FastAPI
    client: TestClient
    ledger: StateStore
    cycles: list
    root: Path

    def ledger_dump(self) -> list[str]:
        with sqlite3.connect(self.ledger.path) as db:
            return list(db.iterdump())


def _world(root: Path, max_body_bytes: int = LIMIT) -> World:
    registry = ModelRegistry(root / "models")
    registry.register(PreAnnotator(load_taxonomy(write(root / "taxonomy.csv", SMALL_TAXONOMY)), ModelSettings())
                      .fit([], []), "fp", {})
    ledger, cycles = StateStore(root / "state.sqlite3"), []
    app = create_app(ApiSettings(debounce_seconds=0.0, max_body_bytes=max_body_bytes, max_tasks=20), TOKEN,
                     registry, lambda: cycles.append(time.monotonic()), ledger, project_id=PROJECT)
    return World(app, TestClient(app, raise_server_exceptions=False), ledger, cycles, root)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return _world(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def locked(tmp_path_factory) -> World:
    """A second API whose callers never have the token: nothing may change in it."""
    return _world(tmp_path_factory.mktemp("locked"))


# ---- generated requests -------------------------------------------------------------------------------------------

# Any Unicode, lone surrogates too: JSON escapes them (\ud800) and Python's parser accepts them.
any_text = st.text(st.characters(), max_size=12)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70) | st.floats() | any_text)
any_json = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner,
                                                                                              max_size=4),
                        max_leaves=10)
texts = st.fixed_dictionaries({"text": any_text})
tasks = st.fixed_dictionaries(
    {"id": st.integers(0, 30) | any_json, "data": st.one_of(texts, texts, texts, any_json)},  # mostly well formed
    optional={"project": st.just(PROJECT) | any_json, "annotations": any_json, "predictions": any_json})
configs = (st.just(CONFIG) | any_text | any_json
           | st.tuples(st.integers(0, len(CONFIG)), st.integers(0, len(CONFIG))).map(lambda ab: CONFIG[:ab[0]]
                                                                                      + CONFIG[ab[1]:]))
predict_bodies = st.fixed_dictionaries(
    {"tasks": st.lists(tasks, max_size=4) | any_json},
    optional={"label_config": configs, "project": st.just(f"{PROJECT}.1767225600") | any_json,
              "model_version": any_json, "params": any_json})
webhook_bodies = st.fixed_dictionaries({"action": st.sampled_from(sorted(TRAINING_EVENTS)) | any_json},
                                       optional={"project": any_json, "annotation": any_json, "task": any_json})
bodies = st.one_of(
    st.tuples(st.just("/predict"), predict_bodies | any_json),
    st.tuples(st.just("/webhook"), webhook_bodies | any_json),
    st.tuples(st.just("/setup"), any_json | predict_bodies),
).map(lambda pb: (pb[0], json.dumps(pb[1]).encode()))  # ensure_ascii: surrogates as escapes, NaN as NaN
raw_bodies = st.tuples(st.sampled_from(["/predict", "/webhook", "/setup"]), st.binary(max_size=64))


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _client_error_or_json(answer) -> None:
    """Never a 5xx; a 4xx says why in `detail`; anything else is JSON."""
    assert answer.status_code < 500, (answer.status_code, answer.text)
    content = answer.json()
    if answer.status_code >= 400:
        assert isinstance(content, dict) and content.get("detail"), answer.text


# Found by this test (service/app/api.py), each a 500: a webhook action that is not a string (a list, an object) was
# looked up in a set (TypeError: unhashable); an action with a lone surrogate (JSON escapes one) was echoed into an
# answer that cannot be UTF-8 encoded; a label_config with one made the XML parser raise UnicodeEncodeError.
@HOSTILE
@example(request=("/webhook", b'{"action": []}'))
@example(request=("/webhook", b'{"action": "\\ud800"}'))
@example(request=("/predict", json.dumps({"tasks": [], "label_config": "<View>\ud800</View>"}).encode()))
@given(request=bodies | raw_bodies)
def test_generated_bodies_get_an_answer_never_a_server_error(world, request):
    path, body = request
    _client_error_or_json(world.client.post(path, content=body, headers={**auth(), "Content-Type":
                                                                       "application/json"}))


# Found by this test (service/app/api.py): hmac.compare_digest refuses str with non-ASCII characters (TypeError, a
# 500) and a Basic password that is not UTF-8 was decoded before it was compared.
credentials = st.one_of(
    st.binary(max_size=40).map(lambda b: b"Bearer " + b.replace(b"\r", b"").replace(b"\n", b"")),
    st.binary(max_size=40).map(lambda b: b"Basic " + base64.b64encode(b)),
    st.text(max_size=20).map(lambda t: b"Basic " + base64.b64encode(f"{t}:{TOKEN[:-1]}".encode())),
    st.sampled_from([b"", b"Bearer", b"Bearer ", b"bearer " + TOKEN[:-1].encode(), b"Token " + TOKEN.upper().encode(),
                     b"Basic !!!", b"Basic " + base64.b64encode(b"user:"), TOKEN.encode(), b"Bearer \xe9\xff"]),
)


@HOSTILE
@example(header=b"Bearer \xe9", request=("/setup", b"{}"))
@example(header=b"Basic " + base64.b64encode(b"user:\xff\xfe"), request=("/setup", b"{}"))
@given(header=credentials, request=bodies)
def test_without_the_token_nothing_changes(locked, header, request):
    path, body = request
    before = locked.ledger_dump()
    headers = {"Content-Type": "application/json"}
    if header:
        headers["Authorization"] = header
    answer = locked.client.post(f"{path}?token={TOKEN}&api_key={TOKEN}", content=body, headers=headers)
    assert answer.status_code == 401, (answer.status_code, answer.text)  # a token in the query string is no token
    assert answer.json()["detail"] == "missing or wrong token" and answer.headers["www-authenticate"] == "Bearer"
    assert locked.ledger_dump() == before
    assert locked.cycles == [] and not locked.app.state.retrainer.busy


def test_nothing_was_scheduled_without_the_token_even_later(locked):
    time.sleep(0.3)  # debounce 0: a cycle scheduled by any of the requests above would have run by now
    assert locked.cycles == []
    assert locked.client.post("/webhook", json={"action": "START_TRAINING"}, headers=auth()).json()[
        "status"] == "scheduled"
    deadline = time.monotonic() + 5
    while not locked.cycles and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(locked.cycles) == 1  # the same API with the token does schedule


def test_the_token_is_compared_in_constant_time(world, monkeypatch):
    compared = []
    real = service.app.api.hmac.compare_digest

    def spy(a, b):
        compared.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(service.app.api.hmac, "compare_digest", spy)
    assert world.client.post("/setup", headers=auth()).status_code == 200
    assert world.client.post("/setup", headers=auth("wrong")).status_code == 401
    basic = base64.b64encode(f"labelstudio:{TOKEN}".encode()).decode()
    assert world.client.post("/setup", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert len(compared) >= 3 and all(kinds == (bytes, bytes) for kinds in compared)


def test_request_timings_are_labelled_by_route_not_by_any_path_a_caller_makes_up(world):
    for i in range(5):
        assert world.client.get(f"/no-such-{i}", headers=auth()).status_code == 404
    text = world.client.get("/metrics", headers=auth()).text
    assert "no-such" not in text  # a label per made-up path would grow the metrics without bound


# ---- the body limit, on a real server ---------------------------------------------------------------------------

class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def server(tmp_path):
    """The API on uvicorn on loopback, with uvicorn's loggers as `serve` has them (log_config=None: they go
    through ours), and the access log's lines collected."""
    world = _world(tmp_path, max_body_bytes=50_000)
    access = logging.getLogger("uvicorn.access")
    lines = _Lines()
    access.addHandler(lines)
    level = access.level
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(world.app, log_config=None, log_level="info"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield sock.getsockname()[1], world, lines
    srv.should_exit = True
    thread.join(5)
    access.removeHandler(lines)
    access.setLevel(level)


def _head(port: int, extra: str) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall((f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Type: application/json\r\n{extra}\r\n").encode())
    return conn


def _answer(conn: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the answer the server sends (without our sending anything more)."""
    def more() -> bytes:
        data = conn.recv(65536)
        assert data, "the server closed the connection without an answer"
        return data

    data = b""
    while b"\r\n\r\n" not in data:
        data += more()
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
        b"content-length")))
    while len(rest) < length:
        rest += more()
    return int(head.split()[1]), json.loads(rest[:length])


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read_whole(server):
    port, world, _ = server
    conn = _head(port, "Transfer-Encoding: chunked\r\n")
    chunk = b"x" * 4096
    sent = 0
    with conn:
        while sent <= 50_000 + len(chunk):  # just over the limit, of a body announced as endless
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        status, answer = _answer(conn)  # answered while the body goes on: no terminating chunk was sent
    assert status == 413 and "50000 bytes" in answer["detail"] and "max_body_bytes" in answer["detail"]
    under = requests.post(f"http://127.0.0.1:{port}/predict", headers=auth(),
                          data=iter([b'{"tasks": [{"id": 1, "data": {"text": "our cats"}}', b"]}"]))  # chunked
    assert under.status_code == 200 and under.json()["results"][0]["model_version"] == "v1"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(server):
    port, _, _ = server
    with _head(port, "Content-Length: 10000000\r\n") as conn:
        conn.sendall(b"{" + b" " * 1000)
        status, answer = _answer(conn)
    assert status == 413 and "max_body_bytes" in answer["detail"]


def test_a_token_in_the_query_string_is_not_written_to_the_access_log(server):
    port, _, lines = server
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging(environ={})  # what every command does first; `serve` then runs uvicorn with log_config=None
    try:
        for query in (f"token={TOKEN}", f"a=1&api_key={TOKEN}", TOKEN, f"x=%20{TOKEN}&token="):
            requests.get(f"http://127.0.0.1:{port}/health?{query}")
            requests.post(f"http://127.0.0.1:{port}/setup?{query}", headers=auth())
        deadline = time.monotonic() + 5
        while len(lines.lines) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert len(lines.lines) == 8, lines.lines
    assert not [line for line in lines.lines if TOKEN in line], lines.lines
    assert any('"GET /health?token=' in line and " 200" in line for line in lines.lines), lines.lines
