"""Label Studio's two forms of token against the real server: a Personal Access Token (the default: legacy tokens
off, as Label Studio 1.23.2 comes) and a legacy token (one server started with them on); each mistake a user makes
with them answered by a message that names the fix: a legacy token where legacy tokens are off, a PAT where PATs are
off, a revoked or an expired PAT, a secret file's line break, a URL behind a proxy with a path prefix, a wrong one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from connectors.errors import PlatformUnavailable
from connectors.label_studio_client import LEGACY, PAT, LabelStudioClient, LabelStudioError, TokenRefused
from label_studio_server import LabelStudioServer, ensure_label_studio, label_studio  # noqa: F401 - the fixture
from service.config import read_secrets

WHOAMI = "/api/current-user/whoami"


def whoami(client: LabelStudioClient) -> str:
    return client.call_object("GET", WHOAMI, "tell whose token it is")["email"]


def assert_secret_free(error: BaseException, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(error)
    assert "eyJ" not in str(error)  # no JWT, nor a part of one


@pytest.fixture(scope="module")
def legacy_on(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A second server, started with legacy tokens on (`--enable-legacy-api-token`): both forms work there."""
    with LabelStudioServer(tmp_path_factory.mktemp("ls-legacy"), executable=ensure_label_studio(),
                           legacy_token_flag=True) as server:
        yield server


