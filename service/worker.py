"""One cycle of the service: pull, (re)train when the human labels changed, pre-annotate, push, report."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from filelock import FileLock, Timeout
from tqdm import tqdm

from automl.model import PreAnnotator
from automl.taxonomy import Taxonomy
from connectors.base import Asset, Connector, PreAnnotation
from service.config import Settings
from service.health import Heartbeat
from service.registry import ModelRegistry, ModelUnloadable, ModelVersion
from service.state import StateStore

log = logging.getLogger(__name__)


@dataclass
class CycleReport:
    pulled: int = 0
    labelled: int = 0
    unlabelled: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    trained: bool = False
    train_reason: str = ""
    model_version: str = ""
    predicted: int = 0
    written: int = 0
    already: int = 0  # had a pre-annotation of this version for this text: not predicted again
    abandoned: int = 0  # left for the next run because a stop was requested
    label_changes: int = 0  # labelled assets added, changed or removed since the current model
    complete_pull: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    heldout: list[dict] = field(default_factory=list)


def setup_fingerprint(taxonomy: Taxonomy, model_config: dict) -> str:
    """Changes when the taxonomy or a learning setting changes: either retrains, whatever the labels."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model_config, sort_keys=True).encode())
    digest.update(json.dumps(taxonomy.fingerprint_rows()).encode())
    return digest.hexdigest()


def training_fingerprint(labelled: Sequence[Asset], taxonomy: Taxonomy, model_config: dict) -> str:
    """Changes when a human label, a labelled text, the taxonomy or a learning setting changes."""
    digest = hashlib.sha256(setup_fingerprint(taxonomy, model_config).encode())
    for asset in sorted(labelled, key=lambda a: a.id):
        digest.update(json.dumps([asset.id, asset.text_hash, sorted(asset.labels or ())]).encode())
    return digest.hexdigest()


class TrainingFailed(RuntimeError):
    """The training process failed or died; the current model (if any) stays in service."""


class StopRequested(Exception):
    """A stop was requested before the cycle could finish; nothing half-done was kept."""


class TrainingAbandoned(StopRequested):
    """A stop was requested while a training ran: the training process was ended and nothing of it saved."""


def _end_process_group(child) -> None:
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.join(5)
        if child.is_alive():
            os.killpg(child.pid, signal.SIGKILL)
            child.join(5)
    except ProcessLookupError:
        pass


def _f1_per_level(metrics: list[dict]) -> str:
    return ", ".join(f"{m['facet']} L{m['level']} {m['micro_f1']:.3f}/{m['macro_f1']:.3f}" for m in metrics)


