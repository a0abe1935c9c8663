"""The metrics reference: every Prometheus metric the service registers, read from the registries themselves. The
classes that hold one (a `CollectorRegistry()` made in their `__init__`) are found in the code, built, and each
collector in their registry described: name as scraped, type, help, labels, histogram buckets."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reference_pages.markdown import code, definition, first_sentence, heading, inline, paragraphs
from reference_pages.source import PACKAGES, module_name, modules, parse

__all__ = ["Metric", "holders", "metrics_of", "page"]


@dataclass(frozen=True)
class Metric:
    name: str  # as scraped: a counter's with its _total
    type: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # a histogram's upper bounds
    values: dict[str, tuple[str, ...]]  # label -> the values whose series exist from the start


def holders() -> Iterator[type]:
    """The classes of the packages whose `__init__` makes a `CollectorRegistry()`, imported."""
    for package in PACKAGES:
        for path in modules(package):
            tree = parse(path)
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and any(
                        isinstance(call, ast.Call) and ast.unparse(call.func).endswith("CollectorRegistry")
                        for stmt in node.body if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__"
                        for call in ast.walk(stmt)):
                    yield getattr(importlib.import_module(module_name(path)), node.name)


def metrics_of(registry: Any) -> list[Metric]:
    """Every collector of a registry. prometheus_client has no public way to list a registry's collectors or a
    metric's label names: its `_collector_to_names` and a metric's `_labelnames` are read here (a test checks
    them against a scrape)."""
    from prometheus_client.metrics import MetricWrapperBase

    values: dict[str, dict[str, list[str]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label != "le" and value not in values.setdefault(family.name, {}).setdefault(label, []):
                    values[family.name][label].append(value)
    found = []
    for collector in registry._collector_to_names:
        if not isinstance(collector, MetricWrapperBase):
            raise TypeError(f"{collector!r}: not a metric of prometheus_client; describe it in reference_pages.metrics")
        (described,) = collector.describe()
        name = described.name + ("_total" if described.type == "counter" else "")
        buckets = tuple(b for b in getattr(collector, "_upper_bounds", ()) if b != float("inf"))
        found.append(Metric(name, described.type, described.documentation, tuple(collector._labelnames), buckets,
                            {k: tuple(v) for k, v in values.get(described.name, {}).items()}))
    return sorted(found, key=lambda m: m.name)


def _said(metric: Metric) -> str:
    said = [inline(metric.help) + "."]
    if metric.labels:
        said.append("Labels: " + ", ".join(_label(metric, label) for label in metric.labels) + ".")
    if metric.type == "histogram":
        said.append("Series " + ", ".join(code(metric.name + s) for s in ("_bucket", "_sum", "_count"))
                    + "; buckets (upper bounds) " + ", ".join(f"{b:g}" for b in metric.buckets) + ".")
    return " ".join(said)


def _label(metric: Metric, label: str) -> str:
    known = metric.values.get(label)
    return code(label) + (" (" + ", ".join(code(v) for v in known) + ")" if known else "")


def page() -> str:
    parts = [heading(1, "Metrics", "reference-metrics"),
             "Generated from the code at each build: every Prometheus metric the service registers, read from the"
             " registries of the classes that hold one. Counters and histograms also expose a `_created` series"
             " (prometheus_client's, the time the series began). A label's values in brackets are the series that exist"
             " from the start, at zero."]
    for holder in holders():
        module = importlib.import_module(holder.__module__)
        parts.append(heading(2, code(f"{holder.__module__}.{holder.__name__}"),
                             f"metrics-{holder.__name__.lower()}"))
        parts.append(paragraphs(first_sentence(inspect.getdoc(module)) + " " + (inspect.getdoc(holder) or "")))
        parts += [definition(f"{code(m.name)} ({m.type})", _said(m)) for m in metrics_of(holder().registry)]
    return "\n\n".join(parts) + "\n"
