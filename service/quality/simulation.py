"""`classie-automl simulate`: a labelling campaign replayed on a fully labelled set, to measure how fast the model
learns when humans label what the service ranks first, against labelling at random.

Each strategy starts from the same seed labels. Each round trains a version with the real training path (the
auto-sklearn search, with the round's budget), scores it on the held-out set (F1, effort, pre-fill precision), then
"labels" the next assets: the top of the service's ranking, or a random draw. Every round is written to
`rounds.jsonl` as it ends, so a rerun carries on from the last round written.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl.errors import InputError
from automl.model import PreAnnotator
from automl.priority import rank
from automl.search import Workspace
from automl.settings import ModelSettings
from automl.taxonomy import Taxonomy
from connectors.base import Asset

__all__ = ["STRATEGIES", "Campaign", "held_out", "simulate", "write_curves"]

log = logging.getLogger(__name__)
STRATEGIES = ("priority", "random")


@dataclass(frozen=True)
class Campaign:
    seed_labels: int = 200
    rounds: int = 8
    per_round: int = 200
    strategies: tuple[str, ...] = STRATEGIES
    seed: int = 1


def simulate(pool: Sequence[Asset], test: Sequence[Asset], taxonomy: Taxonomy, settings: ModelSettings,
             campaign: Campaign, out: Path, progress: Callable[[str], None] = log.info) -> list[dict]:
    """Run (or carry on) the campaign; returns every round's row, also kept in `out/rounds.jsonl`."""
    needed = campaign.seed_labels + campaign.rounds * campaign.per_round
    if len(pool) < needed:
        raise InputError(f"the campaign labels {needed} assets but the pool has {len(pool)} labelled ones. Fix:"
                         " lower --seed-labels, --rounds or --per-round.")
    out.mkdir(parents=True, exist_ok=True)
    done = _read_rounds(out / "rounds.jsonl")
    by_id = {a.id: a for a in pool}
    seed_ids = random.Random(campaign.seed).sample(sorted(by_id), campaign.seed_labels)
    rows = []
    for strategy in campaign.strategies:
        labelled = list(seed_ids)
        for round_no in range(campaign.rounds + 1):
            previous = done.get((strategy, round_no))
            if previous is not None:  # written by an earlier run: carry on from it
                rows.append(previous)
                labelled = list(previous["labelled_ids"]) + list(previous["next_ids"])
                continue
            row = _round(strategy, round_no, [by_id[i] for i in labelled], pool, test, taxonomy, settings,
                         campaign, out)
            progress(f"{strategy} round {round_no}: {row['labels']} labels, " + ", ".join(
                f"{s['facet']} L{s['level']} {s['micro_f1']:.3f}" for s in row["levels"])
                + f", effort {_effort_text(row)} ({row['seconds']:.0f} s)")
            with (out / "rounds.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            rows.append(row)
            labelled = labelled + row["next_ids"]
    return rows


def _round(strategy: str, round_no: int, labelled: list[Asset], pool: Sequence[Asset], test: Sequence[Asset],
           taxonomy: Taxonomy, settings: ModelSettings, campaign: Campaign, out: Path) -> dict:
    started = time.monotonic()
    model = PreAnnotator(taxonomy, settings, Workspace(out / "tmp", out / "logs" / "autosklearn.log"))
    model.fit([a.text for a in labelled], [set(a.labels or ()) for a in labelled])
    scores = model.score([a.text for a in test], [set(a.labels or ()) for a in test])
    next_ids: list[str] = []
    if round_no < campaign.rounds:
        known = {a.id for a in labelled}
        rest = [a for a in pool if a.id not in known]
        if strategy == "random":
            picked = random.Random(f"{campaign.seed}-{round_no}").sample(range(len(rest)), campaign.per_round)
        else:
            edits = np.array([p.expected_edits for p in model.propose([a.text for a in rest])])
            ranking = rank(edits, model.features_.vectors([a.text for a in rest]),
                           model.features_.vectors([a.text for a in labelled]))
            picked = list(np.argsort(-ranking.priority, kind="stable")[:campaign.per_round])
        next_ids = [rest[i].id for i in picked]
    return {"strategy": strategy, "round": round_no, "labels": len(labelled),
            "seconds": round(time.monotonic() - started, 1), **scores.to_dict(),
            "labelled_ids": [a.id for a in labelled], "next_ids": next_ids}


def _read_rounds(path: Path) -> dict[tuple[str, int], dict]:
    """The rounds an earlier run wrote. A line cut short by a crash is dropped from the file: its round runs again."""
    if not path.exists():
        return {}
    rows, kept = {}, []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: an unfinished round left by an interrupted run is dropped", path)
            continue
        rows[(row["strategy"], row["round"])] = row
        kept.append(line)
    staging = path.with_suffix(".tmp")
    staging.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    staging.replace(path)
    return rows


def _effort_text(row: dict) -> str:
    return ", ".join(f"{f['facet']} {f['effort']['ratio']:.2f}" for f in row["facets"])


def write_curves(rows: Sequence[dict], out: Path) -> tuple[Path, Path]:
    """`curves.csv` (a line per strategy, round, facet and level) and `curves.png` (micro-F1 and the effort ratio
    against the labels used, a line per strategy)."""
    table = out / "curves.csv"
    with table.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "round", "labels", "facet", "level", "micro_f1", "macro_f1", "effort_ratio",
                         "prefill_precision", "seconds"])
        for row in rows:
            for s in row["levels"]:
                writer.writerow([row["strategy"], row["round"], row["labels"], s["facet"], s["level"],
                                 round(s["micro_f1"], 4), round(s["macro_f1"], 4), s["effort"]["ratio"],
                                 s["effort"]["prefill_precision"], row["seconds"]])
            for f in row["facets"]:
                writer.writerow([row["strategy"], row["round"], row["labels"], f["facet"], "all", "", "",
                                 f["effort"]["ratio"], f["effort"]["prefill_precision"], row["seconds"]])
    return table, _plot(rows, out / "curves.png")


