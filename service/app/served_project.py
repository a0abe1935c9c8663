"""Which Label Studio project `serve`, and every command on its state folder, works on.

In this order: the settings (--project-id, [label_studio] project_id, CLASSIE_LABEL_STUDIO__PROJECT_ID); else the
state folder's record (service.store.project_record); else, for `serve`, Label Studio's /setup call, which names the
project when Label Studio connects `serve` as the project's ML backend (`label-studio-init --ml-backend-url`, or the
project's Settings > Model). The project taken from /setup is recorded at once, so that `run` on the same state
folder and the next start of `serve` find it: nobody has to copy a project id, or restart `serve` with it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from service.config import ConfigError, Settings
from service.store.project_record import RECORD_NAME, ProjectRecord, read_project_record, write_project_record

__all__ = ["Adoption", "ServedProject", "project_from_state", "project_number"]

log = logging.getLogger(__name__)

FROM_SETTINGS = "the settings (--project-id, [label_studio] project_id or CLASSIE_LABEL_STUDIO__PROJECT_ID)"


def _url(url: str | None) -> str:
    return (url or "").rstrip("/")


def project_number(uid: object) -> int | None:
    """The project's number in Label Studio's name for it in ML backend calls ("3.1767225600": project 3, created at
    that time); None when it is not one."""
    head = str(uid).split(".")[0] if isinstance(uid, str | int) and not isinstance(uid, bool) else ""
    return int(head) if head.isdigit() and int(head) > 0 else None


def _recorded(settings: Settings) -> ProjectRecord | None:
    """The state folder's record when it is of this Label Studio server; a record of another server is refused with
    the fix (its project number means nothing here)."""
    record = read_project_record(settings.state_dir)
    url = _url(settings.label_studio.url)
    if record is not None and _url(record.url) != url:
        raise ConfigError(
            f"{settings.state_dir / RECORD_NAME} records project {record.project_id} of the Label Studio at"
            f" {record.url}, not of {url or '(no URL set)'}. Fix: pass --url {record.url} if that is the same server,"
            " or --project-id for a project of this one (or delete the record to let serve take the project Label"
            " Studio connects it to).")
    return record


def project_from_state(settings: Settings) -> int:
    """The Label Studio project of a command given none in its settings: the state folder's record, else a
    ConfigError that says how to name one."""
    record = _recorded(settings)
    if record is None:
        raise ConfigError(
            f"platform label-studio needs a project, and none is set or recorded in {settings.state_dir}. Fix: pass"
            " --project-id N (or set CLASSIE_LABEL_STUDIO__PROJECT_ID=N; `classie-automl label-studio-init` prints"
            " N), or use the state folder of a `classie-automl serve` that Label Studio connected to the project as"
            " its ML backend (serve records the project there).")
    log.info("Label Studio project %d, from %s (%s, %s)", record.project_id, settings.state_dir / RECORD_NAME,
             record.recorded_by, record.recorded_at)
    return record.project_id


@dataclass(frozen=True)
class Adoption:
    """What a /setup call did to the served project."""

    project_id: int | None  # the project the call named (None: none that could be read)
    taken: bool  # True: serve had no project and works on this one from now on
    served: int | None  # the project served after the call


class ServedProject:
    """The project the API's cycles and ledger are for, and where it came from. `needed`: the platform is Label Studio
    (another platform has no project to find). With a `state_dir`, a project not known yet is taken from the first
    /setup call that names one (`adopt`) and recorded there; a known project never changes while serve runs."""

    def __init__(self, project_id: int | None = None, source: str = "", *, needed: bool = True,
                 state_dir: Path | None = None, url: str | None = None):
        self._id, self.source, self.needed = project_id, source, needed
        self.state_dir, self.url = state_dir, _url(url)
        self._lock = threading.Lock()
        self._others: set[int] = set()  # other projects whose /setup calls were answered without taking them

    @classmethod
    def of(cls, settings: Settings) -> ServedProject:
        """For `serve`: from the settings, else from the state folder's record, else to be taken from /setup."""
        if settings.platform != "label-studio":
            return cls(needed=False)
        configured = settings.label_studio.project_id
        if configured is not None:
            return cls(configured, FROM_SETTINGS, state_dir=settings.state_dir, url=settings.label_studio.url)
        record = _recorded(settings)
        if record is not None:
            return cls(record.project_id, f"{settings.state_dir / RECORD_NAME} ({record.recorded_by},"
                                          f" {record.recorded_at})", state_dir=settings.state_dir,
                       url=settings.label_studio.url)
        return cls(state_dir=settings.state_dir, url=settings.label_studio.url)

    @property
    def id(self) -> int | None:
        return self._id

    @property
    def known(self) -> bool:
        """Whether a cycle can run: the project is known, or the platform needs none."""
        return self._id is not None or not self.needed

    def adopt(self, uid: object) -> Adoption:
        """Label Studio's /setup call names `uid` ("3.1767225600"): taken when serve has no project yet (and
        recorded in the state folder), otherwise only compared. Safe to call from several threads."""
        number = project_number(uid)
        with self._lock:
            if number is None or not self.needed or self.state_dir is None:
                return Adoption(number, False, self._id)
            if self._id is not None:
                if number != self._id and number not in self._others:
                    self._others.add(number)
                    log.warning("Label Studio connected project %d to this backend too: /predict answers it, but"
                                " the webhook's cycles and the ledger stay project %d's (from %s). Fix, to serve"
                                " project %d instead: start serve with --project-id %d", number, self._id,
                                self.source, number, number)
                return Adoption(number, False, self._id)
            self._id, self.source = number, "Label Studio's /setup call"
        record = ProjectRecord(number, self.url, str(uid), datetime.now(UTC).isoformat(timespec="seconds"),
                               "serve, from Label Studio's /setup call")
        try:
            path = write_project_record(self.state_dir, record)
        except OSError as exc:  # serve works on the project all the same; the other commands will not find it
            log.error("serving Label Studio project %d from now on, but it could not be recorded in %s (%s):"
                      " `run` on this state folder will not find it. Fix: make the folder writable, or give the"
                      " worker --project-id %d", number, self.state_dir / RECORD_NAME, exc, number)
        else:
            log.info("serving Label Studio project %d from now on: Label Studio's /setup call named it (recorded in"
                     " %s for the worker and the next start)", number, path)
        return Adoption(number, True, number)
