"""Likely label mistakes from out-of-fold probabilities: confident learning per label, shaped by the hierarchy."""

from __future__ import annotations

import numpy as np
import pytest

from automl.label_issues import GIVEN, MISSING, Evidence, find_label_issues, thresholds
from automl.taxonomy import Node, Taxonomy

# A > A1, A2; B > B1
TREE = Taxonomy({n.code: n for n in [
    Node("A", "Arts", None, 1, "subject"), Node("B", "Built", None, 1, "subject"),
    Node("A1", "Music", "A", 2, "subject"), Node("A2", "Theatre", "A", 2, "subject"),
    Node("B1", "Housing", "B", 2, "subject")]})
CODES = ["A", "B", "A1", "A2", "B1"]


def evidence(rows: list[tuple[set[str], dict[str, float]]], judged: frozenset[str] = frozenset(CODES)) -> Evidence:
    """Rows of (human codes with ancestors, model probabilities; unnamed codes: 0.02 when not given, 0.9 when
    given)."""
    given = np.array([[c in codes for c in CODES] for codes, _ in rows])
    p = np.array([[probs.get(c, 0.9 if c in codes else 0.02) for c in CODES] for codes, probs in rows])
    return Evidence(CODES, p, given, np.array([c in judged for c in CODES]))


def logit(x: float) -> float:
    return float(np.log(x / (1 - x)))