def _plot(rows: Sequence[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({(s["facet"], s["level"]) for row in rows for s in row["levels"]})
    facets = sorted({f["facet"] for row in rows for f in row["facets"]})
    panels = [("micro-F1", key) for key in levels] + [("effort ratio", (facet, "all")) for facet in facets]
    columns = 3
    figure, axes = plt.subplots((len(panels) + columns - 1) // columns, columns, squeeze=False,
                                figsize=(4.2 * columns, 3.2 * ((len(panels) + columns - 1) // columns)))
    for ax, (what, (facet, level)) in zip(axes.flat, panels, strict=False):
        for strategy in sorted({row["strategy"] for row in rows}):
            points = []
            for row in (r for r in rows if r["strategy"] == strategy):
                found = ([s["micro_f1"] for s in row["levels"] if (s["facet"], s["level"]) == (facet, level)]
                         if what == "micro-F1" else
                         [f["effort"]["ratio"] for f in row["facets"] if f["facet"] == facet])
                if found:
                    points.append((row["labels"], found[0]))
            if points:
                ax.plot(*zip(*sorted(points), strict=True), marker="o", label=strategy)
        ax.set_title(f"{facet} {'level ' + str(level) if level != 'all' else 'all levels'}: {what}", fontsize=9)
        ax.set_xlabel("labels used", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def held_out(assets: Sequence[Asset], fraction: float, seed: int, out: Path) -> tuple[list[Asset], list[Asset]]:
    """A split made once and kept in `out/split.csv` (id, part), so that a rerun, or a later reader, uses the same."""
    path = out / "split.csv"
    if path.exists():
        with path.open(encoding="utf-8", newline="") as handle:
            test_ids = {r["id"] for r in csv.DictReader(handle) if r["part"] == "test"}
    else:
        ids = sorted(a.id for a in assets)
        test_ids = set(random.Random(seed).sample(ids, int(len(ids) * fraction)))
        out.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "part"])
            writer.writerows((i, "test" if i in test_ids else "pool") for i in ids)
    return [a for a in assets if a.id not in test_ids], [a for a in assets if a.id in test_ids]
