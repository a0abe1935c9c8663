from __future__ import annotations

import pytest

from automl.taxonomy import TaxonomyError
from automl.taxonomy_file import load_taxonomy
from conftest import EXAMPLE, write


def test_loads_levels_facets_and_ancestors(small_taxonomy):
    tax = load_taxonomy(small_taxonomy, facet_roots={"population": ["AN"]})
    assert tax.nodes["AN1"].level == 2 and tax.nodes["HE"].level == 1  # depth when no level column
    assert tax.nodes["AN1"].facet == "population" and tax.nodes["HE1"].facet == "subject"
    assert tax.ancestors("HE1") == ["HE"]
    assert tax.with_ancestors({"AN1", "ED"}) == {"AN1", "AN", "ED"}
    assert tax.codes_at("subject", 1) == ["ED", "HE"]
    assert tax.nodes["AN1"].keywords == ("cat", "cats", "feline")


def test_ukcat_example_loads_with_ragged_levels():
    tax = load_taxonomy(EXAMPLE / "taxonomy.csv", facet_roots={"population": ["BE"]})
    assert len(tax) == 254
    assert tax.levels("subject") == [1, 2, 3]
    # AN101 sits directly under a level-1 code but is level 3, as the file says.
    assert tax.nodes["AN101"].parent == "AN" and tax.nodes["AN101"].level == 3
    assert {n.facet for n in tax.nodes.values() if n.code.startswith("BE")} == {"population"}


@pytest.mark.parametrize(
    "rows, expected",
    [
        ("A,a,\nA,again,\n", ["line 3", "duplicate code 'A'", "first on line 2"]),
        ("A,a,\nB,b,Z\n", ["line 3", "unknown parent_code 'Z'"]),
        ("A,a,C\nB,b,A\nC,c,B\n", ["cycle", "A -> C -> B -> A"]),
        ("A,a,,,(unclosed,\n", ["line 2", "include_regex of 'A' is not a valid regular expression"]),
        ("A,a,,,,[z-a]\n", ["exclude_regex of 'A'"]),
    ],
    ids=["duplicate", "unknown-parent", "cycle", "bad-include", "bad-exclude"],
)
def test_invalid_taxonomy_names_the_row_and_the_fix(tmp_path, rows, expected):
    path = write(tmp_path / "t.csv", "code,name,parent_code,keywords,include_regex,exclude_regex\n" + rows)
    with pytest.raises(TaxonomyError) as err:
        load_taxonomy(path)
    message = str(err.value)
    for part in expected:
        assert part in message
    assert "Fix:" in message


def test_missing_columns_are_named(tmp_path):
    path = write(tmp_path / "t.csv", "code,label\nA,a\n")
    with pytest.raises(TaxonomyError, match="missing column.*name, parent_code"):
        load_taxonomy(path)


def test_level_must_be_deeper_than_parent(tmp_path):
    path = write(tmp_path / "t.csv", "code,name,parent_code,level\nA,a,,2\nB,b,A,1\n")
    with pytest.raises(TaxonomyError, match="line 3.*not deeper than its parent"):
        load_taxonomy(path)


def test_unknown_facet_root_is_reported(small_taxonomy):
    with pytest.raises(TaxonomyError, match="facet roots XX"):
        load_taxonomy(small_taxonomy, facet_roots={"population": ["XX"]})
