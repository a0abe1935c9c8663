"""The one Label Studio client against a stub HTTP server on loopback: pagination, a refused token, retries that
run out, errors without secrets, waiting for a server that starts late; a Personal Access Token exchanged for access
tokens (when due, once more when refused, with the retry policy) beside a legacy token. The real server's answers
are in test_label_studio_tokens.py."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest

import connectors.retry
from conftest import JsonHandler, serving
from connectors.errors import PlatformUnavailable
from connectors.label_studio_client import (
    LEGACY,
    PAGE_SIZE,
    PAT,
    LabelStudioClient,
    LabelStudioError,
    TokenRefused,
    renew_at,
    token_form,
)
from connectors.label_studio_setup import _backend_refused_credentials

TOKEN, OTHER_SECRET = "ls-token-0123", "api-token-4567"


def jwt(**claims) -> str:
    """A JWT of `claims` with a made-up signature (the client reads, never checks, a token)."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLW9mLXRoZS1zdHVi"


PAT_TOKEN = jwt(token_type="refresh", exp=8103888086, iat=1796688086, jti="pat-1", user_id="1")


class Stub(JsonHandler):
    calls: list[str] = []
    headers_seen: list[str] = []  # the Authorization header of each call
    failures = 0  # answer 503 to this many requests first
    refresh_failures = 0  # answer 503 to this many exchanges first
    refresh_bodies: list[dict] = []  # the body of each exchange
    access_lifetime = 300  # seconds, as Label Studio 1.23.2's
    valid_access: set[str] = set()  # the access tokens the stub honours
    revoked = legacy_off = jwt_off = False

    def do_POST(self):  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/api/token/refresh/":
            return self.reply(404, {"detail": "Not found."})
        Stub.refresh_bodies.append(body)
        if Stub.refresh_failures:
            Stub.refresh_failures -= 1
            return self.reply(503, {"detail": "starting"})
        if body.get("refresh") != PAT_TOKEN or Stub.revoked:
            return self.reply(401, {"detail": "Token is blacklisted"})
        access = jwt(token_type="access", iat=1796688086, exp=1796688086 + Stub.access_lifetime,
                     jti=f"access-{len(Stub.refresh_bodies)}")
        Stub.valid_access.add(access)
        return self.reply(200, {"access": access})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization") or ""
        Stub.headers_seen.append(header)
        if header == f"Token {TOKEN}":
            if Stub.legacy_off:
                self.reply(401, {"detail": "Authentication token no longer valid: legacy token authentication has"
                                           " been disabled for this organization"})
                return False
            return True
        if header.startswith("Bearer ") and header[7:] in Stub.valid_access and not Stub.jwt_off:
            return True
        detail = "Invalid token." if header.startswith("Token ") else "Authentication credentials were not provided."
        self.reply(401, {"detail": detail})
        return False

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        Stub.calls.append(self.path)
        if not self._authorized():
            return None
        if Stub.failures:
            Stub.failures -= 1
            return self.reply(503, {"detail": "starting"})
        page = int(query.get("page", 1))
        if url.path == "/api/tasks":  # 250 tasks; 404 past the last page
            ids = list(range((page - 1) * PAGE_SIZE, min(250, page * PAGE_SIZE)))
            return self.reply(200, {"tasks": [{"id": i} for i in ids]}) if ids else self.reply(404, {})
        if url.path == "/api/projects":  # 120 projects, "next" on all but the last page
            ids = list(range((page - 1) * PAGE_SIZE, min(120, page * PAGE_SIZE)))
            return self.reply(200, {"results": [{"id": i} for i in ids], "next": "more" if page == 1 else None})
        return self.reply(400, {"validation_errors": {"non_field_errors": [f"bad request, token {OTHER_SECRET}"]}})


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setattr(connectors.retry, "MAX_WAIT_SECONDS", 0.05)
    Stub.calls, Stub.headers_seen, Stub.refresh_bodies, Stub.valid_access = [], [], [], set()
    Stub.failures = Stub.refresh_failures = 0
    Stub.access_lifetime, Stub.revoked, Stub.legacy_off, Stub.jwt_off = 300, False, False, False
    with serving(Stub) as url:
        yield url


def test_pages_of_both_kinds(stub):
    client = LabelStudioClient(stub, TOKEN)
    assert [t["id"] for t in client.pages("/api/tasks", "list tasks", project=1)] == list(range(250))
    assert [p["id"] for p in client.pages("/api/projects", "list projects")] == list(range(120))
    assert sum("/api/projects" in c for c in Stub.calls) == 2  # stopped by "next", not by asking for a third page


def test_refused_token_missing_settings_and_errors_without_secrets(stub):
    with pytest.raises(TokenRefused, match=r"refused the token \(401\): Invalid token\. Fix: check LABEL_STUDIO_API"):
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


# ---- the two forms of token ----------------------------------------------------------------------------------------

