"""The polling worker's own Prometheus endpoint ([worker] metrics_port): a real worker on the files platform with a
keyword-only model (a few labelled assets: no search), scraped over HTTP while it runs; off by default; a port that is
taken stops it with the fix; and the endpoint goes away with the loop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import write_assets
from connectors.retry import with_retries
from label_studio_server import free_port
from service.app.factory import build_worker
from service.app.metrics import WorkerMetrics
from service.app.polling import PollingLoop
from service.config import ConfigError, Secrets, load_settings
from service.cycle.records import CycleSummary
from service.cycle.worker import Worker
from service.store.registry import ModelRegistry

CLI = str(Path(sys.executable).parent / "classie-automl")
# "9" is in the promotion gate's evaluation slice (holdout_fraction 0.15), so v1 has slice figures.
ROWS = [("1", "a shelter for cats", "AN1"), ("2", "dogs and walks", "AN2"), ("9", "a cat rescue", "AN1"),
        ("u1", "our cat rescue", ""), ("u2", "a school for all", "")]


def assert_free(port: int) -> None:
    """Nothing listens on the port (SO_REUSEADDR: the closed connections' TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def settings_for(tmp_path: Path, taxonomy: Path, **worker):
    return load_settings(None, {"state_dir": str(tmp_path / "state"), "worker": worker,
                                "files": {"assets": str(tmp_path / "a.csv")}, "taxonomy": {"path": str(taxonomy)}})


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}}."""
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


class Loop:
    """The polling loop in a thread, one cycle per `next_cycle()`: the wait between cycles is the test's."""

    def __init__(self, worker: Worker):
        self.worker, self.reports = worker, []
        self._go, self._idle = threading.Semaphore(0), threading.Semaphore(0)
        run_once = worker.run_once
        worker.run_once = lambda: self.reports.append(run_once()) or self.reports[-1]
        self.loop = PollingLoop(worker)
        self.loop._wait = self._wait
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="worker-under-test")

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _wait(self, _seconds: float) -> None:
        self._idle.release()  # the cycle's metrics are all counted by now
        while not self._go.acquire(timeout=0.05):
            if self.worker.stop.is_set():
                return

    def idle(self) -> None:
        assert self._idle.acquire(timeout=60), f"no cycle ended within 60 s ({self.error!r})"

    def next_cycle(self) -> None:
        self._go.release()
        self.idle()


@contextmanager
def running(worker: Worker) -> Iterator[Loop]:
    loop = Loop(worker)
    loop.thread.start()
    try:
        loop.idle()
        yield loop
    finally:
        worker.stop.set()
        loop.thread.join(timeout=30)
    assert not loop.thread.is_alive() and loop.error is None, loop.error


def serving_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "serve_forever" in t.name]


