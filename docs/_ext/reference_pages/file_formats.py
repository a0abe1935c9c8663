"""The parts of the file-formats page that the code declares as data, or that its own readers and writers make:
the taxonomy file's columns, an example taxonomy and assets read by the service's loaders, the files platform's
column settings, its output written by its own connector, the label-issue columns, and the model registry's layout.
Each is a fragment of Markdown that docs/reference/file-formats.md places with ```{classie-generated} NAME```."""

from __future__ import annotations

import ast
import inspect
import json
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from reference_pages.markdown import code, inline, table
from reference_pages.settings import toml_value
from reference_pages.source import PACKAGES, field_comments, modules, parse

__all__ = ["ASSETS_CSV", "ASSETS_JSONL", "FACET_ROOTS", "FRAGMENTS", "TAXONOMY_CSV", "state_names"]

# Examples written for the page; every build reads them with the service's own loaders, so they stay valid.
TAXONOMY_CSV = """\
code,name,parent_code,keywords,include_regex,exclude_regex
HE,Health,,health;hospital,,
HE1,Mental health,HE,mental health;wellbeing,,
HE2,Disability,HE,,\\bdisab(led|ility)\\b,
OTHER,Other health,HE,,,
BE,Beneficiary group,,,,
BE1,Children,BE,children;young people,,\\bchildren's centre\\b
OTHER,Other beneficiaries,BE,,,
"""
FACET_ROOTS = {"population": ["BE"]}
ASSETS_CSV = """\
id,text,labels
a1,A hospital ward for children with mental health needs,HE1;BE1
a2,Day trips for disabled young people,
a3,,HE
a4,Music lessons for all,MU1
a5,Befriending for people who live alone,/HE/OTHER
a6,A food bank,OTHER
"""
ASSETS_JSONL = """\
{"id": "b1", "text": "Wheelchair sports for young people", "labels": ["HE2", "BE1"]}
{"id": "b2", "text": "A helpline for carers"}
"""


def _fenced(language: str, text: str) -> str:
    return f"```{language}\n{text.rstrip()}\n```"


def _taxonomy(folder: Path) -> Any:
    from automl.settings import TaxonomySettings

    path = folder / "taxonomy.csv"
    path.write_text(TAXONOMY_CSV, encoding="utf-8")
    return TaxonomySettings(path=path, facet_roots=FACET_ROOTS)


def taxonomy_columns() -> str:
    from automl.taxonomy_file import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

    rows = [[code(c), "required"] for c in REQUIRED_COLUMNS] + [[code(c), "optional"] for c in OPTIONAL_COLUMNS]
    return table(["Column", ""], rows)


def taxonomy_example() -> str:
    with tempfile.TemporaryDirectory() as folder:
        settings = _taxonomy(Path(folder))
        taxonomy = settings.load()
    rows = []
    for identity, node in taxonomy.nodes.items():
        rule = "; ".join(part for part in (", ".join(node.keywords), node.include_regex and f"/{node.include_regex}/",
                                           node.exclude_regex and f"not /{node.exclude_regex}/") if part)
        rows.append([code(identity), inline(node.name), node.facet, str(node.level),
                     code(node.parent) if node.parent else "", code(rule) if rule else ""])
    return "\n\n".join([
        _fenced("text", TAXONOMY_CSV),
        "read with " + code(f"facet_roots = {toml_value(FACET_ROOTS)}") + " (and the default `default_facet`)"
        " gives this tree (as `automl.taxonomy_file.load_taxonomy` reads it, at this site's build):",
        table(["Identity", "Name", "Facet", "Level", "Parent", "Keyword rule"], rows)])


def files_columns() -> str:
    from connectors.settings import FilesSettings

    comments = field_comments(FilesSettings)
    rows = [[code(name), code(toml_value(field.default)), inline(comments.get(name, ""))]
            for name, field in FilesSettings.model_fields.items() if field.annotation is str]
    return table(["`[files]` setting", "Default", ""], rows)


def _read(path: Path, taxonomy: Any) -> list[list[str]]:
    from connectors.base import SkipLog
    from connectors.files import read_assets

    skipped = SkipLog()
    rows = [[code(a.id), ", ".join(code(c) for c in sorted(a.labels)) if a.labels else "none: to pre-annotate"]
            for a in read_assets(path, taxonomy, skipped)]
    for reason, places in skipped.places.items():
        rows += [[code(place), inline(f"skipped: {reason}")] for place in places]
    return rows


