"""The polling worker's heartbeat: `<state>/worker.heartbeat.json`, written at every step of a cycle (each page of a
pull, each training poll, each pushed batch) and while it waits for the next cycle; read by `classie-automl health`
(service.app.health)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from service.store.state import check_state_folder

__all__ = ["HEARTBEAT_NAME", "Beat", "Heartbeat", "read_beat"]

HEARTBEAT_NAME = "worker.heartbeat.json"


@dataclass
class Beat:
    phase: str  # starting, pulling, training, pre-annotating, idle, stopped
    time: float
    pid: int
    model_version: str = ""
    last_cycle: str = ""  # "ok", or the error of the last failed cycle
    detail: dict = field(default_factory=dict)


class Heartbeat:
    """Writes the worker's heartbeat atomically, at most every `every` seconds unless the phase changes."""

    def __init__(self, state_dir: Path, every: float = 5.0):
        self.path = Path(state_dir) / HEARTBEAT_NAME
        self.every = every
        self._last: tuple[str, float] = ("", 0.0)
        self.model_version = ""
        self.last_cycle = ""

    @classmethod
    def started(cls, state_dir: Path) -> Heartbeat:
        """A heartbeat that says "starting" at once (connecting to a platform may take a while), in a state folder
        this user may write (else a StateError with the fix, found before the first beat fails)."""
        check_state_folder(Path(state_dir))
        heartbeat = cls(state_dir)
        heartbeat.beat("starting", force=True)
        return heartbeat

    def beat(self, phase: str, force: bool = False, **detail: object) -> None:
        now = time.time()
        if not force and phase == self._last[0] and now - self._last[1] < self.every:
            return
        beat = Beat(phase, now, os.getpid(), self.model_version, self.last_cycle, detail)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{HEARTBEAT_NAME}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(beat)), encoding="utf-8")
        os.replace(tmp, self.path)
        self._last = (phase, now)


def read_beat(state_dir: Path) -> Beat:
    """The last beat written in `state_dir`; OSError when there is none, ValueError or TypeError when it is damaged."""
    return Beat(**json.loads((Path(state_dir) / HEARTBEAT_NAME).read_text(encoding="utf-8")))
