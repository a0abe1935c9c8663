"""What an operator relies on: the health command, JSON log lines, secrets from mounted files, configuration from
CLASSIE_CONFIG, and one cycle at a time on a shared state folder."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import write_assets
from service.app.factory import build_worker
from service.app.health import check_heartbeat
from service.app.logs import setup_logging
from service.config import ConfigError, Secrets, load_settings, read_secrets
from service.cycle.worker import Worker
from service.signals import StopRequested
from service.store.heartbeat import Heartbeat

CLI = str(Path(sys.executable).parent / "classie-automl")


def test_heartbeat_health(tmp_path):
    assert not check_heartbeat(tmp_path, 60).healthy  # never started
    beat = Heartbeat(tmp_path, every=5)
    beat.beat("training")
    status = check_heartbeat(tmp_path, 60)
    assert status.healthy and "training" in status.message
    assert not check_heartbeat(tmp_path, 60, now=time.time() + 61).healthy  # stuck
    beat.beat("stopped", force=True)
    assert not check_heartbeat(tmp_path, 60).healthy
    (tmp_path / "worker.heartbeat.json").write_text("{broken")
    assert "unreadable" in check_heartbeat(tmp_path, 60).message


def test_heartbeat_writes_are_throttled_within_a_phase(tmp_path):
    beat = Heartbeat(tmp_path, every=5)
    beat.beat("pulling", assets=1)
    first = (tmp_path / "worker.heartbeat.json").read_text()
    beat.beat("pulling", assets=2)  # same phase within 5 s: not written
    assert (tmp_path / "worker.heartbeat.json").read_text() == first
    beat.beat("training")  # a new phase always is
    assert json.loads((tmp_path / "worker.heartbeat.json").read_text())["phase"] == "training"


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"status": "UP"}')

    def log_message(self, *_args):
        pass


def test_health_command_exit_codes(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CLASSIE_STATE_DIR": str(tmp_path)}
    done = subprocess.run([CLI, "health"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout.startswith("unhealthy: no heartbeat")
    Heartbeat(tmp_path).beat("idle")
    done = subprocess.run([CLI, "health"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("healthy")
    done = subprocess.run([CLI, "health"], env={**env, "CLASSIE_WORKER__STALE_AFTER_SECONDS": "0.001"},
                          capture_output=True, text=True)
    assert done.returncode == 1 and "no heartbeat for" in done.stdout

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/health"
    try:
        done = subprocess.run([CLI, "health"], env={**env, "CLASSIE_HEALTH_URL": url}, capture_output=True, text=True)
        assert done.returncode == 0 and "UP" in done.stdout
        _Answer.status = 503
        done = subprocess.run([CLI, "health", "--url", url], env=env, capture_output=True, text=True)
        assert done.returncode == 1 and "HTTP 503" in done.stdout
    finally:
        _Answer.status = 200
        server.shutdown()
        server.server_close()
    done = subprocess.run([CLI, "health", "--url", url], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "ConnectionError" in done.stdout


def test_json_log_lines(capsys):
    setup_logging(environ={"CLASSIE_LOG_FORMAT": "json"})
    try:
        logging.getLogger("service.cycle.worker").info("cycle: pulled %d", 3,
                                                       extra={"event": "cycle", "cycle": {"n": 3}})
        logging.getLogger("x").warning("plain ünïcode")
    finally:
        setup_logging(environ={})
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "cycle: pulled 3" and lines[0]["level"] == "INFO"
    assert lines[0]["logger"] == "service.cycle.worker" and lines[0]["cycle"] == {"n": 3} and "time" in lines[0]
    assert lines[1]["message"] == "plain ünïcode" and lines[1]["level"] == "WARNING"


def test_bad_log_settings_are_named(tmp_path):
    done = subprocess.run([CLI, "run", "--once", "--state", str(tmp_path)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "CLASSIE_LOG_FORMAT": "xml"})
    assert done.returncode == 2 and "CLASSIE_LOG_FORMAT='xml'" in done.stderr
    with pytest.raises(ConfigError, match="CLASSIE_LOG_LEVEL"):
        setup_logging(environ={"CLASSIE_LOG_LEVEL": "LOUD"})


def test_a_search_s_local_dask_cluster_logs_at_warning_like_the_other_libraries():
    # distributed sets its own loggers' levels from dask's config when imported, which a search does after set-up.
    code = ("import logging; from service.app.logs import setup_logging; setup_logging(); import distributed;"
            " print(logging.getLogger('distributed').getEffectiveLevel())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == logging.WARNING


def test_secrets_from_mounted_files(tmp_path):
    secret = tmp_path / "kili_api_key"
    secret.write_text("s3cr3t\n")
    env = {"KILI_API_KEY_FILE": str(secret)}
    assert read_secrets(env).kili_api_key.get_secret_value() == "s3cr3t" and "KILI_API_KEY" not in env
    direct = {"KILI_API_KEY": "direct", "KILI_API_KEY_FILE": str(secret)}
    assert read_secrets(direct).kili_api_key.get_secret_value() == "direct"
    assert "s3cr3t" not in repr(read_secrets(env)) and "s3cr3t" not in str(read_secrets(env))
    with pytest.raises(ConfigError, match="cannot read"):
        read_secrets({"CLASSIE_API_TOKEN_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_secrets({"LABEL_STUDIO_API_KEY_FILE": str(tmp_path / "empty")})
    done = subprocess.run([CLI, "models", "--state", str(tmp_path)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "CLASSIE_API_TOKEN_FILE": str(tmp_path / "missing")})
    assert done.returncode == 2 and "CLASSIE_API_TOKEN_FILE" in done.stderr and "Traceback" not in done.stderr


def test_serve_reads_its_token_from_a_file(tmp_path, small_taxonomy):
    """The secret file reaches the command (serve refuses to start without a token: it starts here)."""
    import socket

    import requests

    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "")])
    (tmp_path / "token").write_text("from-a-file")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "CLASSIE_API_TOKEN_FILE": str(tmp_path / "token"),
             "CLASSIE_FILES__ASSETS": str(tmp_path / "a.csv"), "CLASSIE_TAXONOMY__PATH": str(small_taxonomy),
             "CLASSIE_STATE_DIR": str(tmp_path / "state")})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/setup", timeout=1,
                                      headers={"Authorization": "Bearer from-a-file"})
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        assert answer.status_code != 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "from-a-file" not in err


def test_config_file_from_the_environment(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "")])
    config = tmp_path / "classie.toml"
    config.write_text(f'platform = "files"\nstate_dir = "st"\n[files]\nassets = "a.csv"\n'
                      f'[taxonomy]\npath = "{small_taxonomy}"\n')
    done = subprocess.run([CLI, "train"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "CLASSIE_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "st" / "models" / "CURRENT").exists()


def _worker(tmp_path, small_taxonomy, stop=None) -> Worker:
    settings = load_settings(None, {"state_dir": str(tmp_path / "state"), "files": {"assets": str(tmp_path / "a.csv")},
                                    "taxonomy": {"path": str(small_taxonomy)}})
    return build_worker(settings, Secrets(), stop)


def test_one_cycle_at_a_time_per_state_folder(tmp_path, small_taxonomy):
    """The worker container and the API's webhook cycles share a state volume: a cycle waits for the other's."""
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "")])
    (tmp_path / "state").mkdir()
    other = FileLock(str(tmp_path / "state" / "cycle.lock"), thread_local=False)  # released by a timer thread
    other.acquire()
    stop = threading.Event()
    stop.set()
    with pytest.raises(StopRequested):  # a stop while waiting ends the wait
        _worker(tmp_path, small_taxonomy, stop).run_once()

    worker = _worker(tmp_path, small_taxonomy)
    threading.Timer(1.5, other.release).start()
    started = time.monotonic()
    report = worker.run_once()
    assert time.monotonic() - started >= 1.4 and report.written == 1


def test_a_stop_after_the_version_is_registered_keeps_it_and_cuts_only_its_report(tmp_path, small_taxonomy,
                                                                                   monkeypatch, caplog):
    import service.cycle.training as training

    # The report (an extra, written after the version is registered) hangs: the stop comes while it is written.
    monkeypatch.setattr(training, "_write_report", lambda *args: time.sleep(60))
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "AN1"), ("2", "dogs and walks", "AN2"),
                                      ("u1", "our cat rescue", "")])
    settings = load_settings(None, {"state_dir": str(tmp_path / "state"), "files": {"assets": str(tmp_path / "a.csv")},
                                    "taxonomy": {"path": str(small_taxonomy)}})
    worker = build_worker(settings, Secrets())
    taxonomy = worker.connector.pull_taxonomy()
    labelled = [a for a in worker.connector.pull_assets() if a.labels]
    stop = threading.Event()

    def stop_once_registered():
        while not (tmp_path / "state" / "models" / "CURRENT").exists():
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()

    threading.Thread(target=stop_once_registered, daemon=True).start()
    started = time.monotonic()
    version = training.train_version(settings, worker.registry, taxonomy, labelled, stop, lambda: None)
    assert time.monotonic() - started < 30  # the hanging report was ended, not waited for
    assert version.name == "v1" and worker.registry.current().name == "v1"
    assert "stop requested while its report was written" in caplog.text
