from __future__ import annotations

import numpy as np
import pytest

from automl.decisions import Decisions, harmonise
from automl.settings import ModelSettings
from automl.taxonomy_file import load_taxonomy


def decisions(codes, chosen, confidence, source):
    return Decisions(codes, np.array(chosen, dtype=bool), np.array(confidence, dtype=float),
                     np.array(source, dtype=np.int8))


@pytest.fixture
def levels():
    # Text 0: only the child AN1 proposed (by keyword). Text 1: parent AN and child AN2 proposed.
    return {
        1: decisions(["AN", "ED", "HE"], [[0, 0, 0], [1, 0, 0]], [[0, 0, 0], [0.4, 0, 0]], [[0, 0, 0], [1, 0, 0]]),
        2: decisions(["AN1", "AN2", "HE1"], [[1, 0, 0], [0, 1, 0]], [[0.8, 0, 0], [0, 0.9, 0]],
                     [[2, 0, 0], [0, 1, 0]]),
    }


def test_imply_parents_lifts_children_with_their_confidence(small_taxonomy, levels):
    d = harmonise(load_taxonomy(small_taxonomy), "imply_parents", levels)
    an = d.codes.index("AN")
    assert d.chosen[:, an].tolist() == [True, True]
    assert d.confidence[0, an] == 0.8 and d.source[0, an] == 2  # lifted from the keyword-proposed child
    assert d.confidence[1, an] == 0.9 and d.source[1, an] == 1  # the more confident child wins


def test_require_parent_drops_orphans(small_taxonomy, levels):
    d = harmonise(load_taxonomy(small_taxonomy), "require_parent", levels)
    assert not d.chosen[0].any()  # AN1 without AN is dropped
    assert d.chosen[1, d.codes.index("AN2")] and d.confidence[0, d.codes.index("AN1")] == 0.0


def test_unknown_hierarchy_mode_is_refused():
    with pytest.raises(ValueError, match="hierarchy must be one of"):
        ModelSettings(hierarchy="sometimes")
