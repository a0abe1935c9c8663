"""The likely mistakes in the human labels that a training found: the version's list (`label_issues.csv` in its
folder, written with it), what `classie-automl label-issues` shows, and which of them the worker shows on the
platform (`[label_issues] push`): each once per human label, never on a reviewed label unless the model changed its
mind since."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from automl.label_issues import Evidence, Neighbours, find_label_issues
from connectors.base import Asset, Connector, LabelFlag
from service.config import LabelIssueSettings
from service.store.registry import ModelRegistry, ModelVersion
from service.store.state import StateStore

if TYPE_CHECKING:
    from automl.model import PreAnnotator

__all__ = ["ISSUES_FILE", "FlaggedLabel", "Selection", "flag_labels", "read_flags", "select", "show_on_platform",
           "to_csv"]

log = logging.getLogger(__name__)
ISSUES_FILE = "label_issues.csv"
EXCERPT_CHARS = 160


@dataclass(frozen=True)
class FlaggedLabel:
    """One row of a version's list."""

    rank: int
    asset_id: str
    facet: str
    level: int
    kind: str  # given: a human gave `code`, the model doubts it; missing: not given, the model expects it
    code: str
    name: str
    probability: float  # the model's, that `code` applies
    suggestion: str  # the sibling the model expects instead (kind given), or ''
    suggestion_probability: float
    along: str  # codes that go with it (doubted descendants, or expected ones), ';'-separated
    score: float  # how likely the human label is wrong, a wrong branch weighing more than a sibling
    advice: str
    label_digest: str  # the human label it is about: a changed label makes the row stale
    label_ref: str  # the platform's id of that label
    reviewed_at: str  # '' unless a reviewer made the label
    excerpt: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.asset_id, self.label_digest, self.code, self.kind

    def flag(self) -> LabelFlag:
        return LabelFlag(self.asset_id, self.label_ref, self.code, self.kind, f"classie-automl: {self.advice}")


COLUMNS = [f.name for f in fields(FlaggedLabel)]


def flag_labels(model: PreAnnotator, judged: Sequence[Asset], held_out: Sequence[Asset]) -> list[FlaggedLabel]:
    """Every likely mistake in the labels of `judged` (the assets `model` was fitted on, in the order it saw them:
    judged out of fold) and `held_out` (labelled assets it never saw: judged by its predictions), most likely
    first."""
    parts: list[dict[str, Evidence]] = [model.evidence_]
    if held_out:
        parts.append(model.evidence([a.text for a in held_out], [set(a.labels or ()) for a in held_out]))
    assets = [*judged, *held_out]
    near = Neighbours.of(model.features_.vectors([a.text for a in assets]))
    evidence = {facet: Evidence.stacked([p[facet] for p in parts]).with_neighbours(near) for facet in model.evidence_}
    nodes = model.taxonomy.nodes
    out = []
    for rank, issue in enumerate(find_label_issues(model.taxonomy, evidence), 1):
        asset = assets[issue.row]
        out.append(FlaggedLabel(
            rank, asset.id, issue.facet, issue.level, issue.kind, issue.code, nodes[issue.code].name,
            issue.probability, issue.suggestion, issue.suggestion_probability, ";".join(issue.along), issue.score,
            issue.advice, asset.label_digest, asset.label_ref, asset.reviewed_at, _excerpt(asset.text)))
    return out


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS - 1].rstrip() + "…"


def to_csv(flags: Sequence[FlaggedLabel]) -> str:
    buffer = io.StringIO()
    out = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    out.writeheader()
    out.writerows(asdict(f) for f in flags)
    return buffer.getvalue()


def read_flags(path: Path) -> list[FlaggedLabel]:
    """A version's list; a row that cannot be read is logged and left out."""
    out = []
    with open(path, encoding="utf-8", newline="") as handle:
        for n, row in enumerate(csv.DictReader(handle), 2):
            try:
                out.append(_flagged(row))
            except (TypeError, ValueError, KeyError) as exc:
                log.warning("%s line %d cannot be read (%s); left out", path, n, exc)
    return out


