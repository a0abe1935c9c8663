"""`classie-automl label-studio-init` against a real Label Studio server: the labelling config built from the
taxonomy, the import of tasks with their human labels, reruns, the ML backend and the webhook, and the errors."""

from __future__ import annotations

import csv
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from automl.taxonomy import Taxonomy
from automl.taxonomy_file import load_taxonomy
from conftest import EXAMPLE, write
from connectors.base import SkipLog
from connectors.files import read_assets
from connectors.label_studio import LabelStudioConnector
from connectors.label_studio_client import LabelStudioClient
from connectors.label_studio_schema import parse_label_config
from connectors.label_studio_setup import (
    LabelStudioSetupError,
    init_project,
    label_config_from_taxonomy,
    label_studio_code,
)
from connectors.settings import LabelStudioSettings
from label_studio_server import free_port, label_studio  # noqa: F401 - the session fixture

CLI = str(Path(sys.executable).parent / "classie-automl")
FACET_ROOTS = {"population": ["BE"]}  # as in examples/ukcat/config.toml
API_TOKEN = "api-" + secrets.token_hex(12)
N_ASSETS, N_LABELLED = 40, 26  # the first 40 rows of the example: 26 labelled (4 with a population label)


def ukcat() -> Taxonomy:
    return load_taxonomy(EXAMPLE / "taxonomy.csv", FACET_ROOTS)


@pytest.fixture
def ls(request):
    """The session's Label Studio server, asked for by name: a parameter named label_studio would shadow the import
    that makes the fixture visible here."""
    return request.getfixturevalue("label_studio")


def title() -> str:
    return f"init-{uuid.uuid4().hex[:8]}"  # the Label Studio server is shared by the whole session


@pytest.fixture
def trial(tmp_path) -> Path:
    """A config file as a trial would have: the UK-CAT taxonomy with its facets, a few dozen of its assets."""
    with (EXAMPLE / "assets.csv").open(encoding="utf-8", newline="") as f:
        rows = [(r["id"], r["text"], r["labels"]) for r in csv.DictReader(f)][:N_ASSETS]
    with (tmp_path / "assets.csv").open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("id", "text", "labels"), *rows])
    return write(tmp_path / "config.toml", f"""
[files]
assets = "assets.csv"
[taxonomy]
path = "{EXAMPLE / 'taxonomy.csv'}"
facet_roots = {{ population = ["BE"] }}
""")


