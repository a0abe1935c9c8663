"""The polling worker (`classie-automl run`): a cycle every [worker] interval_seconds until a stop is requested, its
heartbeat kept up to date for the orchestrator and, with [worker] metrics_port, its Prometheus metrics served
meanwhile. One cycle is service.cycle.worker.Worker's; this loop repeats it and decides which failures it outlives."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext

from automl.errors import ClassieError, ClusterError, InputError
from connectors.errors import PlatformUnavailable
from service.app.metrics import WorkerMetrics
from service.cycle.training import TrainingFailed
from service.cycle.worker import Worker
from service.signals import StopRequested
from service.store.heartbeat import Heartbeat
from service.store.registry import ModelVersion

__all__ = ["RECOVERABLE", "PollingLoop"]

log = logging.getLogger(__name__)
# A cycle failing for one of these is logged and the next one tries again (input being edited, a platform still
# failing after the retries, a training that died); other errors (a refused key, a project gone) stop the loop.
# DiskFull is an InputError: space may come back; so may a Dask cluster.
RECOVERABLE = (InputError, PlatformUnavailable, TrainingFailed, ClusterError)


class PollingLoop:
    """Repeats `worker`'s cycle; `heartbeat` (the worker's own, if it has one) says how the last cycle ended."""

    def __init__(self, worker: Worker, heartbeat: Heartbeat | None = None):
        self.worker = worker
        self.heartbeat = heartbeat

    def run(self) -> None:
        """A cycle every [worker] interval_seconds until a stop is requested. A cycle that fails for a reason a
        later one may not have is logged (RECOVERABLE); any other error ends the loop. With [worker] metrics_port,
        Prometheus metrics are served meanwhile (a port that is taken is a ConfigError at the start)."""
        settings = self.worker.settings.worker
        metrics, port = WorkerMetrics(), settings.metrics_port
        try:
            with metrics.serving(settings.metrics_host, port) if port else nullcontext():
                metrics.show_version(self._serving_version())
                self._cycles(metrics)
        except StopRequested as exc:
            log.info("%s", exc)
        finally:
            self._beat("stopped", force=True)

    def _cycles(self, metrics: WorkerMetrics) -> None:
        interval = self.worker.settings.worker.interval_seconds
        while not self.worker.stop.is_set():
            started = time.monotonic()
            try:
                summary = self.worker.run_once()
            except RECOVERABLE as exc:
                metrics.cycle_failed(exc, time.monotonic() - started)
                log.error("cycle failed: %s: %s (next try in %.0f s)", type(exc).__name__, exc, interval)
                if self.heartbeat is not None:
                    self.heartbeat.last_cycle = f"failed: {type(exc).__name__}: {exc}"[:500]
            else:
                metrics.cycle_done(summary, time.monotonic() - started)
                metrics.show_version(self._serving_version())
                if self.heartbeat is not None:
                    self.heartbeat.model_version, self.heartbeat.last_cycle = summary.model_version, "ok"
                    self._beat("idle", force=True)
            self._wait(interval)

    def _serving_version(self) -> ModelVersion | None:
        """For the metrics: the registry's current version, None while it has none or cannot say (the next cycle
        reports why)."""
        try:
            return self.worker.registry.current()
        except ClassieError:
            return None

    def _wait(self, seconds: float) -> None:
        """Until the next cycle is due or a stop is requested, beating every 30 s."""
        due = time.monotonic() + seconds
        while not self.worker.stop.wait(max(0.0, min(30.0, due - time.monotonic()))):
            if time.monotonic() >= due:
                return
            self._beat("idle")

    def _beat(self, phase: str, force: bool = False) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(phase, force)
