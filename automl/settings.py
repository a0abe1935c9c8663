"""The model's settings and the taxonomy's, each declared once, with its default and its bounds.

These are the `[model]` and `[taxonomy]` sections of the service's configuration, passed down as they are. A field
marked `learning=True` changes what a model learns: a change to it retrains at the next cycle (`learning_fingerprint`
collects exactly the marked fields, so a new one cannot be missed). The others only bound how long or how widely the
search runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from automl.taxonomy import Taxonomy, TaxonomyError
from automl.taxonomy_file import load_taxonomy

__all__ = ["ComputeSettings", "ModelSettings", "Section", "TaxonomySettings", "learning"]

HIERARCHY_MODES = ("imply_parents", "require_parent")


def learning(default: Any, **constraints: Any) -> Any:
    """A field whose value changes what a model learns."""
    return Field(default, json_schema_extra={"learning": True}, **constraints)


class Section(BaseModel):
    """A configuration section: unknown keys are errors, values are checked and then fixed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(Section):
    # A training's time: features, searches, out-of-fold fits and thresholds together. What the other work needs is
    # estimated first; the rest is search time, shared by the levels in proportion to their trainable labels. A
    # level whose share is under auto-sklearn's 30 s minimum is not searched: it fits the default linear model.
    budget_seconds: int = Field(300, ge=1)
    per_run_seconds: int | None = Field(None, ge=1)  # one pipeline fit; default: the level's search time / 4
    memory_mb: int = Field(3072, ge=256)  # one pipeline fit
    seed: int = 1  # the random seed of the search and the folds
    max_evaluations: int | None = Field(None, ge=1)  # pipelines tried per level; set it for runs that must repeat
    ensemble_size: int = Field(10, ge=1)  # auto-sklearn's ensemble selection rounds
    max_members: int = Field(3, ge=1)  # pipelines kept from the ensemble
    n_jobs: int | None = Field(None, ge=1)  # parallel pipeline fits (search and folds); default: the machine's cores
    # A retrain's search starts from the configurations of the current version's ensembles (then explores).
    warm_start: bool = True
    min_examples: int = learning(10, ge=2)  # fewer positive (or negative) examples: the label's keyword rule decides
    cv_folds: int = Field(5, ge=2)  # out-of-fold predictions for thresholds, rules, confidence, held-out metrics
    max_chars: int = learning(3000, ge=1)  # texts are cut here, otherwise unprocessed
    max_df: float = learning(0.2, gt=0, le=1)  # TF-IDF
    min_df: int = learning(2, ge=1)  # TF-IDF: a term in fewer texts is left out
    ngram_max: int = learning(2, ge=1, le=3)  # word n-grams, 1 up to this long
    # Character n-grams within words, 2 up to this long, beside the word terms: they share evidence between a word's
    # forms and compounds ("disabled", "disability") that the word vocabulary keeps apart. 0: words only.
    char_ngram_max: int = learning(5, ge=0, le=6)
    # A child code pre-filled without its parent: the parent is pre-filled too (imply_parents), or the child dropped.
    hierarchy: Literal["imply_parents", "require_parent"] = learning("imply_parents")
    # A facet in which every labelled text (100 at least) has exactly one path is treated as single-choice
    # ([taxonomy] single_choice): one path per text, the most likely code level by level.
    detect_single_choice: bool = learning(True)
    # A label is pre-filled where that saves a labeller edits out of fold: a wrong pre-fill costs a deletion weighing
    # this many missing ones (additions), so it is pre-filled when it is right with a probability above c / (1 + c).
    wrong_prefill_cost: float = learning(1.0, gt=0)
    # Instead: pre-fill only rules and thresholds whose out-of-fold precision reaches this (the best F1 among them).
    target_precision: float | None = learning(None, gt=0, le=1)
    # Codes not pre-filled but at least this likely are offered as suggestions (files output, /predict).
    suggestion_min_confidence: float = Field(0.2, ge=0, le=1)
    # The promotion gate: this share of the labelled assets (chosen by a hash of their id, so the same ones in every
    # version) is kept out of training; a new version is scored on it beside the current one and becomes current
    # only if no facet's micro-F1 falls, or effort ratio rises, by more than promote_tolerance. 0: no gate.
    holdout_fraction: float = learning(0.15, ge=0, lt=1)
    promote_tolerance: float = Field(0.02, ge=0)  # how much worse on the slice a new version may be
    # Refit a promoted version on every labelled asset, the slice included, with the pipelines its search found (no
    # second search); the slice-free fit is kept beside it to judge the next candidate alike. Off by default: what
    # serves is then exactly what the gate judged (on UK-CAT the refit cost 86 s and gained nothing measurable).
    refit_promoted: bool = learning(False)

    @field_validator("hierarchy", mode="before")
    @classmethod
    def _known_hierarchy(cls, value: Any) -> Any:
        if value not in HIERARCHY_MODES:
            raise ValueError(f"hierarchy must be one of {', '.join(HIERARCHY_MODES)}, not {value!r}")
        return value

    @property
    def jobs(self) -> int:
        """`n_jobs`, or the cores this process may run on."""
        return self.n_jobs or len(os.sched_getaffinity(0))

    def learning_fingerprint(self) -> dict[str, Any]:
        """The values of the fields that change what is learned (unset optional ones left out)."""
        marked = {name for name, field in type(self).model_fields.items()
                  if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("learning")}
        return self.model_dump(include=marked, exclude_none=True, mode="json")


class ComputeSettings(Section):
    """Where the search's pipeline fits and the prediction of the unlabelled pool run."""

    # An existing Dask cluster's scheduler, e.g. "tcp://dask-scheduler:8786": the search evaluates its pipelines on
    # the cluster's workers, and the worker predicts the pool there in chunks. Unset: this machine ([model] n_jobs).
    scheduler: str | None = Field(None, pattern=r"^(tcp|tls|ucx|inproc)://\S+$")
    chunk_size: int = Field(1000, ge=1)  # texts per prediction task on the cluster
    connect_seconds: float = Field(30.0, gt=0)  # to reach the scheduler and find a worker there

    @field_validator("scheduler", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # An environment cannot unset a variable the Docker image sets: CLASSIE_COMPUTE__SCHEDULER= means this machine.
        return None if isinstance(value, str) and not value.strip() else value


class TaxonomySettings(Section):
    path: Path | None = None  # the taxonomy CSV (platform kili: optional, keyword rules by category key)
    default_facet: str = "subject"  # the facet of codes that no facet column or root names
    # A code and its descendants form a facet, e.g. {"population": ["BE"]}.
    facet_roots: dict[str, list[str]] = Field(default_factory=dict)
    # Facets whose every text has exactly one path (section > group > class): decoded as the most likely path, one
    # answer always. Platforms say so themselves (a Kili radio job, a Label Studio single <Choices>), and
    # [model] detect_single_choice finds such facets in the labels.
    single_choice: list[str] = Field(default_factory=list)

    def load(self) -> Taxonomy:
        """The taxonomy file these settings name, read with them."""
        if self.path is None:
            raise TaxonomyError("no taxonomy file is set. Fix: pass --taxonomy or set [taxonomy] path.")
        return load_taxonomy(self.path, self.facet_roots, self.default_facet, self.single_choice)