def cli(ls, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([CLI, "label-studio-init", "--url", ls.url, *args], env=cli_env(ls, env),
                            capture_output=True, text=True, timeout=300, check=False)
    assert_no_token(ls, result.stdout + result.stderr)
    return result


def cli_env(ls, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLASSIE_", "LABEL_STUDIO_"))}
    return {**env, "LABEL_STUDIO_API_KEY": ls.token, "CLASSIE_API_TOKEN": API_TOKEN, "PYTHONUNBUFFERED": "1",
            **(extra or {})}


def assert_no_token(ls, output: str) -> None:
    assert ls.token not in output and API_TOKEN not in output


def project_id(stdout: str) -> int:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("project "), stdout
    return int(last.split()[1])


def test_config_from_the_taxonomy_maps_every_code(ls, tmp_path):
    tax = ukcat()
    schema = parse_label_config(label_config_from_taxonomy(tax))
    expected = {label_studio_code(tax, c): c for c in tax.nodes}
    assert label_studio_code(tax, "AN101") == "subject:AN/AN101" and label_studio_code(tax, "BE") == "population:BE"
    got = schema.taxonomy()
    assert set(got.nodes) == set(expected) and set(got.facets) == {"population", "subject"}
    for code, original in expected.items():
        node, source = got.nodes[code], tax.nodes[original]
        assert (node.facet, node.name) == (source.facet, source.name)
        assert node.parent == (label_studio_code(tax, source.parent) if source.parent else None)

    # The connector reads the same codes from a project the set-up created.
    created = init_project(LabelStudioClient(ls.url, ls.token), title(), tax, say=lambda _: None)
    connector = LabelStudioConnector(LabelStudioSettings(project_id=created.project_id),
                                     LabelStudioClient(ls.url, ls.token))
    assert set(connector.pull_taxonomy().nodes) == set(expected)

    # Names with XML's special characters survive (escaped in the config, read back as written).
    odd = load_taxonomy(write(tmp_path / "odd.csv", 'code,name,parent_code\nA,"Arts & ""Culture"" <x>",\n'
                                                    "A1,Children's homes,A\n"))
    done = init_project(LabelStudioClient(ls.url, ls.token), title(), odd, say=lambda _: None)
    stored = parse_label_config(ls.client.project(done.project_id)["label_config"])
    assert stored.names == {"subject:A": 'Arts & "Culture" <x>', "subject:A/A1": "Children's homes"}


def test_init_imports_tasks_with_their_labels_and_a_rerun_adds_nothing(ls, trial):
    name = title()
    first = cli(ls, "--config", str(trial), "--title", name)
    assert first.returncode == 0, first.stderr
    pid = project_id(first.stdout)
    assert f"project {pid} '{name}': created" in first.stdout
    assert f"tasks: {N_ASSETS} imported, {N_LABELLED} with their human labels as annotations" in first.stdout

    # The connector reads back, as codes of the project's taxonomy, the labels the CSV had.
    tax = ukcat()
    csv_labels = {a.id: a.labels for a in read_assets(trial.parent / "assets.csv", tax, SkipLog())}
    asset_of_task = {t["id"]: t["data"]["id"] for t in ls.client.tasks(pid)}
    connector = LabelStudioConnector(LabelStudioSettings(project_id=pid), LabelStudioClient(ls.url, ls.token))
    pulled = list(connector.pull(None).assets)
    assert len(pulled) == N_ASSETS and not connector.skipped.counts
    for asset in pulled:
        labels = csv_labels[asset_of_task[int(asset.id)]]
        assert asset.labels == (None if labels is None else {label_studio_code(tax, c) for c in labels})
    assert sum(a.labels is not None for a in pulled) == N_LABELLED
    assert any(c.startswith("population:BE/") for a in pulled for c in a.labels or ())

    again = cli(ls, "--config", str(trial), "--title", name, "-v")
    assert again.returncode == 0, again.stderr
    assert project_id(again.stdout) == pid and "found, labelling config matches" in again.stdout
    assert f"the project has {N_ASSETS} already; nothing imported" in again.stdout
    assert len(ls.client.tasks(pid)) == N_ASSETS
    assert [p["id"] for p in ls.client.request("GET", "/api/projects", params={"title": name})
            .json()["results"]] == [pid]


def test_init_waits_for_the_api_then_connects_it_with_its_token(ls, trial, tmp_path):
    """The API started after the init (the init waits for it), without a project: Label Studio's /setup call gives
    it the project, and it starts training its first version at once."""
    name, port = title(), free_port()
    backend = f"http://127.0.0.1:{port}"
    init = subprocess.Popen([CLI, "label-studio-init", "--url", ls.url, "--config", str(trial),
                             "--title", name, "--ml-backend-url", backend, "--wait", "120"],
                            env=cli_env(ls), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in init.stdout:  # read until the init says it waits: the project exists by then
        lines.append(line)
        if "not answering yet" in line:
            break
    pid = int(next(ln for ln in lines if ln.startswith("project ")).split()[1])
    server = subprocess.Popen([CLI, "serve", "--platform", "label-studio", "--url", ls.url, "--config", str(trial),
                               "--state", str(tmp_path / "state"), "--port", str(port)],
                              env=cli_env(ls, {"CLASSIE_MODEL__BUDGET_SECONDS": "10"}), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        out, err = init.communicate(timeout=180)
        out = "".join(lines) + out
        assert_no_token(ls, out + err)
        assert init.returncode == 0, err
        assert f"ML backend {backend}: connected" in out and out.strip().endswith(f"project {pid}")
        assert f"ML backend {backend}: serves project {pid}, no restart needed (model version none yet: first" \
               " version training" in out

        [ml] = ls.client.ml_backends(pid)
        assert ml["url"] == backend and ml["auth_method"] == "BASIC_AUTH"
        [hook] = ls.client.webhooks(pid)  # ours only: Label Studio did not add one without credentials
        assert hook["url"] == f"{backend}/webhook" and hook["headers"] == {"Authorization": f"Bearer {API_TOKEN}"}
        assert set(hook["actions"]) == {"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED",
                                        "ANNOTATIONS_DELETED"}

        again = cli(ls, "--config", str(trial), "--title", name, "--ml-backend-url", backend)
        assert again.returncode == 0, again.stderr
        assert "connected already" in again.stdout and "there already, with the API token" in again.stdout
        assert len(ls.client.ml_backends(pid)) == 1 and len(ls.client.webhooks(pid)) == 1

        # Another token than the API's: Label Studio's /setup call is refused, and the init says so at once.
        other = "other-" + secrets.token_hex(8)
        refused = cli(ls, "--taxonomy", str(EXAMPLE / "taxonomy.csv"), "--title", title(), "--ml-backend-url",
                      backend, env={"CLASSIE_API_TOKEN": other})
        assert refused.returncode == 2 and f"the API at {backend} refused the token" in refused.stderr
        assert other not in refused.stdout + refused.stderr
        assert requests.get(f"{backend}/health", timeout=5).json()["project"] == pid
    finally:
        if init.poll() is None:
            init.kill()
        server.send_signal(signal.SIGTERM)
        _, server_err = server.communicate(timeout=60)
    assert server.returncode == 0, server_err[-3000:]


def test_api_not_running_fails_clearly_within_the_wait(ls, trial):
    backend = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = cli(ls, "--taxonomy", str(EXAMPLE / "taxonomy.csv"), "--title", title(),
                 "--ml-backend-url", backend, "--wait", "3")
    assert result.returncode == 2 and time.monotonic() - started < 60
    assert f"error: the API at {backend} did not pass Label Studio's connection check within 3 s" in result.stderr
    assert "Traceback" not in result.stderr
    pid = int(next(ln for ln in result.stdout.splitlines() if ln.startswith("project ")).split()[1])
    assert ls.client.ml_backends(pid) == []


def test_errors_are_clear_and_change_nothing(ls, tmp_path):
    tax = ukcat()
    no_token = cli(ls, "--taxonomy", str(EXAMPLE / "taxonomy.csv"), env={"LABEL_STUDIO_API_KEY": ""})
    assert no_token.returncode == 2 and "no Label Studio token" in no_token.stderr
    wrong = "wrong" + secrets.token_hex(10)
    refused = cli(ls, "--taxonomy", str(EXAMPLE / "taxonomy.csv"), env={"LABEL_STUDIO_API_KEY": wrong})
    assert refused.returncode == 2 and "refused the token (401)" in refused.stderr and wrong not in refused.stderr
    missing_api_token = cli(ls, "--taxonomy", str(EXAMPLE / "taxonomy.csv"), "--ml-backend-url",
                            "http://127.0.0.1:9", env={"CLASSIE_API_TOKEN": ""})
    assert missing_api_token.returncode == 2 and "CLASSIE_API_TOKEN" in missing_api_token.stderr

    with pytest.raises(LabelStudioSetupError, match="unreachable"):
        init_project(LabelStudioClient(f"http://127.0.0.1:{free_port()}", "t" * 40), title(), tax, wait_seconds=1)

    # A project with the title but another labelling config is reported and left as it is.
    name = title()
    other = '<View><Text name="text" value="$text"/><Choices name="subject" toName="text"><Choice value="x"/>' \
            '</Choices></View>'
    project = ls.client.create_project(name, other)
    with pytest.raises(LabelStudioSetupError, match="another labelling config") as raised:
        init_project(LabelStudioClient(ls.url, ls.token), name, tax, say=lambda _: None)
    assert "left unchanged" in str(raised.value)
    assert ls.client.project(project["id"])["label_config"] == other
