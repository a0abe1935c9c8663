"""`classie-automl serve`: the HTTP API on uvicorn, with a worker for the cycles its webhook schedules.

On Label Studio the project comes from the settings, else from the state folder's record, else from Label Studio's
/setup call when Label Studio connects serve as a project's ML backend (service.app.served_project): serve may start
before the project exists and needs no restart once it does. A state folder without any model version gets its first
one in the background as soon as the project is known (service.app.api, `train_first`).
"""

from __future__ import annotations

import logging
import signal
import threading

from connectors.errors import PlatformError
from service.app.factory import build_worker, open_registry, open_state
from service.app.served_project import ServedProject
from service.config import Secrets, Settings
from service.cycle.records import CycleSummary
from service.cycle.worker import Worker
from service.store.registry import ModelRegistry

__all__ = ["Cycles", "serve_api"]

log = logging.getLogger(__name__)

STOP_WAIT_SECONDS = 20.0  # for the background cycle to end once stopped (a training is abandoned at once)


class Cycles:
    """The worker the API's background cycles run on: built at the first cycle that finds the project known (and
    again after a failure to connect), on the served project; `stop` ends a running cycle (serve is stopping)."""

    def __init__(self, settings: Settings, secrets: Secrets, registry: ModelRegistry, project: ServedProject,
                 stop: threading.Event):
        self.settings, self.secrets, self.registry, self.project, self.stop = (settings, secrets, registry, project,
                                                                               stop)
        self._worker: tuple[int | None, Worker] | None = None
        self._lock = threading.Lock()

    def worker(self) -> Worker:
        with self._lock:
            if self._worker is None or self._worker[0] != self.project.id:
                settings = self.settings
                if self.project.id is not None and self.settings.label_studio.project_id != self.project.id:
                    settings = settings.model_copy(update={"label_studio": settings.label_studio.model_copy(
                        update={"project_id": self.project.id})})
                self._worker = (self.project.id, build_worker(settings, self.secrets, self.stop,
                                                              registry=self.registry))
            return self._worker[1]

    def __call__(self) -> CycleSummary:
        return self.worker().run_once()


def serve_api(settings: Settings, secrets: Secrets, host: str, port: int, verbose: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then stop the background cycle (a training is abandoned) and exit normally.
    The platform is connected at start when the project is known, and again at the next cycle if it was not usable
    then: predictions need only the registry."""
    import uvicorn

    from service.app.api import create_app

    registry = open_registry(settings)
    project = ServedProject.of(settings)
    stop = threading.Event()
    cycles = Cycles(settings, secrets, registry, project, stop)
    if project.known:
        if project.id is not None:
            log.info("Label Studio project %d, from %s", project.id, project.source)
        try:
            cycles.worker()
        except PlatformError as exc:
            # The platform may not be up yet. Configuration errors still stop here.
            log.warning("platform not usable yet (%s); /predict is served, the next cycle connects again", exc)
    else:
        log.info("no Label Studio project set or recorded in %s: /predict answers any project (Label Studio sends"
                 " its labelling config); the project Label Studio connects serve to (its /setup call) is taken"
                 " and recorded there", settings.state_dir)
    # On Label Studio, what /predict answers is recorded in the worker's ledger (Label Studio stores it).
    ledger = open_state(settings) if settings.platform == "label-studio" else None
    api = create_app(settings.api, secrets.classie_api_token, registry, cycles, ledger, project, train_first=True,
                     training_seconds=settings.model.budget_seconds)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it found: make that
    # one a no-op, so that a stopped server exits 0 (what `docker stop` and supervisors expect).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # log_config=None: uvicorn's own loggers go through ours (plain or JSON lines, one format per process).
    try:
        uvicorn.run(api, host=host, port=port, log_level="debug" if verbose else "info", log_config=None)
    finally:
        stop.set()  # a running cycle ends its batch, or abandons its training
        if not api.state.retrainer.close(STOP_WAIT_SECONDS):
            log.warning("the background cycle did not end within %.0f s of the stop", STOP_WAIT_SECONDS)