def assets_example() -> str:
    with tempfile.TemporaryDirectory() as folder:
        taxonomy = _taxonomy(Path(folder)).load()
        parts = []
        for name, text in (("assets.csv", ASSETS_CSV), ("assets.jsonl", ASSETS_JSONL)):
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8")
            parts += [f"`{name}`:", _fenced("text", text),
                      "read with the taxonomy above (`connectors.files.read_assets`, at this site's build):",
                      table(["Record", "Labels (identities)"], _read(path, taxonomy))]
    return "\n\n".join(parts)


def output_example() -> str:
    from automl.records import Proposal, Source
    from connectors.base import LabelFlag, PreAnnotation, Priority, text_hash
    from connectors.files import FilesConnector
    from connectors.settings import FilesSettings

    model, keyword = Source.MODEL.label, Source.KEYWORD.label
    item = PreAnnotation(
        "a2", text_hash("Day trips for disabled young people"),
        {"subject": [Proposal("HE", 0.91, model), Proposal("HE2", 0.84, keyword)],
         "population": [Proposal("BE", 0.97, model), Proposal("BE1", 0.62, model)]},
        {"subject": [Proposal("HE1", 0.27, model)], "population": []}, 0.4375)
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "preannotations.jsonl"
        connector = FilesConnector(FilesSettings(), _taxonomy(Path(folder)), output)
        connector.push([item], "v3")
        connector.push_priorities([Priority("a2", 0.4375, "1.3 edits expected, novelty 0.41")], {"a2"})
        connector.push_label_issues([LabelFlag("a1", "", "BE1", "given", "the model finds BE1 unlikely here")], "v3")
        line = json.loads(output.read_text(encoding="utf-8"))
        ranking = connector.ranking_path.read_text(encoding="utf-8")
        issues = connector.issues_path.read_text(encoding="utf-8")
    return "\n\n".join([
        f"`{output.name}`, one line per asset and model version (shown here on several lines):",
        _fenced("json", "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                                             for k, v in line.items()) + "\n}"),
        f"`{connector.ranking_path.name}`:", _fenced("text", ranking),
        f"`{connector.issues_path.name}` (with `[label_issues] push`):", _fenced("text", issues)])


def label_issue_columns() -> str:
    from service.quality.label_issues import COLUMNS, ISSUES_FILE, FlaggedLabel

    comments, docs = field_comments(FlaggedLabel), {f.name: f for f in fields(FlaggedLabel)}
    rows = [[code(c), inline(str(docs[c].type)), inline(comments.get(c, ""))] for c in COLUMNS]
    return f"`{ISSUES_FILE}` in each version's folder; its columns:\n\n" + table(["Column", "Type", ""], rows)


def registry_layout() -> str:
    from service.store import registry

    doc = inspect.getdoc(registry) or ""
    head, _, rest = doc.partition("Layout under ")
    where, _, block = rest.partition(":\n")
    lines = []
    for line in block.splitlines():
        if not line.startswith("    "):
            break
        lines.append(line[4:])
    return f"Under `{where}` (from `service.store.registry`):\n\n" + _fenced("text", "\n".join(lines))


def _joined(node: ast.AST, constants: dict[str, str]) -> list[str] | None:
    """The names a `state_dir / "a" / B` expression joins to the state folder (B a module's string constant);
    None when it does not start at a state folder."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left = _joined(node.left, constants)
        right = node.right.value if isinstance(node.right, ast.Constant) else constants.get(ast.unparse(node.right))
        return None if left is None or not isinstance(right, str) else [*left, right]
    return [] if ast.unparse(node).endswith(("state_dir", "state_dir)")) else None


def state_names() -> set[str]:
    """Every path the code joins to the state folder (`state_dir / ...`), e.g. "models", "logs/autosklearn.log":
    what the state folder may hold. The page's hand-made table is tested against it."""
    found = set()
    for package in PACKAGES:
        for path in modules(package):
            tree = parse(path)
            constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                         and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                         for t in n.targets if isinstance(t, ast.Name)}
            for node in ast.walk(tree):
                names = _joined(node, constants)
                if names:
                    found.add("/".join(names))
    return {n for n in found if not any(other.startswith(n + "/") for other in found)}


FRAGMENTS: dict[str, Callable[[], str]] = {
    "taxonomy-columns": taxonomy_columns, "taxonomy-example": taxonomy_example, "files-columns": files_columns,
    "assets-example": assets_example, "output-example": output_example, "label-issue-columns": label_issue_columns,
    "registry-layout": registry_layout,
}
