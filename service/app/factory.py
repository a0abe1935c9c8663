"""Builds what a command needs from the settings and the secrets: the platform's connector and client, the model
registry, the state store, a worker. The one place where settings meet the objects that use them."""

from __future__ import annotations

import threading

from automl.taxonomy_file import check_taxonomy_path
from connectors.base import Connector
from connectors.files import FilesConnector
from connectors.label_studio import LabelStudioConnector
from connectors.label_studio_client import LabelStudioClient
from service.app.served_project import project_from_state
from service.config import ConfigError, Secrets, Settings
from service.cycle.worker import Worker
from service.store.heartbeat import Heartbeat
from service.store.registry import ModelRegistry
from service.store.state import StateStore

__all__ = ["build_connector", "build_worker", "label_studio_client", "open_registry", "open_state"]


def open_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.state_dir / "models")


def open_state(settings: Settings) -> StateStore:
    return StateStore(settings.state_dir / "state.sqlite3")


def label_studio_client(settings: Settings, secrets: Secrets) -> LabelStudioClient:
    """A client for [label_studio] url with LABEL_STUDIO_API_KEY; its errors never show the API token either."""
    return LabelStudioClient(settings.label_studio.url, secrets.label_studio_api_key,
                             redact=[secrets.classie_api_token] if secrets.classie_api_token else [])


def build_connector(settings: Settings, secrets: Secrets) -> Connector:
    """The configured platform's connector; a missing setting is named with its flag, a taxonomy path that is a
    folder said at once (a polling worker would otherwise fail every cycle on it). A Label Studio project not set is
    the one recorded in the state folder (service.app.served_project)."""
    if settings.taxonomy.path is not None:
        check_taxonomy_path(settings.taxonomy.path)
    if settings.platform == "kili":
        if not settings.kili.project_id:
            raise ConfigError("platform kili needs a project. Fix: pass --project-id, or set [kili] project_id or"
                              " CLASSIE_KILI__PROJECT_ID (the part after /label/projects/ in its address).")
        from connectors.kili import KiliConnector  # the Kili SDK takes a second or two to import

        return KiliConnector(settings.kili, secrets.kili_api_key, settings.taxonomy.path, settings.security)
    if settings.platform == "label-studio":
        chosen = settings.label_studio
        if chosen.project_id is None:  # the project `serve` recorded in the state folder, else the fix
            chosen = chosen.model_copy(update={"project_id": project_from_state(settings)})
        return LabelStudioConnector(chosen, label_studio_client(settings, secrets), settings.taxonomy.path,
                                    settings.security)
    missing = [name for name, value in (("--assets / [files] assets", settings.files.assets),
                                        ("--taxonomy / [taxonomy] path", settings.taxonomy.path)) if value is None]
    if missing:
        raise ConfigError(f"platform files needs {' and '.join(missing)}. Fix: pass the flag or set it in --config.")
    return FilesConnector(settings.files, settings.taxonomy, settings.output_path)


def build_worker(settings: Settings, secrets: Secrets, stop: threading.Event | None = None,
                 heartbeat: Heartbeat | None = None, registry: ModelRegistry | None = None) -> Worker:
    """A worker on the configured platform and state folder (`registry`: one to share, e.g. with the API)."""
    return Worker(settings, build_connector(settings, secrets), registry or open_registry(settings),
                  open_state(settings), stop, heartbeat)
