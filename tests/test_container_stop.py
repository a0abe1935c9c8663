"""`docker stop` on the real process. The image's own command line (ENTRYPOINT + CMD of docker/Dockerfile: tini, then
`classie-automl run`), configured only by environment variables as in a container, is sent SIGTERM in each phase of
its life: during a training, in the middle of pushing, and while it waits. Each time it must exit 0 within the stop
timeout compose.yaml gives it, keep nothing half-done, and resume where it left off."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLE, example_rows, heartbeat, jsonl, pushed_count, write_assets
from test_docker import COMPOSE, exec_form, stage

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def image_command() -> list[str]:
    runtime = stage("runtime")
    command = (exec_form(next(a for kw, a in runtime if kw == "ENTRYPOINT"))
               + exec_form(next(a for kw, a in runtime if kw == "CMD")))
    assert command[:3] == ["tini", "--", "classie-automl"], command
    tini = shutil.which("tini")  # in the image; here only where Debian's tini package is installed
    return [*([tini, "--"] if tini else []), str(BIN / "classie-automl"), *command[3:]]


def stop_timeout() -> float:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    grace = compose["services"]["worker"]["stop_grace_period"]
    return float(re.fullmatch(r"(\d+)s", grace).group(1))


def container_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1",
        "CLASSIE_PLATFORM": "files", "CLASSIE_STATE_DIR": str(tmp_path / "state"),
        "CLASSIE_FILES__ASSETS": str(tmp_path / "assets.csv"),
        "CLASSIE_TAXONOMY__PATH": str(EXAMPLE / "taxonomy.csv"),
        "CLASSIE_LOG_FORMAT": "json",
        "CLASSIE_MODEL__BUDGET_SECONDS": "30", "CLASSIE_MODEL__MAX_EVALUATIONS": "2",
        "CLASSIE_MODEL__CV_FOLDS": "3",
        "CLASSIE_WORKER__BATCH_SIZE": "2", "CLASSIE_WORKER__INTERVAL_SECONDS": "3600",
        # In a container tini is PID 1 and reaps orphans as such; here it registers as a subreaper to do the same.
        "TINI_SUBREAPER": "1",
    }


class Container:
    """The worker process as `docker run` starts it, and `docker stop` (SIGTERM, then the stop timeout)."""

    def __init__(self, tmp_path: Path):
        self.env = container_env(tmp_path)
        self.state = tmp_path / "state"
        self.log = tmp_path / f"stderr-{time.monotonic_ns()}.log"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(image_command(), env=self.env, stdout=subprocess.DEVNULL, stderr=err,
                                         cwd=tmp_path)

    def wait_for(self, phase: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while heartbeat(self.state).get("phase") != phase:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {phase!r} phase in {timeout} s:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.02)

    def stop(self) -> tuple[float, list[dict]]:
        """SIGTERM; the exit code must be 0 within the stop timeout. Returns the time taken and the log records."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=stop_timeout())
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"still running {stop_timeout():.0f} s after SIGTERM (docker would SIGKILL it)")
        took = time.monotonic() - started
        text = self.log.read_text()
        assert code == 0, text[-3000:]
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pytest.fail(f"CLASSIE_LOG_FORMAT=json, yet a log line is not JSON: {line!r}")
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
        return took, records

    def health(self) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "classie-automl"), "health"], env=self.env, capture_output=True, text=True)


def test_docker_stop_in_every_phase_exits_0_in_time_and_loses_nothing(tmp_path):
    unlabelled = [(f"u{i}", text, "") for i, (_, text, _) in enumerate(example_rows("test.csv", 400))]
    write_assets(tmp_path / "assets.csv", example_rows("train.csv", 1000) + unlabelled)
    state = tmp_path / "state"

    # 1. During the training: abandoned at once, nothing of it saved.
    first = Container(tmp_path)
    first.wait_for("training")
    time.sleep(1.0)
    took, records = first.stop()
    messages = [r["message"] for r in records]
    assert any("training abandoned" in m for m in messages) and messages[-1] == "stopped"
    assert not list((state / "models").glob("v*")) and not (state / "models" / "CURRENT").exists()
    assert heartbeat(state)["phase"] == "stopped"
    assert first.health().returncode == 1
    stops = {"training": took}

    # 2. In the middle of pushing: the batch in flight ends, the rest is left for the next start.
    second = Container(tmp_path)
    second.wait_for("pre-annotating")
    took, records = second.stop()
    stops["pushing"] = took
    left = [r for r in records if "left for the next run" in r["message"]]
    assert left, "the stop came after the last batch: nothing was interrupted"
    written = jsonl(state / "preannotations.jsonl")
    assert 0 < len(written) < len(unlabelled)
    assert pushed_count(state) == len(written)  # every line written is recorded, and nothing else
    done_before = len(written)

    # 3. Restarted: no training (v1 is current), the rest is pushed, each asset exactly once; then idle.
    third = Container(tmp_path)
    third.wait_for("idle")
    written = jsonl(state / "preannotations.jsonl")
    assert sorted(r["asset_id"] for r in written) == sorted(a for a, _, _ in unlabelled)
    assert {r["model_version"] for r in written} == {"v1"}
    health = third.health()
    assert health.returncode == 0 and health.stdout.startswith("healthy"), health.stdout + health.stderr
    took, records = third.stop()
    stops["idle"] = took
    cycle = next(r for r in records if r.get("event") == "cycle")
    assert cycle["cycle"]["trained"] is False and cycle["cycle"]["written"] == len(unlabelled) - done_before
    assert stops["idle"] < 5 and stops["pushing"] < 10 and stops["training"] < 20, stops
    print(f"stop times (s): { {k: round(v, 2) for k, v in stops.items()} }, tini={shutil.which('tini')}")
    assert (state / "models" / "CURRENT").read_text().strip() == "1"