class PrefixProxy:
    """A reverse proxy on loopback serving Label Studio under `prefix` (as nginx's `location /ls/ {proxy_pass
    http://ls/;}`), answering its own 404 page elsewhere; `paths` holds every path asked."""

    def __init__(self, upstream: str, prefix: str = "/ls/"):
        self.paths: list[str] = []
        proxy, session = self, requests.Session()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def _any(self):
                proxy.paths.append(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.startswith(prefix):
                    return self._answer(404, b"<html><body><h1>404 Not Found</h1>nginx</body></html>",
                                        "text/html")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream_answer = session.request(self.command, upstream + self.path[len(prefix) - 1:], data=body,
                                                  headers=headers, allow_redirects=False, timeout=60)
                self._answer(upstream_answer.status_code, upstream_answer.content,
                             upstream_answer.headers.get("Content-Type", ""))

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> PrefixProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_as_label_studio_comes_a_pat_works_and_a_legacy_token_is_told_what_to_do(label_studio):  # noqa: F811
    assert not label_studio.legacy_tokens and label_studio.token == label_studio.pat
    client = LabelStudioClient(label_studio.url, label_studio.pat)
    assert client.token_form == PAT and whoami(client) == LabelStudioServer.USERNAME
    sent = str(client.send("GET", WHOAMI).request.headers["Authorization"])
    assert sent.startswith("Bearer eyJ") and label_studio.pat not in sent  # an access token, not the PAT

    with pytest.raises(TokenRefused) as error:
        whoami(LabelStudioClient(label_studio.url, label_studio.legacy_token))
    assert str(error.value) == (
        f"Label Studio at {label_studio.url} refused the token (401): this server has legacy tokens off. Fix: use a"
        " Personal Access Token from Account & Settings as LABEL_STUDIO_API_KEY, or enable Legacy Tokens in"
        " Organization > API Tokens Settings.")
    assert_secret_free(error.value, label_studio.legacy_token)


def test_where_legacy_tokens_are_on_both_forms_work(legacy_on):
    assert legacy_on.legacy_tokens and legacy_on.token == legacy_on.legacy_token
    legacy = LabelStudioClient(legacy_on.url, legacy_on.legacy_token)
    assert legacy.token_form == LEGACY and whoami(legacy) == LabelStudioServer.USERNAME
    assert legacy.send("GET", WHOAMI).request.headers["Authorization"] == f"Token {legacy_on.legacy_token}"
    pat = LabelStudioClient(legacy_on.url, legacy_on.pat)
    assert whoami(pat) == LabelStudioServer.USERNAME


def test_a_pat_where_pats_are_off_is_told_what_to_do(legacy_on):
    legacy_on.jwt_settings(api_tokens_enabled=False)
    try:
        with pytest.raises(TokenRefused) as error:
            whoami(LabelStudioClient(legacy_on.url, legacy_on.pat))
        assert whoami(LabelStudioClient(legacy_on.url, legacy_on.legacy_token)) == LabelStudioServer.USERNAME
    finally:
        legacy_on.jwt_settings(api_tokens_enabled=True)
    assert str(error.value) == (
        f"Label Studio at {legacy_on.url} refused the token (401): this server has Personal Access Tokens off (it"
        " refused a fresh access token). Fix: use the legacy token from Account & Settings as LABEL_STUDIO_API_KEY,"
        " or enable Personal Access Tokens in Organization > API Tokens Settings.")
    assert_secret_free(error.value, str(legacy_on.pat))


def test_a_revoked_or_expired_pat_is_told_to_make_a_new_one(legacy_on):
    revoked = legacy_on.rotate_pat()  # Label Studio's own revocation: the old token blacklisted, a new one made
    claims = {"token_type": "refresh", "exp": int(time.time()) - 60, "iat": int(time.time()) - 3600,
              "jti": "0" * 32, "user_id": "1"}
    expired = legacy_on.signed_jwt(**claims)
    for pat, said in ((revoked, "Token is blacklisted"), (expired, "Token is expired")):
        with pytest.raises(TokenRefused) as error:
            whoami(LabelStudioClient(legacy_on.url, pat))
        assert str(error.value) == (
            f"Label Studio at {legacy_on.url} refused the token (401): the Personal Access Token was revoked, has"
            f" expired or is another server's (Label Studio says: {said}). Fix: create a new one in Account &"
            " Settings and set LABEL_STUDIO_API_KEY to it.")
        assert_secret_free(error.value, pat)
    assert whoami(LabelStudioClient(legacy_on.url, legacy_on.pat)) == LabelStudioServer.USERNAME  # the new one


def test_a_token_read_from_a_secret_file_or_a_variable_with_a_line_break(label_studio, tmp_path):  # noqa: F811
    secret = tmp_path / "label_studio_api_key"
    secret.write_text(label_studio.pat + "\n", encoding="utf-8")  # as `echo ... > file` and most editors write it
    from_file = read_secrets({"LABEL_STUDIO_API_KEY_FILE": str(secret)}).label_studio_api_key
    from_variable = read_secrets({"LABEL_STUDIO_API_KEY": label_studio.pat + "\n"}).label_studio_api_key
    for token in (from_file, from_variable):
        assert whoami(LabelStudioClient(label_studio.url + "/", token)) == LabelStudioServer.USERNAME


def test_behind_a_proxy_calls_go_under_its_path_prefix_and_a_wrong_url_is_named(label_studio, legacy_on):  # noqa: F811
    with PrefixProxy(label_studio.url) as proxy:
        client = LabelStudioClient(proxy.url + "/ls/", label_studio.pat)
        assert whoami(client) == LabelStudioServer.USERNAME
        assert [p.split("?")[0] for p in proxy.paths] == ["/ls/api/token/refresh/", f"/ls{WHOAMI}"]
        wrong_prefix = LabelStudioClient(proxy.url + "/label-studio/", label_studio.pat)
        with pytest.raises(LabelStudioError, match="does not look like Label Studio") as error:
            whoami(wrong_prefix)
        assert_secret_free(error.value, label_studio.pat)
    wrong = {  # Label Studio itself, asked under a path it does not serve: a 404 page, not its API's JSON
        "PAT": LabelStudioClient(label_studio.url + "/ls", label_studio.pat),
        "legacy": LabelStudioClient(legacy_on.url + "/ls", legacy_on.legacy_token),
    }
    for form, client in wrong.items():
        url = client.url
        with pytest.raises(LabelStudioError) as error:
            whoami(client)
        seen = "POST /api/token/refresh/ answered 404" if form == "PAT" else f"GET {WHOAMI} answered a 404 page"
        assert str(error.value).startswith(
            f"Label Studio at {url} does not look like Label Studio ({seen}). Fix: check --url (or"
            " LABEL_STUDIO_URL); behind a proxy it includes the path prefix Label Studio is served under, e.g."
            " http://host/label-studio."), form
        with pytest.raises(LabelStudioError, match="does not look like Label Studio"):
            client.wait_until_up(5)  # label-studio-init's first call: not taken for "up"
        with pytest.raises(LabelStudioError, match="does not look like Label Studio"):
            list(client.pages("/api/projects", "list projects"))
    with pytest.raises(LabelStudioError, match="could not read project 999999: not found"):  # the API's own 404
        LabelStudioClient(label_studio.url, label_studio.pat).call("GET", "/api/projects/999999", "read project 999999")


def test_a_pat_on_a_server_not_yet_up_is_polled_not_retried(caplog):
    client = LabelStudioClient("http://127.0.0.1:9", "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln")
    with pytest.raises(PlatformUnavailable, match="unreachable: no answer within 0 s"):
        client.wait_until_up(0)  # label-studio-init's wait: the exchange is asked as its call is, once per poll
    assert "retry" not in caplog.text
