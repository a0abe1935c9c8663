"""Single-choice facets: where they are declared (a setting, a Kili radio job, a Label Studio single <Choices>) or
found (every labelled text has one path), and their decoding as one path per text."""

from __future__ import annotations

import random

import numpy as np
import pytest

from automl.decisions import Decisions, decode_path
from automl.model import PreAnnotator
from automl.records import Source
from automl.settings import ModelSettings, TaxonomySettings
from automl.taxonomy import TaxonomyError
from automl.taxonomy_file import load_taxonomy
from conftest import write
from connectors.kili_schema import parse_interface
from connectors.label_studio_schema import parse_label_config


def level(codes, likelihood, margin=None):
    likelihood = np.array(likelihood, dtype=float)
    zeros = np.zeros(likelihood.shape)
    return Decisions(codes, zeros.astype(bool), zeros, zeros.astype(np.int8), likelihood,
                     None if margin is None else np.array(margin, dtype=float))


def test_one_path_per_text_down_the_branch_chosen_above(small_taxonomy):
    tax = load_taxonomy(small_taxonomy)
    levels = {
        1: level(["AN", "ED", "HE"], [[0.6, 0.1, 0.5], [0.2, 0.1, 0.3], [0.0, 0.0, 0.0], [0.7, 0.0, 0.0]],
                 margin=[[1, -2, 0.5], [-1, -2, -0.5], [np.nan] * 3, [1, -3, -3]]),
        # Row 0: HE1 is the likeliest level-2 code, but AN was chosen above: its likeliest child wins.
        # Row 3: no child of AN has any evidence: the path stops at AN.
        2: level(["AN1", "AN2", "HE1"], [[0.2, 0.3, 0.9], [0.0, 0.0, 0.8], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                 margin=[[-1, -0.5, 2], [np.nan, np.nan, 1], [np.nan] * 3, [np.nan] * 3]),
    }
    d = decode_path(tax, levels)
    chosen = [sorted(c for c, on in zip(d.codes, row, strict=True) if on) for row in d.chosen]
    assert chosen[0] == ["AN", "AN2"] and chosen[1] == ["HE", "HE1"] and chosen[3] == ["AN"]
    assert len(chosen[2]) == 1  # no evidence at all: still one answer at the top
    assert d.confidence[0, d.codes.index("AN2")] == pytest.approx(0.3)
    assert d.source[0, d.codes.index("AN2")] == Source.MODEL
    assert (d.confidence[~d.chosen] == 0).all()


def test_a_tree_that_skips_a_level_still_reaches_its_leaves(tmp_path):
    tax = load_taxonomy(write(tmp_path / "t.csv", "code,name,parent_code,level\nA,A,,1\nA1,A1,A,2\nB,B,,1\n"
                                                  "B01,B01,B,3\nA11,A11,A1,3\n"))
    levels = {1: level(["A", "B"], [[0.2, 0.9]]), 2: level(["A1"], [[0.8]]), 3: level(["A11", "B01"], [[0.5, 0.4]])}
    d = decode_path(tax, levels)
    assert [c for c, on in zip(d.codes, d.chosen[0], strict=True) if on] == ["B", "B01"]


def test_declared_by_the_setting_by_kili_radio_jobs_and_by_label_studio_single_choices(small_taxonomy):
    assert TaxonomySettings(path=small_taxonomy, single_choice=["subject"]).load().single_choice == {"subject"}
    assert TaxonomySettings(path=small_taxonomy).load().single_choice == frozenset()
    with pytest.raises(TaxonomyError, match="single-choice facet.*population.*Fix"):
        TaxonomySettings(path=small_taxonomy, single_choice=["population"]).load()

    radio = {"mlTask": "CLASSIFICATION", "content": {"input": "radio", "categories": {"A": {"name": "A"}}}}
    checkbox = {"mlTask": "CLASSIFICATION", "content": {"input": "checkbox", "categories": {"B": {"name": "B"}}}}
    assert parse_interface({"jobs": {"ONE": radio, "MANY": checkbox}}).taxonomy().single_choice == {"ONE"}

    xml = """<View><Text name="text" value="$text"/>
      <Choices name="one" toName="text"><Choice value="a"/><Choice value="b"/></Choices>
      <Choices name="many" toName="text" choice="multiple"><Choice value="c"/></Choices>
      <Taxonomy name="tree" toName="text"><Choice value="d"/></Taxonomy></View>"""
    assert parse_label_config(xml).taxonomy().single_choice == {"one"}


def test_the_fingerprint_changes_only_where_a_facet_is_single_choice(small_taxonomy):
    plain = load_taxonomy(small_taxonomy)
    single = TaxonomySettings(path=small_taxonomy, single_choice=["subject"]).load()
    assert all(row[0] in plain.nodes for row in plain.fingerprint_rows())  # as before: the node rows only
    assert single.fingerprint_rows() != plain.fingerprint_rows()


WORDS = {"AN1": "cat kitten feline", "AN2": "dog puppy kennel", "HE1": "mental wellbeing counselling",
         "ED": "school pupils teaching", "HE": "hospital clinic patients"}


def one_path_texts(n: int, seed: int) -> tuple[list[str], list[set[str]]]:
    rng = random.Random(seed)
    filler = "the a charity local people support help community group".split()
    texts, labels = [], []
    for i in range(n):
        code = list(WORDS)[i % len(WORDS)]
        words = WORDS[code].split()
        texts.append(" ".join(rng.choice(words) for _ in range(2)) + " " + " ".join(rng.sample(filler, 4)))
        labels.append({code})
    return texts, labels


@pytest.mark.parametrize("detect", [True, False])
def test_a_model_finds_a_one_path_facet_in_its_labels_and_answers_one_path(small_taxonomy, detect):
    tax = load_taxonomy(small_taxonomy)
    texts, labels = one_path_texts(150, seed=1)
    model = PreAnnotator(tax, ModelSettings(budget_seconds=1, cv_folds=3, detect_single_choice=detect)).fit(
        texts, labels)
    assert model.single_choice_ == ({"subject"} if detect else frozenset())
    assert model.summary()["single_choice"] == (["subject"] if detect else [])
    new = ["kitten charity", "pupils at the school", "0000 9999", "dog and cat"]  # the third: no known n-gram
    d = model.decide(new)["subject"]
    if detect:
        for row in d.chosen:  # one code per level: one path, every text
            chosen = [c for c, on in zip(d.codes, row, strict=True) if on]
            per_level = [tax.nodes[c].level for c in chosen]
            assert chosen and len(per_level) == len(set(per_level))
            assert all(tax.nodes[c].parent is None or tax.nodes[c].parent in chosen for c in chosen)
        assert d.chosen[0, d.codes.index("AN1")] and d.chosen[1, d.codes.index("ED")]
        assert (d.confidence[d.chosen] > 0).all()
    else:
        assert not d.chosen[2].any()  # independent thresholds may answer nothing


def test_labels_with_two_paths_or_too_few_labels_are_not_single_choice(small_taxonomy):
    texts, labels = one_path_texts(120, seed=2)
    model = PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings(budget_seconds=1, cv_folds=3))
    assert model._single_choice([model.taxonomy.with_ancestors(ls) for ls in labels]) == {"subject"}
    assert model._single_choice([model.taxonomy.with_ancestors(ls) for ls in labels[:99]]) == frozenset()
    labels[0] = {"AN1", "ED"}
    assert model._single_choice([model.taxonomy.with_ancestors(ls) for ls in labels]) == frozenset()
