"""One cycle of the service: pull, (re)train when the human labels changed, pre-annotate, push, report."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from automl.model import PreAnnotator
from automl.taxonomy import Taxonomy
from connectors.base import Asset, Connector, PreAnnotation
from service.config import Settings
from service.registry import ModelRegistry, ModelVersion

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
    already: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    heldout: list[dict] = field(default_factory=list)


def training_fingerprint(labelled: Sequence[Asset], taxonomy: Taxonomy, model_config: dict) -> str:
    """Changes when a human label, a labelled text, the taxonomy or a learning setting changes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model_config, sort_keys=True).encode())
    digest.update(json.dumps(taxonomy.fingerprint_rows()).encode())
    for asset in sorted(labelled, key=lambda a: a.id):
        digest.update(json.dumps([asset.id, asset.text_hash, sorted(asset.labels or ())]).encode())
    return digest.hexdigest()


class Worker:
    def __init__(self, settings: Settings, connector: Connector, registry: ModelRegistry):
        self.settings = settings
        self.connector = connector
        self.registry = registry

    def pull(self) -> tuple[Taxonomy, list[Asset], list[Asset]]:
        taxonomy = self.connector.pull_taxonomy()
        assets = list(self.connector.pull_assets())
        labelled = [a for a in assets if a.labels is not None]
        unlabelled = [a for a in assets if a.labels is None]
        return taxonomy, labelled, unlabelled

    def train(self, taxonomy: Taxonomy, labelled: Sequence[Asset], fingerprint: str) -> ModelVersion:
        s = self.settings
        log.info("training on %d labelled assets (search budget %d s in all)", len(labelled), s.model.budget_seconds)
        model = PreAnnotator(taxonomy, s.model.to_settings(s.state_dir))
        model.fit([a.text for a in labelled], [set(a.labels or ()) for a in labelled], progress=log.info)
        version = self.registry.register(model, fingerprint, s.model.model_dump(mode="json"))
        levels = ", ".join(f"{m['facet']} L{m['level']} {m['micro_f1']:.3f}/{m['macro_f1']:.3f}"
                           for m in version.metrics)
        log.info("model %s ready in %.0f s; held-out micro/macro F1: %s", version.name, model.fit_seconds_, levels)
        return version

    def pre_annotate(self, model: PreAnnotator, version: ModelVersion, assets: Sequence[Asset], report: CycleReport):
        batch = self.settings.worker.batch_size
        with tqdm(total=len(assets), desc=f"pre-annotating ({version.name})", unit="asset",
                  disable=None, leave=False) as bar:
            for start in range(0, len(assets), batch):
                chunk = assets[start:start + batch]
                proposals = model.predict([a.text for a in chunk])
                items = [PreAnnotation(a.id, a.text_hash, p) for a, p in zip(chunk, proposals)]
                pushed = self.connector.push(items, version.name)
                report.predicted += len(chunk)
                report.written += pushed.written
                report.already += pushed.already
                bar.update(len(chunk))

    def run_once(self, force_train: bool = False) -> CycleReport:
        report = CycleReport()
        started = time.monotonic()
        taxonomy, labelled, unlabelled = self.pull()
        report.pulled, report.labelled, report.unlabelled = len(labelled) + len(unlabelled), len(labelled), len(
            unlabelled)
        report.skipped = self.connector.skipped.as_dict()
        report.timings["pull"] = time.monotonic() - started

        fingerprint = training_fingerprint(labelled, taxonomy, self.settings.model.fingerprint())
        current = self.registry.current()
        if force_train:
            report.train_reason = "asked to train"
        elif current is None:
            report.train_reason = "no model yet"
        elif current.fingerprint != fingerprint:
            report.train_reason = "human labels, taxonomy or model settings changed"
        if report.train_reason:
            t = time.monotonic()
            current = self.train(taxonomy, labelled, fingerprint)
            report.trained = True
            report.timings["train"] = time.monotonic() - t
        report.model_version = current.name
        report.heldout = current.metrics

        t = time.monotonic()
        model = self.registry.load(current)
        self.pre_annotate(model, current, unlabelled, report)
        report.timings["pre_annotate"] = time.monotonic() - t
        report.timings["total"] = time.monotonic() - started
        log.info(
            "cycle: pulled %d (%d labelled, %d to pre-annotate), skipped %d, %s, model %s, wrote %d, already had %d",
            report.pulled, report.labelled, report.unlabelled, sum(report.skipped.values()),
            f"trained ({report.train_reason})" if report.trained else "no training needed", report.model_version,
            report.written, report.already,
        )
        return report
