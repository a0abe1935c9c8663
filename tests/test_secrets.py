"""Secrets never leave: each command runs with known secret values (the Kili API key, the Label Studio tokens, the
API's token, also sent as a basic-auth password and in a query string), and everything it wrote is searched for them:
stdout, stderr (plain and JSON logs, tracebacks included), and every file of the state folder (ledger, meta.json,
reports, cycle logs). Label Studio's access tokens, which the commands obtain for its Personal Access Token and send
as `Authorization: Bearer`, are unknown here: no JWT of any kind may appear."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from kili_emulator import KiliEmulator, isolate_kili_sdk
from kili_project import fill, interface, ukcat_taxonomy
from label_studio_server import free_port, label_studio  # noqa: F401 - label_studio: the session fixture

CLI = str(Path(sys.executable).parent / "classie-automl")
KILI_KEY = "kili-key-S3CRET-4f1d9"
WRONG_KILI_KEY = "kili-key-MISTYPED-77c2"  # a mistyped key is a secret too
API_TOKEN = "api-token-S3CRET-b81e"


def forms(secret: str) -> list[bytes]:
    """The secret as written, URL-encoded, and inside a basic-auth header."""
    return [secret.encode(), quote(secret).encode(),
            *(base64.b64encode(f"{user}:{secret}".encode()) for user in ("", "classie", "user"))]


# How every JWT Label Studio signs begins: base64url of '{"alg":' (its Personal Access Tokens, their access tokens)
JWT_START = b"eyJhbGciOi"


def assert_nowhere(secrets: list[str], outputs: list[str], folders: list[Path]) -> int:
    """No form of any secret, nor any JWT, in the outputs or in any file under the folders; returns how many files
    were read."""
    read = 0
    for out in outputs:
        for secret in secrets:
            assert not any(f in out.encode() for f in forms(secret)), f"{secret!r} in output:\n{out[-3000:]}"
        assert JWT_START not in out.encode(), f"a JWT in output:\n{out[-3000:]}"
    for folder in folders:
        for path in (p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            read += 1
            for secret in secrets:
                assert not any(f in data for f in forms(secret)), f"{secret!r} written in {path}"
            assert JWT_START not in data, f"a JWT written in {path}"
    return read


def run(*args: str, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert (done.returncode == 0) == ok, f"{args}: exit {done.returncode}\n" + "\n".join(
        line for line in done.stderr.splitlines() if " DEBUG " not in line)[-4000:]
    return done


def serve_and_ask(args: list[str], env: dict) -> str:
    """`serve` answering a few requests: right and wrong tokens, bearer, basic auth and query string."""
    port = free_port()
    server = subprocess.Popen([CLI, "serve", *args, "--port", str(port), "-v"], env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        body = {"tasks": [{"id": 1, "data": {"text": "A youth football club"}}]}
        assert requests.post(f"{url}/predict", json=body, headers={"Authorization": f"Bearer {API_TOKEN}"}).ok
        assert requests.post(f"{url}/predict", json=body, auth=("classie", API_TOKEN)).ok
        assert requests.post(f"{url}/predict?token={API_TOKEN}", json=body).status_code == 401
        assert requests.get(f"{url}/metrics?api_key={API_TOKEN}", auth=("user", API_TOKEN)).ok
        assert requests.post(f"{url}/predict", data=b"{not json", headers={
            "Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}).status_code == 400
        assert requests.post(f"{url}/webhook", json={"action": "PROJECT_UPDATED"}, headers={
            "Authorization": f"Token {API_TOKEN}x"}).status_code == 401
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)
    assert "GET /health" in out or "/predict" in out, out[-2000:]  # the access log was on, and it was searched
    return out


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    with KiliEmulator(api_key=KILI_KEY, project_id="p1", json_interface=interface(ukcat_taxonomy())) as emu:
        yield emu


def test_kili_commands_write_no_secret_anywhere(tmp_path, emulator):
    fill(emulator, ukcat_taxonomy(), labelled=30, unlabelled=20)
    state = tmp_path / "state"
    config = tmp_path / "c.toml"
    config.write_text(f'platform = "kili"\nstate_dir = "{state}"\n[kili]\nproject_id = "p1"\n'
                      f'endpoint = "{emulator.endpoint}"\npush_batch = 10\n[model]\nmin_examples = 100000\n')
    key = {"KILI_API_KEY": KILI_KEY, "CLASSIE_API_TOKEN": API_TOKEN}
    emulator.retry_after = 0
    emulator.inject("429", "assets")  # a retried fault: its log line is searched too
    outputs = [run("run", "--once", "--config", str(config), "-v", env=key)]
    assert " DEBUG gql" not in outputs[0].stderr  # -v is ours: the SDK's GraphQL layer (180 lines) stays quiet
    outputs.append(run("run", "--once", "--config", str(config), "-v", env={**key, "CLASSIE_LOG_FORMAT": "json"}))
    wrong = run("run", "--once", "--config", str(config), "-v", env={**key, "KILI_API_KEY": WRONG_KILI_KEY},
                ok=False)  # refused: the message, and any traceback, must not echo the key
    assert wrong.returncode in (2, 3) and "Traceback" not in wrong.stderr, wrong.stderr[-3000:]
    outputs.append(wrong)
    outputs += [run("models", "--config", str(config), env=key), run("models", "--show", "1", "--config", str(config),
                                                                       env=key),
                run("report", "--config", str(config), "--out", str(state / "r.html"), env=key),
                run("health", "--config", str(config), env=key, ok=False)]  # no worker running: unhealthy
    texts = [o.stdout + o.stderr for o in outputs] + [serve_and_ask(["--config", str(config)], key)]
    assert assert_nowhere([KILI_KEY, WRONG_KILI_KEY, API_TOKEN], texts, [state, tmp_path / "home"]) >= 5


def test_label_studio_commands_write_no_secret_anywhere(tmp_path, label_studio):  # noqa: F811 - the fixture
    client = label_studio.client
    project = client.create_project("secrets", '<View><Text name="text" value="$text"/><Choices name="subject"'
                                               ' toName="text"><Choice value="AN" alias="AN"/><Choice value="ED"'
                                               ' alias="ED"/></Choices></View>')["id"]
    client.import_tasks(project, [{"data": {"text": f"school number {i}"}} for i in range(5)])
    state = tmp_path / "state"
    args = ["--platform", "label-studio", "--project-id", str(project), "--url", label_studio.url,
            "--state", str(state)]
    assert label_studio.token == label_studio.pat  # a Personal Access Token: exchanged, sent as a Bearer access token
    pat_file = tmp_path / "label_studio_api_key"
    pat_file.write_text(f"{label_studio.pat}\n", encoding="utf-8")
    env = {"LABEL_STUDIO_API_KEY_FILE": str(pat_file), "CLASSIE_API_TOKEN": API_TOKEN,
           "CLASSIE_MODEL__MIN_EXAMPLES": "100000"}
    outputs = [run("run", "--once", *args, "-v", env=env),
               run("run", "--once", *args, "-v", env={**env, "CLASSIE_LOG_FORMAT": "json"})]
    wrong = run("run", "--once", *args, env={**env, "LABEL_STUDIO_API_KEY": WRONG_KILI_KEY}, ok=False)
    legacy = run("run", "--once", *args, "-v", env={**env, "LABEL_STUDIO_API_KEY": label_studio.legacy_token},
                 ok=False)  # legacy tokens are off: refused, with the fix
    assert "this server has legacy tokens off" in legacy.stderr, legacy.stderr[-3000:]
    revoked = run("run", "--once", *args, "-v", env={**env, "LABEL_STUDIO_API_KEY": label_studio.pat[:-4] + "AAAA"},
                  ok=False)  # a PAT this server did not sign: its exchange refused
    assert "create a new one in Account & Settings" in revoked.stderr, revoked.stderr[-3000:]
    for refused in (wrong, legacy, revoked):
        assert "Traceback" not in refused.stderr, refused.stderr[-3000:]
    outputs += [wrong, legacy, revoked, run("models", "--state", str(state), env=env)]
    texts = [o.stdout + o.stderr for o in outputs] + [serve_and_ask(args, env)]
    secrets = [label_studio.pat, label_studio.pat[:-4] + "AAAA", label_studio.legacy_token, WRONG_KILI_KEY, API_TOKEN]
    assert assert_nowhere(secrets, texts, [state]) >= 3
