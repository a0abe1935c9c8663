"""The Label Studio harness against a real Label Studio server (installed into .ls-venv on first use)."""

from __future__ import annotations

import base64
import fcntl
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

import label_studio_server
from conftest import ROOT, JsonHandler
from label_studio_server import (
    LABEL_STUDIO_VERSION,
    LOCK_NAME,
    STAMP_NAME,
    LabelStudioError,
    LabelStudioServer,
    ensure_label_studio,
    label_studio,  # noqa: F401 - the session fixture
    template_db,
)

CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Taxonomy name="topic" toName="text">
    <Choice value="Education" alias="ED">
      <Choice value="Schools" alias="ED1"/>
      <Choice value="Universities" alias="ED2"/>
    </Choice>
    <Choice value="Health">
      <Choice value="Mental health" alias="HE1"/>
      <Choice value="Hospitals"/>
    </Choice>
    <Choice value="Environment" alias="EN"/>
  </Taxonomy>
  <Choices name="flags" toName="text" choice="multiple">
    <Choice value="urgent"/>
    <Choice value="local"/>
    <Choice value="national"/>
  </Choices>
</View>
"""

# Result paths run from the root and use a choice's alias where it has one, its value otherwise.
ANNOTATED = {
    0: [["ED", "ED1"]],
    3: [["Health", "HE1"], ["EN"]],
    7: [["ED", "ED2"], ["Health", "Hospitals"]],
    12: [["Health"]],
    18: [["ED"]],
}
FLAGS = {3: ["urgent", "local"], 12: ["national"]}


def taxonomy(paths: list[list[str]]) -> dict:
    return {"from_name": "topic", "to_name": "text", "type": "taxonomy", "value": {"taxonomy": paths}}


def choices(values: list[str]) -> dict:
    return {"from_name": "flags", "to_name": "text", "type": "choices", "value": {"choices": values}}


def result_for(i: int) -> list[dict]:
    return [taxonomy(ANNOTATED[i])] + ([choices(FLAGS[i])] if i in FLAGS else [])


def by_text(tasks: list[dict]) -> dict[str, dict]:
    return {t["data"]["text"]: t for t in tasks}


def text(i: int) -> str:
    return f"charity {i:02d}: helps people"


@pytest.fixture(scope="module")
def project(label_studio: LabelStudioServer) -> dict:  # noqa: F811 - the fixture imported above
    created = label_studio.create_project("Classie harness", CONFIG)
    tasks = []
    for i in range(20):
        task: dict = {"data": {"text": text(i)}}
        if i in ANNOTATED:
            task["annotations"] = [{"result": result_for(i)}]
        tasks.append(task)
    ids = label_studio.import_tasks(created["id"], tasks)
    return {**created, "task_ids": ids, "import": label_studio.client.last_import}


def test_server_runs_on_loopback_with_the_preset_token(label_studio: LabelStudioServer) -> None:  # noqa: F811
    assert label_studio.url == f"http://127.0.0.1:{label_studio.port}"
    assert requests.get(label_studio.url + "/health", timeout=5).json() == {"status": "UP"}
    assert len(label_studio.legacy_token) == 40 and int(label_studio.legacy_token, 16) >= 0
    assert label_studio.token == label_studio.pat and not label_studio.legacy_tokens  # as Label Studio comes
    assert label_studio.whoami()["email"] == LabelStudioServer.USERNAME
    denied = requests.get(label_studio.url + "/api/projects", headers={"Authorization": "Token " + "0" * 40}, timeout=5)
    assert denied.status_code == 401
    assert label_studio.log_path.exists() and label_studio.log_path.parent == label_studio.data_dir
    assert (label_studio.data_dir / "home").is_dir()  # HOME points inside the data dir


def test_tasks_and_their_annotations_are_imported_in_one_request(
    label_studio: LabelStudioServer,  # noqa: F811
    project: dict,
) -> None:
    assert project["import"]["task_count"] == 20 and project["import"]["annotation_count"] == 5
    assert len(project["task_ids"]) == 20 and len(set(project["task_ids"])) == 20

    tasks = label_studio.tasks(project["id"])
    assert sorted(t["id"] for t in tasks) == sorted(project["task_ids"])
    tasks_by_text = by_text(tasks)
    annotated = {t["data"]["text"] for t in tasks if t["annotations"]}
    assert annotated == {text(i) for i in ANNOTATED}
    for i, paths in ANNOTATED.items():
        (annotation,) = tasks_by_text[text(i)]["annotations"]
        results = {r["from_name"]: r["value"] for r in annotation["result"]}
        assert results["topic"] == {"taxonomy": paths}
        assert results.get("flags") == ({"choices": FLAGS[i]} if i in FLAGS else None)
        assert tasks_by_text[text(i)]["is_labeled"] is True
    assert all(t["predictions"] == [] for t in tasks)

    # several pages (the page after the last one answers 404)
    assert sorted(t["id"] for t in label_studio.tasks(project["id"], page_size=7)) == sorted(project["task_ids"])


def test_an_annotation_created_through_the_api(label_studio: LabelStudioServer, project: dict) -> None:  # noqa: F811
    task_id = project["task_ids"][5]
    annotation = label_studio.create_annotation(task_id, [taxonomy([["Health", "HE1"]]), choices(["local"])])
    assert annotation["task"] == task_id and annotation["id"]
    task = next(t for t in label_studio.tasks(project["id"]) if t["id"] == task_id)
    assert [a["id"] for a in task["annotations"]] == [annotation["id"]]
    assert task["annotations"][0]["result"][0]["value"] == {"taxonomy": [["Health", "HE1"]]}


def test_bulk_predictions_answer_how_many_were_created(
    label_studio: LabelStudioServer,  # noqa: F811
    project: dict,
) -> None:
    ids = project["task_ids"]
    valid = [
        {"task": ids[1], "result": [taxonomy([["ED", "ED1"]])], "score": 0.91, "model_version": "harness-v1"},
        {"task": ids[2], "result": [taxonomy([["Health", "HE1"]]), choices(["urgent"])], "score": 0.42,
         "model_version": "harness-v1"},
    ]  # fmt: skip
    assert label_studio.import_predictions(project["id"], valid) == {"created": 2}

    # An unknown label is dropped without an error: only `created` tells.
    invalid = {"task": ids[4], "result": [taxonomy([["ED", "NOPE"]])], "score": 0.5, "model_version": "harness-v1"}
    also_valid = {"task": ids[4], "result": [taxonomy([["EN"]])], "score": 0.3, "model_version": "harness-v1"}
    assert label_studio.import_predictions(project["id"], [invalid, also_valid]) == {"created": 1}
    # Where a choice has an alias, a path of values is invalid too.
    by_value = {"task": ids[4], "result": [taxonomy([["Education", "Schools"]])], "model_version": "harness-v1"}
    assert label_studio.import_predictions(project["id"], [by_value]) == {"created": 0}
    # An unknown task fails the whole request.
    with pytest.raises(LabelStudioError) as error:
        label_studio.import_predictions(project["id"], [{**also_valid, "task": max(ids) + 1000}])
    assert error.value.status_code == 400

    predictions = label_studio.predictions(project["id"])
    assert sorted((p["task"], p["score"]) for p in predictions) == [(ids[1], 0.91), (ids[2], 0.42), (ids[4], 0.3)]
    assert {p["model_version"] for p in predictions} == {"harness-v1"}
    tasks = {t["id"]: t for t in label_studio.tasks(project["id"])}
    assert tasks[ids[2]]["predictions"][0]["result"][0]["value"] == {"taxonomy": [["Health", "HE1"]]}
    assert tasks[ids[4]]["predictions"][0]["result"][0]["value"] == {"taxonomy": [["EN"]]}


def test_model_version_is_set_and_read_back(label_studio: LabelStudioServer, project: dict) -> None:  # noqa: F811
    # after the predictions above: a version without predictions is refused
    if not label_studio.predictions(project["id"]):
        prediction = {"task": project["task_ids"][1], "result": [taxonomy([["EN"]])], "model_version": "harness-v1"}
        label_studio.import_predictions(project["id"], [prediction])
    assert label_studio.project(project["id"])["model_version"] == ""
    assert label_studio.update_project(project["id"], model_version="harness-v1")["model_version"] == "harness-v1"
    assert label_studio.project(project["id"])["model_version"] == "harness-v1"
    with pytest.raises(LabelStudioError) as error:
        label_studio.update_project(project["id"], model_version="never-pushed")
    assert error.value.status_code == 400 and "model_version" in str(error.value.body)
    assert label_studio.project(project["id"])["model_version"] == "harness-v1"


# ------------------------------------------------------------------------- a loopback ML backend stub


class _StubBackend(JsonHandler):
    calls: list[dict]
    auth: str

    def _handle(self, body: dict | None) -> None:
        self.calls.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                           "body": body})  # fmt: skip
        if self.headers.get("Authorization") != self.auth:
            self.reply(401, {"error": "unauthorized"})
        elif self.path == "/health":
            self.reply(200, {"status": "UP"})
        elif self.path == "/setup":
            self.reply(200, {"model_version": "stub-1"})
        elif self.path == "/webhook":
            self.reply(200, {})
        else:
            self.reply(404, {})

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._handle(None)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(json.loads(self.rfile.read(length) or b"{}"))


@pytest.fixture
def stub_backend() -> Iterator[tuple[str, list[dict]]]:
    calls: list[dict] = []
    auth = "Basic " + base64.b64encode(b"classie:s3cret").decode()
    handler = type("Handler", (_StubBackend,), {"calls": calls, "auth": auth})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(calls: list[dict], path: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in calls if c["path"] == path]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {path} call in {calls}")


def test_connect_a_loopback_ml_backend_with_basic_auth(
    label_studio: LabelStudioServer,  # noqa: F811
    stub_backend: tuple[str, list[dict]],
) -> None:
    url, calls = stub_backend
    project = label_studio.create_project("Classie ML backend", CONFIG)
    (task_id,) = label_studio.import_tasks(project["id"], [{"data": {"text": "a school"}}])

    with pytest.raises(LabelStudioError) as error:  # the backend wants credentials
        label_studio.connect_ml_backend(project["id"], url)
    assert error.value.status_code == 400 and "authentication" in str(error.value.body)
    with pytest.raises(ValueError):
        label_studio.connect_ml_backend(project["id"], url, basic_auth_user="classie")

    calls.clear()
    backend = label_studio.connect_ml_backend(
        project["id"], url, basic_auth_user="classie", basic_auth_pass="s3cret", extra={"extra_params": {"k": 1}}
    )
    assert backend["state"] == "CO" and backend["auth_method"] == "BASIC_AUTH"
    assert backend["basic_auth_pass_is_set"] is True and "basic_auth_pass" not in backend
    assert backend["model_version"] == "stub-1" and backend["title"] == "classie-automl"
    setup = _wait_for(calls, "/setup")
    assert setup["auth"] == "Basic " + base64.b64encode(b"classie:s3cret").decode()
    assert setup["body"]["access_token"] == label_studio.legacy_token  # even with legacy tokens off
    assert setup["body"]["hostname"] == label_studio.url
    assert setup["body"]["extra_params"] == {"k": 1}
    assert setup["body"]["project"].startswith(f"{project['id']}.")
    assert "<Taxonomy" in setup["body"]["schema"]
    assert [b["id"] for b in label_studio.ml_backends(project["id"])] == [backend["id"]]
    assert label_studio.project(project["id"])["model_version"] == "classie-automl"

    (hook,) = label_studio.webhooks(project["id"])
    assert hook["url"] == url + "/webhook" and hook["send_payload"] and hook["send_for_all_actions"]
    assert hook["headers"] == {}  # the backend's credentials are not used for the webhook...
    label_studio.set_webhook_headers(project["id"], url, {"Authorization": setup["auth"]})  # ...unless added
    calls.clear()
    label_studio.create_annotation(task_id, [taxonomy([["ED", "ED1"]])])
    webhook = _wait_for(calls, "/webhook")
    assert webhook["auth"] == setup["auth"]
    assert webhook["body"]["action"] == "ANNOTATION_CREATED" and webhook["body"]["task"]["id"] == task_id


# ------------------------------------------------------------------------------------ the harness itself


def test_ensure_label_studio_reuses_the_install(label_studio: LabelStudioServer) -> None:  # noqa: F811
    started = time.monotonic()
    executable = ensure_label_studio()
    assert time.monotonic() - started < 5
    assert executable == label_studio.executable and executable.exists()
    venv = executable.parents[1]
    assert (venv / STAMP_NAME).read_text().strip() == _setup_script("--stamp").stdout.strip()
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; "
                                "print(m.version('label-studio'), m.version('sentry-sdk'))"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert installed == [LABEL_STUDIO_VERSION, _locked(ROOT / "locks" / "label-studio.txt", "sentry-sdk")]
    assert template_db(venv).exists()


def test_a_second_caller_waits_for_the_install_then_reuses_it(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import label_studio_server as m; "
        "print(m.ensure_label_studio(m.Path(sys.argv[2])))"
    )
    with open(venv / LOCK_NAME, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as if another process were installing
        waiting = subprocess.Popen(
            [sys.executable, "-c", code, str(Path(label_studio_server.__file__).parent), str(venv)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        assert waiting.poll() is None  # blocked on the lock
        (venv / "bin").mkdir()
        (venv / "bin" / "label-studio").write_text("#!/bin/sh\n")
        template_db(venv).parent.mkdir()
        template_db(venv).write_bytes(b"")
        (venv / STAMP_NAME).write_text(_setup_script("--stamp").stdout)
        fcntl.flock(lock, fcntl.LOCK_UN)
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert out.strip() == str(venv / "bin" / "label-studio")
    assert not (venv / "pyvenv.cfg").exists()  # it found the stamp and installed nothing


def _setup_script(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / "scripts" / "setup-label-studio.sh"), *args], capture_output=True,
                          text=True, timeout=600)


def _locked(lock: Path, name: str) -> str:
    return re.search(rf"^{re.escape(name)}==(\S+)", lock.read_text(encoding="utf-8"), re.MULTILINE).group(1)


def _lock_block(lock: Path, name: str) -> str:
    """One package's lines of a lock: its pin and its hashes."""
    return re.search(rf"^{re.escape(name)}==.*?(?=^\S|\Z)", lock.read_text(encoding="utf-8"), re.M | re.S).group(0)


