"""The Label Studio quick start by hand, as a user follows it: a real Label Studio, a real `classie-automl serve`
started before any project exists (no --project-id, an empty state folder), `label-studio-init` connecting it, and
the pre-annotations read back through Label Studio's API. No restart of `serve` anywhere.

    1. serve --platform label-studio --url LS --state S       (no project yet: /predict says how to get one)
    2. label-studio-init --config C --ml-backend-url SERVE     (Label Studio's /setup names the project: serve takes
                                                               it, records it in S, trains v1 in the background)
    3. v1's pre-annotations are on every unlabelled task       (read through Label Studio's API)
    4. a labeller annotates a task                             (the webhook: serve trains and pushes v2)
    5. run --once --state S                                    (a worker on the same state folder: no --project-id)
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid

import pytest
import requests

from conftest import EXAMPLE, example_rows, write, write_assets
from label_studio_server import free_port, label_studio  # noqa: F401 - the session fixture
from test_label_studio_init import API_TOKEN, CLI, assert_no_token, cli_env

N_LABELLED, N_UNLABELLED = 60, 12
# A few seconds of training: under auto-sklearn's 30 s minimum no level is searched (the default linear model).
SMALL_TRAINING = {"CLASSIE_MODEL__BUDGET_SECONDS": "10", "CLASSIE_MODEL__CV_FOLDS": "3",
                  "CLASSIE_MODEL__PROMOTE_TOLERANCE": "10",  # the gate has its own tests; here v2 must serve
                  "CLASSIE_API__DEBOUNCE_SECONDS": "1"}


@pytest.fixture
def ls(request):
    return request.getfixturevalue("label_studio")


def wait_for(check, timeout: float, what: str, server: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            out, err = server.communicate(timeout=30)
            pytest.fail(f"{what}: not within {timeout} s (serve exited {server.returncode})\n{err[-4000:]}")
        time.sleep(0.5)


def versions(ls, project: int) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for p in ls.client.predictions(project):
        out.setdefault(p["task"], set()).add(p["model_version"])
    return out


def test_the_quick_start_ends_in_pre_annotations_without_a_restart(ls, tmp_path):
    rows = example_rows("train.csv", N_LABELLED) + [(f"new{i}", text, "") for i, (_, text, _) in
                                                      enumerate(example_rows("test.csv", N_UNLABELLED))]
    write_assets(tmp_path / "assets.csv", rows)
    config = write(tmp_path / "config.toml", f"""
[files]
assets = "assets.csv"
[taxonomy]
path = "{EXAMPLE / 'taxonomy.csv'}"
facet_roots = {{ population = ["BE"] }}
""")
    state, port = tmp_path / "state", free_port()
    backend, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {API_TOKEN}"}
    env = cli_env(ls, SMALL_TRAINING)

    # 1. serve, before any project exists.
    server = subprocess.Popen([CLI, "serve", "--platform", "label-studio", "--url", ls.url, "--config", str(config),
                               "--state", str(state), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def health() -> dict:
            try:
                return requests.get(f"{backend}/health", timeout=2).json()
            except requests.RequestException:
                return {}

        assert wait_for(health, 60, "serve answering", server) == {
            "status": "UP", "model_version": None, "project": None,
            "first_version": "serve has no Label Studio project yet"}
        early = requests.post(f"{backend}/predict", headers=auth, timeout=10,
                              json={"tasks": [{"id": 1, "data": {"text": "a choir"}}]})
        assert early.status_code == 503 and "Retry-After" not in early.headers
        assert early.json()["detail"].startswith("no model version yet: serve has no Label Studio project yet. Fix:"
                                                 " connect serve as the project's ML backend")

        # 2. label-studio-init: the project, its tasks with their labels, serve connected.
        init = subprocess.run([CLI, "label-studio-init", "--url", ls.url, "--config", str(config), "--title",
                               f"quick-{uuid.uuid4().hex[:8]}", "--ml-backend-url", backend],
                              env=env, capture_output=True, text=True, timeout=300, check=False)
        assert_no_token(ls, init.stdout + init.stderr)
        assert init.returncode == 0, init.stderr
        lines = init.stdout.strip().splitlines()
        project = int(lines[-1].removeprefix("project "))
        assert f"ML backend {backend}: serves project {project}, no restart needed" in init.stdout
        assert lines[-2] == (f"a worker or serve on another state folder needs: CLASSIE_LABEL_STUDIO__PROJECT_ID="
                             f"{project} (or --project-id {project})")
        record = json.loads((state / "label_studio_project.json").read_text())
        assert (record["project_id"], record["url"]) == (project, ls.url)
        assert record["uid"].startswith(f"{project}.") and ls.token not in json.dumps(record)  # /setup sends one

        # 3. v1 on every unlabelled task, visible to labellers (the project's model version).
        unlabelled = {t["id"] for t in ls.client.tasks(project) if not t["annotations"]}
        assert len(unlabelled) == N_UNLABELLED
        wait_for(lambda: ls.client.project(project)["model_version"] == "v1", 300, "v1 shown to labellers", server)
        assert {t for t, v in versions(ls, project).items() if "v1" in v} == unlabelled
        assert health() == {"status": "UP", "model_version": "v1", "project": project}
        results = [p["result"] for p in ls.client.predictions(project)]
        print(f"v1 pre-fills {sum(map(bool, results))} of {len(results)} tasks")
        assert any(results) and {r["from_name"] for r in sum(results, [])} <= {"subject", "population"}

        # 4. A labeller annotates a task: the webhook reaches serve, which trains and pushes v2.
        labelled = next(t for t in ls.client.tasks(project) if t["annotations"])
        target = min(unlabelled)
        ls.client.create_annotation(target, labelled["annotations"][0]["result"])
        wait_for(lambda: ls.client.project(project)["model_version"] == "v2", 300, "v2 shown to labellers", server)
        assert {t for t, v in versions(ls, project).items() if "v2" in v} == unlabelled - {target}

        # 5. A worker on the same state folder needs no project id either: nothing left to do.
        worker = subprocess.run([CLI, "run", "--once", "--platform", "label-studio", "--url", ls.url, "--config",
                                 str(config), "--state", str(state)],
                                env=env, capture_output=True, text=True, timeout=300, check=False)
        assert_no_token(ls, worker.stdout + worker.stderr)
        assert worker.returncode == 0, worker.stderr
        assert f"Label Studio project {project}, from {state / 'label_studio_project.json'}" in worker.stderr
        assert f"{N_LABELLED + 1} labelled, {N_UNLABELLED - 1} to pre-annotate" in worker.stdout
        assert "model v2: current, no training needed" in worker.stdout
        assert f"pre-annotations: 0 written, {N_UNLABELLED - 1} already there" in worker.stdout
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-3000:]
    assert_no_token(ls, out + err)
    assert f"serving Label Studio project {project} from now on" in err
