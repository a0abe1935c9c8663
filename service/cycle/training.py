"""Training a new model version in a child process, and the fingerprints that tell when a version is out of date.

The child process lets a stop request end a search at once (auto-sklearn's own workers included) and gives the
search's memory back when it ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import threading
from collections.abc import Callable, Sequence

from automl.errors import ClassieError
from automl.taxonomy import Taxonomy
from connectors.base import Asset
from service.config import Settings
from service.quality.promotion import judge, split_holdout
from service.signals import StopRequested
from service.store.registry import ModelRegistry, ModelVersion

__all__ = ["TrainingAbandoned", "TrainingFailed", "setup_fingerprint", "train_version", "training_fingerprint"]

log = logging.getLogger(__name__)


class TrainingFailed(ClassieError):
    """The training process failed or died; the current model (if any) stays in service."""


class TrainingAbandoned(StopRequested):
    """A stop was requested while a training ran: the training process was ended and nothing of it saved."""


def setup_fingerprint(taxonomy: Taxonomy, learning: dict) -> str:
    """Changes when the taxonomy or a learning setting changes: either retrains, whatever the labels."""
    digest = hashlib.sha256()
    digest.update(json.dumps(learning, sort_keys=True).encode())
    digest.update(json.dumps(taxonomy.fingerprint_rows()).encode())
    return digest.hexdigest()


def taxonomy_fingerprint(taxonomy: Taxonomy) -> str:
    return hashlib.sha256(json.dumps(taxonomy.fingerprint_rows()).encode()).hexdigest()


def training_fingerprint(labelled: Sequence[Asset], taxonomy: Taxonomy, learning: dict) -> str:
    """Changes when a human label, a labelled text, the taxonomy or a learning setting changes."""
    digest = hashlib.sha256(setup_fingerprint(taxonomy, learning).encode())
    for asset in sorted(labelled, key=lambda a: a.id):
        digest.update(json.dumps([asset.id, asset.label_digest]).encode())
    return digest.hexdigest()


def train_version(settings: Settings, registry: ModelRegistry, taxonomy: Taxonomy, labelled: Sequence[Asset],
                  stop: threading.Event, beat: Callable[[], None]) -> ModelVersion:
    """Train and register a new version in a child process, promoted unless the promotion gate rejects it; `beat`
    is called every half second while it runs. Raises TrainingAbandoned when `stop` is set meanwhile,
    TrainingFailed when the child fails."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_train_child, args=(settings, registry, taxonomy, labelled, sender),
                            daemon=False)
    child.start()
    sender.close()
    outcome = None
    while not receiver.poll(0.5):
        beat()
        if stop.is_set():
            _end_process_group(child)
            shutil.rmtree(settings.state_dir / "tmp", ignore_errors=True)
            outcome = _sent(receiver)
            if not isinstance(outcome, ModelVersion):  # else it was registered just before the stop: it is kept
                raise TrainingAbandoned("stop requested: training abandoned, nothing of it was saved")
            break
    if outcome is None:
        outcome = _sent(receiver) or f"the training process ended without a result (exit code {child.exitcode})"
    if isinstance(outcome, str):
        child.join()
        raise TrainingFailed(f"training failed: {outcome}")
    # Registered (and promoted, unless the gate said no): the child goes on to write the version's report, an extra
    # that a stop may cut short.
    while child.is_alive():
        child.join(0.5)
        beat()
        if stop.is_set() and child.is_alive():
            _end_process_group(child)
            log.warning("%s: stop requested while its report was written; the version stands without it (`classie-"
                        "automl report` writes it)", outcome.name)
    return outcome


def _sent(receiver) -> ModelVersion | str | None:
    """What the training process sent; None when it ended without a word (killed, out of memory)."""
    try:
        return receiver.recv() if receiver.poll(0) else None
    except EOFError:
        return None


