"""The promotion gate: a fixed evaluation slice of the labelled assets, on which a candidate version and the current one
are scored alike; the candidate becomes current only if it is not worse.

The slice is chosen by a hash of the asset id, so an asset is in it or not whatever else changes: it stays the same
across versions and grows with the project. Versions are trained on the labelled assets outside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, NotRequired, Protocol, TypedDict, TypeVar

from automl.metrics import Scores
from service.store.registry import ModelRegistry, ModelUnloadable

if TYPE_CHECKING:  # the model's libraries load with the model file
    from automl.model import PreAnnotator

__all__ = ["SliceFigures", "Verdict", "comparable", "in_holdout", "judge", "split_holdout", "worse"]


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


A = TypeVar("A", bound=_Identified)  # an asset, or anything else with an `id`
# Fewer labelled assets in the slice than this and a comparison says nothing: the candidate is promoted unjudged.
MIN_SLICE_ASSETS = 20


def in_holdout(asset_id: str, fraction: float) -> bool:
    """Whether the asset belongs to the evaluation slice of this fraction (the same answer on every call)."""
    point = int.from_bytes(hashlib.sha256(asset_id.encode("utf-8")).digest()[:8], "big")
    return point < fraction * 2**64


def split_holdout(labelled: Sequence[A], fraction: float) -> tuple[list[A], list[A]]:
    """(assets to train on, the evaluation slice) of assets with an `id`."""
    train: list[A] = []
    holdout: list[A] = []
    for asset in labelled:
        (holdout if in_holdout(asset.id, fraction) else train).append(asset)
    return train, holdout


@dataclass(frozen=True)
class SliceFigures:
    """One facet of one version on the slice: micro-F1 over its levels (ancestors counted) and the effort ratio."""

    micro_f1: float
    effort_ratio: float
    prefill_precision: float


def slice_figures(scores: Scores) -> dict[str, SliceFigures]:
    out = {}
    for facet in scores.facets:
        p, r = facet.effort.prefill_precision, facet.effort.coverage
        out[facet.facet] = SliceFigures(round(2 * p * r / (p + r), 4) if p + r else 0.0, round(facet.effort.ratio, 4),
                                        round(p, 4))
    return out


@dataclass(frozen=True)
class Verdict:
    """What the gate decided for a candidate, kept in its meta.json."""

    promoted: bool
    reason: str
    holdout_fraction: float
    slice_assets: int
    taxonomy_fingerprint: str
    candidate: dict[str, SliceFigures] = field(default_factory=dict)
    against: str = ""  # the version it was compared with
    current: dict[str, SliceFigures] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _SliceFields(TypedDict):
    """The fields of a `Verdict` that every verdict of one candidate shares."""

    holdout_fraction: float
    slice_assets: int
    taxonomy_fingerprint: str
    candidate: NotRequired[dict[str, SliceFigures]]  # once the candidate is scored


def worse(candidate: dict[str, SliceFigures], current: dict[str, SliceFigures], tolerance: float) -> list[str]:
    """How the candidate is worse than the current version, facet by facet: its micro-F1 lower by more than
    `tolerance`, or its effort ratio higher by more than `tolerance` (both absolute). Empty: not worse."""
    found = []
    for facet, now in current.items():
        new = candidate.get(facet)
        if new is None:
            continue
        if new.micro_f1 < now.micro_f1 - tolerance:
            found.append(f"{facet} micro-F1 {new.micro_f1:.3f} < {now.micro_f1:.3f} - {tolerance:g}")
        if new.effort_ratio > now.effort_ratio + tolerance:
            found.append(f"{facet} effort ratio {new.effort_ratio:.3f} > {now.effort_ratio:.3f} + {tolerance:g}")
    return found


def comparable(current_gate: dict, fraction: float, taxonomy_fingerprint: str) -> str:
    """Why the current version cannot be compared with a candidate on this slice ("" when it can)."""
    if not current_gate:
        return "it was trained before the evaluation slice was kept aside"
    if current_gate.get("holdout_fraction") != fraction:
        return f"it was trained with holdout_fraction {current_gate.get('holdout_fraction')}, not {fraction:g}"
    if current_gate.get("taxonomy_fingerprint") != taxonomy_fingerprint:
        return "the taxonomy changed since"
    return ""


def judge(candidate: PreAnnotator, holdout: Sequence, registry: ModelRegistry, taxonomy_fingerprint: str,
          fraction: float, tolerance: float) -> Verdict:
    """Score the candidate and the current version on the slice (labelled assets with `text` and `labels`) and say
    whether the candidate may become current."""
    base = _SliceFields(holdout_fraction=fraction, slice_assets=len(holdout), taxonomy_fingerprint=taxonomy_fingerprint)
    if not fraction:
        return Verdict(True, "no evaluation slice (holdout_fraction 0): promoted unjudged", **base)
    texts, labels = [a.text for a in holdout], [set(a.labels) for a in holdout]
    mine = slice_figures(candidate.score(texts, labels)) if holdout else {}
    base["candidate"] = mine
    if len(holdout) < MIN_SLICE_ASSETS:
        return Verdict(True, f"the evaluation slice has {len(holdout)} labelled asset(s), fewer than"
                             f" {MIN_SLICE_ASSETS}: promoted unjudged", **base)
    current = registry.current()
    if current is None:
        return Verdict(True, "first version", **base)
    why_not = comparable(current.gate, fraction, taxonomy_fingerprint)
    if why_not:
        return Verdict(True, f"not compared with {current.name}: {why_not}", **base, against=current.name)
    try:
        theirs = slice_figures(registry.load_slice_model(current).score(texts, labels))
    except ModelUnloadable as exc:
        return Verdict(True, f"not compared: {exc}", **base, against=current.name)
    found = worse(mine, theirs, tolerance)
    if found:
        return Verdict(False, f"worse than {current.name} on the evaluation slice ({len(holdout)} assets): "
                              + "; ".join(found), **base, against=current.name, current=theirs)
    return Verdict(True, f"not worse than {current.name} on the evaluation slice ({len(holdout)} assets)", **base,
                   against=current.name, current=theirs)
