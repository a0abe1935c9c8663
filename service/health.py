"""Liveness for an orchestrator (Docker's HEALTHCHECK, Kubernetes probes): the worker's heartbeat file, or the API's
/health endpoint.

The polling worker writes `<state>/worker.heartbeat.json` at every step of a cycle (each page of a pull, each
training poll, each pushed batch) and while it waits for the next cycle. `classie-automl health` reads it: healthy
while the last beat is younger than [worker] stale_after_seconds. A platform that keeps failing does not make the
worker unhealthy (restarting it would not help); the last error is shown instead.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

HEARTBEAT_NAME = "worker.heartbeat.json"


@dataclass
class Beat:
    phase: str  # starting, pulling, training, pre-annotating, idle, stopped
    time: float
    pid: int
    model_version: str = ""
    last_cycle: str = ""  # "ok", or the error of the last failed cycle
    detail: dict = field(default_factory=dict)


class Heartbeat:
    """Writes the worker's heartbeat atomically, at most every `every` seconds unless the phase changes."""

    def __init__(self, state_dir: Path, every: float = 5.0):
        self.path = Path(state_dir) / HEARTBEAT_NAME
        self.every = every
        self._last: tuple[str, float] = ("", 0.0)
        self.model_version = ""
        self.last_cycle = ""

    @classmethod
    def started(cls, state_dir: Path) -> Heartbeat:
        """A heartbeat that says "starting" at once (connecting to a platform may take a while)."""
        heartbeat = cls(state_dir)
        heartbeat.beat("starting", force=True)
        return heartbeat

    def beat(self, phase: str, force: bool = False, **detail) -> None:
        now = time.time()
        if not force and phase == self._last[0] and now - self._last[1] < self.every:
            return
        beat = Beat(phase, now, os.getpid(), self.model_version, self.last_cycle, detail)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{HEARTBEAT_NAME}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(beat)), encoding="utf-8")
        os.replace(tmp, self.path)
        self._last = (phase, now)


@dataclass(frozen=True)
class HealthStatus:
    healthy: bool
    message: str


def check_heartbeat(state_dir: Path, stale_after: float, now: float | None = None) -> HealthStatus:
    path = Path(state_dir) / HEARTBEAT_NAME
    try:
        beat = Beat(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return HealthStatus(False, f"no heartbeat at {path}: the worker has not started a cycle yet (or uses"
                                   " another state dir)")
    except (OSError, ValueError, TypeError) as exc:
        return HealthStatus(False, f"unreadable heartbeat {path}: {exc}")
    age = (time.time() if now is None else now) - beat.time
    where = f"{beat.phase}, model {beat.model_version or 'none'}, last cycle {beat.last_cycle or 'not finished'}"
    if beat.phase == "stopped":
        return HealthStatus(False, f"the worker stopped ({where})")
    if age > stale_after:
        return HealthStatus(False, f"no heartbeat for {age:.0f} s (limit {stale_after:.0f} s): stuck while {where}")
    return HealthStatus(True, f"alive {age:.0f} s ago: {where}")


def check_url(url: str, timeout: float = 5.0) -> HealthStatus:
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return HealthStatus(False, f"{url}: {type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return HealthStatus(False, f"{url}: HTTP {response.status_code}")
    return HealthStatus(True, f"{url}: {response.text.strip()[:200]}")
