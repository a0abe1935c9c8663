"""The report's figures, drawn with matplotlib and returned as inline PNG data URIs (the report needs no network)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from contextlib import contextmanager

from automl.diagnostics import Curve, LabelRow, ReliabilityBin
from service.store.registry import ModelVersion

__all__ = ["f1_bars", "history_plot", "pr_plot", "reliability_plot"]

DPI = 90


@contextmanager
def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(width, height))
    try:
        yield figure
    finally:
        plt.close(figure)


def _uri(figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def f1_bars(rows: Sequence[LabelRow], top: int = 40) -> str:
    """Per-label F1 of the `top` most frequent labels, most frequent at the top."""
    shown = [r for r in rows if r.support][:top]
    with _figure(6.4, 0.8 + 0.22 * max(len(shown), 1)) as figure:
        ax = figure.add_subplot()
        names = [f"{r.code} {r.name[:28]} ({r.support})" for r in shown]
        ax.barh(range(len(shown)), [r.f1 for r in shown], color="#4c72b0")
        ax.set_yticks(range(len(shown)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("F1 (support in brackets)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        return _uri(figure)


def pr_plot(curves: Sequence[Curve]) -> str:
    with _figure(4.6, 3.6) as figure:
        ax = figure.add_subplot()
        for c in curves:
            ax.plot(c.recall, c.precision, label=f"{c.code} {c.name[:22]} (AP {c.average_precision:.2f})",
                    drawstyle="steps-post")
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower left")
        return _uri(figure)


def reliability_plot(bins: Sequence[ReliabilityBin]) -> str:
    with _figure(4.0, 3.6) as figure:
        ax = figure.add_subplot()
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
        ax.bar([(b.low + b.high) / 2 for b in bins], [b.accuracy for b in bins], width=0.09, alpha=0.7,
               color="#55a868", label="share right")
        ax.plot([b.mean_confidence for b in bins], [b.accuracy for b in bins], marker="o", color="#c44e52",
                label="mean confidence → share right")
        for b in bins:
            ax.annotate(str(b.count), ((b.low + b.high) / 2, b.accuracy), fontsize=6, ha="center",
                        va="bottom")
        ax.set_xlabel("stated confidence of the pre-filled labels", fontsize=8)
        ax.set_ylabel("share that were right", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=6.5, loc="upper left")
        return _uri(figure)


def history_plot(versions: Sequence[ModelVersion]) -> str:
    """Held-out micro-F1 per level and effort ratio per facet, version by version."""
    with _figure(8.4, 3.2) as figure:
        left, right = figure.subplots(1, 2)
        levels = sorted({(m.facet, m.level) for v in versions for m in v.metrics})
        for facet, level in levels:
            points = [(v.number, m.micro_f1) for v in versions for m in v.metrics
                      if (m.facet, m.level) == (facet, level)]
            left.plot(*zip(*points, strict=True), marker="o", label=f"{facet} L{level}")
        facets = sorted({f.facet for v in versions for f in v.facets})
        for facet in facets:
            points = [(v.number, f.effort.ratio) for v in versions for f in v.facets if f.facet == facet]
            right.plot(*zip(*points, strict=True), marker="o", label=facet)
        for ax, title in ((left, "held-out micro-F1 per level"), (right, "held-out effort ratio per facet")):
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("version", fontsize=8)
            ax.set_xticks([v.number for v in versions])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        return _uri(figure)