def test_the_form_of_the_token_decides_and_what_no_token_looks_like_is_refused():
    assert token_form(PAT_TOKEN) == PAT and token_form("0123456789abcdef" * 2 + "01234567") == LEGACY
    assert token_form(TOKEN) == LEGACY  # LABEL_STUDIO_USER_TOKEN may set any legacy token
    header, payload, _signature = PAT_TOKEN.split(".")
    for bad, fix in ((f"{header}.{payload}", "without its last part"), (PAT_TOKEN[:40] + "…", "characters no token"),
                     ("two words", "characters no token")):
        with pytest.raises(LabelStudioError, match=fix) as error:
            LabelStudioClient("http://127.0.0.1:9", bad)
        assert bad not in str(error.value) and payload not in str(error.value)


def test_an_access_token_is_renewed_a_minute_before_it_expires_by_its_own_lifetime():
    assert renew_at(jwt(iat=1000, exp=1300), now=50.0) == 50 + 300 - 60  # the clocks need not agree
    assert renew_at(jwt(iat=1000, exp=1020), now=50.0) == 50 + 20 - 10  # a short life: at half of it
    assert renew_at("not.a.jwt", now=50.0) == 50.0  # unreadable: renewed before the next call


def test_a_pat_is_exchanged_once_and_sent_as_a_bearer_access_token(stub):
    client = LabelStudioClient(stub, PAT_TOKEN + "\n")  # a line break, as a secret file or `echo` leaves it
    assert len(list(client.pages("/api/tasks", "list tasks"))) == 250
    assert len(list(client.pages("/api/projects", "list projects"))) == 120
    assert Stub.refresh_bodies == [{"refresh": PAT_TOKEN}]  # one exchange for five calls
    (access,) = Stub.valid_access
    assert Stub.headers_seen == [f"Bearer {access}"] * 5  # the PAT itself only ever in the exchange's body
    Stub.access_lifetime = 0  # access tokens due at once: exchanged before each call
    client = LabelStudioClient(stub, PAT_TOKEN)
    for _ in range(3):
        client.call("GET", "/api/projects", "list projects")
    assert len(Stub.refresh_bodies) == 4 and len(set(Stub.headers_seen[5:])) == 3


def test_a_refused_access_token_is_exchanged_once_more_then_reported(stub):
    client = LabelStudioClient(stub, PAT_TOKEN)
    client.call("GET", "/api/projects", "list projects")
    Stub.valid_access.clear()  # the server no longer honours the access token it gave (restarted with a new key)
    assert client.call("GET", "/api/projects", "list projects")
    assert len(Stub.refresh_bodies) == 2
    Stub.jwt_off = True  # a fresh access token refused too: the server takes no Personal Access Token
    with pytest.raises(TokenRefused, match="this server has Personal Access Tokens off .*Fix: use the legacy token"
                                           ".*or enable Personal Access Tokens in Organization > API Tokens Settings"):
        client.call("GET", "/api/projects", "list projects")
    assert len(Stub.refresh_bodies) == 3  # once more, not in a loop
    Stub.revoked = True
    with pytest.raises(TokenRefused, match=r"refused the token \(401\): the Personal Access Token was revoked.*"
                                           r"\(Label Studio says: Token is blacklisted\)\. Fix: create a new one"):
        LabelStudioClient(stub, PAT_TOKEN).call("GET", "/api/projects", "list projects")


def test_a_legacy_token_where_legacy_tokens_are_off_names_both_fixes(stub):
    Stub.legacy_off = True
    with pytest.raises(TokenRefused) as error:
        LabelStudioClient(stub, TOKEN).call("GET", "/api/projects", "list projects")
    assert str(error.value) == (
        f"Label Studio at {stub} refused the token (401): this server has legacy tokens off. Fix: use a Personal"
        " Access Token from Account & Settings as LABEL_STUDIO_API_KEY, or enable Legacy Tokens in Organization >"
        " API Tokens Settings.")
    assert not Stub.refresh_bodies


def test_the_exchange_follows_the_retry_policy_and_logs_no_token(stub, caplog):
    caplog.set_level(logging.DEBUG)
    Stub.refresh_failures = 2
    client = LabelStudioClient(stub, PAT_TOKEN)
    assert client.call("GET", "/api/projects", "list projects")
    assert len(Stub.refresh_bodies) == 3 and "POST /api/token/refresh/ (a new access token) failed" in caplog.text
    Stub.refresh_failures = 100
    with pytest.raises(PlatformUnavailable, match=f"Label Studio at {stub} is unavailable") as error:
        LabelStudioClient(stub, PAT_TOKEN).call("GET", "/api/projects", "list projects")
    assert len(Stub.refresh_bodies) == 3 + connectors.retry.ATTEMPTS
    for secret in (PAT_TOKEN, *Stub.valid_access, "eyJ"):
        assert secret not in caplog.text and secret not in str(error.value)
