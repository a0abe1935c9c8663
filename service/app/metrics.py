"""The polling worker's own Prometheus metrics ([worker] metrics_port): cycles by outcome and their duration, what
they pulled and pushed, trainings, retried platform calls, and the version in service with its evaluation-slice
figures. One registry per `WorkerMetrics` (no process-wide state); its HTTP endpoint lives as long as
the polling loop (service.app.polling), so a stopped worker leaves no thread or port behind."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from connectors.retry import RETRY_CAUSE
from service.config import ConfigError

if TYPE_CHECKING:
    from service.cycle.records import CycleSummary
    from service.store.registry import ModelVersion

__all__ = ["WorkerMetrics"]

log = logging.getLogger(__name__)
OUTCOMES = ("ok", "nothing_to_do", "failed", "stopped")
# The retry policy logs one WARNING per retry, with its cause in the record (connectors.retry.RETRY_CAUSE):
# counting those records needs no hook in every connector.
RETRY_LOGGER = "connectors.retry"
CYCLE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TRAINING_BUCKETS = (1, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
# service.quality.promotion.SliceFigures, as the gate keeps them in the version's meta.json
SLICE_FIGURES = {"micro_f1": "Micro-F1 (the facet's levels together)",
                 "effort_ratio": "Labeller effort ratio (edits with the pre-annotations / edits without)",
                 "prefill_precision": "Pre-fill precision"}


def outcome(summary: CycleSummary) -> str:
    """ok: it trained or pre-annotated; nothing_to_do: neither; stopped: a stop request cut it short."""
    if summary.abandoned:
        return "stopped"
    return "ok" if summary.trained or summary.predicted else "nothing_to_do"


class _RetryCounter(logging.Handler):
    """Counts the retry policy's records by their cause."""

    def __init__(self, counter: Counter):
        super().__init__(logging.NOTSET)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        cause = getattr(record, RETRY_CAUSE, None)
        if isinstance(cause, str):
            self.counter.labels(cause).inc()


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    where = f"[worker] metrics_port {port} on metrics_host {host!r}"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where}: the port is taken (another worker or program listens there). Fix: stop it, or set"
                " another port ([worker] metrics_port or CLASSIE_WORKER__METRICS_PORT).")
    if exc.errno == errno.EACCES:
        return f"{where}: not allowed ({exc.strerror}). Fix: use a port above 1023 ([worker] metrics_port)."
    return (f"{where}: cannot listen there ({exc.strerror or exc}). Fix: set [worker] metrics_host to an address of"
            " this machine (127.0.0.1, or 0.0.0.0 for every interface; CLASSIE_WORKER__METRICS_HOST).")


class WorkerMetrics:
    """What the polling worker did, for Prometheus. `clock` (monotonic seconds) is for the seconds since the last
    successful cycle, counted from the creation until a cycle succeeds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = r = CollectorRegistry()
        self.cycles = Counter("classie_worker_cycles_total", "Worker cycles by outcome (ok: trained or"
                              " pre-annotated; nothing_to_do; failed; stopped)", ["outcome"], registry=r)
        self.failures = Counter("classie_worker_cycle_failures_total", "Failed cycles by the error's type (the"
                                " loop goes on)", ["error"], registry=r)
        self.cycle_seconds = Histogram("classie_worker_cycle_seconds", "Duration of a cycle, failed ones too",
                                       buckets=CYCLE_BUCKETS, registry=r)
        self.pulled = Counter("classie_worker_assets_pulled_total", "Assets pulled from the platform", registry=r)
        self.pushed = Counter("classie_worker_preannotations_pushed_total", "Pre-annotations written to the"
                              " platform", registry=r)
        self.prioritised = Counter("classie_worker_priorities_pushed_total", "Labelling priorities the platform"
                                   " took", registry=r)
        self.retries = Counter("classie_worker_platform_retries_total", "Platform calls retried, by cause",
                               ["cause"], registry=r)
        self.trainings = Counter("classie_worker_trainings_total", "Versions trained, by the promotion gate's"
                                 " verdict", ["outcome"], registry=r)
        self.training_seconds = Histogram("classie_worker_training_seconds", "Duration of a training",
                                          buckets=TRAINING_BUCKETS, registry=r)
        self.version = Gauge("classie_worker_model_version", "1 for the model version in service", ["version"],
                             registry=r)
        self.slice_assets = Gauge("classie_worker_slice_assets", "Labelled assets in the evaluation slice when the"
                                  " version in service was judged", registry=r)
        self.slice = {figure: Gauge(f"classie_worker_slice_{figure}", f"{what} of the version in service on the"
                                    " promotion gate's evaluation slice, per facet", ["facet"], registry=r)
                      for figure, what in SLICE_FIGURES.items()}
        self._clock, self._last_success = clock, clock()
        self._shown: int | None = None
        Gauge("classie_worker_seconds_since_last_success", "Seconds since the last cycle that ended without error"
              " (since the start when none has)", registry=r).set_function(lambda: self._clock() - self._last_success)
        for name in OUTCOMES:  # every series from zero: rate() and increase() see the first one
            self.cycles.labels(name)
        for name in ("promoted", "rejected"):
            self.trainings.labels(name)

    def cycle_done(self, summary: CycleSummary, seconds: float) -> None:
        self.cycle_seconds.observe(seconds)
        self.pulled.inc(summary.pulled)
        self.pushed.inc(summary.written)
        self.prioritised.inc(summary.prioritised)
        if summary.trained:
            self.trainings.labels("rejected" if summary.rejected else "promoted").inc()
            self.training_seconds.observe(summary.timings.get("train", 0.0))
        kind = outcome(summary)
        if kind != "stopped":
            self._last_success = self._clock()
        self.cycles.labels(kind).inc()

    def cycle_failed(self, exc: BaseException, seconds: float) -> None:
        self.cycle_seconds.observe(seconds)
        self.failures.labels(type(exc).__name__).inc()
        self.cycles.labels("failed").inc()

    def show_version(self, version: ModelVersion | None) -> None:
        """The version in service and its figures on the evaluation slice, as its promotion gate scored them."""
        number = version.number if version is not None else None
        if number == self._shown:
            return
        self.version.clear()
        for gauge in self.slice.values():
            gauge.clear()
        self._shown = number
        self.slice_assets.set(version.gate.get("slice_assets", 0) if version is not None else 0)
        if version is None:
            return
        self.version.labels(version.name).set(1)
        for facet, figures in (version.gate.get("candidate") or {}).items():
            for figure, gauge in self.slice.items():
                if isinstance(figures, dict) and figure in figures:
                    gauge.labels(facet).set(figures[figure])

    @contextmanager
    def serving(self, host: str, port: int) -> Iterator[None]:
        """The registry at http://host:port/metrics, and the retries counted, until the block ends."""
        try:
            server, thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:  # taken, not allowed, or not an address of this machine
            raise ConfigError(_listen_problem(host, port, exc)) from None
        counter = _RetryCounter(self.retries)
        retry_log = logging.getLogger(RETRY_LOGGER)
        retry_log.addHandler(counter)
        log.info("worker metrics at http://%s:%d/metrics", host, port)
        try:
            yield
        finally:
            retry_log.removeHandler(counter)
            server.shutdown()
            server.server_close()
            thread.join(timeout=5.0)
