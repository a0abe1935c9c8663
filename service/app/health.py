"""Liveness for an orchestrator (Docker's HEALTHCHECK, Kubernetes probes): the worker's heartbeat file, or the API's
/health endpoint.

`classie-automl health` reads the heartbeat (service.store.heartbeat): healthy while the last beat is younger than
[worker] stale_after_seconds. A platform that keeps failing does not make the worker unhealthy (restarting it would
not help); the last error is shown instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import requests

from service.store.heartbeat import HEARTBEAT_NAME, read_beat

__all__ = ["HealthStatus", "backend_health", "check_heartbeat", "check_url"]


@dataclass(frozen=True)
class HealthStatus:
    healthy: bool
    message: str


def check_heartbeat(state_dir: Path, stale_after: float, now: float | None = None) -> HealthStatus:
    path = Path(state_dir) / HEARTBEAT_NAME
    try:
        beat = read_beat(state_dir)
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


def backend_health(backend_url: str, timeout: float = 5.0) -> dict | None:
    """The API's /health answer (its model version, its Label Studio project, how its first version is doing); None
    when it cannot be had from here."""
    try:
        response = requests.get(backend_url.rstrip("/") + "/health", timeout=timeout)
        answer = response.json() if response.ok else None
    except (requests.RequestException, ValueError):
        return None
    return answer if isinstance(answer, dict) else None