def _train_child(settings: Settings, registry: ModelRegistry, taxonomy: Taxonomy, labelled: Sequence[Asset],
                 sender) -> None:
    os.setpgrp()  # its own process group: ending it ends auto-sklearn's workers too
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    registered = False
    try:
        from automl.model import PreAnnotator
        from service.quality.label_issues import ISSUES_FILE, flag_labels, to_csv

        workspace = settings.workspace()
        fraction = settings.model.holdout_fraction
        train, holdout = split_holdout(labelled, fraction)
        if labelled and not train:  # a handful of labels, all in the slice: learn from them, judge nothing
            train, holdout, fraction = list(labelled), [], 0.0
        model = PreAnnotator(taxonomy, settings.model, workspace)
        model.fit([a.text for a in train], [set(a.labels or ()) for a in train], progress=log.info,
                  warm_from=_warm_start_model(settings, registry))
        verdict = judge(model, holdout, registry, taxonomy_fingerprint(taxonomy), fraction,
                        settings.model.promote_tolerance)
        served, judged = model, None
        if verdict.promoted and holdout and settings.model.refit_promoted:
            log.info("promoted: refitting on all %d labelled assets with the pipelines found", len(labelled))
            served = PreAnnotator(taxonomy, settings.model, workspace).fit(
                [a.text for a in labelled], [set(a.labels or ()) for a in labelled], progress=log.info,
                pipelines_from=model)
            served.fit_seconds_ += model.fit_seconds_  # the whole training: the search's fit and the refit
            judged = model
        learning = settings.model.learning_fingerprint()
        refitted = judged is not None
        flags = flag_labels(served, labelled if refitted else train, [] if refitted else holdout)
        log.info("label issues: %d likely mistake(s) in the human labels (`classie-automl label-issues`)",
                 len(flags))
        version = registry.register(
            served, training_fingerprint(labelled, taxonomy, learning), settings.model.model_dump(mode="json"),
            promote=verdict.promoted, setup_fingerprint=setup_fingerprint(taxonomy, learning),
            gate={**verdict.to_dict(), "candidate_trained_on": len(train)}, slice_model=judged,
            files={ISSUES_FILE: to_csv(flags)},
        )
        sender.send(version)  # at once: from here on a stop must not call the version abandoned
        registered = True
        _write_report(settings, registry, version, served, model, holdout)
    except BaseException as exc:  # reported to the parent, which decides
        log.exception("training failed")
        if not registered:
            sender.send(f"{type(exc).__name__}: {exc}")
    finally:
        sender.close()
        os._exit(0)  # no atexit handlers or inherited finalisers of the parent in the child


def _warm_start_model(settings: Settings, registry: ModelRegistry):
    """The current version, whose ensembles' configurations a retrain's searches start from ([model] warm_start);
    None for a first training, when it is off, or when the current version cannot be loaded (then logged)."""
    current = registry.current() if settings.model.warm_start else None
    if current is None:
        return None
    try:
        return registry.load(current)
    except Exception as exc:  # noqa: BLE001 - a cold start is the fallback, never a failed training
        log.warning("warm start: %s cannot be loaded (%s: %s); searching from scratch", current.name,
                    type(exc).__name__, exc)
        return None


def _write_report(settings: Settings, registry: ModelRegistry, version: ModelVersion, served, judged,
                  holdout: Sequence[Asset]) -> None:
    """<state>/models/vNNNN/report.html: the slice-free fit on the evaluation slice, else the served model on
    [evaluation] test. A report that cannot be made is logged; the version stands."""
    from service.quality.report import held_out_for, write_report

    try:
        evaluation = held_out_for(version, lambda: served, lambda: judged, lambda: holdout, None, settings.files,
                                    settings.evaluation.test)
        write_report(registry, version, evaluation)
    except Exception as exc:  # noqa: BLE001 - a report is an extra; the training succeeded
        log.warning("%s: report not written (%s: %s)", version.name, type(exc).__name__, exc)


def _end_process_group(child) -> None:
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.join(5)
        if child.is_alive():
            os.killpg(child.pid, signal.SIGKILL)
            child.join(5)
    except ProcessLookupError:
        pass
