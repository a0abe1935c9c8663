"""Kili's json interface <-> the service's taxonomy: classification jobs as facets, nested `children` jobs as levels,
and the translation of label answers to and from codes.

A node's code is `JOB/KEY`: Kili only requires a category key to be unique within its job, and real interfaces repeat
keys such as `OTHER` in several child jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from automl.errors import InputError
from automl.records import Proposal
from automl.taxonomy import Node, Taxonomy

__all__ = ["Category", "InterfaceError", "KiliSchema", "parse_interface"]

log = logging.getLogger(__name__)


class InterfaceError(InputError):
    """The project's json interface cannot be used; the message says what and where."""


@dataclass(frozen=True)
class Category:
    job: str
    key: str
    name: str
    parent: str | None  # parent node code
    level: int
    facet: str

    @property
    def code(self) -> str:
        return f"{self.job}/{self.key}"


@dataclass
class KiliSchema:
    categories: dict[str, Category]  # by code
    job_input: dict[str, str]  # job -> "radio" | "checkbox"
    child_jobs: dict[str, list[str]] = field(default_factory=dict)  # node code -> child jobs

    def taxonomy(self) -> Taxonomy:
        """The taxonomy of the interface; each node's path is its category keys from the root. A facet whose jobs
        are all radio jobs is single-choice."""
        nodes = {}
        for code, c in self.categories.items():
            nodes[code] = Node(code=code, name=c.name, parent=c.parent, level=c.level, facet=c.facet,
                               path=self.path(code))
        multiple = {c.facet for c in self.categories.values() if self.job_input[c.job] != "radio"}
        return Taxonomy(nodes, frozenset(c.facet for c in self.categories.values()) - multiple)

    def path(self, code: str) -> tuple[str, ...]:
        keys = []
        current: str | None = code
        while current is not None:
            keys.append(self.categories[current].key)
            current = self.categories[current].parent
        return tuple(reversed(keys))

    # ---- answers -----------------------------------------------------------------------------------------
    def codes_of(self, json_response: dict, unknown: list[str]) -> set[str]:
        """The codes a label answer holds; what cannot be used (a job or category not in the interface, an answer of
        the wrong shape) is described in `unknown`."""
        codes: set[str] = set()

        def walk(answers: dict) -> None:
            for job, answer in (answers.items() if isinstance(answers, dict) else ()):
                if job not in self.job_input:
                    if isinstance(answer, dict) and "categories" in answer:
                        unknown.append(f"job {job!r}, not in the interface")
                    continue
                categories = answer.get("categories") if isinstance(answer, dict) else answer
                if not isinstance(categories or [], list):
                    unknown.append(f"job {job!r} with categories of an unreadable shape")
                    continue
                for category in categories or []:
                    if not isinstance(category, dict):
                        unknown.append(f"a category of job {job!r} of an unreadable shape")
                        continue
                    code = f"{job}/{category.get('name')}"
                    if code not in self.categories:
                        unknown.append(f"category {code!r}, not in the interface")
                        continue
                    codes.add(code)
                    walk(category.get("children") or {})

        walk(json_response)
        return codes

    def answer(self, proposals: Iterable[Proposal]) -> dict:
        """A Kili json response with the proposals nested under their parents, confidences as integers 0-100. In a
        radio job only the most confident category is kept (and its subtree)."""
        by_parent: dict[str | None, list[Proposal]] = {}
        for p in proposals:
            if p.code in self.categories:
                by_parent.setdefault(self.categories[p.code].parent, []).append(p)

        def jobs_under(parent: str | None) -> dict:
            out: dict[str, dict] = {}
            for p in sorted(by_parent.get(parent, []), key=lambda p: (-p.confidence, p.code)):
                c = self.categories[p.code]
                if self.job_input[c.job] == "radio" and c.job in out:
                    continue
                entry: dict = {"name": c.key, "confidence": max(0, min(100, round(p.confidence * 100)))}
                children = jobs_under(p.code)
                if children:
                    entry["children"] = children
                out.setdefault(c.job, {"categories": []})["categories"].append(entry)
            return out

        return jobs_under(None)


def parse_interface(interface: dict) -> KiliSchema:
    """Every top-level CLASSIFICATION job is a facet; a category's `children` jobs hold the next level."""
    jobs = (interface or {}).get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise InterfaceError("the project's json interface has no jobs")
    classification = {j: spec for j, spec in jobs.items() if spec.get("mlTask") == "CLASSIFICATION"}
    roots = [j for j, spec in classification.items() if not spec.get("isChild")]
    if not roots:
        raise InterfaceError("the project's json interface has no top-level CLASSIFICATION job to pre-annotate")
    schema = KiliSchema(categories={}, job_input={})

    def add_job(job: str, parent: str | None, level: int, facet: str, path: list[str]) -> None:
        if job in path:
            raise InterfaceError(f"job {job!r} is its own descendant ({' -> '.join(path + [job])})")
        spec = classification.get(job)
        if spec is None:
            raise InterfaceError(f"category {parent!r} names child job {job!r}, which is not a CLASSIFICATION job")
        content = spec.get("content") or {}
        schema.job_input[job] = "radio" if content.get("input") == "radio" else "checkbox"
        categories = content.get("categories") or {}
        if not isinstance(categories, dict):
            raise InterfaceError(f"job {job!r}: content.categories is not an object")
        for key, cat in categories.items():
            category = Category(job, key, (cat or {}).get("name") or key, parent, level, facet)
            if category.code in schema.categories:
                raise InterfaceError(f"job {job!r} is the child of two categories; Kili gives a child job one parent")
            schema.categories[category.code] = category
            for child in (cat or {}).get("children") or []:
                schema.child_jobs.setdefault(category.code, []).append(child)
                add_job(child, category.code, level + 1, facet, path + [job])

    for job in roots:
        add_job(job, None, 1, job, [])
    return schema
