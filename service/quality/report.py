"""A version's evaluation report: one self-contained HTML file (figures inline, no scripts from elsewhere) that a
data team can read without being data scientists."""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from automl.diagnostics import (
    confident_mistakes,
    hierarchy_confusions,
    label_rows,
    pr_curves,
    reliability,
)
from automl.metrics import FacetScore, Scores, indicator
from connectors.base import Asset
from connectors.settings import FilesSettings
from service.quality import report_plots as plots
from service.quality.evaluation import labelled_file
from service.quality.promotion import split_holdout
from service.store.registry import ModelRegistry, ModelVersion

if TYPE_CHECKING:
    from automl.model import PreAnnotator

__all__ = ["HeldOutFit", "held_out_for", "write_report"]


@dataclass(frozen=True)
class HeldOutFit:
    """What the report scores: a fit of the version and labelled assets it never learned from."""

    model: PreAnnotator
    assets: Sequence[Asset]
    source: str  # in words: which fit, on what


def slice_held_out(model: PreAnnotator, labelled: Sequence[Asset], version: ModelVersion) -> HeldOutFit | None:
    """The version's fit without the evaluation slice, on the labelled assets of the slice (None: no slice)."""
    fraction = version.gate.get("holdout_fraction") or 0.0
    held = split_holdout(labelled, fraction)[1] if fraction else []
    known = [Asset(a.id, a.text, frozenset(c for c in a.labels if c in model.taxonomy), a.version) for a in held
             if a.labels]
    if not known:
        return None
    return HeldOutFit(model, known, f"the evaluation slice: {len(known)} labelled assets that {version.name}, as"
                                    " fitted without the slice, never learned from")


def file_held_out(model: PreAnnotator, test: Path, columns: FilesSettings) -> HeldOutFit:
    assets = labelled_file(test, model.taxonomy, columns, "report on")
    return HeldOutFit(model, assets, f"{test.name}: {len(assets)} labelled assets")


def held_out_for(version: ModelVersion, served: Callable[[], PreAnnotator], judged: Callable[[], PreAnnotator],
                 labelled: Callable[[], Sequence[Asset]], test: Path | None, columns: FilesSettings,
                 fallback: Path | None = None) -> HeldOutFit | None:
    """What to score `version` on: `test` with the `served` model when given; else the evaluation slice of the
    `labelled` assets with the fit that never saw it (`judged`); else `fallback` (a labelled file); else None. The
    models and assets are asked for only when needed."""
    if test is not None:
        return file_held_out(served(), test, columns)
    found = slice_held_out(judged(), labelled(), version) if version.gate.get("holdout_fraction") else None
    if found is None and fallback is not None:
        found = file_held_out(served(), fallback, columns)
    return found


def write_report(registry: ModelRegistry, version: ModelVersion, evaluation: HeldOutFit | None,
                 out: Path | None = None) -> Path:
    """Render the report of `version` and write it (temporary file, then rename) to `out`, by default
    <registry>/vNNNN/report.html."""
    path = out or registry.report_path(version)
    page = render(version, registry.versions(), registry.status(version), evaluation)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class _Scored:
    evaluation: HeldOutFit
    decisions: dict  # facet -> Decisions on the evaluation assets
    truth: list[set[str]]  # their gold labels, ancestors included
    scores: Scores


def render(version: ModelVersion, versions: Sequence[ModelVersion], status: str,
           evaluation: HeldOutFit | None) -> str:
    previous = next((v for v in reversed(versions) if v.number < version.number and not v.rejected), None)
    scored = None
    if evaluation is not None and evaluation.assets:
        model = evaluation.model
        truth = [model.taxonomy.with_ancestors(a.labels or ()) for a in evaluation.assets]
        decisions = model.decide([a.text for a in evaluation.assets])
        scored = _Scored(evaluation, decisions, truth, model.score_decisions(decisions, truth))
    body = [_summary(version, status, previous, scored)]
    if scored is not None:
        body += _evaluated(scored)
    else:
        body.append("<p class=note>No labelled assets to score this version on (no evaluation slice and no test"
                    " file), so the per-label tables, curves, confusions and examples are left out. Fix: "
                    "<code>classie-automl report --test FILE</code>.</p>")
    body.append(_history(versions))
    return _PAGE.format(title=html.escape(f"classie-automl {version.name}"), body="\n".join(body))


# ---- sections ---------------------------------------------------------------------------------------------------

