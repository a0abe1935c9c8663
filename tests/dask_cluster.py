"""A real Dask cluster on loopback for the tests: `dask scheduler` and worker processes, as a user starts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dask() -> list[str]:
    return [str(Path(sys.executable).with_name("dask"))]


@dataclass
class LocalDaskCluster:
    folder: Path
    workers: int = 2
    address: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __enter__(self) -> LocalDaskCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        info = self.folder / "scheduler.json"
        self._start("scheduler", [*_dask(), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(info)])
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.address = json.loads(info.read_text())["address"]
        for n in range(self.workers):
            self.start_worker(f"worker-{n}")
        self.wait_for(self.workers)
        return self

    def start_worker(self, name: str) -> None:
        # No nanny: a killed worker stays dead. Not daemonic: auto-sklearn starts a process per pipeline fit.
        self._start(name, [*_dask(), "worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny",
                           "--memory-limit", "0", "--no-dashboard", "--local-directory", str(self.folder / name)])

    def _start(self, name: str, command: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        log = open(self.folder / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def wait_for(self, workers: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=timeout)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def __exit__(self, *exc) -> None:
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _tasks_by_prefix(dask_scheduler) -> dict[str, int]:
    return {name: sum(prefix.state_counts.values()) for name, prefix in dask_scheduler.task_prefixes.items()}


def tasks_run(address: str) -> dict[str, int]:
    """Tasks the scheduler has seen, by the name of what they run."""
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        return client.run_on_scheduler(_tasks_by_prefix)
