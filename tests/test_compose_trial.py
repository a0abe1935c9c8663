"""docker/compose.yaml rehearsed without a Docker engine: the same services, commands and environment (example.env
plus each service's `environment`), as real processes on loopback. Only what Docker itself provides is replaced:
host names and ports, the shared state volume (a folder), and the image's paths under /app (this checkout).

It proves the wiring a user of the trial relies on: Label Studio takes the token from example.env with legacy tokens
enabled by the environment alone; the API's health check passes with no project and no model; `init` creates the
project, imports the tasks, connects the API as ML backend and adds the webhook; the API takes the project from Label
Studio's /setup call (no project id anywhere, no restart) and trains v1; the worker finds the project in the shared
state and v1 is on every unlabelled task; an annotation made in Label Studio reaches the API's webhook, whose cycle
trains v2 on the state the worker shares; and both stop with exit 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, example_rows, write_assets
from label_studio_server import LabelStudioServer, ensure_label_studio, free_port
from test_docker import COMPOSE, DOCKER, _env_file

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def compose_service(name: str) -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"][name]


def service_env(name: str, **overrides: str) -> dict[str, str]:
    """What compose gives the container: env files in order, then `environment`."""
    service = compose_service(name)
    env: dict[str, str] = {}
    for entry in service.get("env_file", []):
        path = DOCKER / (entry if isinstance(entry, str) else entry["path"])
        if path.exists():
            env.update(_env_file(path))
    env.update({k: _interpolated(str(v)) for k, v in (service.get("environment") or {}).items()})
    env.update(overrides)
    return env


def _interpolated(value: str) -> str:
    """Compose's `${VAR:-default}` and `${VAR}`, from the environment `docker compose` runs in (this one)."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1)) or m.group(2) or "", value)


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process exited {proc.returncode}\n{log.read_text()[-3000:] if log else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s\n{log.read_text()[-3000:] if log else ''}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen, log: Path, grace: float = 30) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=grace) == 0, log.read_text()[-3000:]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {grace} s after SIGTERM")


def test_the_compose_trial_wiring(tmp_path):
    example = _env_file(DOCKER / "example.env")
    ls_env = service_env("label-studio")
    # Label Studio as the compose service runs it: no --enable-legacy-api-token flag, only its environment.
    server = LabelStudioServer(tmp_path / "label-studio", token=ls_env["LABEL_STUDIO_USER_TOKEN"],
                               env=ls_env, executable=ensure_label_studio(), legacy_token_flag=False)
    with server:
        api_port = free_port()
        state = tmp_path / "state"  # the classie-state volume, shared by api, init and worker
        common = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "CLASSIE_STATE_DIR": str(state),
                  "LABEL_STUDIO_URL": server.url,
                  # A short training for the test; the trial's own values are checked in test_docker.py.
                  "CLASSIE_MODEL__BUDGET_SECONDS": "30", "CLASSIE_MODEL__MAX_EVALUATIONS": "2",
                  "CLASSIE_MODEL__CV_FOLDS": "3", "CLASSIE_API__DEBOUNCE_SECONDS": "1"}
        assert example["LABEL_STUDIO_URL"] == "http://label-studio:8080"  # the compose service name and port

        # api: its command with loopback and a free port instead of 0.0.0.0:9090.
        api_env = service_env("api", **common)
        assert api_env["CLASSIE_HEALTH_URL"] == "http://127.0.0.1:9090/health"
        api_env["CLASSIE_HEALTH_URL"] = f"http://127.0.0.1:{api_port}/health"
        command = compose_service("api")["command"]
        assert command == ["serve", "--host", "0.0.0.0", "--port", "9090"]
        api_log = tmp_path / "api.log"
        api = subprocess.Popen([str(BIN / "classie-automl"), "serve", "--host", "127.0.0.1", "--port", str(api_port)],
                               env=api_env, stdout=subprocess.DEVNULL, stderr=api_log.open("w"))
        try:
            wait_until(lambda: subprocess.run([str(BIN / "classie-automl"), "health"], env=api_env,
                                              capture_output=True).returncode == 0, 60, "api healthy", api, api_log)

            # init: the compose command, with /app mapped to this checkout and a small slice of the example.
            assets = write_assets(tmp_path / "assets.csv", example_rows("train.csv", 150) + [
                (f"new{i}", text, "") for i, (_, text, _) in enumerate(example_rows("test.csv", 30))])
            command = [str(assets) if a == "/app/examples/ukcat/assets.csv" else
                       f"http://127.0.0.1:{api_port}" if a == "http://api.classie.internal:9090" else
                       str(ROOT / a.removeprefix("/app/")) if a.startswith("/app/") else a
                       for a in compose_service("init")["command"]]
            init = subprocess.run([str(BIN / "classie-automl"), *command], env=service_env("init", **common),
                                  capture_output=True, text=True, timeout=300)
            assert init.returncode == 0, init.stdout + init.stderr
            assert "CLASSIE_LABEL_STUDIO__PROJECT_ID" not in example  # a fixed id named whichever project had it
            project = int(init.stdout.strip().splitlines()[-1].removeprefix("project "))
            assert f"serves project {project}, no restart needed" in init.stdout
            assert len(server.client.ml_backends(project)) == 1
            assert example["LABEL_STUDIO_API_KEY"] not in init.stdout + init.stderr

            # worker: `run`, the image's default command, configured by the environment alone.
            worker_log = tmp_path / "worker.log"
            worker = subprocess.Popen([str(BIN / "classie-automl"), *compose_service("worker")["command"]],
                                      env=service_env("worker", **common), stdout=subprocess.DEVNULL,
                                      stderr=worker_log.open("w"))
            try:
                def phase() -> str:
                    try:
                        return json.loads((state / "worker.heartbeat.json").read_text())["phase"]
                    except (OSError, ValueError):
                        return ""

                wait_until(lambda: phase() == "idle", 300, "worker's first cycle", worker, worker_log)
                predictions = server.client.predictions(project)
                assert {p["model_version"] for p in predictions} == {"v1"} and len(predictions) == 30

                # An annotation made in Label Studio: its webhook reaches the API, whose cycle trains v2.
                tasks = server.client.tasks(project)
                labelled = next(t for t in tasks if t.get("annotations"))
                target = next(t for t in tasks if not t.get("annotations"))
                server.client.create_annotation(target["id"], labelled["annotations"][0]["result"])
                wait_until(lambda: (state / "models" / "v0002").is_dir(), 300, "v2 from the webhook", api, api_log)
                wait_until(lambda: {p["model_version"] for p in server.client.predictions(project)} >= {"v2"}, 120,
                           "v2 pushed", api, api_log)
                health = subprocess.run([str(BIN / "classie-automl"), "health"], env=service_env("worker", **common),
                                        capture_output=True, text=True)
                assert health.returncode == 0, health.stdout
            finally:
                stop(worker, worker_log)
        finally:
            stop(api, api_log)
    assert (state / "models" / "CURRENT").read_text().strip() == "2"