def _summary(version: ModelVersion, status: str, previous: ModelVersion | None, scored: _Scored | None) -> str:
    gate = version.gate
    parts = [f"<h1>Model {version.name} <span class=status-{status}>{status}</span></h1>",
             f"<p>Trained {html.escape(version.created_at)} on {version.n_train} labelled assets"
             + (f" (judged as fitted on {gate['candidate_trained_on']}, without the evaluation slice)"
                if gate.get("candidate_trained_on") and gate["candidate_trained_on"] != version.n_train else
                f" (the {gate['slice_assets']} of the evaluation slice kept out)" if gate.get("slice_assets") else "")
             + f" in {version.summary.get('fit_seconds', 0):.0f} s.</p>"]
    if gate:
        parts.append(f"<p><b>Promotion gate:</b> {'promoted' if gate['promoted'] else 'REJECTED'}:"
                     f" {html.escape(gate['reason'])}</p>")
    parts.append("<h2>What it saves a labeller</h2>")
    parts.append("<p>Effort ratio: the edits a labeller makes with the pre-annotations (labels to add plus wrong ones"
                 " to delete) over the edits without them (every label added by hand). Below 1.0 saves work.</p>")
    rows = []
    for held in version.facets:
        before = next((f for f in previous.facets if f.facet == held.facet), None) if previous else None
        now = next((f for f in scored.scores.facets if f.facet == held.facet), None) if scored else None
        rows.append([held.facet, *(_effort_cells(now) if now else ["-"] * 5), *_effort_cells(held),
                     _change(held, before, previous)])
    parts.append(_table(["facet", "effort ratio", "pre-fill precision", "coverage", "no edit", "calibration error",
                         "held-out effort", "precision", "coverage", "no edit", "calibration",
                         "against the previous version"], rows, sortable=False))
    where = scored.evaluation.source if scored else "no evaluation data"
    parts.append(f"<p class=note>Left: scored on {html.escape(where)}. Right (held-out): out of fold on the"
                 " training labels, as every version is.</p>")
    for f in (scored.scores.facets if scored else ()):
        e = f.effort
        parts.append(f"<p><b>{html.escape(f.facet)}</b>: {e.edits} edits instead of {e.gold};"
                     f" {e.prefill_precision:.0%} of the pre-filled labels are right, {e.coverage:.0%} of the right"
                     f" labels are pre-filled, and {e.no_edit_share:.0%} of the assets need no edit at all.</p>")
    return "\n".join(parts)


def _effort_cells(f: FacetScore) -> list[str]:
    e = f.effort
    return [f"{e.ratio:.2f}", f"{e.prefill_precision:.3f}", f"{e.coverage:.3f}", f"{e.no_edit_share:.1%}",
            f"{f.calibration_error:.3f}"]


def _change(now: FacetScore, before: FacetScore | None, previous: ModelVersion | None) -> str:
    if before is None or previous is None:
        return "first version"
    delta = now.effort.ratio - before.effort.ratio
    word = "less work" if delta < 0 else "more work" if delta > 0 else "the same"
    return (f"{previous.name}: {before.effort.ratio:.2f} → {now.effort.ratio:.2f} ({delta:+.2f}, {word}); pre-fill"
            f" precision {before.effort.prefill_precision:.3f} → {now.effort.prefill_precision:.3f}")


def _evaluated(scored: _Scored) -> list[str]:
    model, assets, scores = scored.evaluation.model, scored.evaluation.assets, scored.scores
    taxonomy = model.taxonomy
    texts, ids = [a.text for a in assets], [a.id for a in assets]
    out = ["<h2>Quality per facet and level</h2>",
           f"<p class=note>Scored on {html.escape(scored.evaluation.source)}; ancestors of a label count as"
           " labels.</p>",
           _table(["facet", "level", "labels", "micro P", "micro R", "micro F1", "macro F1", "effort"],
                  [[m.facet, m.level, m.n_labels, f"{m.micro_precision:.3f}", f"{m.micro_recall:.3f}",
                    f"{m.micro_f1:.3f}", f"{m.macro_f1:.3f}", f"{m.effort.ratio:.2f}"] for m in scores.levels])]
    levels = {(m.facet, m.level): m for m in model.levels_}
    for facet, d in scored.decisions.items():
        truth = indicator(scored.truth, d.codes)
        out.append(f"<h2>Facet {html.escape(facet)}</h2>")
        bins = reliability(d, truth)
        if bins:
            out.append("<h3>Are the confidences right?</h3><p class=note>Each bar: the pre-filled labels whose"
                       " stated confidence falls in the bin (count on top), and the share of them that were right."
                       " On the diagonal, a confidence of 0.8 is right 8 times in 10.</p>"
                       + _img(plots.reliability_plot(bins), f"calibration of the {facet} pre-fills"))
        out += _confusions(facet, *hierarchy_confusions(taxonomy, d, truth), taxonomy)
        for level in taxonomy.levels(facet):
            level_model = levels.get((facet, level))
            if level_model is None:
                continue
            codes = taxonomy.codes_at(facet, level)
            rows = label_rows(taxonomy, level_model, d, truth)
            out.append(f"<h3>{html.escape(facet)} level {level}</h3>")
            curves = pr_curves(taxonomy, codes, d, truth)
            figures = [_img(plots.f1_bars(rows), f"F1 per label, {facet} level {level}")]
            if curves:
                figures.append(_img(plots.pr_plot(curves), f"precision-recall, {facet} level {level}"))
            out.append("<div class=figures>" + "".join(figures) + "</div>")
            out.append(_label_table(rows))
            out.append(_examples(confident_mistakes(codes, d, truth, ids, texts), taxonomy))
    return out


