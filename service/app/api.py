"""The HTTP API beside the worker: health, metrics, predictions on demand, and a webhook that schedules training.

It serves the registry's current version and picks up a newly promoted one without a restart. Training never runs
inside a request: the webhook only schedules a worker cycle in the background, debounced. With `train_first`, a state
folder without any version gets its first one at once, in the background, as soon as the project is known (at start,
or when Label Studio's /setup call names it: service.app.served_project); until it lands /predict answers 503 with
Retry-After and says since when it trains, and /health says so too.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automl.records import Prediction, codes_by_facet, flatten
from connectors.base import text_hash
from connectors.label_studio_client import TRAINING_EVENTS
from connectors.label_studio_schema import LabelConfigError, LabelStudioSchema, parse_label_config, prediction
from service.app.batching import Batcher
from service.app.served_project import ServedProject
from service.config import ApiSettings, ConfigError
from service.signals import StopRequested
from service.store.registry import ModelRegistry, ModelUnloadable, ModelVersion
from service.store.state import StateStore

if TYPE_CHECKING:  # loaded with a model file
    from automl.model import PreAnnotator

__all__ = ["create_app"]

log = logging.getLogger(__name__)


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
        # level="all": the facet's levels together. Effort = edits with the pre-annotations / edits without.
        self.effort = Gauge("classie_heldout_effort_ratio", "Held-out labeller effort ratio of the current version",
                            ["facet", "level"], registry=self.registry)
        self.precision = Gauge("classie_heldout_prefill_precision", "Held-out pre-fill precision of the current"
                               " version", ["facet", "level"], registry=self.registry)
        self.calibration = Gauge("classie_heldout_calibration_error", "Held-out expected calibration error of the"
                                 " pre-filled confidences", ["facet"], registry=self.registry)
        self.versions = Gauge("classie_model_versions", "Model versions in the registry by status (current,"
                              " previous, rejected by the promotion gate)", ["status"], registry=self.registry)
        self.latest_rejected = Gauge("classie_latest_version_rejected", "1 when the newest version was rejected by"
                                     " the promotion gate and an older one serves", registry=self.registry)

    def show_registry(self, registry: ModelRegistry) -> None:
        """Counts by status, and whether the newest training was rejected (read at each scrape)."""
        versions = registry.versions()
        statuses = [registry.status(v) for v in versions]
        for status in ("current", "previous", "rejected"):
            self.versions.labels(status).set(statuses.count(status))
        self.latest_rejected.set(int(bool(statuses) and statuses[-1] == "rejected"))

    def show_version(self, version: ModelVersion | None) -> None:
        if version is None:
            return
        self.version.set(version.number)
        for m in version.metrics:
            self.heldout.labels(m.facet, str(m.level), "micro").set(m.micro_f1)
            self.heldout.labels(m.facet, str(m.level), "macro").set(m.macro_f1)
            self.effort.labels(m.facet, str(m.level)).set(m.effort.ratio)
            self.precision.labels(m.facet, str(m.level)).set(m.effort.prefill_precision)
        for f in version.facets:
            self.effort.labels(f.facet, "all").set(f.effort.ratio)
            self.precision.labels(f.facet, "all").set(f.effort.prefill_precision)
            self.calibration.labels(f.facet).set(f.calibration_error)


class Retrainer:
    """Runs `cycle` in a background thread once events stop arriving for `debounce` seconds (at once when asked);
    events arriving during a run schedule one more run after it. Says since when a run is running and why the last
    one failed; `close` lets no new run start and waits for the one running."""

    def __init__(self, cycle: Callable[[], object], debounce: float, metrics: Metrics):
        self.cycle, self.debounce, self.metrics = cycle, debounce, metrics
        self._lock = threading.Lock()
        self._due: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.running_since: float | None = None  # wall-clock time the running cycle started; None: none runs
        self.failure: tuple[float, str] | None = None  # when the last cycle failed, and why; None after one that ran

    def schedule(self, now: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._due = time.monotonic() + (0.0 if now else self.debounce)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="retrainer", daemon=True)
                self._thread.start()

    def close(self, timeout: float) -> bool:
        """No run starts from now on; waits up to `timeout` seconds for the running one (the caller stops it).
        True when none runs any more."""
        with self._lock:
            self._closed, self._due, thread = True, None, self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._due is None or self._closed:
                    self._thread = None
                    return
                wait = self._due - time.monotonic()
                if wait <= 0:
                    self._due = None
                    self.running_since = time.time()
            if wait > 0:
                time.sleep(min(wait, 1.0))
                continue
            try:
                report = self.cycle()
                self.metrics.cycles.inc()
                self.metrics.trainings.inc(int(getattr(report, "trained", False)))
                self.metrics.pushed.inc(getattr(report, "written", 0))
                self.failure = None
            except StopRequested as exc:  # serve is stopping: nothing half-done was kept
                log.info("background cycle stopped: %s", exc)
            except Exception as exc:  # noqa: BLE001 - the API stays up; the error is logged and counted
                self.metrics.errors.inc()
                self.failure = (time.time(), f"{type(exc).__name__}: {exc}")
                log.exception("background cycle failed")
            finally:
                self.running_since = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _authorised(header: str, token: str) -> bool:
    """Whether an Authorization header carries the token, compared in constant time, as bytes: compare_digest
    refuses str with non-ASCII characters, and a header may hold any byte (Starlette decodes it as latin-1)."""
    expected = token.encode()
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token"):
        return hmac.compare_digest(value.strip().encode("latin-1", "replace"), expected)
    if scheme.lower() == "basic":  # Label Studio sends the credentials of an ML backend URL as basic auth
        try:
            user, _, password = base64.b64decode(value.strip()).partition(b":")
        except ValueError:  # not base64 (binascii.Error), or not ASCII
            return False
        return hmac.compare_digest(password, expected) or hmac.compare_digest(user, expected)
    return False


class _BodyLimit:
    """Refuses a request body over `limit` bytes with 413 as soon as that is known, never reading it whole: at once
    from its Content-Length, else (a chunked body) when the bytes received pass the limit. Also times each request,
    labelled by its route: a label per path a caller makes up would grow the metrics without bound."""

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics):
        self.app, self.limit, self.metrics = app, limit, metrics
        self.refusal = (f"the request body is over {limit} bytes ([api] max_body_bytes). Fix: send fewer tasks per"
                        " request, or raise max_body_bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > self.limit):
            await JSONResponse({"detail": self.refusal}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # raised in the endpoint reading the body: answered as any HTTPException
                raise HTTPException(413, self.refusal)
            return message

        await self.app(scope, counted, send)
        route = scope.get("route")  # set by the router on a match
        self.metrics.requests.labels(getattr(route, "path", "other")).observe(time.perf_counter() - started)


def create_app(settings: ApiSettings, token: SecretStr | str | None, registry: ModelRegistry,
               cycle: Callable[[], object], ledger: StateStore | None = None,
               project_id: int | ServedProject | None = None, *, train_first: bool = False,
               training_seconds: float = 300.0) -> FastAPI:
    """The API over `registry`; every endpoint but /health needs `token`; the webhook schedules `cycle`. With a
    `ledger` (the worker's state) and the Label Studio project (`project_id`: a number, or a ServedProject that
    Label Studio's /setup call may name), what /predict answers that project is recorded there, since Label Studio
    stores it: the worker does not push it again, and a task the worker has pushed (or is pushing) gets no second
    prediction of that version. With `train_first`, a registry without a version gets its first one from `cycle`
    as soon as the project is known; `training_seconds` (the search budget) is the basis of /predict's Retry-After
    meanwhile."""
    token = token.get_secret_value() if isinstance(token, SecretStr) else token
    if not token:
        raise ConfigError("the API needs a token. Fix: set CLASSIE_API_TOKEN.")
    project = (project_id if isinstance(project_id, ServedProject) else
               ServedProject(project_id, "given") if project_id is not None else ServedProject(needed=False))
    metrics = Metrics()
    retrainer = Retrainer(cycle, settings.debounce_seconds, metrics)
    endpoints = _Endpoints(settings, registry, metrics, retrainer, ledger, project, train_first, training_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if train_first and project.known:
            endpoints.train_first("serve started")
        elif train_first and registry.current() is None:
            log.info("no model version and no Label Studio project yet: the first version is trained when Label"
                     " Studio connects serve to a project as its ML backend (its /setup call names the project)")
        yield
        endpoints.predicting.shutdown(wait=False)

    # The schema is served like every endpoint but /health: with the token.
    app = FastAPI(title="classie-automl", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.metrics, app.state.retrainer = metrics, retrainer

    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes, metrics=metrics)

    def authorised(request: Request) -> None:
        if not _authorised(request.headers.get("authorization", ""), token):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorised)]
    app.add_api_route("/health", endpoints.health, methods=["GET"])
    app.add_api_route("/setup", endpoints.setup, methods=["POST"], dependencies=guarded)
    app.add_api_route("/predict", endpoints.predict, methods=["POST"], dependencies=guarded)
    app.add_api_route("/webhook", endpoints.webhook, methods=["POST"], dependencies=guarded)
    app.add_api_route("/metrics", endpoints.prometheus, methods=["GET"], dependencies=guarded)
    app.add_api_route("/report", endpoints.report, methods=["GET"], dependencies=guarded)
    app.add_api_route("/openapi.json", app.openapi, methods=["GET"], dependencies=guarded, include_in_schema=False)
    return app


class _Endpoints:
    def __init__(self, settings: ApiSettings, registry: ModelRegistry, metrics: Metrics, retrainer: Retrainer,
                 ledger: StateStore | None, project: ServedProject, first: bool = False,
                 training_seconds: float = 300.0):
        self.settings, self.registry, self.metrics, self.retrainer = settings, registry, metrics, retrainer
        self.ledger, self.project, self.first, self.training_seconds = ledger, project, first, training_seconds
        self.label_config = functools.lru_cache(maxsize=16)(parse_label_config)  # Label Studio resends it
        self.predicting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.batcher = Batcher(self.predicting)

    def current(self) -> ModelVersion | None:
        version = self.registry.current()  # re-read each time: a newly promoted version is served at once
        self.metrics.show_version(version)
        return version

    def health(self) -> dict:
        """Open to all (Label Studio's connection check, probes): so no error text, which the log has."""
        version = self.current()
        answer: dict = {"status": "UP", "model_version": version.name if version else None}
        if self.project.needed:
            answer["project"] = self.project.id
        if version is None:
            answer["first_version"] = self._no_version(public=True)[0]
        return answer

    async def setup(self, request: Request) -> dict:
        """Label Studio's check of a backend it connects (and re-checks on each visit of its settings). Its body
        names the project (`"project": "3.1767225600"`): serve takes it when it has none (service.app.served_project).
        The body also carries a Label Studio token, which is neither kept nor logged."""
        try:
            body = await request.json()
        except ValueError:  # no body, or not JSON: a plain check
            body = None
        if isinstance(body, dict) and body.get("project") is not None:
            await run_in_threadpool(self._adopt, body["project"])
        version = self.current()
        return {"model_version": version.name if version else "none"}

    def _adopt(self, uid: object) -> None:
        adoption = self.project.adopt(uid)
        if adoption.taken:
            self.train_first(f"Label Studio's /setup call named project {adoption.project_id}")

    def train_first(self, why: str) -> None:
        """The first version, in the background, when there is none and none is being made."""
        if not self.first or self.registry.current() is not None or self.retrainer.busy:
            return
        log.info("no model version in the state folder: training the first one now, in the background (%s);"
                 " /predict answers 503 until it lands", why)
        self.retrainer.schedule(now=True)

    def _no_version(self, public: bool = False) -> tuple[str, str, int | None]:
        """Why there is no version yet, the fix, and the seconds to wait before asking again (None: waiting will not
        help). `public`: for /health, open to all, without the error's text."""
        since = self.retrainer.running_since
        if since is not None:
            left = self.training_seconds - (time.time() - since)
            return (f"first version training since {_utc(since)}", "Retry after it lands (Retry-After: a guess from"
                    " the search budget); /health says when it has", int(min(60, max(5, math.ceil(left)))))
        if self.retrainer.busy:
            return ("first version training about to start", "Retry in a few seconds",
                    max(1, math.ceil(self.settings.debounce_seconds)))
        failure = self.retrainer.failure
        if failure is not None:
            when = _utc(failure[0])
            return (f"the first training failed at {when}" + (": see serve's log" if public else f": {failure[1]}"),
                    "Fix: see serve's log for the cause; the next annotation (the webhook) or `classie-automl train`"
                    " on this state folder tries again", None)
        if not self.project.known:
            return ("serve has no Label Studio project yet", "Fix: connect serve as the project's ML backend"
                    " (`classie-automl label-studio-init --ml-backend-url <serve's URL>`, or the project's Settings >"
                    " Model): Label Studio's /setup call names the project, and serve trains the first version"
                    " then; or start serve with --project-id", None)
        return ("none in the state folder", "Fix: `classie-automl train` on this state folder (serve picks the"
                " version up without a restart)", None)

    def _unavailable(self) -> HTTPException:
        status, fix, retry = self._no_version()
        return HTTPException(503, f"no model version yet: {status}. {fix}",
                             headers={"Retry-After": str(retry)} if retry else None)

    async def predict(self, request: Request) -> dict:
        body = await _json(request)
        tasks = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(tasks, list):
            raise HTTPException(422, "expected {\"tasks\": [...]}")
        if len(tasks) > self.settings.max_tasks:
            raise HTTPException(413, f"at most {self.settings.max_tasks} tasks per request")
        version = self.current()
        if version is None:
            raise self._unavailable()
        schema = self._schema(body.get("label_config"))
        texts = _texts(tasks, schema.text_key if schema else self.settings.text_key)
        # The model, the ledger and the answer in one thread of their own: the event loop stays free for /health
        # and the other calls; calls that arrive meanwhile are predicted together (service.app.batching).
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(self.predicting, self._model, version)
        predictions = await self.batcher.propose(model, texts)
        return await loop.run_in_executor(self.predicting, self._answer_tasks, body, tasks, texts, predictions,
                                          version, schema)

    def _model(self, version: ModelVersion) -> PreAnnotator:
        try:
            return self.registry.load(version)
        except ModelUnloadable as exc:  # after an upgrade, until the worker has trained a version this release reads
            raise HTTPException(503, str(exc)) from None

    def _answer_tasks(self, body: dict, tasks: list, texts: list[str], predictions: list[Prediction],
                      version: ModelVersion, schema: LabelStudioSchema | None) -> dict:
        results: list = []
        for task, text, p in zip(tasks, texts, predictions, strict=True):
            if not self._answers(task, body, text, version, codes_by_facet(p.prefill)):
                # Label Studio has (or is being sent) this task's prediction of this version. It pairs answers
                # with tasks by position and drops the whole batch on a count mismatch, so the task keeps its
                # place with a list of no prediction.
                results.append([])
                continue
            # One task, without the pool the worker ranks: its priority is its uncertainty alone.
            results.append({
                **prediction(flatten(p.prefill), version.name, schema, p.expected_edits / (1 + p.expected_edits)),
                "proposals": _listed(p.prefill),
                "suggestions": _listed(p.suggestions),
            })
        self.metrics.predicted.inc(sum(1 for r in results if r))
        return {"results": results}

    def _answers(self, task: dict, body: dict, text: str, version: ModelVersion,
                 prefill: dict[str, list[str]]) -> bool:
        """Whether to answer for `task`; an answer Label Studio will store for the configured project is recorded."""
        project = task.get("project") or str(body.get("project") or "").split(".")[0]
        served = self.project.id
        if self.ledger is None or task.get("id") is None or served is None or str(project) != str(served):
            return True
        return self.ledger.record_answer(version.name, str(task["id"]), text_hash(text), prefill)

    def _schema(self, label_config: str | None) -> LabelStudioSchema | None:
        """Label Studio sends its labelling config: the answer is then in its result format too."""
        if not label_config:
            return None
        if not isinstance(label_config, str):
            raise HTTPException(422, f"label_config must be the labelling config's XML as a string, not"
                                     f" {type(label_config).__name__}")
        try:
            return self.label_config(label_config)
        except LabelConfigError as exc:
            raise HTTPException(422, f"label_config: {exc}") from None
        except UnicodeEncodeError:  # a lone surrogate (JSON may escape one): the XML parser cannot take it
            raise HTTPException(422, "label_config: not valid XML (it holds a lone surrogate, \\ud800-\\udfff)"
                                ) from None

    async def webhook(self, request: Request) -> dict:
        event = await _json(request)
        action = event.get("action") if isinstance(event, dict) else None
        if not isinstance(action, str):  # no event (a list or an object is not even a key to look up)
            return {"status": "ignored", "action": None}
        if action in TRAINING_EVENTS:
            self.retrainer.schedule()
            return {"status": "scheduled", "action": action}
        # Echoed: a lone surrogate (JSON may escape one) cannot be encoded in the answer.
        return {"status": "ignored", "action": action.encode("utf-8", "replace").decode()}

    def report(self) -> FileResponse:
        """The current version's evaluation report, as the training wrote it."""
        version = self.current()
        if version is None:
            raise self._unavailable()
        path = self.registry.report_path(version)
        if not path.is_file():
            raise HTTPException(404, f"no report for {version.name} (trained before reports were written, or its"
                                     f" report failed: see the worker's log). Fix: `classie-automl report --out"
                                     f" {path}`")
        return FileResponse(path, media_type="text/html; charset=utf-8")

    def prometheus(self) -> PlainTextResponse:
        self.current()
        self.metrics.show_registry(self.registry)
        return PlainTextResponse(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _listed(by_facet: dict) -> dict:
    return {facet: [{"code": p.code, "confidence": p.confidence, "source": p.source} for p in ps]
            for facet, ps in by_facet.items()}


async def _json(request: Request):
    """The request's JSON body; a body that is not JSON is the client's error (400), not the server's."""
    try:
        return await request.json()
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HTTPException(400, f"the body is not JSON ({exc})") from None


def _texts(tasks: list, text_key: str) -> list[str]:
    texts = []
    for task in tasks:
        data = task.get("data") if isinstance(task, dict) else None
        text = data.get(text_key) if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise HTTPException(422, f"every task needs data.{text_key} as a string")
        texts.append(text)
    return texts
