"""Scoring the current model version on a labelled file (`classie-automl evaluate`), and reading such a file: the one
loader of labelled test files, for this and for the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automl.metrics import Scores
from automl.taxonomy import Taxonomy
from connectors.base import Asset
from connectors.files import AssetFileError, load_assets
from connectors.settings import FilesSettings
from service.store.registry import ModelRegistry, ModelVersion

__all__ = ["FileScores", "evaluate_current", "labelled_file"]


def labelled_file(test: Path, taxonomy: Taxonomy, columns: FilesSettings, purpose: str = "evaluate") -> list[Asset]:
    """The labelled assets of `test` (read with the [files] column settings; records without labels are skipped);
    an AssetFileError that names the fix when there are none."""
    assets = load_assets(test, taxonomy, columns, require_labels=True)
    if not assets:
        raise AssetFileError(f"{test}: no labelled asset to {purpose}. Fix: give a file with labels.")
    return assets


@dataclass(frozen=True)
class FileScores:
    """The current version's scores on a labelled file."""

    version: ModelVersion
    test: Path
    n_assets: int  # labelled assets scored
    scores: Scores  # per facet and level, and per facet

    def to_dict(self) -> dict:
        return {"model_version": self.version.name, "test": str(self.test), "assets": self.n_assets,
                **self.scores.to_dict()}


def evaluate_current(registry: ModelRegistry, test: Path, columns: FilesSettings) -> FileScores:
    """The current version's precision, recall, F1 and labeller effort per facet and level on the labelled assets of
    `test` (read with the [files] column settings; records without labels are skipped)."""
    version = registry.require_current()
    model = registry.load(version)
    assets = labelled_file(test, model.taxonomy, columns, "evaluate on")
    scores = model.score([a.text for a in assets], [set(a.labels or ()) for a in assets])
    return FileScores(version, test, len(assets), scores)
