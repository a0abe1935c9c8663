"""A Kili project built from the UK-CAT example, for connector and worker tests against the emulator."""

from __future__ import annotations

from automl.taxonomy import Taxonomy
from automl.taxonomy_file import load_taxonomy
from conftest import EXAMPLE, example_rows
from kili_emulator import KiliEmulator


def ukcat_taxonomy() -> Taxonomy:
    return load_taxonomy(EXAMPLE / "taxonomy.csv")


def child_job(code: str) -> str:
    return f"{code}_SUB"


def interface(taxonomy: Taxonomy) -> dict:
    """SUBJECT: a checkbox job of the level-1 codes (BE aside), each code's children in a nested child job.
    POPULATION: a radio job of BE's children."""
    jobs: dict[str, dict] = {}

    def add(job: str, codes: list[str], input_: str, is_child: bool) -> None:
        categories = {}
        for code in codes:
            children = sorted(taxonomy.children.get(code, []))
            categories[code] = {"name": taxonomy.nodes[code].name, "children": [child_job(code)] if children else []}
            if children:
                add(child_job(code), children, "checkbox", True)
        jobs[job] = {"mlTask": "CLASSIFICATION", "instruction": job, "required": 0, "isChild": is_child,
                     "content": {"input": input_, "categories": categories}}

    add("SUBJECT", sorted(c for c in taxonomy.children[None] if c != "BE"), "checkbox", False)
    add("POPULATION", sorted(taxonomy.children["BE"]), "radio", False)
    return {"jobs": jobs}


def answer(taxonomy: Taxonomy, codes: set[str]) -> dict:
    """A human's nested Kili answer for UK-CAT codes (ancestors implied; one population, as the job is radio)."""
    full = taxonomy.with_ancestors(codes)

    def under(parent: str | None, job_codes: list[str]) -> list[dict]:
        out = []
        for code in job_codes:
            if code in full:
                entry: dict = {"name": code}
                kids = sorted(c for c in taxonomy.children.get(code, []) if c in full)
                if kids:
                    entry["children"] = {child_job(code): {"categories": under(code, kids)}}
                out.append(entry)
        return out

    result = {}
    subject = under(None, sorted(c for c in taxonomy.children[None] if c != "BE"))
    if subject:
        result["SUBJECT"] = {"categories": subject}
    population = under("BE", sorted(taxonomy.children["BE"]))
    if population:
        result["POPULATION"] = {"categories": population[:1]}
    return result


def fill(emulator: KiliEmulator, taxonomy: Taxonomy, labelled: int, unlabelled: int) -> list[str]:
    """Labelled assets (DEFAULT labels, some REVIEWed, some with noise labels that are not human truth) and
    unlabelled ones; returns the ids of the unlabelled."""
    rows = example_rows("train.csv", labelled)
    for i, (org_id, text, labels) in enumerate(rows):
        emulator.add_asset(f"a-{org_id}", text, external_id=org_id)
        codes = {c for c in labels.split(";") if c in taxonomy}
        emulator.add_label(f"a-{org_id}", "AUTOSAVE", answer(taxonomy, {"ED"}))  # never training data
        emulator.add_label(f"a-{org_id}", "DEFAULT", answer(taxonomy, codes))
        if i % 10 == 0:  # a reviewer's label wins over the labeller's
            emulator.add_label(f"a-{org_id}", "REVIEW", answer(taxonomy, codes | {"HE"}))
    ids = []
    for org_id, text, _ in example_rows("test.csv", unlabelled):
        emulator.add_asset(f"u-{org_id}", text, external_id=org_id)
        emulator.add_label(f"u-{org_id}", "PREDICTION", answer(taxonomy, {"AN"}), model_name="someone-else")
        ids.append(f"u-{org_id}")
    return ids