def test_an_environment_built_from_another_lock_is_built_again(tmp_path: Path) -> None:
    """The setup script on a copy of the project whose Label Studio lock is one small package, then another: the
    venv built from the first is emptied and built from the second, not reused or updated in place."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    (root / "locks").mkdir()
    shutil.copy(ROOT / "scripts" / "setup-label-studio.sh", root / "scripts")
    shutil.copy(ROOT / "locks" / "build.txt", root / "locks")
    lock = root / "locks" / "label-studio.txt"
    venv = tmp_path / "ls-venv"

    def packages() -> set[str]:
        listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                                capture_output=True, text=True, check=True).stdout
        return {line.split("==")[0].lower() for line in listed.split()}

    lock.write_text(_lock_block(ROOT / "locks" / "label-studio.txt", "six"))
    first = _setup_script(str(venv), root=root)
    assert first.returncode == 0, first.stderr
    assert _setup_script("--check", str(venv), root=root).returncode == 0
    assert "six" in packages()
    (venv / "left-behind").write_text("from the first build")

    lock.write_text(_lock_block(ROOT / "locks" / "label-studio.txt", "idna"))
    assert _setup_script("--check", str(venv), root=root).returncode == 1  # stale: the lock moved on
    second = _setup_script(str(venv), root=root)
    assert second.returncode == 0, second.stderr
    assert "built from another lock; building it again" in second.stderr
    assert "idna" in packages() and "six" not in packages()
    assert not (venv / "left-behind").exists()
    assert (venv / STAMP_NAME).read_text().strip() == _setup_script("--stamp", root=root).stdout.strip()
    again = _setup_script(str(venv), root=root)  # now current: reused at once
    assert again.returncode == 0 and again.stderr == ""


def test_a_folder_that_is_not_an_environment_is_refused_not_emptied(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("someone's files")
    done = _setup_script(str(tmp_path))
    assert done.returncode == 1
    assert "holds files but no virtual environment" in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "someone's files"


def test_a_busy_port_makes_the_harness_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    ports = iter([busy_port])
    monkeypatch.setattr(label_studio_server, "free_port", lambda: next(ports, None) or _free())
    try:
        with LabelStudioServer(tmp_path / "ls") as server:
            assert server.port != busy_port
            assert requests.get(server.url + "/health", timeout=5).json() == {"status": "UP"}
            assert f"Port {busy_port} is in use" in server.log_path.read_text()
            process = server.process
        assert server.process is None and process.poll() is not None
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/health", timeout=5)
    finally:
        busy.close()


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
