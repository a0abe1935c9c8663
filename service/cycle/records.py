"""What travels out of a cycle: its summary (counted by the metrics, printed by the command line, logged), the training
decision, and the progress a cycle reports as it goes (the polling worker's heartbeat listens)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from automl.errors import InputError
from automl.metrics import FacetScore, LevelScore

__all__ = ["CycleSummary", "LabelCollapse", "Progress", "TrainingDecision"]


@dataclass
class CycleSummary:
    """What one cycle (or a one-off command) pulled, trained and pushed."""

    pulled: int = 0
    labelled: int = 0
    unlabelled: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    trained: bool = False
    train_reason: str = ""
    rejected: str = ""  # the version trained in this cycle that the promotion gate kept from serving, and why
    model_version: str = ""
    predicted: int = 0
    written: int = 0
    already: int = 0  # had a pre-annotation of this version for this text: not predicted again
    prioritised: int = 0  # priorities the platform took (labelling order)
    label_issues_shown: int = 0  # likely label mistakes shown on the platform ([label_issues] push)
    abandoned: int = 0  # left for the next run because a stop was requested
    label_changes: int = 0  # labelled assets added, changed or removed since the current model
    complete_pull: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    heldout: list[LevelScore] = field(default_factory=list)
    heldout_facets: list[FacetScore] = field(default_factory=list)


@dataclass(frozen=True)
class TrainingDecision:
    train: bool
    reason: str  # why it trains ("" when it does not)
    label_changes: int  # labelled assets added, changed or removed since the current version
    collapse: str = ""  # set when the labelled set shrank past [worker] max_label_loss: train nothing, push nothing


class LabelCollapse(InputError):
    """Most of the labelled assets a version was trained on are gone at once: more likely a wrong taxonomy, label
    column or project than labels really deleted. Nothing is trained or pushed until it is fixed or forced."""


class Progress(Protocol):
    """Told of each step of a cycle (each page of a pull, each training poll, each pushed batch): the polling worker's
    heartbeat (service.store.heartbeat.Heartbeat)."""

    def beat(self, phase: str, force: bool = False, **detail: object) -> None: ...
