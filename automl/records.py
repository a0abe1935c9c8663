"""The plain records the model hands out, kept apart from the model so that reading them needs no numerical library."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


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


def flatten(proposals: dict[str, list[Proposal]]) -> list[Proposal]:
    """Every facet's proposals in one list."""
    return [p for facet_proposals in proposals.values() for p in facet_proposals]
