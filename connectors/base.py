"""The one small protocol every platform adapter implements, and the records that cross it."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from automl.records import Proposal
from automl.taxonomy import Taxonomy, with_rules
from automl.taxonomy_file import load_taxonomy

__all__ = ["Asset", "Connector", "LabelFlag", "PreAnnotation", "Priority", "Pull", "PushResult", "SkipLog", "TextCache",
           "text_hash", "with_rules_file"]

log = logging.getLogger(__name__)


def with_rules_file(interface: Taxonomy, rules: Path | None, where: str) -> Taxonomy:
    """A platform's taxonomy with the keyword rules of a taxonomy file (none: as it is); each row that fits no node,
    or several, is logged once, naming `where` (e.g. "the Kili interface")."""
    if rules is None:
        return interface
    taxonomy, problems = with_rules(interface, load_taxonomy(rules))
    for problem in problems:
        log.warning("taxonomy file %s and %s: %s", rules, where, problem)
    return taxonomy


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Asset:
    id: str
    text: str
    labels: frozenset[str] | None  # None: no human label yet (to pre-annotate); most specific codes otherwise
    version: str = ""  # what the text was read from (e.g. Kili's content URL): same version, same text
    label_ref: str = ""  # the platform's id of the human label (a Kili label, a Label Studio annotation)
    reviewed_at: str = ""  # when a reviewer made that label (Kili REVIEW), in the platform's format; '': no review

    @property
    def text_hash(self) -> str:
        return text_hash(self.text)

    @property
    def label_digest(self) -> str:
        """Changes when the asset's human labels or its text change: what a model learned from it."""
        payload = json.dumps([self.text_hash, sorted(self.labels or ())])
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PreAnnotation:
    asset_id: str
    text_hash: str
    proposals: dict[str, list[Proposal]]  # facet -> the pre-filled proposals (the answer a labeller corrects)
    suggestions: dict[str, list[Proposal]] = field(default_factory=dict)  # facet -> likely, not pre-filled
    priority: float | None = None  # in [0, 1]: how much a human label of it would help; higher, label sooner


@dataclass(frozen=True)
class Priority:
    asset_id: str
    value: float  # in [0, 1]; higher: label sooner
    why: str = ""  # e.g. "2.1 edits expected, novelty 0.62"


@dataclass(frozen=True)
class LabelFlag:
    """A human label the model finds likely wrong, to show the labellers where they look at the label."""

    asset_id: str
    label_ref: str  # the platform's id of the label (Asset.label_ref)
    code: str
    kind: str  # given: the label holds `code` and the model doubts it; missing: it lacks `code`, the model expects it
    message: str  # what looks wrong and what the model suggests


@dataclass
class SkipLog:
    """Counts skipped records by reason, keeping a few places per reason for the log line."""

    counts: Counter = field(default_factory=Counter)
    places: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, place: str) -> None:
        self.counts[reason] += 1
        self.places.setdefault(reason, [])
        if len(self.places[reason]) < 5:
            self.places[reason].append(place)
        log.debug("skipped %s: %s", place, reason)

    def report(self, source: str) -> None:
        for reason, n in self.counts.most_common():
            more = ", ..." if n > len(self.places[reason]) else ""
            log.warning("%s: skipped %d record(s): %s (%s%s)", source, n, reason, ", ".join(self.places[reason]), more)

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)


@dataclass
class PushResult:
    written: int = 0
    already: int = 0  # same asset, model version and text: nothing to do


@dataclass
class Pull:
    """Assets changed since a cursor, or all of them (`complete`: anything not among them is gone)."""

    assets: Iterator[Asset]
    complete: bool
    cursor: Callable[[], str | None]  # read after `assets` is exhausted: where the next incremental pull starts


class TextCache(Protocol):
    """Texts the service already holds, by asset and content version, so a connector fetches each text once."""

    def cached_text(self, asset_id: str, version: str) -> str | None: ...


class Connector(Protocol):
    """What the worker needs from a labelling platform."""

    platform: str
    skipped: SkipLog

    @property
    def destination(self) -> str:
        """Where pushes go (a file, a project): the ledger of what was pushed holds for this destination only."""
        ...

    def pull_taxonomy(self) -> Taxonomy: ...

    def pull(self, cursor: str | None, texts: TextCache | None = None) -> Pull:
        """Assets changed since `cursor` (None: a complete pull), paginated and streamed."""
        ...

    def push(self, items: Sequence[PreAnnotation], model_version: str) -> PushResult: ...

    def push_priorities(self, ranking: Sequence[Priority], fresh: Collection[str]) -> int:
        """The platform's labelling order, after a cycle pushed pre-annotations: `ranking` is every unlabelled
        asset's priority under the current version, `fresh` the assets whose priority this cycle computed (the only
        ones a platform needs told). Returns how many priorities the platform took."""
        ...

    def push_label_issues(self, flags: Sequence[LabelFlag], model_version: str) -> list[LabelFlag]:
        """Show these likely label mistakes where the labellers see the labels (none of them was shown before).
        Returns those shown; the others are logged with the reason. Called every cycle, with no flags too: a
        platform that keeps the flags in a place of its own takes down those whose label changed since."""
        ...
