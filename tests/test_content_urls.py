"""Texts given as URLs are fetched safely (connectors.content): http(s) only, from the platform's own address or
[security] allowed_content_hosts only, redirects checked hop by hop, a size cap and a time limit; a refused URL is a
counted skip naming the asset, never a crash, and the rest of the pull goes on (Kili emulator, Label Studio)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import SecretStr, ValidationError

import label_studio_server
from connectors import content, retry
from connectors.base import SkipLog
from connectors.content import Address, ContentError, ContentPolicy, address, fetch_or_skip, fetch_text
from connectors.label_studio import LabelStudioConnector
from connectors.label_studio_client import LabelStudioClient
from connectors.label_studio_schema import parse_label_config
from connectors.settings import KiliSettings, LabelStudioSettings, SecuritySettings
from service.app.factory import build_connector
from service.config import ConfigError, Secrets, load_settings

label_studio = label_studio_server.label_studio  # the session fixture: only the last test starts the server
TOKEN = "s3cret-token"
KEY = "test-key-0123"
GOOD = "a good text about animal welfare"
URL_CONFIG = ('<View><Text name="text" value="$text" valueType="url"/><Choices name="subject" toName="text">'
              '<Choice value="Animals" alias="AN"/><Choice value="Health" alias="HE"/></Choices></View>')
PLAIN_CONFIG = URL_CONFIG.replace(' valueType="url"', "")


# ---- a small web site on loopback ---------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server: _Site

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append((url.path, dict(self.headers)))
        route = getattr(self, "_" + url.path.strip("/").replace("/", "_").replace(".", "_"), None)
        if route is None:
            return self._answer(404, b"not found")
        route(query)

    def _answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _good_txt(self, _query: dict) -> None:
        self._answer(200, GOOD.encode(), **{"Content-Type": "text/plain; charset=utf-8"})

    def _upload_txt(self, _query: dict) -> None:  # like Label Studio's /data/upload/...: the token is needed
        ok = self.headers.get("Authorization") == f"Token {TOKEN}"
        self._answer(200 if ok else 401, b"the uploaded text" if ok else b"no")

    def _redirect(self, query: dict) -> None:
        self._answer(302, b"", Location=query["to"])

    def _loop(self, _query: dict) -> None:
        self._answer(302, b"", Location="/loop")

    def _huge(self, _query: dict) -> None:  # streamed, no length: only the cap stops the reader
        self.send_response(200)
        self.end_headers()
        for _ in range(64):
            self.wfile.write(b"x" * 65536)
            self.wfile.flush()

    def _declared(self, _query: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5000000")
        self.end_headers()
        self.wfile.write(b"x" * 100)

    def _slow(self, query: dict) -> None:
        if query.get("where") == "headers":
            time.sleep(3)
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.flush()
        time.sleep(3)
        self.wfile.write(b"late")

    def _drip(self, _query: dict) -> None:  # a byte at a time: each read is quick, the whole answer is not
        self.send_response(200)
        self.send_header("Content-Length", "60")
        self.end_headers()
        for _ in range(60):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)

    def _latin1(self, _query: dict) -> None:
        self._answer(200, "café crème".encode("latin-1"))

    def _fails(self, _query: dict) -> None:
        self._answer(503, b"down")

    # Label Studio's API, the part the connector calls
    def _api_projects_1(self, _query: dict) -> None:
        self._answer(200, json.dumps({"label_config": self.server.label_config}).encode())

    def _api_tasks(self, _query: dict) -> None:
        self._answer(200, json.dumps({"tasks": self.server.tasks}).encode())


class _Site(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict]] = []
        self.label_config, self.tasks = URL_CONFIG, []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.port = self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that stopped reading (the cap, a timeout) breaks the pipe: expected

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@contextmanager
def _serving() -> Iterator[_Site]:
    site = _Site()
    threading.Thread(target=site.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield site
    finally:
        site.shutdown()
        site.server_close()


@pytest.fixture
def site():
    with _serving() as served:
        yield served


@pytest.fixture
def other():
    """Another web server on loopback, on another port: not the platform."""
    with _serving() as served:
        yield served


def _policy(site: _Site, **security) -> ContentPolicy:
    return ContentPolicy.of(site.url, SecuritySettings(**{"max_content_bytes": 10_000,
                                                          "content_timeout_seconds": 0.5, **security}))


# ---- the guard ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, why", [
    ("http://10.0.0.1/a.txt", "10.0.0.1:80 is a private address"),
    ("http://192.168.1.1/a.txt", "192.168.1.1:80 is a private address"),
    ("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254:80 is a link-local address"),
    ("http://[::1]:8080/a.txt", r"\[::1\]:8080 is a loopback address"),
    ("http://127.0.0.1:9999/a.txt", "127.0.0.1:9999 is a loopback address"),  # the platform's host, another port
    ("http://localhost:8080/a.txt", "localhost:8080 is a loopback address"),
    ("http://[::ffff:169.254.169.254]/", r"\[::ffff:169.254.169.254\]:80 is a link-local address"),
    ("http://0.0.0.0:8080/", "0.0.0.0:8080 is a private address"),
    ("http://100.64.0.1/", "100.64.0.1:80 is a non-public address"),
    ("http://example.com/a.txt", r"example.com:80 is not the platform's address \(127.0.0.1:8080\)"),
    ("http://127.0.0.1:8080@example.com/", "example.com:80 is not the platform's address"),
    ("ftp://127.0.0.1:8080/a.txt", "scheme 'ftp', only http and https"),
    ("file:///etc/passwd", "scheme 'file', only http and https"),
    ("gopher://127.0.0.1:8080/", "scheme 'gopher'"),
    ("http:///a.txt", "it names no host"),
    ("http://127.0.0.1:99999/", "its port is not valid"),
])
def test_the_guard_refuses_other_schemes_and_hosts_and_says_why(url, why):
    policy = ContentPolicy(address("http://127.0.0.1:8080/api/label/v2/graphql"))
    assert policy.check("http://127.0.0.1:8080/api/label/v2/files?id=1") == Address("127.0.0.1", 8080)
    with pytest.raises(ContentError, match=f"content URL refused: {why}") as refused:
        policy.check(url)
    assert "Fix: " in refused.value.reason


def test_the_platform_is_its_host_and_port_and_a_redirect_is_named():
    kili = ContentPolicy.of("https://cloud.kili-technology.com/api/label/v2/graphql", SecuritySettings())
    assert kili.check("https://cloud.kili-technology.com/api/label/v2/files?id=x").port == 443
    assert kili.check("https://CLOUD.kili-technology.com:443/x").host == "cloud.kili-technology.com"
    for url in ("http://cloud.kili-technology.com/api/label/v2/files?id=x",  # no downgrade to plain http
                "https://cloud.kili-technology.com.example.com/x", "https://storage.googleapis.com/bucket/x"):
        with pytest.raises(ContentError, match="not the platform's address .cloud.kili-technology.com:443."):
            kili.check(url)
    with pytest.raises(ContentError, match="refused: a redirect to 169.254.169.254:80 is a link-local"):
        kili.check("http://169.254.169.254/", redirected=True)


def test_allowed_content_hosts_let_those_through(monkeypatch):
    policy = ContentPolicy.of("http://127.0.0.1:8080", SecuritySettings(allowed_content_hosts=(
        "10.0.0.1", "127.0.0.1:9999", "Files.Example.com:443", "[::1]:8081", "*.cdn.example.net")))
    for url in ("http://10.0.0.1/a", "https://10.0.0.1:8443/a", "http://127.0.0.1:9999/a",
                "https://files.example.com/a", "http://[::1]:8081/a"):
        policy.check(url)
    for url in ("http://127.0.0.1:9998/a", "http://files.example.com/a", "http://10.0.0.2/a", "http://[::1]:8082/a",
                "https://cdn.example.net/a"):  # a wildcard is for the subdomains
        with pytest.raises(ContentError):
            policy.check(url)

    # A name under a wildcard entry must resolve to public addresses only (its DNS could point anywhere).
    answers = {"eu.cdn.example.net": "93.184.216.34", "inside.cdn.example.net": "10.1.2.3"}

    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(content.socket, "getaddrinfo", getaddrinfo)
    assert policy.check("https://eu.cdn.example.net/a.txt").host == "eu.cdn.example.net"
    with pytest.raises(ContentError, match="inside.cdn.example.net resolves to 10.1.2.3, a private address"):
        policy.check("https://inside.cdn.example.net/a.txt")


def test_the_security_settings_defaults_and_checks():
    default = SecuritySettings()
    assert (default.allowed_content_hosts, default.max_content_bytes, default.content_timeout_seconds) == \
        ((), 1_048_576, 30.0)
    settings = load_settings(None, {"security": {"allowed_content_hosts": [" Files.Example.com ", "*.s3.example"],
                                                 "max_content_bytes": 2000}})
    assert settings.security.allowed_content_hosts == ("files.example.com", "*.s3.example")
    for bad, why in (("https://files.example.com/", "a scheme or path"), ("files:x", "a port that is not a number"),
                     ("files.*.com", "a wildcard not at the start"), ("", "no host")):
        with pytest.raises(ConfigError, match=f"security.allowed_content_hosts: .*{why}"):
            load_settings(None, {"security": {"allowed_content_hosts": [bad]}})
    with pytest.raises(ValidationError):
        SecuritySettings(content_timeout_seconds=0)


# ---- fetching -----------------------------------------------------------------------------------------------------

def test_a_good_text_and_redirects_on_the_platform_are_fetched(site):
    policy, session = _policy(site), requests.Session()
    assert fetch_text(f"{site.url}/good.txt", session, policy) == GOOD
    assert fetch_text(f"{site.url}/redirect?to=/good.txt", session, policy) == GOOD
    assert site.paths() == ["/good.txt", "/redirect", "/good.txt"]
    with pytest.raises(ContentError, match="more than 3 redirects"):
        fetch_text(f"{site.url}/loop", session, policy)
    assert site.paths().count("/loop") == 4


def test_a_redirect_to_another_host_is_not_followed(site, other):
    policy, session = _policy(site), requests.Session()
    for target in (f"{other.url}/good.txt", "http://169.254.169.254/latest/meta-data/", "http://files.example/x",
                   f"http://127.0.0.2:{site.port}/good.txt"):
        with pytest.raises(ContentError, match="content URL refused: a redirect to .* Fix: add it to"):
            fetch_text(f"{site.url}/redirect?to={target}", session, policy)
    assert other.requests == [] and site.paths() == ["/redirect"] * 4


def test_an_allowed_other_host_gets_no_credentials(site, other):
    session = requests.Session()
    session.headers["Authorization"] = f"Token {TOKEN}"
    policy = _policy(site, allowed_content_hosts=(f"127.0.0.1:{other.port}",))
    assert fetch_text(f"{site.url}/redirect?to={other.url}/good.txt", session, policy) == GOOD
    assert fetch_text(f"{site.url}/upload.txt", session, policy) == "the uploaded text"
    assert "Authorization" not in other.requests[0][1]
    assert site.requests[0][1]["Authorization"] == f"Token {TOKEN}"


def test_the_size_cap_and_the_time_limit(site):
    policy, session = _policy(site), requests.Session()
    started = time.monotonic()
    with pytest.raises(ContentError, match=r"larger than \[security\] max_content_bytes \(10000 bytes\)"):
        fetch_text(f"{site.url}/huge", session, policy)  # 4 MB streamed: reading stops at the cap
    with pytest.raises(ContentError, match="larger than"):
        fetch_text(f"{site.url}/declared", session, policy)  # refused on its Content-Length
    assert time.monotonic() - started < 5
    for where in ("headers", "body"):
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            fetch_text(f"{site.url}/slow?where={where}", session, policy)
        assert time.monotonic() - started < 2
    started = time.monotonic()
    with pytest.raises(requests.Timeout, match=r"longer than 0.5 s \(\[security\] content_timeout_seconds\)"):
        fetch_text(f"{site.url}/drip", session, policy)  # each byte in time, the whole answer not
    assert time.monotonic() - started < 2


def test_each_failure_is_a_counted_skip(site, other, monkeypatch):
    monkeypatch.setattr(retry, "ATTEMPTS", 2)
    monkeypatch.setattr(retry, "MAX_WAIT_SECONDS", 0.1)
    skipped, session, policy = SkipLog(), requests.Session(), _policy(site)
    for name, path in (("good", "/good.txt"), ("latin1", "/latin1"), ("missing", "/nope"), ("down", "/fails"),
                       ("slow", "/slow?where=headers"), ("huge", "/huge")):
        text = fetch_or_skip(site.url + path, session, policy, skipped, f"asset {name}", "the site")
        assert (text == GOOD) == (name == "good")
    fetch_or_skip(f"{other.url}/good.txt", session, policy, skipped, "asset elsewhere", "the site")
    assert skipped.places == {
        "text is not valid UTF-8": ["asset latin1"],
        "text could not be downloaded (HTTP 404)": ["asset missing"],
        "text could not be downloaded (HTTP 503, also after retries)": ["asset down"],
        "text could not be downloaded (ReadTimeout, also after retries)": ["asset slow"],
        "text is larger than [security] max_content_bytes (10000 bytes). Fix: raise max_content_bytes if such texts"
        " are expected": ["asset huge"],
        f"content URL refused: 127.0.0.1:{other.port} is a loopback address, not the platform's (127.0.0.1:"
        f"{site.port}). Fix: add it to [security] allowed_content_hosts if it is trusted": ["asset elsewhere"],
    }
    assert site.paths().count("/fails") == 2 and other.requests == []


# ---- Kili, end to end on the emulator -----------------------------------------------------------------------------

@pytest.fixture
def emulator(tmp_path, monkeypatch):
    from kili_emulator import KiliEmulator, isolate_kili_sdk
    from kili_project import interface, ukcat_taxonomy

    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    with KiliEmulator(api_key=KEY, project_id="p1", json_interface=interface(ukcat_taxonomy())) as emu:
        yield emu


def test_kili_assets_with_content_elsewhere_are_skipped_and_the_rest_pulled(emulator, other, tmp_path, caplog):
    from connectors.kili import KiliConnector

    for i in range(3):
        emulator.add_asset(f"good-{i}", f"{GOOD} {i}")
    emulator.add_asset("meta", "x")["content"] = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    emulator.add_asset("elsewhere", "x")["content"] = f"{other.url}/good.txt"
    emulator.add_asset("inline", "x")["content"] = "an inline text, no URL"
    connector = KiliConnector(KiliSettings(project_id="p1", endpoint=emulator.endpoint), SecretStr(KEY))
    with caplog.at_level(logging.WARNING):
        pulled = {a.id: a.text for a in connector.pull(None).assets}
    assert pulled == {**{f"good-{i}": f"{GOOD} {i}" for i in range(3)}, "inline": "an inline text, no URL"}
    platform = emulator.base_url.split("/")[2]
    assert connector.skipped.places == {
        f"content URL refused: 169.254.169.254:80 is a link-local address, not the platform's ({platform}). Fix:"
        " add it to [security] allowed_content_hosts if it is trusted": ["asset meta"],
        f"content URL refused: 127.0.0.1:{other.port} is a loopback address, not the platform's ({platform}). Fix:"
        " add it to [security] allowed_content_hosts if it is trusted": ["asset elsewhere"],
    }
    assert "kili project p1: skipped 1 record(s): content URL refused: 169.254.169.254:80" in caplog.text
    assert other.requests == [] and emulator.calls("files") == 3

    # Allowed in [security] (through the factory, as the worker builds it): fetched, without the API key.
    settings = load_settings(None, {"platform": "kili", "state_dir": str(tmp_path / "state"),
                                    "kili": {"project_id": "p1", "endpoint": emulator.endpoint},
                                    "security": {"allowed_content_hosts": [f"127.0.0.1:{other.port}"]}})
    allowed = build_connector(settings, Secrets(kili_api_key=KEY))
    pulled = {a.id: a.text for a in allowed.pull(None).assets}
    assert pulled["elsewhere"] == GOOD and "meta" not in pulled and len(pulled) == 5
    assert [path for path, _ in other.requests] == ["/good.txt"]
    assert not any(KEY in value for value in other.requests[0][1].values())


# ---- Label Studio: a Text object with valueType="url" ----------------------------------------------------------

class _Texts:
    def __init__(self, known: dict[tuple[str, str], str]):
        self.known = known

    def cached_text(self, asset_id: str, version: str) -> str | None:
        return self.known.get((asset_id, version))


def test_label_studio_url_texts_are_fetched_with_the_guard(site, other):
    assert parse_label_config(URL_CONFIG).text_is_url and not parse_label_config(PLAIN_CONFIG).text_is_url
    values = ["/upload.txt", "/good.txt", "http://169.254.169.254/latest/meta-data/", f"{other.url}/good.txt",
              "s3://bucket/key.txt", "/latin1", "plain words"]
    site.tasks = [{"id": i + 1, "data": {"text": v}, "annotations": []} for i, v in enumerate(values)]
    connector = LabelStudioConnector(LabelStudioSettings(project_id=1), LabelStudioClient(site.url, TOKEN))
    cache = _Texts({("2", f"{site.url}/good.txt"): "the cached text"})
    pulled = {a.id: (a.text, a.version) for a in connector.pull(None, cache).assets}
    assert pulled == {"1": ("the uploaded text", f"{site.url}/upload.txt"),  # with the token, on the server
                      "2": ("the cached text", f"{site.url}/good.txt")}
    assert connector.skipped.places == {
        "content URL refused: 169.254.169.254:80 is a link-local address, not the platform's"
        f" (127.0.0.1:{site.port}). Fix: add it to [security] allowed_content_hosts if it is trusted": ["task 3"],
        f"content URL refused: 127.0.0.1:{other.port} is a loopback address, not the platform's"
        f" (127.0.0.1:{site.port}). Fix: add it to [security] allowed_content_hosts if it is trusted": ["task 4"],
        "content URL refused: scheme 's3', only http and https are fetched. Fix: give the text inline or at an"
        " http(s) URL": ["task 5"],
        "text is not valid UTF-8": ["task 6"],
        "text could not be downloaded (HTTP 404)": ["task 7"],  # a relative URL on the server, as a browser reads it
    }
    assert other.requests == [] and "/good.txt" not in site.paths()

    # Without valueType="url" a value is the text, whatever it looks like.
    site.label_config, site.requests = PLAIN_CONFIG, []
    plain = LabelStudioConnector(LabelStudioSettings(project_id=1), LabelStudioClient(site.url, TOKEN))
    assert [a.text for a in plain.pull(None).assets] == values and not plain.skipped.counts
    assert site.paths() == ["/api/projects/1", "/api/tasks"]


def test_label_studio_uploaded_text_files_are_read(label_studio):
    """On the real server: a .txt file imported as one task (the import dialog's "each file is a task") is a task
    holding /data/upload/..., which Label Studio serves with the token only; a task pointing at the cloud metadata
    address is skipped."""
    project = label_studio.client.create_project("url texts", URL_CONFIG)["id"]
    uploaded = label_studio.client.request(
        "POST", f"/api/projects/{project}/import", params={"commit_to_project": "false"},
        files={"file": ("note.txt", b"an uploaded note about animals", "text/plain")}).json()
    label_studio.client.request("POST", f"/api/projects/{project}/reimport", json={
        "file_upload_ids": uploaded["file_upload_ids"], "files_as_tasks_list": False})
    label_studio.client.import_tasks(project, [{"data": {"text": "http://169.254.169.254/latest/meta-data/"}}])
    connector = LabelStudioConnector(LabelStudioSettings(project_id=project),
                                     LabelStudioClient(label_studio.url, label_studio.token))
    pulled = list(connector.pull(None).assets)
    assert [a.text for a in pulled] == ["an uploaded note about animals"]
    assert "/data/upload/" in pulled[0].version
    [(reason, places)] = connector.skipped.places.items()
    assert reason.startswith("content URL refused: 169.254.169.254:80 is a link-local address") and len(places) == 1


@pytest.mark.parametrize("server, value, url", [
    ("http://ls:8080", "/data/upload/1/a.txt", "http://ls:8080/data/upload/1/a.txt"),
    ("http://ls:8080/", " data/upload/1/a.txt ", "http://ls:8080/data/upload/1/a.txt"),
    # Behind a proxy at a path prefix: Label Studio's own paths go under it, once.
    ("http://host/ls", "/data/upload/1/a.txt", "http://host/ls/data/upload/1/a.txt"),
    ("http://host/ls/", "/ls/data/upload/1/a.txt", "http://host/ls/data/upload/1/a.txt"),
    ("http://host/ls", "https://files.example.com/a.txt", "https://files.example.com/a.txt"),
    ("http://host/ls", "//files.example.com/a.txt", "http://files.example.com/a.txt"),
])
def test_a_label_studio_text_url_resolves_as_the_browser_does_under_a_path_prefix(server, value, url):
    from connectors.label_studio import data_url

    assert data_url(server, value) == url