class Worker:
    def __init__(self, settings: Settings, connector: Connector, registry: ModelRegistry, state: StateStore,
                 stop: threading.Event | None = None, heartbeat: Heartbeat | None = None):
        self.settings = settings
        self.connector = connector
        self.registry = registry
        self.state = state
        self.stop = stop or threading.Event()  # set by SIGTERM/SIGINT: the current batch ends, then the cycle
        self.heartbeat = heartbeat  # the polling worker's liveness file; None for one-off commands and the API

    def beat(self, phase: str, force: bool = False, **detail) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(phase, force, **detail)

    def _beating(self, assets: Iterable[Asset]) -> Iterator[Asset]:
        for n, asset in enumerate(assets, 1):
            self.beat("pulling", assets=n)
            yield asset

    @contextmanager
    def cycle_lock(self):
        """One cycle at a time per state folder, across processes: the polling worker and the API's webhook cycles
        may share a state volume. Waits for the other cycle (it may be training) unless a stop is requested."""
        lock = FileLock(str(self.settings.state_dir / "cycle.lock"))
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        waiting_logged = False
        while True:
            try:
                lock.acquire(timeout=1.0)
                break
            except Timeout:
                if self.stop.is_set():
                    raise StopRequested("stop requested while another process ran a cycle on this state") from None
                if not waiting_logged:
                    log.info("another process is running a cycle on %s: waiting for it", self.settings.state_dir)
                    waiting_logged = True
                self.beat("waiting for another cycle")
        try:
            yield
        finally:
            lock.release()

    def pull(self, report: CycleReport) -> Taxonomy:
        """Bring the platform's changes into the asset cache: incremental from the cursor, complete when none is
        kept or the last complete pull is older than [worker] full_pull_seconds (that is how deletions are seen)."""
        taxonomy = self.connector.pull_taxonomy()
        cursor = self.state.cursor("assets")
        last_full = float(self.state.cursor("last_complete_pull") or 0)
        if time.time() - last_full > self.settings.worker.full_pull_seconds:
            cursor = None
        self.beat("pulling", force=True)
        pulled = self.connector.pull(cursor, texts=self.state)
        report.pulled = self.state.merge_assets(self._beating(pulled.assets), pulled.complete)
        report.complete_pull = pulled.complete
        next_cursor = pulled.cursor()
        if next_cursor is not None:
            self.state.set_cursor("assets", next_cursor)
        if pulled.complete:
            self.state.set_cursor("last_complete_pull", str(time.time()))
        report.skipped = self.connector.skipped.as_dict()
        report.labelled, report.unlabelled = self.state.count_assets()
        return taxonomy

    def train(self, taxonomy: Taxonomy, labelled: Sequence[Asset]) -> ModelVersion:
        """Train and register a new version in a child process, so that a stop request can end a search at once
        (auto-sklearn's own workers included) and the search's memory is given back when it ends."""
        s = self.settings
        log.info("training on %d labelled assets (search budget %d s in all)", len(labelled), s.model.budget_seconds)
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=self._train_child, args=(taxonomy, labelled, sender), daemon=False)
        child.start()
        sender.close()
        while not receiver.poll(0.5):
            self.beat("training", labelled=len(labelled))
            if self.stop.is_set():
                _end_process_group(child)
                shutil.rmtree(s.state_dir / "tmp", ignore_errors=True)
                raise TrainingAbandoned("stop requested: training abandoned, nothing of it was saved")
        try:
            outcome = receiver.recv()
        except EOFError:  # the child ended without a word (killed, out of memory)
            outcome = f"the training process ended without a result (exit code {child.exitcode})"
        child.join()
        if isinstance(outcome, str):
            raise TrainingFailed(f"training failed: {outcome}")
        version = next(v for v in self.registry.versions() if v.number == outcome)
        self.state.record_training_set(version.name, labelled)
        log.info("model %s ready in %.0f s; held-out micro/macro F1: %s", version.name,
                 version.summary.get("fit_seconds", 0), _f1_per_level(version.metrics))
        return version

    def _train_child(self, taxonomy: Taxonomy, labelled: Sequence[Asset], sender) -> None:
        os.setpgrp()  # its own process group: ending it ends auto-sklearn's workers too
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        s = self.settings
        try:
            model = PreAnnotator(taxonomy, s.model.to_settings(s.state_dir))
            model.fit([a.text for a in labelled], [set(a.labels or ()) for a in labelled], progress=log.info)
            learning = s.model.fingerprint()
            version = self.registry.register(
                model, training_fingerprint(labelled, taxonomy, learning), s.model.model_dump(mode="json"),
                setup_fingerprint=setup_fingerprint(taxonomy, learning),
            )
            sender.send(version.number)
        except BaseException as exc:  # reported to the parent, which decides
            log.exception("training failed")
            sender.send(f"{type(exc).__name__}: {exc}")
        finally:
            sender.close()
            os._exit(0)  # no atexit handlers or inherited finalisers of the parent in the child

    def retrain_reason(self, taxonomy: Taxonomy, labelled: Sequence[Asset], current: ModelVersion | None) -> str:
        """Why to train now ("" for no training), by the configured rule."""
        if current is None:
            return "no model yet"
        learning = self.settings.model.fingerprint()
        if current.setup_fingerprint != setup_fingerprint(taxonomy, learning):
            return "taxonomy or model settings changed"
        if not self.state.knows_training_set(current.name) and labelled:
            # State lost or written by an older version: the registry's fingerprint still tells "unchanged".
            if current.fingerprint == training_fingerprint(labelled, taxonomy, learning):
                self.state.record_training_set(current.name, labelled)
        changes = self.state.label_changes(current.name, labelled)
        self.label_changes = changes
        rule = self.settings.worker
        needed = max(rule.retrain_min_changes, math.ceil(rule.retrain_min_fraction * current.n_train))
        if changes >= needed:
            return f"{changes} labelled asset(s) added, changed or removed since {current.name}"
        if changes:
            log.info("%d label change(s) since %s, under the retrain rule (%d)", changes, current.name, needed)
        return ""

    def pre_annotate(self, model: PreAnnotator, version: ModelVersion, report: CycleReport) -> None:
        """Predict and push, batch by batch, the unlabelled assets that have no pre-annotation of this version for
        their current text. Each pushed batch is recorded before the next one starts."""
        todo = self.state.count_unlabelled_without(version.name)
        report.already += report.unlabelled - todo
        with tqdm(total=todo, desc=f"pre-annotating ({version.name})", unit="asset", disable=None,
                  leave=False) as bar:
            for chunk in self.state.unlabelled_without(version.name, self.settings.worker.batch_size):
                if self.stop.is_set():
                    report.abandoned = todo - report.predicted
                    log.info("stop requested: %d asset(s) left for the next run", report.abandoned)
                    return
                proposals = model.predict([a.text for a in chunk])
                items = [PreAnnotation(a.id, a.text_hash, p) for a, p in zip(chunk, proposals)]
                pushed = self.connector.push(items, version.name)
                self.state.record_pushed(version.name, [(a.id, a.text_hash) for a in chunk])
                report.predicted += len(chunk)
                report.written += pushed.written
                report.already += pushed.already
                bar.update(len(chunk))
                self.beat("pre-annotating", done=report.predicted, todo=todo)

    def run_once(self, force_train: bool = False) -> CycleReport:
        with self.cycle_lock():
            report = self._cycle(force_train)
        if self.heartbeat is not None:
            self.heartbeat.model_version, self.heartbeat.last_cycle = report.model_version, "ok"
            self.beat("idle", force=True)
        return report

    def _cycle(self, force_train: bool) -> CycleReport:
        report = CycleReport()
        started = time.monotonic()
        taxonomy = self.pull(report)
        labelled = self.state.labelled_assets()
        report.timings["pull"] = time.monotonic() - started

        current = self.registry.current()
        self.label_changes = len(labelled)
        report.train_reason = "asked to train" if force_train else self.retrain_reason(taxonomy, labelled, current)
        report.label_changes = self.label_changes
        if not report.train_reason:
            try:
                self.registry.load(current)  # kept loaded for the predictions below
            except ModelUnloadable as exc:
                # After an upgrade whose libraries cannot read the current version: train one that they can.
                log.warning("%s: training a new version", exc)
                report.train_reason = str(exc)
        if report.train_reason:
            t = time.monotonic()
            current = self.train(taxonomy, labelled)
            report.trained = True
            report.timings["train"] = time.monotonic() - t
        report.model_version = current.name
        report.heldout = current.metrics

        t = time.monotonic()
        model = self.registry.load(current)
        self.pre_annotate(model, current, report)
        report.timings["pre_annotate"] = time.monotonic() - t
        report.timings["total"] = time.monotonic() - started
        skipped = ", ".join(f"{n} {why}" for why, n in report.skipped.items()) or "none"
        trained = (f"trained {current.name} in {report.timings['train']:.0f} s ({report.train_reason}; held-out"
                   f" micro/macro F1 {_f1_per_level(current.metrics)})") if report.trained else "no training"
        log.info("cycle: pulled %d%s (%d labelled, %d unlabelled), %d label change(s), %s, model %s, pushed %d,"
                 " already had %d, skipped %s", report.pulled, " (complete)" if report.complete_pull else "",
                 report.labelled, report.unlabelled, report.label_changes, trained, report.model_version,
                 report.written, report.already, skipped,
                 extra={"event": "cycle", "cycle": {**{k: v for k, v in asdict(report).items() if k != "heldout"},
                                                    "timings": {k: round(v, 3) for k, v in report.timings.items()}}})
        return report
