"""`classie-automl serve`: the HTTP API on uvicorn, with a worker for the cycles its webhook schedules."""

from __future__ import annotations

import functools
import logging
import signal

from connectors.errors import PlatformError
from service.app.factory import build_worker, open_registry, open_state
from service.config import Secrets, Settings
from service.cycle.worker import Worker

__all__ = ["serve_api"]

log = logging.getLogger(__name__)


def serve_api(settings: Settings, secrets: Secrets, host: str, port: int, verbose: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then exit normally. The platform is connected at start, and again at the
    first webhook if it was not usable then: predictions need only the registry."""
    import uvicorn

    from service.app.api import create_app

    registry = open_registry(settings)

    @functools.cache
    def connect() -> Worker:
        return build_worker(settings, secrets, registry=registry)

    try:
        connect()
    except PlatformError as exc:
        # In compose, the project is created after the API is up. Configuration errors still stop here.
        log.warning("platform not usable yet (%s); /predict is served, webhooks will connect again", exc)
    # On Label Studio, what /predict answers is recorded in the worker's ledger (Label Studio stores it).
    ledger = open_state(settings) if settings.platform == "label-studio" else None
    api = create_app(settings.api, secrets.classie_api_token, registry, lambda: connect().run_once(), ledger,
                     settings.label_studio.project_id)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it found: make that
    # one a no-op, so that a stopped server exits 0 (what `docker stop` and supervisors expect).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # log_config=None: uvicorn's own loggers go through ours (plain or JSON lines, one format per process).
    uvicorn.run(api, host=host, port=port, log_level="debug" if verbose else "info", log_config=None)
