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


UNICODE_RULES = """code,name,parent_code,include_regex,exclude_regex
CA,Cafes,,\\b(caf[eé]|tea rooms?)\\b,
END,At the end,,closing words$,
LB,Look-behind,,(?<!no )football,
SP,Spaced,,youth\\sclub,
LIT,Literal dollar,,\\$5 entry,
"""


def test_the_re2_set_finds_what_python_re_finds(tmp_path):
    # Each text beside a case where RE2 alone would read it apart from `re`: a word ending in a non-ASCII letter,
    # `$` before a final newline, a look-behind RE2 cannot compile, a non-breaking space for \s.
    m = KeywordMatcher(load_taxonomy(write(tmp_path / "t.csv", UNICODE_RULES)), ["CA", "END", "LB", "SP", "LIT"])
    texts = ["a café in town", "a cafe in town", "Tea Room open", "these are the closing words\n",
             "closing words here", "we play football", "no football", "youth\xa0club", "youth club", "$5 entry",
             "naïve cafés", ""]
    expected = [[rule.include is not None and rule.matches(t) for rule in m.rules] for t in texts]
    assert m.match(texts).tolist() == expected
    assert [row for row in expected] == [
        [True, False, False, False, False], [True, False, False, False, False], [True, False, False, False, False],
        [False, True, False, False, False], [False, False, False, False, False], [False, False, True, False, False],
        [False, False, False, False, False], [False, False, False, True, False], [False, False, False, True, False],
        [False, False, False, False, True], [False, False, False, False, False], [False] * 5]
    assert m._prefilter is not None and m._prefilter.always == [m.codes.index("LB")]


def test_the_bundled_taxonomy_matches_alike_through_re2_and_re():
    from conftest import EXAMPLE, example_rows

    tax = load_taxonomy(EXAMPLE / "taxonomy.csv")
    m = KeywordMatcher(tax, sorted(tax.nodes))
    texts = [text for _, text, _ in example_rows("test.csv", limit=300)]
    expected = [[rule.include is not None and rule.matches(t) for rule in m.rules] for t in texts]
    assert m.match(texts).tolist() == expected