def listening_sockets() -> set[str]:
    """The inodes of this process's listening TCP sockets."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening.add(fields[9])
    return mine & listening


@pytest.fixture
def project(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", ROWS)
    return tmp_path, small_taxonomy


def test_metrics_follow_the_cycles(project):
    tmp_path, taxonomy = project
    port = free_port()
    worker = build_worker(settings_for(tmp_path, taxonomy, metrics_port=port), Secrets())
    with running(worker) as loop:
        first = scrape(port)
        trained: CycleSummary = loop.reports[0]
        assert trained.trained and trained.written == 2 and trained.model_version == "v1"
        assert value(first, "classie_worker_cycles_total", outcome="ok") == 1
        assert value(first, "classie_worker_cycles_total", outcome="failed") == 0
        assert value(first, "classie_worker_cycles_total", outcome="nothing_to_do") == 0
        assert value(first, "classie_worker_assets_pulled_total") == trained.pulled == len(ROWS)
        assert value(first, "classie_worker_preannotations_pushed_total") == trained.written
        assert value(first, "classie_worker_priorities_pushed_total") == trained.prioritised
        assert value(first, "classie_worker_trainings_total", outcome="promoted") == 1
        assert value(first, "classie_worker_training_seconds_count") == 1
        assert value(first, "classie_worker_training_seconds_sum") == pytest.approx(trained.timings["train"])
        assert value(first, "classie_worker_cycle_seconds_count") == 1
        assert first["classie_worker_model_version"] == {(("version", "v1"),): 1.0}
        gate = ModelRegistry(tmp_path / "state" / "models").current().gate
        assert value(first, "classie_worker_slice_assets") == gate["slice_assets"] == 1
        for figure in ("micro_f1", "effort_ratio", "prefill_precision"):
            assert value(first, f"classie_worker_slice_{figure}", facet="subject") == gate["candidate"]["subject"][
                figure]
        since_ok = value(first, "classie_worker_seconds_since_last_success")
        assert 0 <= since_ok < 30

        time.sleep(0.3)  # it counts at scrape time
        assert value(scrape(port), "classie_worker_seconds_since_last_success") >= since_ok + 0.3

        (tmp_path / "a.csv").rename(tmp_path / "gone.csv")  # a failed cycle: the loop goes on
        loop.next_cycle()
        failed = scrape(port)
        assert len(loop.reports) == 1
        assert value(failed, "classie_worker_cycles_total", outcome="failed") == 1
        assert value(failed, "classie_worker_cycle_failures_total", error="AssetFileError") == 1
        assert value(failed, "classie_worker_cycle_seconds_count") == 2
        since_failure = value(failed, "classie_worker_seconds_since_last_success")
        assert since_failure > since_ok + 0.3  # a failed cycle is no success

        (tmp_path / "gone.csv").rename(tmp_path / "a.csv")
        loop.next_cycle()
        idle = scrape(port)
        quiet = loop.reports[1]
        assert not quiet.trained and quiet.predicted == 0
        assert value(idle, "classie_worker_cycles_total", outcome="nothing_to_do") == 1
        assert value(idle, "classie_worker_cycles_total", outcome="ok") == 1
        assert value(idle, "classie_worker_assets_pulled_total") == trained.pulled + quiet.pulled
        assert value(idle, "classie_worker_preannotations_pushed_total") == trained.written + quiet.written
        assert value(idle, "classie_worker_trainings_total", outcome="promoted") == 1
        assert value(idle, "classie_worker_seconds_since_last_success") < since_failure
        assert idle["classie_worker_model_version"] == {(("version", "v1"),): 1.0}
        assert serving_threads()
    # The endpoint ends with the loop: no thread left, nothing listening, the port free again.
    assert not serving_threads()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    assert_free(port)


def test_without_metrics_port_nothing_listens(project):
    tmp_path, taxonomy = project
    settings = settings_for(tmp_path, taxonomy)
    assert settings.worker.metrics_port is None
    before = listening_sockets()
    with running(build_worker(settings, Secrets())) as loop:
        assert loop.reports[0].written == 2
        assert listening_sockets() == before
        assert not serving_threads()


def test_a_taken_port_stops_the_worker_with_the_fix(project):
    tmp_path, taxonomy = project
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = build_worker(settings_for(tmp_path, taxonomy, metrics_port=port), Secrets())
        with pytest.raises(ConfigError) as caught:
            PollingLoop(worker).run()
        message = str(caught.value)
        assert f"[worker] metrics_port {port}" in message and "taken" in message
        assert "Fix:" in message and "CLASSIE_WORKER__METRICS_PORT" in message
        assert not (tmp_path / "state" / "models").exists()  # it stopped before any cycle
        # The command line: exit code 2 and the message, no traceback.
        done = subprocess.run([CLI, "run", "--platform", "files", "--assets", str(tmp_path / "a.csv"),
                               "--taxonomy", str(taxonomy), "--state", str(tmp_path / "state")],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CLASSIE_WORKER__METRICS_PORT": str(port)})
    assert done.returncode == 2, done.stderr
    assert f"error: [worker] metrics_port {port}" in done.stderr and "Traceback" not in done.stderr
    assert not serving_threads()


@pytest.mark.parametrize("port", [0, 65536, -1, "http"])
def test_the_port_is_checked(tmp_path, small_taxonomy, port):
    with pytest.raises(ConfigError, match=r"worker\.metrics_port"):
        settings_for(tmp_path, small_taxonomy, metrics_port=port)


def test_the_environment_sets_the_port_or_turns_it_off(monkeypatch):
    """The image sets CLASSIE_WORKER__METRICS_PORT=9100 and 0.0.0.0; a container's environment can change both,
    and an empty value turns the endpoint off (an environment cannot unset the image's variable)."""
    for name in ("CLASSIE_WORKER__METRICS_PORT", "CLASSIE_WORKER__METRICS_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert (load_settings().worker.metrics_port, load_settings().worker.metrics_host) == (None, "127.0.0.1")
    monkeypatch.setenv("CLASSIE_WORKER__METRICS_PORT", "9100")
    monkeypatch.setenv("CLASSIE_WORKER__METRICS_HOST", "0.0.0.0")
    assert (load_settings().worker.metrics_port, load_settings().worker.metrics_host) == (9100, "0.0.0.0")
    monkeypatch.setenv("CLASSIE_WORKER__METRICS_PORT", "")
    assert load_settings().worker.metrics_port is None


def test_retries_are_counted_by_cause():
    """The one retry policy (connectors.retry), on a call that fails twice before it answers."""
    refused = requests.Response()
    refused.status_code = 503
    failures = [requests.ConnectionError("connection refused"),
                requests.HTTPError("503 Server Error", response=refused)]

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "answer"

    metrics, port = WorkerMetrics(), free_port()
    with metrics.serving("127.0.0.1", port):
        assert with_retries(flaky, "Test platform", what="GET /x")() == "answer"
        samples = scrape(port)
    assert value(samples, "classie_worker_platform_retries_total", cause="ConnectionError") == 1
    assert value(samples, "classie_worker_platform_retries_total", cause="HTTPError 503") == 1
    with_retries(lambda: "no retry", "Test platform")()  # after the block, nothing is counted any more
    assert metrics.registry.get_sample_value("classie_worker_platform_retries_total",
                                             {"cause": "ConnectionError"}) == 1


def test_the_run_command_serves_metrics_until_sigterm(project):
    """The image's command, as Docker runs it: `run` with CLASSIE_WORKER__METRICS_PORT, stopped by SIGTERM."""
    tmp_path, taxonomy = project
    port = free_port()
    proc = subprocess.Popen([CLI, "run", "--platform", "files", "--assets", str(tmp_path / "a.csv"), "--taxonomy",
                             str(taxonomy), "--state", str(tmp_path / "state")],
                            env={**os.environ, "CLASSIE_WORKER__METRICS_PORT": str(port)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, cycles = time.monotonic() + 60, 0.0
        while time.monotonic() < deadline and proc.poll() is None and not cycles:
            try:
                cycles = value(scrape(port), "classie_worker_cycles_total", outcome="ok")
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert cycles == 1, proc.stderr.read() if proc.poll() is not None else "no cycle within 60 s"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"worker metrics at http://127.0.0.1:{port}/metrics" in err
    assert_free(port)