def background(n: int = 40) -> list[tuple[set[str], dict[str, float]]]:
    """Assets whose labels the model agrees with: Music, Theatre and Housing."""
    return [({"A", ("A1", "A2")[i % 4 // 2]}, {}) if i % 4 else ({"B", "B1"}, {}) for i in range(n)]


def test_thresholds_are_the_mean_probability_of_each_side():
    ev = evidence([({"A"}, {"A": 0.8}), ({"A"}, {"A": 0.6}), (set(), {"A": 0.1}), (set(), {"A": 0.3})])
    yes, no = thresholds(ev)
    assert yes[0] == pytest.approx(0.7) and no[0] == pytest.approx(0.8)


def test_agreed_labels_give_no_issue():
    assert find_label_issues(TREE, {"subject": evidence(background())}) == []


def test_a_given_label_the_model_rules_out_is_doubted_with_its_descendants():
    rows = background() + [({"A", "A1"}, {"A": 0.01, "A1": 0.01})]
    (issue,) = find_label_issues(TREE, {"subject": evidence(rows)})
    assert (issue.row, issue.kind, issue.code, issue.along, issue.level) == (40, GIVEN, "A", ("A1",), 1)
    assert issue.suggestion == "" and issue.advice.startswith("remove A (and A1): the model gives it 1%")


def test_a_missing_label_the_model_is_sure_of_is_expected():
    rows = background() + [({"A", "A1"}, {"B": 0.97, "B1": 0.95})]
    issues = find_label_issues(TREE, {"subject": evidence(rows)})
    assert [(i.kind, i.code, i.along) for i in issues] == [(MISSING, "B", ("B1",))]
    # The model reads the text's other labels (A, A1) at 0.9: that moves the chance by 0.25 x log(0.9).
    assert logit(issues[0].score) == pytest.approx(logit(0.97) + 0.25 * np.log(0.9), abs=1e-4)


def test_a_doubted_code_and_the_sibling_the_model_expects_are_one_issue():
    rows = background() + [({"A", "A1"}, {"A1": 0.01, "A2": 0.96})]
    (issue,) = find_label_issues(TREE, {"subject": evidence(rows)})
    assert (issue.kind, issue.code, issue.suggestion) == (GIVEN, "A1", "A2")
    assert issue.score == pytest.approx(1 - 0.01 * (1 - 0.96), abs=1e-4)
    assert issue.advice.startswith("A2 instead of A1")


def test_a_wrong_branch_outranks_a_sibling_mistake_at_the_same_probability():
    rows = background() + [({"A", "A1"}, {"A": 0.01, "A1": 0.01}), ({"B", "B1"}, {"B1": 0.01})]
    issues = find_label_issues(TREE, {"subject": evidence(rows)})
    assert [(i.code, i.level) for i in issues] == [("A", 1), ("B1", 2)]
    assert find_label_issues(TREE, {"subject": evidence(rows)}, top=1)[0].code == "A"


def test_a_given_code_whose_keyword_rule_fires_is_not_doubted_nor_are_its_ancestors():
    rows = background() + [({"A", "A1"}, {"A": 0.01, "A1": 0.01}), ({"B", "B1"}, {"B": 0.01, "B1": 0.01})]
    ev = evidence(rows)
    hits = np.zeros_like(ev.given)
    hits[40, CODES.index("A1")] = True  # Music's rule fires on the first: it and its parent stand
    hits[41, CODES.index("A1")] = True  # a rule of a code not given says nothing about the labels given
    issues = find_label_issues(TREE, {"subject": Evidence(ev.codes, ev.likelihood, ev.given, ev.judged,
                                                          rule_hits=hits)})
    assert [(i.row, i.code, i.along) for i in issues] == [(41, "B", ("B1",))]
    assert len(find_label_issues(TREE, {"subject": ev})) == 2  # without rule hits, both are doubted


def test_codes_without_a_model_are_never_doubted():
    rows = background() + [({"A", "A1"}, {"A1": 0.0})]
    assert find_label_issues(TREE, {"subject": evidence(rows, judged={"A", "B", "B1"})}) == []


def test_thresholds_follow_each_label_not_one_cut():
    """A label the model is never sure of (given ones at ~0.3) still has its outliers found: confident learning's
    per-label threshold, where one global cut of 0.5 would doubt every given label."""
    rows = [({"A", "A2"}, {"A2": 0.3}) if i % 2 else ({"A", "A1"}, {}) if i % 4 else ({"B", "B1"}, {})
            for i in range(40)]
    rows.append(({"A", "A2"}, {"A2": 0.01}))
    issues = find_label_issues(TREE, {"subject": evidence(rows)})
    assert [(i.row, i.code) for i in issues] == [(40, "A2")]


def test_evidence_of_several_batches_stacks_in_order():
    a, b = evidence(background(4)), evidence([({"A", "A1"}, {"A": 0.01, "A1": 0.01})])
    both = Evidence.stacked([a, b])
    assert both.likelihood.shape == (5, 5) and both.given[4].tolist() == [True, False, True, False, False]
    with pytest.raises(ValueError, match="shapes differ"):
        Evidence(CODES, np.zeros((2, 5)), np.zeros((3, 5), dtype=bool), np.ones(5, dtype=bool))


# ---- which of a version's flags are shown on the platform -------------------------------------------------------

def flagged(asset_id: str, code: str = "A", kind: str = GIVEN, digest: str = "d1", reviewed_at: str = ""):
    from service.quality.label_issues import FlaggedLabel

    return FlaggedLabel(1, asset_id, "subject", 1, kind, code, "Arts", 0.01, "", 0.0, "", 0.99, "remove A", digest,
                        f"label-{asset_id}", reviewed_at, "text")


def test_shown_once_per_label_and_never_on_a_label_changed_since_training():
    from service.quality.label_issues import select

    flags = [flagged("a1"), flagged("a2"), flagged("a3"), flagged("a4")]
    now = {"a1": "d1", "a2": "d2", "a3": "d1", "a4": "d1"}  # a2's label changed since the training
    chosen = select(flags, 3, now, {("a3", "d1", "A", GIVEN)}, lambda f: None)
    assert [f.asset_id for f in chosen.show] == ["a1"]  # a4 is past the top 3
    assert (chosen.stale, chosen.shown_before, chosen.reviewed) == (1, 1, 0)


@pytest.mark.parametrize("earlier, shown", [(None, False), (True, False), (False, True)])
def test_a_reviewed_label_only_when_the_model_changed_its_mind_since(earlier, shown):
    """None: no earlier version learned from the reviewed label; True: one did and flagged it too (the reviewer
    kept the label against it, or it was never shown); False: one did and agreed with the reviewer."""
    from service.quality.label_issues import select

    chosen = select([flagged("a1", reviewed_at="2026-11-30T10:00:00.000Z")], 10, {"a1": "d1"}, set(),
                    lambda f: earlier)
    assert (len(chosen.show), chosen.reviewed) == ((1, 0) if shown else (0, 1))


def test_a_version_list_round_trips_and_a_damaged_row_is_left_out_with_a_warning(tmp_path, caplog):
    from service.quality.label_issues import read_flags, to_csv

    flags = [flagged("a1"), flagged("a2", code="B", kind=MISSING)]
    path = tmp_path / "label_issues.csv"
    text = to_csv(flags)
    path.write_text(text + text.splitlines()[1].replace("0.99", "not a number") + "\n", encoding="utf-8")
    assert read_flags(path) == flags
    assert "line 4 cannot be read" in caplog.text


def test_each_label_is_judged_by_its_own_models_margins_not_the_levels_shared_calibration():
    """Two labels whose lowest margins the level's calibration maps to the same 1%: Music's model separates its
    labels well, Theatre's barely. A Music label at the bottom is likely wrong; a Theatre label there is not
    unusual, so Music's ranks first and with the higher chance of being wrong."""
    rng = np.random.RandomState(0)
    rows = background(200)
    ev = evidence(rows)
    music, theatre = CODES.index("A1"), CODES.index("A2")
    margin = np.full(ev.likelihood.shape, np.nan)
    margin[:, :] = np.where(ev.given, 3.0, -3.0) + rng.normal(0, 0.5, ev.likelihood.shape)
    margin[:, theatre] = np.where(ev.given[:, theatre], 0.3, -0.3) + rng.normal(0, 1.5, len(rows))
    for code in (music, theatre):  # one Music and one Theatre label given, at the lowest margin of all
        row = np.flatnonzero(ev.given[:, code])[0]
        margin[row, code] = -6.0
        ev.likelihood[row, code] = 0.01
    judged = Evidence(ev.codes, ev.likelihood, ev.given, ev.judged, margin)
    p = judged.per_label()
    low_music, low_theatre = p[np.argmin(margin[:, music]), music], p[np.argmin(margin[:, theatre]), theatre]
    assert low_music < 0.05 < low_theatre
    issues = find_label_issues(TREE, {"subject": judged})
    assert issues and issues[0].code == "A1"


def test_neighbours_share_is_the_similarity_weighted_share_of_the_nearest_texts_given_each_code(monkeypatch):
    import scipy.sparse as sp

    from automl import label_issues

    monkeypatch.setattr(label_issues, "NEIGHBOURS", 2)
    monkeypatch.setattr(label_issues, "CHUNK_ROWS", 2)  # chunks must not change the answer
    # Rows 0-2 alike (0 and 1 closest), row 3 apart; rows 0, 1 given A, rows 2, 3 given B.
    vectors = sp.csr_matrix(np.array([[1, 0, 0], [0.96, 0.28, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32))
    rows = [({"A"}, {}), ({"A"}, {}), ({"B"}, {}), ({"B"}, {})]
    shares = evidence(rows).with_neighbours(label_issues.Neighbours.of(vectors)).neighbours
    a, b = CODES.index("A"), CODES.index("B")
    # Row 0's nearest: row 1 (0.96, given A) and row 2 (0.6, given B); never itself.
    assert shares[0, a] == pytest.approx(0.96 / 1.56) and shares[0, b] == pytest.approx(0.6 / 1.56)
    assert shares[3].sum() == 0  # nothing like it: no neighbour has a say
    with pytest.raises(ValueError, match="neighbours of 3 rows for 4 rows"):
        evidence(rows).with_neighbours(label_issues.Neighbours.of(vectors[:3]))
    assert label_issues.Neighbours.of(vectors[:1]).index.shape == (1, 0)  # one text: no neighbour, no say
    # Past COMPARED texts, each is compared with a fixed sample of them only, never with itself.
    monkeypatch.setattr(label_issues, "COMPARED", 3)
    sampled = label_issues.Neighbours.of(vectors)
    assert len(set(sampled.index.ravel())) <= 3 and not (sampled.index == np.arange(4)[:, None]).any()
    assert (label_issues.Neighbours.of(vectors).index == sampled.index).all()  # the same sample every time
    assert evidence(rows[:1]).with_neighbours(label_issues.Neighbours.of(vectors[:1])).neighbours.sum() == 0


def test_a_code_the_nearest_texts_share_is_doubted_less_and_one_they_carry_is_expected_more():
    import dataclasses

    rows = background() + [({"A", "A1"}, {"A1": 0.01}), ({"B", "B1"}, {"A": 0.97})]
    alone = find_label_issues(TREE, {"subject": evidence(rows)})
    shares = np.zeros((len(rows), len(CODES)))
    shares[40, CODES.index("A1")] = 1.0  # every neighbour of row 40 was given A1 too
    shares[41, CODES.index("A")] = 1.0  # every neighbour of row 41 was given A
    near = find_label_issues(TREE, {"subject": dataclasses.replace(evidence(rows), neighbours=shares)})
    score = {(i.row, i.code): i.score for i in alone}
    weighed = {(i.row, i.code): i.score for i in near}
    assert set(score) == set(weighed) == {(40, "A1"), (41, "A")}  # the same flags, weighed otherwise
    assert logit(weighed[40, "A1"]) == pytest.approx(logit(1 - 0.01) - 1.0, abs=1e-3)  # no other label: A is A1's
    assert logit(weighed[41, "A"]) == pytest.approx(logit(0.97) + 1.0 + 0.25 * np.log(0.9), abs=1e-3)
    assert [i.row for i in near] == [41, 40] and [i.row for i in alone] == [40, 41]


def test_neighbours_given_the_sibling_instead_make_a_swap_more_likely():
    import dataclasses

    rows = background() + [({"A", "A1"}, {"A1": 0.01, "A2": 0.96})]
    shares = np.zeros((len(rows), len(CODES)))
    shares[40, CODES.index("A2")] = 0.5  # half its neighbours were given the sibling the model expects
    (issue,) = find_label_issues(TREE, {"subject": dataclasses.replace(evidence(rows), neighbours=shares)})
    chance = 1 - 0.01 * (1 - 0.96)
    assert issue.suggestion == "A2"
    assert np.log(issue.score / (1 - issue.score)) == pytest.approx(np.log(chance / (1 - chance)) + 0.5, abs=1e-2)


def test_a_flag_on_a_text_whose_other_labels_the_model_reads_well_comes_first():
    # The same doubted A1 on two texts, both also labelled B > B1: the model reads B1 at 0.95 on one and 0.2 on the
    # other (not low enough to doubt it), so its doubt about A1 is likelier a slip on the first.
    rows = background() + [({"A", "A1", "B", "B1"}, {"A1": 0.01, "B": 0.2, "B1": 0.2}),
                           ({"A", "A1", "B", "B1"}, {"A1": 0.01, "B": 0.95, "B1": 0.95})]
    issues = find_label_issues(TREE, {"subject": evidence(rows)})
    assert [(i.row, i.code) for i in issues] == [(41, "A1"), (40, "A1")]  # at the same chance, row order
    # Only the labels outside the flag's branch count: A (0.9 on both) is A1's own.
    assert logit(issues[0].score) == pytest.approx(logit(1 - 0.01) + 0.25 * np.log(0.95), abs=1e-3)
    assert logit(issues[1].score) == pytest.approx(logit(1 - 0.01) + 0.25 * np.log(0.2), abs=1e-3)


def test_a_label_the_model_rules_out_entirely_weighs_no_more_than_its_floor():
    rows = background() + [({"A", "A1", "B", "B1"}, {"A1": 0.01, "B": 1e-9, "B1": 0.9})]
    issues = {i.code: i for i in find_label_issues(TREE, {"subject": evidence(rows)})}
    assert set(issues) == {"A1", "B"}  # B is doubted in its own right (B1 comes along only if doubted)
    # For A1 the other labels are B (floored at 1e-4) and B1 (0.9): one ruled-out code cannot swamp the rest.
    assert logit(issues["A1"].score) == pytest.approx(
        logit(1 - 0.01) + 0.25 * (np.log(1e-4) + np.log(0.9)) / 2, abs=1e-3)
