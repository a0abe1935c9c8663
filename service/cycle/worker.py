"""One cycle of the service: pull, (re)train when the human labels changed, pre-annotate, push; and the one-off
commands built from its steps (train, predict, a dry run). The polling loop that repeats the cycle is
service.app.polling."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from automl.priority import Ranking, max_similarity, rank_pool
from automl.records import Prediction, codes_by_facet
from automl.taxonomy import Taxonomy
from connectors.base import Asset, Connector, PreAnnotation, Priority, PushResult
from service.config import Settings
from service.cycle.dry_run import DryRun, compare
from service.cycle.records import CycleSummary, LabelCollapse, Progress, TrainingDecision
from service.cycle.training import setup_fingerprint, train_version, training_fingerprint
from service.quality.label_issues import show_on_platform
from service.signals import StopRequested
from service.store.registry import ModelRegistry, ModelUnloadable, ModelVersion
from service.store.spill import PoolSpill, SpilledAsset
from service.store.state import StateStore, disk_full_as_error

if TYPE_CHECKING:  # loaded with a model file, not with the worker
    from automl.model import PreAnnotator

__all__ = ["Worker", "later", "overlapped"]

log = logging.getLogger(__name__)


def later(new: str, old: str | None) -> str:
    """The cursor to keep after a pull: never back in time (the overlap must not walk a platform's timestamp into
    the past); a cursor that is not a time (a file's fingerprint) is simply the new one."""
    try:
        datetime.fromisoformat(new), datetime.fromisoformat(old or "")
    except ValueError:
        return new
    return max(new, old or "")


def overlapped(cursor: str, seconds: float) -> str:
    """An incremental pull starts `seconds` before the cursor (a platform timestamp): a change committed after the
    last pull but stamped before its newest asset (a slow write, another server's clock) is then still seen.
    Re-pulled assets cost a cache lookup. A cursor that is not an ISO 8601 time is used as it is."""
    try:
        moment = datetime.fromisoformat(cursor)
    except ValueError:
        return cursor
    if seconds <= 0:
        return cursor
    digits = len(cursor.partition(".")[2].rstrip("Z").split("+")[0].split("-")[0])  # the platform's precision
    text = (moment - timedelta(seconds=seconds)).isoformat(
        timespec="seconds" if not digits else "milliseconds" if digits <= 3 else "microseconds")
    return text.replace("+00:00", "Z") if cursor.endswith("Z") else text


def quality(version: ModelVersion) -> str:
    """Held-out micro/macro F1 per level and the labeller's effort ratio per facet, for a log line."""
    f1 = ", ".join(f"{m.facet} L{m.level} {m.micro_f1:.3f}/{m.macro_f1:.3f}" for m in version.metrics)
    effort = ", ".join(f"{f.facet} {f.effort.ratio:.2f} (pre-fill precision {f.effort.prefill_precision:.2f})"
                       for f in version.facets)
    return f"micro/macro F1 {f1}" + (f"; effort ratio {effort}" if effort else "")


class Worker:
    """One cycle at a time on one platform and state folder (`run_once`), and the one-off commands."""

    def __init__(self, settings: Settings, connector: Connector, registry: ModelRegistry, state: StateStore,
                 stop: threading.Event | None = None, heartbeat: Progress | None = None):
        self.settings = settings
        self.connector = connector
        self.registry = registry
        self.state = state
        self.stop = stop or threading.Event()  # set by SIGTERM/SIGINT: the current batch ends, then the cycle
        self.heartbeat = heartbeat  # the polling worker's liveness file; None for one-off commands and the API

    def beat(self, phase: str, force: bool = False, **detail: object) -> None:
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
            with disk_full_as_error(self.settings.state_dir):
                yield
        finally:
            lock.release()

    # ---- one-off commands ---------------------------------------------------------------------------------------
    def train_now(self) -> ModelVersion:
        """Pull, then train a new version whatever changed (`classie-automl train`)."""
        with self.cycle_lock():
            taxonomy = self.pull(CycleSummary())
            return self.train(taxonomy, self.state.labelled_assets())

    def pre_annotate_now(self) -> CycleSummary:
        """Pull, then pre-annotate what is new with the current version, without training (`predict`)."""
        current = self.registry.require_current()
        summary = CycleSummary(model_version=current.name)
        with self.cycle_lock():
            self._begin()
            self.pull(summary)
            self.pre_annotate(self.registry.load(current), current, summary, self.state.labelled_assets())
        return summary

    def dry_run(self) -> DryRun:
        """What a cycle would do, writing nothing to the platform or the registry: pull (the asset cache is
        filled), the training decision, and the current version's pre-annotations and priorities that would be
        pushed, compared with what the ledger says each asset holds. A training it would do is not done."""
        summary = CycleSummary()
        with self.cycle_lock():
            moved_from = self.adopt_destination(write=False)
            taxonomy = self.pull(summary)
            labelled = self.state.labelled_assets()
            current = self.registry.current()
            decision = self.decide_training(taxonomy, labelled, current)
            summary.train_reason, summary.label_changes = decision.reason, decision.label_changes
            run = DryRun(summary, decision.train, destination_changed=moved_from, collapse=decision.collapse)
            if current is None or decision.collapse:
                return run
            summary.model_version = current.name
            todo = self.state.count_unlabelled_without(current.name)
            summary.already = summary.unlabelled - todo
            try:
                model = self.registry.load(current)
            except ModelUnloadable:  # the decision says it would train; nothing to compare with
                return run
            if not todo:
                return compare(run, [], [], [], {})
            with self._spilled_pool(model, current, todo, summary, labelled) as spill:
                ranking = self._rank(spill, labelled)
                assets, predictions, priorities = [], [], []
                for first, chunk, predicted in spill.chunks():
                    assets += chunk
                    predictions += predicted
                    priorities += self._priorities(first, predicted, ranking, chunk)
            return compare(run, assets, predictions, priorities, self.state.last_pushed([a.id for a in assets]))

    # ---- one cycle ----------------------------------------------------------------------------------------------
    def run_once(self, force_train: bool = False) -> CycleSummary:
        with self.cycle_lock():
            return self._cycle(force_train)

    def _cycle(self, force_train: bool) -> CycleSummary:
        summary = CycleSummary()
        started = time.monotonic()
        self._begin()
        taxonomy = self.pull(summary)
        labelled = self.state.labelled_assets()
        summary.timings["pull"] = time.monotonic() - started

        current = self._fall_back_if_unloadable(self.registry.current())
        if current is not None:
            self.adopt_training_set(taxonomy, labelled, current)
        decision = (TrainingDecision(True, "asked to train", len(labelled)) if force_train
                    else self.decide_training(taxonomy, labelled, current))
        summary.train_reason, summary.label_changes = decision.reason, decision.label_changes
        if decision.collapse:
            raise LabelCollapse(decision.collapse)
        if decision.train:
            t = time.monotonic()
            trained = self.train(taxonomy, labelled)
            summary.trained = True
            summary.timings["train"] = time.monotonic() - t
            if trained.rejected:
                summary.rejected = f"{trained.name}: {trained.gate['reason']}"
            else:
                current = trained
        # Never None here: with no current version the decision is to train, and the gate promotes a first version.
        assert current is not None
        summary.model_version = current.name
        summary.heldout, summary.heldout_facets = current.metrics, current.facets

        t = time.monotonic()
        self.pre_annotate(self.registry.load(current), current, summary, labelled)
        summary.timings["pre_annotate"] = time.monotonic() - t
        summary.label_issues_shown = show_on_platform(self.settings.label_issues, self.connector, self.registry,
                                                     self.state, current, labelled)
        summary.timings["total"] = time.monotonic() - started
        self._log_cycle(summary, current)
        return summary

    def _fall_back_if_unloadable(self, current: ModelVersion | None) -> ModelVersion | None:
        """The version to serve: `current`, or, when its model file is damaged, the newest earlier one that loads,
        promoted again (logged with the fix). Whatever cannot be loaded otherwise is left to the training decision."""
        if current is None:
            return None
        try:
            self.registry.load(current)
            return current
        except ModelUnloadable as exc:
            fallback = self.registry.loadable_before(current)
            if fallback is None:
                return current
            self.registry.promote(fallback.number)
            log.warning("%s; %s serves again. Fix: restore %s's files, or train a new version (`classie-automl"
                        " train`); `classie-automl models --promote %d` makes it serve if it loads again", exc,
                        fallback.name, current.name, current.number)
            return fallback

    def _begin(self) -> None:
        """Under the cycle lock, before a cycle that pushes: any claim is a dead process's, and the ledger must be
        the current destination's."""
        self.state.clear_claims()
        self.adopt_destination()

    def adopt_destination(self, write: bool = True) -> str:
        """The ledger says what was pushed to one destination (a file, a project). When pushes now go elsewhere, it
        is forgotten, so that the new destination gets every pre-annotation. Returns the earlier destination when it
        changed ("" otherwise); with `write` False, changes nothing."""
        now, before = self.connector.destination, self.state.remembered.destination()
        if before == now:
            return ""
        if write:
            if before is not None:
                forgotten = self.state.forget_pushed()
                log.warning("pre-annotations now go to %s, not %s: the record of the %d pushed there is set aside,"
                            " so that %s gets every pre-annotation", now, before, forgotten, now)
            self.state.remembered.set_destination(now)
        return before or ""

    def pull(self, summary: CycleSummary) -> Taxonomy:
        """Bring the platform's changes into the asset cache: incremental from the cursor, complete when none is
        kept or the last complete pull is older than [worker] full_pull_seconds (that is how deletions are seen)."""
        taxonomy = self.connector.pull_taxonomy()
        marks = before = self.state.remembered.pull_marks()
        cursor = marks.cursor
        if time.time() - marks.last_complete > self.settings.worker.full_pull_seconds:
            cursor = None
        self.beat("pulling", force=True)
        overlap = self.settings.worker.cursor_overlap_seconds
        # The overlap is for changes committed late; once a pull that started `overlap` seconds after the cursor was
        # reached has read them, later pulls start at the cursor (else every no-change cycle after a large push
        # would read again all that the push touched in its last seconds).
        start = cursor
        if cursor and marks.covered != cursor:
            start = overlapped(cursor, overlap)
        started = time.time()
        with self.state.texts() as texts:  # the pull's assets are read, and merged, inside
            pulled = self.connector.pull(start, texts=texts)
            summary.pulled = self.state.merge_assets(self._beating(pulled.assets), pulled.complete)
        summary.complete_pull = pulled.complete
        next_cursor = pulled.cursor()
        if next_cursor is not None:
            kept = later(next_cursor, cursor)
            if kept != marks.cursor:
                marks = replace(marks, cursor=kept, reached_at=started)
            elif start != cursor and started - marks.reached_at >= overlap:
                marks = replace(marks, covered=kept)
        if pulled.complete:
            marks = replace(marks, last_complete=time.time())
        if marks != before:
            self.state.remembered.save_pull_marks(marks)
        summary.skipped = self.connector.skipped.as_dict()
        summary.labelled, summary.unlabelled = self.state.count_assets()
        return taxonomy

    def decide_training(self, taxonomy: Taxonomy, labelled: Sequence[Asset],
                        current: ModelVersion | None) -> TrainingDecision:
        """Whether to train now, by the configured rule; also when this release cannot load the current version."""
        if current is None:
            return TrainingDecision(True, "no model yet", len(labelled))
        # Changes count from the last training: a candidate the gate rejected is not trained again on the same labels.
        latest = self.registry.latest()
        basis = latest if latest is not None and latest.rejected and latest.number > current.number else current
        learning = self.settings.model.learning_fingerprint()
        collapse = self._collapse(basis, labelled)
        if collapse:
            return TrainingDecision(False, "", len(labelled), collapse)
        if basis.setup_fingerprint != setup_fingerprint(taxonomy, learning):
            return TrainingDecision(True, "taxonomy or model settings changed", len(labelled))
        changes = self.state.label_changes(basis.name, labelled)
        rule = self.settings.worker
        needed = max(rule.retrain_min_changes, math.ceil(rule.retrain_min_fraction * basis.n_train))
        if changes >= needed:
            return TrainingDecision(True, f"{changes} labelled asset(s) added, changed or removed since"
                                          f" {basis.name}", changes)
        if changes:
            log.info("%d label change(s) since %s, under the retrain rule (%d)", changes, basis.name, needed)
        try:
            self.registry.load(current)  # kept loaded for the predictions
        except ModelUnloadable as exc:
            # After an upgrade whose libraries cannot read the current version: train one that they can.
            log.warning("%s: training a new version", exc)
            return TrainingDecision(True, str(exc), changes)
        return TrainingDecision(False, "", changes)

    def _collapse(self, basis: ModelVersion, labelled: Sequence[Asset]) -> str:
        """Why the labelled set is a collapse ("" when it is not): fewer than 1 - max_label_loss of what `basis`
        was trained on."""
        loss, before = self.settings.worker.max_label_loss, self.state.training_set_size(basis.name)
        if before == 0 or len(labelled) >= (1 - loss) * before:
            return ""
        return (f"the labelled assets fell from {before} ({basis.name} was trained with them) to"
                f" {len(labelled)}, more than [worker] max_label_loss ({loss:.0%}) at once: nothing was trained or"
                " pushed. Fix: if the taxonomy, the labels column or the project changed by mistake, restore it (the"
                " skipped records above name the labels dropped); if the labels are really gone, train on what is"
                " left with `classie-automl train`")

    def adopt_training_set(self, taxonomy: Taxonomy, labelled: Sequence[Asset], current: ModelVersion) -> None:
        """The state was lost (or written by an older release) but the registry's fingerprint says that the current
        version was trained on exactly these labels: record them as its training set."""
        if labelled and not self.state.knows_training_set(current.name):
            learning = self.settings.model.learning_fingerprint()
            if current.fingerprint == training_fingerprint(labelled, taxonomy, learning):
                self.state.record_training_set(current.name, labelled)

    def train(self, taxonomy: Taxonomy, labelled: Sequence[Asset]) -> ModelVersion:
        """Train and register a new version (in a child process: see service.cycle.training)."""
        log.info("training on %d labelled assets (search budget %d s in all)", len(labelled),
                 self.settings.model.budget_seconds)
        version = train_version(self.settings, self.registry, taxonomy, labelled, self.stop,
                                lambda: self.beat("training", labelled=len(labelled)))
        self.state.record_training_set(version.name, labelled)
        log.info("model %s ready in %.0f s; held-out %s", version.name, version.summary.get("fit_seconds", 0),
                 quality(version))
        if version.rejected:
            current = self.registry.current()
            log.warning("%s rejected by the promotion gate: %s; %s goes on serving. Fix, if it should serve anyway:"
                        " `classie-automl models --promote %d`", version.name, version.gate["reason"],
                        current.name if current else "no version", version.number)
        elif version.gate:
            log.info("%s promoted: %s", version.name, version.gate["reason"])
        return version

    def pre_annotate(self, model: PreAnnotator, version: ModelVersion, summary: CycleSummary,
                     labelled: Sequence[Asset]) -> None:
        """Predict the unlabelled assets that have no pre-annotation of this version for their current text, rank
        them (which a human should label next, given the `labelled` ones), push them batch by batch with their
        priorities, each batch recorded before the next starts, then tell the platform the labelling order. The
        pool goes through a scratch folder (`service.store.spill`) chunk by chunk: memory does not grow with it."""
        todo = self.state.count_unlabelled_without(version.name)
        summary.already += summary.unlabelled - todo
        if not todo:
            return
        with self._spilled_pool(model, version, todo, summary, labelled) as spill:
            if spill.size < todo:  # a stop was requested: nothing was pushed
                return
            started = time.monotonic()
            ranking = self._rank(spill, labelled)
            summary.timings["prioritise"] = time.monotonic() - started
            pushed: set[str] = set()
            started = time.monotonic()
            try:
                self._push(version, spill, ranking, summary, pushed)
            finally:
                if pushed:
                    summary.prioritised = self.connector.push_priorities(self.state.ranking(version.name), pushed)
                summary.timings["push"] = time.monotonic() - started

    @contextmanager
    def _spilled_pool(self, model: PreAnnotator, version: ModelVersion, todo: int, summary: CycleSummary,
                      labelled: Sequence[Asset]) -> Iterator[PoolSpill]:
        """The pool's predictions and TF-IDF rows, chunk by chunk from the state store into a scratch folder;
        predicted here, or on the Dask cluster of `[compute] scheduler` (the model sent to each of its workers
        once), with each text's highest similarity to a labelled one."""
        started = time.monotonic()
        parent = self.settings.state_dir / "pool"
        PoolSpill.clear_stale(parent)
        known = model.features_.vectors([a.text for a in labelled]) if labelled else None
        novelty = 0.0
        with PoolSpill(parent) as spill:
            with contextlib.ExitStack() as cluster:
                compute = self.settings.compute
                if compute.scheduler:
                    from automl.cluster import connect  # distributed: imported only when used
                    from automl.pool_prediction import predict_chunks

                    client = cluster.enter_context(connect(compute.scheduler, compute.connect_seconds))
                    chunks = predict_chunks(client, model, self.state.unlabelled_without(version.name,
                                            compute.chunk_size), lambda chunk: [a.text for a in chunk])
                else:
                    chunks = ((chunk, *model.propose_with_vectors([a.text for a in chunk])) for chunk in
                              self.state.unlabelled_without(version.name, self.settings.worker.batch_size))
                for chunk, predicted, rows in chunks:
                    t = time.monotonic()
                    similar = max_similarity(rows, known) if known is not None else np.zeros(len(chunk))
                    novelty += time.monotonic() - t
                    spill.add([SpilledAsset(a.id, a.text_hash) for a in chunk], predicted, rows, similar)
                    self.beat("predicting", done=spill.size, todo=todo)
                    if self.stop.is_set():
                        break
            # Apart: comparing each text with every labelled one grows with both, the prediction with the pool only.
            summary.timings["predict"] = time.monotonic() - started - novelty
            summary.timings["novelty"] = novelty
            if self.stop.is_set() and spill.size < todo:
                summary.abandoned = todo
                log.info("stop requested: %d asset(s) left for the next run", todo)
            yield spill

    @staticmethod
    def _rank(spill: PoolSpill, labelled: Sequence[Asset]) -> Ranking:
        """How much a human label of each asset would help the next version (see automl.priority)."""
        return rank_pool(spill.expected_edits, spill.similar, len(labelled), spill.rows_of, spill.sweep)

    @staticmethod
    def _priorities(start: int, predictions: Sequence[Prediction], ranking: Ranking,
                    assets: Sequence[SpilledAsset]) -> list[Priority]:
        return [Priority(a.id, round(float(ranking.priority[i]), 4),
                         f"{p.expected_edits:.1f} edits expected, novelty {ranking.novelty[i]:.2f}")
                for i, a, p in zip(range(start, start + len(assets)), assets, predictions, strict=True)]

    def _push(self, version: ModelVersion, spill: PoolSpill, ranking: Ranking, summary: CycleSummary,
              pushed: set[str]) -> None:
        batch = self.settings.worker.batch_size
        with tqdm(total=spill.size, desc=f"pre-annotating ({version.name})", unit="asset", disable=None,
                  leave=False) as bar:
            for first, assets, predictions in spill.chunks():
                priorities = self._priorities(first, predictions, ranking, assets)
                for start in range(0, len(assets), batch):
                    if self.stop.is_set():
                        summary.abandoned = spill.size - summary.predicted
                        log.info("stop requested: %d asset(s) left for the next run", summary.abandoned)
                        return
                    # Claimed first: the API may have answered Label Studio for some of them meanwhile.
                    window = range(start, min(start + batch, len(assets)))
                    claimed = self.state.claim(version.name, [(assets[i].id, assets[i].text_hash) for i in window])
                    chunk = [i for i in window if assets[i].id in claimed]
                    items = [PreAnnotation(assets[i].id, assets[i].text_hash, predictions[i].prefill,
                                           predictions[i].suggestions, priorities[i].value) for i in chunk]
                    try:
                        done = self.connector.push(items, version.name) if items else PushResult()
                    except BaseException:
                        self.state.release(version.name, claimed)
                        raise
                    self.state.record_pushed(version.name, [(assets[i].id, assets[i].text_hash, priorities[i],
                                                             codes_by_facet(predictions[i].prefill)) for i in chunk])
                    pushed.update(assets[i].id for i in chunk)
                    summary.predicted += len(window)
                    summary.written += done.written
                    summary.already += done.already + len(window) - len(chunk)
                    bar.update(len(window))
                    self.beat("pre-annotating", done=summary.predicted, todo=spill.size)

    def _log_cycle(self, summary: CycleSummary, current: ModelVersion) -> None:
        skipped = ", ".join(f"{n} {why}" for why, n in summary.skipped.items()) or "none"
        trained = "no training"
        if summary.rejected:
            trained = f"trained ({summary.train_reason}) and rejected {summary.rejected}"
        elif summary.trained:
            trained = (f"trained {current.name} in {summary.timings['train']:.0f} s ({summary.train_reason}; held-out"
                       f" {quality(current)})")
        log.info("cycle: pulled %d%s (%d labelled, %d unlabelled), %d label change(s), %s, model %s, pushed %d,"
                 " already had %d, skipped %s", summary.pulled, " (complete)" if summary.complete_pull else "",
                 summary.labelled, summary.unlabelled, summary.label_changes, trained, summary.model_version,
                 summary.written, summary.already, skipped,
                 extra={"event": "cycle", "cycle": {
                     **{k: v for k, v in asdict(summary).items() if k not in ("heldout", "heldout_facets")},
                     "timings": {k: round(v, 3) for k, v in summary.timings.items()},
                     "heldout_effort": {f.facet: f.effort.to_dict() for f in current.facets}}})
