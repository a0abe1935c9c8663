"""The one Label Studio client against a stub HTTP server on loopback: pagination, a refused token, retries that
run out, errors without secrets, waiting for a server that starts late."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

import connectors.retry
from connectors.errors import PlatformUnavailable
from connectors.label_studio_client import PAGE_SIZE, LabelStudioClient, LabelStudioError, TokenRefused
from connectors.label_studio_setup import _backend_refused_credentials

TOKEN, OTHER_SECRET = "ls-token-0123", "api-token-4567"


class Stub(BaseHTTPRequestHandler):
    calls: list[str] = []
    failures = 0  # answer 503 to this many requests first

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        Stub.calls.append(self.path)
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            return self._send(401, {"detail": "Invalid token."})
        if Stub.failures:
            Stub.failures -= 1
            return self._send(503, {"detail": "starting"})
        page = int(query.get("page", 1))
        if url.path == "/api/tasks":  # 250 tasks; 404 past the last page
            ids = list(range((page - 1) * PAGE_SIZE, min(250, page * PAGE_SIZE)))
            return self._send(200, {"tasks": [{"id": i} for i in ids]}) if ids else self._send(404, {})
        if url.path == "/api/projects":  # 120 projects, "next" on all but the last page
            ids = list(range((page - 1) * PAGE_SIZE, min(120, page * PAGE_SIZE)))
            return self._send(200, {"results": [{"id": i} for i in ids], "next": "more" if page == 1 else None})
        return self._send(400, {"validation_errors": {"non_field_errors": [f"bad request, token {OTHER_SECRET}"]}})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args):
        pass


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setattr(connectors.retry, "MAX_WAIT_SECONDS", 0.05)
    Stub.calls, Stub.failures = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_pages_of_both_kinds(stub):
    client = LabelStudioClient(stub, TOKEN)
    assert [t["id"] for t in client.pages("/api/tasks", "list tasks", project=1)] == list(range(250))
    assert [p["id"] for p in client.pages("/api/projects", "list projects")] == list(range(120))
    assert sum("/api/projects" in c for c in Stub.calls) == 2  # stopped by "next", not by asking for a third page


def test_refused_token_missing_settings_and_errors_without_secrets(stub):
    with pytest.raises(TokenRefused, match="refused the token \\(401\\).*LABEL_STUDIO_API_KEY"):
        LabelStudioClient(stub, "wrong").call("GET", "/api/projects/1", "read project 1")
    with pytest.raises(LabelStudioError, match="no Label Studio URL"):
        LabelStudioClient(None, TOKEN)
    with pytest.raises(LabelStudioError, match="no Label Studio token"):
        LabelStudioClient(stub, None)
    client = LabelStudioClient(stub, TOKEN, redact=[OTHER_SECRET])
    with pytest.raises(LabelStudioError) as error:
        client.call("GET", "/api/other", "do something")
    assert "could not do something (400: bad request, token ***)" in str(error.value)
    assert TOKEN not in repr(client) and OTHER_SECRET not in str(error.value)


def test_transient_failures_are_retried_then_reported_as_unavailable(stub):
    client = LabelStudioClient(stub, TOKEN)
    Stub.failures = 2
    assert len(list(client.pages("/api/tasks", "list tasks"))) == 250  # two 503s, then the answers
    Stub.failures = 100
    with pytest.raises(PlatformUnavailable, match=f"Label Studio at {stub} is unavailable"):
        client.call("GET", "/api/tasks", "list tasks")
    assert Stub.failures == 100 - connectors.retry.ATTEMPTS
    with pytest.raises(PlatformUnavailable, match="unreachable: no answer within 0 s"):
        LabelStudioClient("http://127.0.0.1:9", TOKEN).wait_until_up(0)


def test_a_backend_refusal_is_told_from_an_address_holding_401():
    assert _backend_refused_credentials("Can't connect: 401 Unauthorized")
    assert _backend_refused_credentials("the backend requires Authentication")
    assert not _backend_refused_credentials("Can't connect to ML backend http://127.0.0.1:36401/, health check failed")
