"""The plain records the model hands out, kept apart from the model so that reading them needs no numerical library."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Prediction", "Proposal", "Source", "codes_by_facet", "flatten"]


class Source(IntEnum):
    """What decided a proposed label (stored as small integers in the model's decision arrays)."""

    NONE = 0
    MODEL = 1
    KEYWORD = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Proposal:
    code: str
    confidence: float
    source: str  # Source.MODEL.label or Source.KEYWORD.label


@dataclass(frozen=True)
class Prediction:
    """What the model proposes for one text."""

    prefill: dict[str, list[Proposal]]  # per facet: the codes worth pre-filling (pushed as the answer)
    suggestions: dict[str, list[Proposal]]  # per facet: likely codes not pre-filled, for a UI to offer
    expected_edits: float  # the edits a labeller is expected to make on the pre-fill: how much a label would teach


def flatten(proposals: dict[str, list[Proposal]]) -> list[Proposal]:
    """Every facet's proposals in one list."""
    return [p for facet_proposals in proposals.values() for p in facet_proposals]


def codes_by_facet(proposals: dict[str, list[Proposal]]) -> dict[str, list[str]]:
    """The codes of each facet's proposals, sorted (what the ledger keeps of a pre-fill)."""
    return {facet: sorted(p.code for p in ps) for facet, ps in proposals.items()}