def _flagged(row: Mapping[str, str]) -> FlaggedLabel:
    """A row that `to_csv` wrote; KeyError for a column it lacks, TypeError for one `to_csv` does not write (or for
    values past the last column)."""
    extra = set(row) - set(COLUMNS)
    if extra:
        raise TypeError(f"unknown column(s) {', '.join(sorted(map(str, extra)))}")
    return FlaggedLabel(
        rank=int(row["rank"]), asset_id=row["asset_id"], facet=row["facet"], level=int(row["level"]),
        kind=row["kind"], code=row["code"], name=row["name"], probability=float(row["probability"]),
        suggestion=row["suggestion"], suggestion_probability=float(row["suggestion_probability"]),
        along=row["along"], score=float(row["score"]), advice=row["advice"], label_digest=row["label_digest"],
        label_ref=row["label_ref"], reviewed_at=row["reviewed_at"], excerpt=row["excerpt"])


@dataclass
class Selection:
    """What a cycle shows on the platform, and why the rest of the version's top rows are not shown."""

    show: list[FlaggedLabel]
    shown_before: int = 0
    stale: int = 0  # the label changed since the training
    reviewed: int = 0  # a reviewer made the label, and the model has not changed its mind since


def select(flags: Sequence[FlaggedLabel], top: int, current_digests: dict[str, str],
           shown: set[tuple[str, str, str, str]],
           earlier_verdict: Callable[[FlaggedLabel], bool | None]) -> Selection:
    """Of the version's `top` most likely mistakes, those to show now. `current_digests`: each labelled asset's
    label as it is now; `shown`: keys already shown at the destination; `earlier_verdict(flag)`: for a reviewed
    label, whether the newest earlier version that learned from that same label flagged it too (None: no earlier
    version learned from it)."""
    chosen = Selection([])
    for flag in flags[:top]:
        if current_digests.get(flag.asset_id) != flag.label_digest:
            chosen.stale += 1
        elif flag.key in shown:
            chosen.shown_before += 1
        elif flag.reviewed_at and earlier_verdict(flag) is not False:
            chosen.reviewed += 1  # the reviewer saw the model's opinion, or the model has none from before
        else:
            chosen.show.append(flag)
    return chosen


def show_on_platform(settings: LabelIssueSettings, connector: Connector, registry: ModelRegistry, state: StateStore,
                     current: ModelVersion, labelled: Sequence[Asset]) -> int:
    """After a cycle pushed its pre-annotations: show the current version's most likely label mistakes that are not
    shown yet (`[label_issues] push`). Returns how many the platform took."""
    path = registry.file_path(current, ISSUES_FILE)
    if not settings.push:
        return 0
    flags = read_flags(path) if path.is_file() else []
    destination = connector.destination
    listed: dict[int, set] = {}

    def earlier_verdict(flag: FlaggedLabel) -> bool | None:
        learned = [n for n in state.versions_trained_on(flag.asset_id, flag.label_digest) if n < current.number]
        if not learned:
            return None
        number = max(learned)
        if number not in listed:
            earlier = registry.file_path(registry.version(number), ISSUES_FILE)
            listed[number] = {f.key for f in read_flags(earlier)} if earlier.is_file() else set()
        return flag.key in listed[number]

    chosen = select(flags, settings.top, {a.id: a.label_digest for a in labelled},
                    state.issues_pushed(destination, [f.asset_id for f in flags[:settings.top]]), earlier_verdict)
    if chosen.stale or chosen.reviewed:
        log.info("label issues of %s: %d not shown because the label changed since the training, %d because a"
                 " reviewer made the label and the model has not changed its mind since", current.name, chosen.stale,
                 chosen.reviewed)
    # Called with none to show too: a platform that shows flags in a place of its own takes down outdated ones then.
    taken = connector.push_label_issues([f.flag() for f in chosen.show], current.name)
    if taken:  # most cycles show nothing new: no ledger write then
        by_flag = {(f.asset_id, f.code, f.kind): f for f in chosen.show}
        state.record_issues_pushed(destination, current.name,
                                   [by_flag[(t.asset_id, t.code, t.kind)].key for t in taken])
        log.info("label issues of %s: %d shown on %s (%d of its top %d shown before)", current.name, len(taken),
                 destination, chosen.shown_before, settings.top)
    return len(taken)
