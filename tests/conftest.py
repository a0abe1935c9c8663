from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ukcat"

SMALL_TAXONOMY = """code,name,parent_code,keywords,include_regex,exclude_regex
AN,Animals,,animal;pets,,
AN1,Cats,AN,cat;cats;feline,,
AN2,Dogs,AN,dog;dogs,,
HE,Health,,,\\b(health|hospital)\\b,mental health
HE1,Mental health,HE,mental health,,
ED,Education,,school;education,,
"""


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


@pytest.fixture
def small_taxonomy(tmp_path: Path) -> Path:
    return write(tmp_path / "taxonomy.csv", SMALL_TAXONOMY)


def write_assets(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "text", "labels"])
        out.writerows(rows)
    return path


def ukcat_project_config(root: Path, model: str) -> Path:
    """root/config.toml: the UK-CAT taxonomy with its population facet, assets in root/assets.csv, state in
    root/state, and `model` as the [model] section's lines (small searches for the tests)."""
    return write(root / "config.toml", f"""
state_dir = "state"
[files]
assets = "assets.csv"
[taxonomy]
path = "{EXAMPLE / 'taxonomy.csv'}"
facet_roots = {{ population = ["BE"] }}
[model]
{model.strip()}
""")


def example_rows(name: str, limit: int | None = None) -> list[tuple[str, str, str]]:
    with (EXAMPLE / name).open(encoding="utf-8", newline="") as f:
        rows = [(r["id"], r["text"], r["labels"]) for r in csv.DictReader(f)]
    return rows[:limit] if limit else rows


# Codes that repeat at two levels and under two parents, as real coding schemes do: a Roman-numeral top level above
# lettered groups, where I and V are also group letters, A is a group under two parts, OTHER a leaf under two groups.
REPEATED_TAXONOMY = """code,name,parent_code,level,keywords,path
I,Part I,,1,,
V,Part V,,1,,
X,Part X,,1,,
A,Group A of part I,I,2,,
I,Group I of part V,V,2,,
V,Group V of part X,X,2,,
A,Group A of part X,X,2,,
A20,Animals,,3,animal;pets,I/A/A20
I10,Imaging,I,3,x-ray;scanner,
OTHER,Other in I/A,,3,miscellaneous,I/A/OTHER
OTHER,Other in V/I,I,3,sundry,
V5,Vaccines,V,3,vaccine,
"""


@pytest.fixture
def repeated_taxonomy(tmp_path: Path) -> Path:
    return write(tmp_path / "repeated.csv", REPEATED_TAXONOMY)
