"""What a cycle would push, set against what the ledger says each asset holds: `run --once --dry-run`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from automl.records import Prediction, codes_by_facet
from connectors.base import Asset, Priority
from service.cycle.records import CycleSummary
from service.store.state import Pushed

if TYPE_CHECKING:
    from service.store.spill import SpilledAsset

__all__ = ["DryRun", "PrefillChange", "compare"]


@dataclass(frozen=True)
class PrefillChange:
    """An asset whose pre-fill would change: codes as "facet:code"."""

    asset_id: str
    added: list[str]
    removed: list[str]


@dataclass
class DryRun:
    cycle: CycleSummary  # what was pulled, and the training decision (nothing trained, predicted for the platform)
    would_train: bool
    would_push: int = 0  # pre-annotations of the current version not made yet
    new: int = 0  # of them, for assets that never had one
    changes: list[PrefillChange] = field(default_factory=list)  # the asset's pre-fill would change
    unchanged: int = 0  # a new version's (or a changed text's) pre-annotation with the same codes
    unknown: int = 0  # the asset's last pre-annotation was pushed by a release that did not keep its codes
    priorities_changed: int = 0  # assets whose labelling priority would be set or changed
    destination_changed: str = ""  # the earlier destination, when pushes now go elsewhere (all made again there)
    collapse: str = ""  # why a real cycle would stop before training or pushing (the labelled set collapsed)


def _flat(prefill: dict[str, list[str]]) -> set[str]:
    return {f"{facet}:{code}" for facet, codes in prefill.items() for code in codes}


def compare(run: DryRun, assets: Sequence[Asset | SpilledAsset], predictions: Sequence[Prediction],
            priorities: Sequence[Priority], last: dict[str, Pushed]) -> DryRun:
    """Count and list, asset by asset, how the pre-annotations and priorities to push differ from the last ones."""
    run.would_push = len(assets)
    for asset, prediction, priority in zip(assets, predictions, priorities, strict=True):
        before = last.get(asset.id)
        if before is None or before.priority is None or before.priority.value != priority.value:
            run.priorities_changed += 1
        if before is None:
            run.new += 1
        elif before.prefill is None:
            run.unknown += 1
        else:
            now, then = _flat(codes_by_facet(prediction.prefill)), _flat(before.prefill)
            if now == then:
                run.unchanged += 1
            else:
                run.changes.append(PrefillChange(asset.id, sorted(now - then), sorted(then - now)))
    return run
