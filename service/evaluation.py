"""Scoring the current model version on a labelled file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automl.metrics import Scores
from connectors.files import AssetFileError, load_assets
from connectors.settings import FilesSettings
from service.registry import ModelRegistry, ModelVersion


@dataclass(frozen=True)
class Evaluation:
    version: ModelVersion
    test: Path
    n_assets: int  # labelled assets scored
    scores: Scores  # per facet and level, and per facet

    def to_dict(self) -> dict:
        return {"model_version": self.version.name, "test": str(self.test), "assets": self.n_assets,
                **self.scores.to_dict()}


def evaluate_current(registry: ModelRegistry, test: Path, columns: FilesSettings) -> Evaluation:
    """The current version's precision, recall, F1 and labeller effort per facet and level on the labelled assets of
    `test` (read with the [files] column settings; records without labels are skipped)."""
    version = registry.require_current()
    model = registry.load(version)
    assets = load_assets(test, model.taxonomy, columns, require_labels=True)
    if not assets:
        raise AssetFileError(f"{test}: no labelled asset to evaluate on. Fix: give a file with labels.")
    scores = model.score([a.text for a in assets], [set(a.labels) for a in assets])
    return Evaluation(version, test, len(assets), scores)
