from __future__ import annotations

from automl.keywords import KeywordMatcher
from automl.taxonomy_file import load_taxonomy
from conftest import write


def test_keywords_match_whole_words_case_insensitively(small_taxonomy):
    tax = load_taxonomy(small_taxonomy)
    m = KeywordMatcher(tax, ["AN1", "AN2", "ED"])
    hits = m.match(["We rescue CATS.", "Concatenate dogma", "A Dog's home", "primary SCHOOL"])
    assert hits.tolist() == [
        [True, False, False],
        [False, False, False],  # "cat" inside "Concatenate" and "dog" inside "dogma" do not count
        [False, True, False],
        [False, False, True],
    ]


def test_include_and_exclude_regex(small_taxonomy):
    tax = load_taxonomy(small_taxonomy)
    m = KeywordMatcher(tax, ["HE", "HE1"])
    hits = m.match(["local hospital trust", "mental health support", "wealth"])
    assert hits.tolist() == [[True, False], [False, True], [False, False]]


def test_phrases_with_punctuation_and_nodes_without_rules(tmp_path):
    path = write(tmp_path / "t.csv", "code,name,parent_code,keywords\nX,x,,C++;(NHS)\nY,y,,\n")
    m = KeywordMatcher(load_taxonomy(path), ["X", "Y"])
    assert m.has_rule().tolist() == [True, False]
    assert m.match(["we teach C++ to kids", "an (NHS) trust", "c"]).tolist() == [
        [True, False], [True, False], [False, False]]
