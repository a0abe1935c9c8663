"""How a training's time budget is shared: each level's work besides the search first, then search time in
proportion to the level's trainable labels, and no search where a level's share would be under auto-sklearn's
minimum."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LevelCost:
    trainable: int  # labels the level's model learns (0: keyword rules only)
    other_seconds: float  # estimated time of its out-of-fold and final fits once its pipelines are chosen
    unsearched_seconds: float | None = None  # the same if it is not searched (one default model); None: as searched

    def other(self, searched: bool) -> float:
        return self.other_seconds if searched or self.unsearched_seconds is None else self.unsearched_seconds

    def scaled(self, factor: float) -> LevelCost:
        unsearched = None if self.unsearched_seconds is None else self.unsearched_seconds * factor
        return LevelCost(self.trainable, self.other_seconds * factor, unsearched)


def search_shares(remaining: float, levels: Sequence[LevelCost], minimum: float) -> list[float]:
    """Search seconds per level out of `remaining`: what the levels' other work needs is set aside, the rest is
    shared in proportion to trainable labels. A level whose share falls under `minimum` gets 0 (it is not searched,
    and its other work is that of its default model) and its share goes to the others, smallest first, until every
    share left is at least `minimum`."""
    active = [i for i, level in enumerate(levels) if level.trainable]
    while active:
        pool = remaining - sum(level.other(i in active) for i, level in enumerate(levels))
        total = sum(levels[i].trainable for i in active)
        shares = {i: pool * levels[i].trainable / total for i in active}
        smallest = min(active, key=lambda i: shares[i])
        if shares[smallest] >= minimum:
            return [shares.get(i, 0.0) for i in range(len(levels))]
        active.remove(smallest)
    return [0.0] * len(levels)
