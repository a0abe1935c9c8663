"""The Label Studio project a state folder works on when no setting names one: `<state>/label_studio_project.json`.

`serve` writes it when Label Studio connects it to a project as the project's ML backend (its /setup call names the
project); every command on the state folder then reads it (`run`, `train`, `predict`, and `serve` at its next start),
so that none of them needs --project-id and `serve` needs no restart. A project set in the configuration wins.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from service.config import ConfigError

__all__ = ["RECORD_NAME", "ProjectRecord", "read_project_record", "write_project_record"]

RECORD_NAME = "label_studio_project.json"


@dataclass(frozen=True)
class ProjectRecord:
    project_id: int
    url: str  # the Label Studio server the project is on, as the settings name it ([label_studio] url)
    uid: str  # Label Studio's own name for it in ML backend calls: "<id>.<creation time>"
    recorded_at: str  # UTC, ISO 8601
    recorded_by: str  # what wrote it, e.g. "serve, from Label Studio's /setup call"


def read_project_record(state_dir: Path) -> ProjectRecord | None:
    """The record, or None when there is none; a record that cannot be read is a ConfigError naming the file."""
    path = Path(state_dir) / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ProjectRecord(int(data["project_id"]), str(data["url"]), str(data.get("uid", "")),
                             str(data.get("recorded_at", "")), str(data.get("recorded_by", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{path}: not a readable project record ({type(exc).__name__}: {exc}). Fix: delete it"
                          " and connect serve to the project again, or pass --project-id.") from None


def write_project_record(state_dir: Path, record: ProjectRecord) -> Path:
    """Written whole or not at all (a temporary file, synced, then renamed over the record)."""
    path = Path(state_dir) / RECORD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RECORD_NAME}.{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(asdict(record), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path
