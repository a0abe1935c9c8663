"""The command line around the model: errors, predict, the polling loop and its clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import write_assets

CLI = str(Path(sys.executable).parent / "classie-automl")


def flags(tmp_path: Path, taxonomy: Path) -> list[str]:
    return ["--platform", "files", "--assets", str(tmp_path / "a.csv"), "--taxonomy", str(taxonomy),
            "--state", str(tmp_path / "state")]


def test_predict_without_a_model_says_what_to_do(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", [("1", "our cats", "")])
    done = subprocess.run([CLI, "predict", *flags(tmp_path, small_taxonomy)], capture_output=True, text=True)
    assert done.returncode == 2 and "no model" in done.stderr and "classie-automl train" in done.stderr


def test_missing_setting_is_named(tmp_path):
    done = subprocess.run([CLI, "run", "--once", "--state", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "--assets" in done.stderr and "--taxonomy" in done.stderr


def test_keyword_only_project_then_predict(tmp_path, small_taxonomy):
    # No human label at all: the model is the keyword rules alone, trained in a moment.
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats and dogs", ""), ("2", "mental health support", "")])
    train = subprocess.run([CLI, "train", *flags(tmp_path, small_taxonomy)], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    done = subprocess.run([CLI, "predict", *flags(tmp_path, small_taxonomy)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 pre-annotations written" in done.stdout
    lines = [json.loads(x) for x in (tmp_path / "state" / "preannotations.jsonl").read_text().splitlines()]
    codes = {r["asset_id"]: {p["code"] for p in r["facets"]["subject"]} for r in lines}
    assert codes == {"1": {"AN", "AN1", "AN2"}, "2": {"HE", "HE1"}}  # HE1's rule fires; HE is implied
    assert {p["source"] for r in lines for p in r["facets"]["subject"]} == {"keyword"}


def test_polling_worker_stops_cleanly_on_sigterm(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "")])
    proc = subprocess.Popen([CLI, "run", *flags(tmp_path, small_taxonomy)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    output = tmp_path / "state" / "preannotations.jsonl"
    deadline = time.monotonic() + 60
    while not output.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert output.exists(), proc.stderr.read() if proc.poll() is not None else "no cycle within 60 s"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err and "stopped" in err


def test_sigterm_during_training_abandons_it_and_exits_0(tmp_path):
    from conftest import EXAMPLE, example_rows

    write_assets(tmp_path / "a.csv", example_rows("train.csv", 300) + [("u1", "a school", "")])
    proc = subprocess.Popen([CLI, "run", "--once", "--platform", "files", "--assets", str(tmp_path / "a.csv"),
                             "--taxonomy", str(EXAMPLE / "taxonomy.csv"), "--state", str(tmp_path / "state"),
                             "--budget", "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    logs = tmp_path / "state" / "logs"
    while not logs.exists() and time.monotonic() < deadline:  # the search has started
        time.sleep(0.2)
    time.sleep(2)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert time.monotonic() - started < 20
    assert "training abandoned" in err and "stopped" in err
    assert not (tmp_path / "state" / "models" / "CURRENT").exists()
    assert not list((tmp_path / "state" / "models").glob("v*"))


def test_serve_needs_a_token_then_answers_on_loopback(tmp_path, small_taxonomy):
    import os
    import socket

    import requests

    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "")])
    args = [CLI, "serve", *flags(tmp_path, small_taxonomy)]
    env = {k: v for k, v in os.environ.items() if k != "CLASSIE_API_TOKEN"}
    refused = subprocess.run(args, capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "CLASSIE_API_TOKEN" in refused.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*args, "--port", str(port)], env={**env, "CLASSIE_API_TOKEN": "tok"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        # No version in the state folder: serve trains the first at once, in the background (here: keyword rules).
        while health["model_version"] is None and time.monotonic() < deadline:
            assert health["first_version"].startswith("first version training"), health
            time.sleep(0.2)
            health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
        assert health == {"status": "UP", "model_version": "v1"}
        webhook = requests.post(f"http://127.0.0.1:{port}/webhook", json={"action": "START_TRAINING"},
                                headers={"Authorization": "Bearer tok"}, timeout=5)
        assert webhook.json()["status"] == "scheduled"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_an_unreachable_platform_ends_with_exit_code_3_and_a_message(tmp_path):
    import os

    done = subprocess.run([CLI, "run", "--once", "--platform", "label-studio", "--url", "http://127.0.0.1:9",
                           "--project-id", "1", "--state", str(tmp_path / "state")], capture_output=True, text=True,
                          env={**os.environ, "LABEL_STUDIO_API_KEY": "not-shown-0123"}, timeout=180)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "error: Label Studio at http://127.0.0.1:9 is unavailable" in done.stderr and "Fix:" in done.stderr
    assert "Traceback" not in done.stderr and "not-shown-0123" not in done.stderr


PROJECT_COMMANDS = ("run", "train", "predict", "evaluate", "serve", "report", "label-issues", "models")


def test_every_command_that_reads_a_project_takes_the_project_options():
    """Declared once (cli.PROJECT_OPTIONS): a command that reads a project and forgot one would refuse a flag that
    the command before it took."""
    import typer.main

    from service.app.cli import PROJECT_OPTIONS, app

    commands = typer.main.get_command(app).commands
    wanted = {name.replace("_", "-") for name in PROJECT_OPTIONS}
    for name in PROJECT_COMMANDS:
        taken = {opt.lstrip("-") for param in commands[name].params for opt in param.opts}
        assert wanted <= taken, f"{name} lacks {sorted(wanted - taken)}"
    # the others take those that apply to them, from the same declarations
    assert {"config", "assets", "taxonomy"} <= {o.lstrip("-") for p in commands["simulate"].params for o in p.opts}
    assert {"config", "state"} <= {o.lstrip("-") for p in commands["health"].params for o in p.opts}


def test_the_flags_of_train_work_for_every_command_after_it(tmp_path, small_taxonomy):
    """As a new user would: the same flags, command after command."""
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats and dogs", ""), ("2", "mental health support", "")])
    same = flags(tmp_path, small_taxonomy)
    assert subprocess.run([CLI, "train", *same], capture_output=True, text=True).returncode == 0
    for command in (["models"], ["report", "--out", str(tmp_path / "r.html")], ["predict"]):
        done = subprocess.run([CLI, *command, *same], capture_output=True, text=True)
        assert done.returncode == 0, f"{command}: {done.stderr}"
    done = subprocess.run([CLI, "label-issues", *same], capture_output=True, text=True)
    assert "No such option" not in done.stderr, done.stderr  # a keyword-only version has no list: said with the fix


def test_label_studio_init_refuses_a_backend_host_label_studio_would_refuse_before_creating_anything(
        tmp_path, small_taxonomy):
    """Found by the container trial: Label Studio answers 400 "Enter a valid URL" to a webhook on `http://api:9090`
    (compose's service name), after the project and its tasks were made. Now said first, with the fix."""
    env = {**__import__("os").environ, "CLASSIE_API_TOKEN": "t0ken-for-the-test", "LABEL_STUDIO_API_KEY": "x" * 40}
    done = subprocess.run([CLI, "label-studio-init", "--url", "http://127.0.0.1:9", "--taxonomy", str(small_taxonomy),
                           "--ml-backend-url", "http://api:9090", "--wait", "1"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "without a dot" in done.stderr and "api.classie.internal" in done.stderr and "Fix:" in done.stderr
    assert "127.0.0.1:9" not in done.stderr  # refused before Label Studio was asked anything
