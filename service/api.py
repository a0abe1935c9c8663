"""The HTTP API beside the worker: health, metrics, predictions on demand, and a webhook that schedules training.

It serves the registry's current version and picks up a newly promoted one without a restart. Training never runs
inside a request: the webhook only schedules a worker cycle in the background, debounced.
"""

from __future__ import annotations

import base64
import functools
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from connectors.label_studio_schema import LabelConfigError, parse_label_config
from service.registry import ModelRegistry, ModelUnloadable, ModelVersion

log = logging.getLogger(__name__)
# Label Studio's webhook actions that change human labels (bulk imports and deletions use the plural forms), and
# the ML backend's "Start training" button.
TRAINING_EVENTS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                             "ANNOTATIONS_DELETED", "START_TRAINING"})


@dataclass(frozen=True)
class ApiSettings:
    token: str
    text_key: str = "text"  # the task data field holding the text
    max_body_bytes: int = 10 * 1024 * 1024
    max_tasks: int = 1000
    debounce_seconds: float = 10.0


class Metrics:
    """One Prometheus registry per app (no process-wide state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram("classie_request_seconds", "HTTP request latency", ["path"],
                                  registry=self.registry)
        self.predicted = Counter("classie_predicted_tasks_total", "Tasks predicted through the API",
                                 registry=self.registry)
        self.cycles = Counter("classie_cycles_total", "Worker cycles run", registry=self.registry)
        self.trainings = Counter("classie_trainings_total", "Model versions trained", registry=self.registry)
        self.pushed = Counter("classie_pushed_total", "Pre-annotations pushed", registry=self.registry)
        self.errors = Counter("classie_errors_total", "Failed worker cycles", registry=self.registry)
        self.version = Gauge("classie_model_version", "Number of the model version in service",
                             registry=self.registry)
        self.heldout = Gauge("classie_heldout_f1", "Held-out F1 of the current version", ["facet", "level", "kind"],
                             registry=self.registry)

    def show_version(self, version: ModelVersion | None) -> None:
        if version is None:
            return
        self.version.set(version.number)
        for m in version.metrics:
            for kind in ("micro", "macro"):
                self.heldout.labels(m["facet"], str(m["level"]), kind).set(m[f"{kind}_f1"])


class Retrainer:
    """Runs `cycle` in a background thread once events stop arriving for `debounce` seconds; events arriving during a
    run schedule one more run after it."""

    def __init__(self, cycle: Callable[[], object], debounce: float, metrics: Metrics):
        self.cycle, self.debounce, self.metrics = cycle, debounce, metrics
        self._lock = threading.Lock()
        self._due: float | None = None
        self._thread: threading.Thread | None = None

    def schedule(self) -> None:
        with self._lock:
            self._due = time.monotonic() + self.debounce
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="retrainer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._due is None:
                    self._thread = None
                    return
                wait = self._due - time.monotonic()
                if wait <= 0:
                    self._due = None
            if wait > 0:
                time.sleep(min(wait, 1.0))
                continue
            try:
                report = self.cycle()
                self.metrics.cycles.inc()
                self.metrics.trainings.inc(int(getattr(report, "trained", False)))
                self.metrics.pushed.inc(getattr(report, "written", 0))
            except Exception:  # noqa: BLE001 - the API stays up; the error is logged and counted
                self.metrics.errors.inc()
                log.exception("background cycle failed")

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _authorised(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token"):
        return hmac.compare_digest(value.strip(), token)
    if scheme.lower() == "basic":  # Label Studio sends the credentials of an ML backend URL as basic auth
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password, token) or hmac.compare_digest(user, token)
    return False


def create_app(settings: ApiSettings, registry: ModelRegistry, cycle: Callable[[], object]) -> FastAPI:
    if not settings.token:
        raise ValueError("the API needs a token. Fix: set CLASSIE_API_TOKEN.")
    app = FastAPI(title="classie-automl", docs_url=None, redoc_url=None)
    metrics = Metrics()
    retrainer = Retrainer(cycle, settings.debounce_seconds, metrics)
    app.state.metrics, app.state.retrainer = metrics, retrainer
    label_config = functools.lru_cache(maxsize=16)(parse_label_config)  # Label Studio resends it on every call

    @app.middleware("http")
    async def limits_and_timing(request: Request, call_next):
        started = time.perf_counter()
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > settings.max_body_bytes):
            return JSONResponse({"detail": f"request body over {settings.max_body_bytes} bytes"}, status_code=413)
        response = await call_next(request)
        metrics.requests.labels(request.url.path).observe(time.perf_counter() - started)
        return response

    def authorised(request: Request) -> None:
        if not _authorised(request.headers.get("authorization", ""), settings.token):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    def current() -> ModelVersion | None:
        version = registry.current()  # re-read each time: a newly promoted version is served at once
        metrics.show_version(version)
        return version

    @app.get("/health")
    def health() -> dict:
        version = current()
        return {"status": "UP", "model_version": version.name if version else None}

    @app.post("/setup", dependencies=[Depends(authorised)])
    def setup() -> dict:
        version = current()
        return {"model_version": version.name if version else "none"}

    @app.post("/predict", dependencies=[Depends(authorised)])
    async def predict(request: Request) -> dict:
        body = await request.json()
        tasks = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(tasks, list):
            raise HTTPException(422, "expected {\"tasks\": [...]}")
        if len(tasks) > settings.max_tasks:
            raise HTTPException(413, f"at most {settings.max_tasks} tasks per request")
        version = current()
        if version is None:
            raise HTTPException(503, "no model yet: the first training has not finished")
        schema, text_key = None, settings.text_key
        if body.get("label_config"):  # Label Studio sends its config: answer in its result format too
            try:
                schema = label_config(body["label_config"])
            except LabelConfigError as exc:
                raise HTTPException(422, f"label_config: {exc}") from None
            text_key = sorted(schema.text_keys)[0]
        texts = []
        for task in tasks:
            text = (task.get("data") or {}).get(text_key) if isinstance(task, dict) else None
            if not isinstance(text, str):
                raise HTTPException(422, f"every task needs data.{text_key} as a string")
            texts.append(text)
        try:
            model = registry.load(version)
        except ModelUnloadable as exc:  # after an upgrade, until the worker has trained a version this release reads
            raise HTTPException(503, str(exc)) from None
        results = []
        for proposals in model.predict(texts):
            flat = [p for ps in proposals.values() for p in ps]
            results.append({
                "model_version": version.name,
                "score": max((p.confidence for p in flat), default=0.0),
                "result": schema.result(flat) if schema else [],
                "proposals": {facet: [{"code": p.code, "confidence": p.confidence, "source": p.source} for p in ps]
                              for facet, ps in proposals.items()},
            })
        metrics.predicted.inc(len(tasks))
        return {"results": results}

    @app.post("/webhook", dependencies=[Depends(authorised)])
    async def webhook(request: Request) -> dict:
        event = await request.json()
        action = event.get("action") if isinstance(event, dict) else None
        if action in TRAINING_EVENTS:
            retrainer.schedule()
            return {"status": "scheduled", "action": action}
        return {"status": "ignored", "action": action}

    @app.get("/metrics", dependencies=[Depends(authorised)])
    def prometheus() -> PlainTextResponse:
        current()
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
