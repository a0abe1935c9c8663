"""Which asset to label next: the ranking itself, and the files platform's ranked list."""

from __future__ import annotations

import csv
import json

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from automl.priority import rank
from conftest import write_assets
from service.config import Secrets, load_settings
from service.factory import build_worker


def rows(*vectors) -> sp.csr_matrix:
    return normalize(sp.csr_matrix(np.array(vectors, dtype=float)))


def test_uncertain_and_novel_first_and_no_two_near_duplicates_on_top():
    labelled = rows([1, 0, 0, 0])
    pool = rows([1, 0.01, 0, 0],  # like a labelled text, very uncertain
                [0, 1, 0, 0],  # new, uncertain
                [0, 1, 0.01, 0],  # a near-duplicate of the one above, as uncertain
                [0, 0, 0, 1])  # new, a little less uncertain
    ranking = rank(np.array([3.0, 3.0, 3.0, 2.0]), pool, labelled)
    order = list(np.argsort(-ranking.priority, kind="stable"))
    assert order[0] in (1, 2) and order[1] == 3  # the duplicate of the first pick waits
    assert set(order[2:]) == {0, 2} and ranking.novelty[0] < 0.01  # duplicates of what is known come last
    assert np.all(np.diff(ranking.priority[order]) <= 0) and 0 <= ranking.priority.min() <= ranking.priority.max() <= 1


def test_a_cold_start_ranks_by_novelty_and_a_large_labelled_set_by_uncertainty():
    pool = rows([1, 0], [1, 0.05], [0, 1])
    edits = np.array([5.0, 5.0, 0.1])
    cold = rank(edits, pool, None)  # nothing labelled: spread over the pool first
    assert np.argsort(-cold.priority)[1] == 2
    many = normalize(sp.csr_matrix(np.random.RandomState(0).rand(300, 2)))
    warm = rank(edits, pool, many)  # much labelled: the uncertain ones first
    assert set(np.argsort(-warm.priority)[:2]) == {0, 1}


def test_files_platform_writes_priorities_and_the_ranked_list_once(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "AN1"), ("2", "dogs and walks", "AN2"),
                                      ("u1", "our cat rescue", ""), ("u2", "a school for all", ""),
                                      ("u3", "mental health and cats", "")])
    settings = load_settings(None, {"state_dir": str(tmp_path / "state"), "files": {"assets": str(tmp_path / "a.csv")},
                                    "taxonomy": {"path": str(small_taxonomy)}})
    first = build_worker(settings, Secrets()).run_once()
    assert first.prioritised == 3
    lines = [json.loads(x) for x in (tmp_path / "state" / "preannotations.jsonl").read_text().splitlines()]
    assert all(0 <= line["priority"] <= 1 and "suggestions" in line for line in lines)
    with (tmp_path / "state" / "next_to_label.csv").open(encoding="utf-8") as f:
        ranked = list(csv.DictReader(f))
    assert [r["rank"] for r in ranked] == ["1", "2", "3"] and {r["id"] for r in ranked} == {"u1", "u2", "u3"}
    by_id = {line["asset_id"]: line["priority"] for line in lines}
    assert [float(r["priority"]) for r in ranked] == sorted(by_id.values(), reverse=True)
    assert "edits expected" in ranked[0]["why"]
    again = build_worker(settings, Secrets()).run_once()  # nothing new: no priority set
    assert (again.written, again.prioritised) == (0, 0)