def _label_table(rows) -> str:
    return ("<details><summary>Every label of the level (click a column to sort)</summary>"
            + _table(["code", "name", "support", "pre-filled", "precision", "recall", "F1", "rule", "threshold",
                      "training positives", "confidence from"],
                     [[r.code, r.name, r.support, r.prefilled, f"{r.precision:.3f}", f"{r.recall:.3f}",
                       f"{r.f1:.3f}", r.rule, "-" if r.threshold is None else f"{r.threshold:.3f}",
                       r.train_positives, r.confidence_from] for r in rows]) + "</details>")


def _confusions(facet, pairs, branches, wrong_total, taxonomy) -> list[str]:
    out = [f"<h3>Confusions that matter in the hierarchy ({html.escape(facet)})</h3>"]
    if not wrong_total:
        return out + ["<p>No wrong pre-fill.</p>"]
    name = lambda c: f"{c} {taxonomy.nodes[c].name}"  # noqa: E731
    branch_total = sum(b.count for b in branches)
    out.append(f"<p>{wrong_total} wrong pre-fills. A sibling (same parent) or cousin (same grandparent) proposed"
               " instead of the right label:</p>")
    out.append(_table(["proposed", "instead of", "relation", "times"],
                      [[name(p.proposed), name(p.instead_of), p.relation, p.count] for p in pairs]) if pairs
               else "<p>none</p>")
    out.append("<p>Wrong branch: a label proposed under a parent that the right labels do not have"
               f" (the commonest; {branch_total} in these rows):</p>")
    out.append(_table(["proposed", "under", "times"], [[name(b.code), name(b.parent), b.count] for b in branches])
               if branches else "<p>none</p>")
    return out


def _examples(examples, taxonomy) -> str:
    if not examples:
        return "<p>No wrong pre-fill at this level.</p>"
    rows = [[e.asset_id, e.text, f"{e.code} {taxonomy.nodes[e.code].name}", f"{e.confidence:.2f}",
             ", ".join(f"{c} {taxonomy.nodes[c].name}" for c in e.gold) or "none at this level"] for e in examples]
    return ("<p>Its most confident wrong pre-fills:</p>"
            + _table(["asset", "text (cut short)", "pre-filled", "confidence", "right labels"], rows, sortable=False))


def _history(versions: Sequence[ModelVersion]) -> str:
    out = ["<h2>Across versions</h2>"]
    if len(versions) > 1:
        out.append(_img(plots.history_plot(versions), "held-out quality across versions"))
    rows = []
    for v in versions:
        status = "rejected" if v.rejected else ""
        f1 = ", ".join(f"{m.facet} L{m.level} {m.micro_f1:.3f}" for m in v.metrics)
        effort = ", ".join(f"{f.facet} {f.effort.ratio:.2f}" for f in v.facets)
        rows.append([v.name, v.created_at, v.n_train, status, f1, effort])
    out.append(_table(["version", "created", "trained on", "gate", "held-out micro-F1", "held-out effort"], rows))
    return "\n".join(out)


# ---- HTML helpers -----------------------------------------------------------------------------------------------

def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence], sortable: bool = True) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{' class=sortable' if sortable else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1180px; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ margin-top: 1.8em; border-bottom: 1px solid #ddd; }} h3 {{ margin-top: 1.4em; }}
table {{ border-collapse: collapse; margin: .6em 0; font-size: 12.5px; }}
th, td {{ border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }} table.sortable th {{ cursor: pointer; }}
.note {{ color: #555; font-size: 12.5px; }} .figures {{ display: flex; flex-wrap: wrap; gap: 1em; align-items: start; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
span[class^=status] {{ font-size: .55em; padding: 2px 8px; border-radius: 4px; vertical-align: middle; }}
.status-current {{ background: #d7f0db; }} .status-previous {{ background: #eee; }}
.status-rejected {{ background: #f8d7d7; }}
</style></head><body>
{body}
<script>
document.querySelectorAll("table.sortable th").forEach(function (th, column) {{
  th.addEventListener("click", function () {{
    var table = th.closest("table"), body = table.tBodies[0], index = th.cellIndex;
    var rows = Array.prototype.slice.call(body.rows), down = th.dataset.order !== "down";
    rows.sort(function (a, b) {{
      var x = a.cells[index].textContent, y = b.cells[index].textContent, nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return down ? -c : c;
    }});
    th.dataset.order = down ? "down" : "up";
    rows.forEach(function (row) {{ body.appendChild(row); }});
  }});
}});
</script>
</body></html>
"""
