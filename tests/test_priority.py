"""Which asset to label next: the ranking itself, and the files platform's ranked list."""

from __future__ import annotations

import csv
import json

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from automl.priority import rank
from conftest import write_assets
from service.app.factory import build_worker
from service.config import Secrets, load_settings


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


def reference_rank(expected_edits, pool, labelled, one_by_one):
    """The ranking as first written: every pool row held, each pick updating every similarity."""
    n = pool.shape[0]
    uncertainty = expected_edits / (1.0 + expected_edits)
    similar = np.asarray((pool @ labelled.T).max(axis=1).todense()).ravel()
    share = n / (n + labelled.shape[0])
    priority, novelty, picked, ceiling = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool), 1.0
    for _ in range(min(one_by_one, n)):
        score = np.where(picked, -np.inf, share * (1 - similar) + (1 - share) * uncertainty)
        best = int(np.argmax(score))
        ceiling = min(ceiling, float(score[best]))
        priority[best], novelty[best], picked[best] = ceiling, 1 - similar[best], True
        similar = np.maximum(similar, np.asarray((pool @ pool[best].T).todense()).ravel())
    rest = ~picked
    priority[rest] = np.minimum(share * (1 - similar[rest]) + (1 - share) * uncertainty[rest], ceiling)
    novelty[rest] = 1 - similar[rest]
    return np.clip(priority, 0, 1), np.clip(novelty, 0, 1)


def test_a_pool_ranked_from_chunks_and_a_few_candidates_ranks_as_one_held_whole():
    from automl.priority import max_similarity, rank_pool

    rng = np.random.RandomState(0)
    # 2,200 near-copies of 5 texts open the queue (unlike anything labelled, most uncertain), then 800 others: once a
    # copy of each is ranked, the rest of the first picks lie beyond the first candidates, which must widen.
    copies = np.zeros((2200, 50))
    copies[np.arange(2200), np.arange(2200) % 5] = 1.0
    copies[:, 5:40] = rng.rand(2200, 35) * 0.01
    others = np.hstack([np.zeros((800, 5)), rng.rand(800, 45)])
    pool = normalize(sp.csr_matrix(np.vstack([copies, others])))
    labelled = normalize(sp.csr_matrix(np.hstack([np.zeros((20, 40)), rng.rand(20, 10)])))
    edits = np.concatenate([np.full(2200, 5.0), rng.rand(800) * 3])
    order = rng.permutation(3000)  # the copies spread over the pool's chunks
    pool, edits = pool[order], edits[order]
    fetched = []

    def rows_of(indices):
        fetched.append(len(indices))
        return pool[indices]

    def sweep():
        return ((start, pool[start:start + 700]) for start in range(0, 3000, 700))

    streamed = rank_pool(edits, max_similarity(pool, labelled), 20, rows_of, sweep, one_by_one=60)
    priority, novelty = reference_rank(edits, pool, labelled, 60)
    np.testing.assert_allclose(streamed.priority, priority, rtol=0, atol=1e-12)
    np.testing.assert_allclose(streamed.novelty, novelty, rtol=0, atol=1e-12)
    assert fetched[0] == 2000 and fetched[1] == 3000  # the candidates widened once, to the whole pool here
    # Texts that have little in common: the first candidates suffice, and no more rows than theirs are held.
    fetched.clear()
    diverse = normalize(sp.random(3000, 2000, density=0.005, format="csr", random_state=1))  # like TF-IDF
    known = normalize(sp.random(20, 2000, density=0.005, format="csr", random_state=2))
    streamed = rank_pool(edits, max_similarity(diverse, known), 20, lambda i: fetched.append(len(i)) or diverse[i],
                         lambda: ((s, diverse[s:s + 700]) for s in range(0, 3000, 700)), one_by_one=60)
    np.testing.assert_allclose(streamed.priority, reference_rank(edits, diverse, known, 60)[0], rtol=0, atol=1e-12)
    assert fetched == [2000, 60]


def test_a_cycle_ranks_the_pool_from_its_scratch_folder_as_if_held_whole(tmp_path, small_taxonomy):
    texts = ["our cat rescue", "a school for all", "mental health and cats", "dog walks in the park",
             "a school library", "cats and dogs at home", "walks for mental health"]
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "AN1"), ("2", "dogs and walks", "AN2"),
                                      ("3", "a primary school", "ED")]
                 + [(f"u{i}", t, "") for i, t in enumerate(texts)])
    settings = load_settings(None, {"state_dir": str(tmp_path / "state"), "files": {"assets": str(tmp_path / "a.csv")},
                                    "taxonomy": {"path": str(small_taxonomy)}, "worker": {"batch_size": 2}})
    stale = tmp_path / "state" / "pool" / "pool-left-by-a-crash"
    stale.mkdir(parents=True)
    (stale / "000000.pkl").write_bytes(b"half a chunk")
    worker = build_worker(settings, Secrets())
    report = worker.run_once()
    assert report.written == len(texts) and report.prioritised == len(texts)
    assert list((tmp_path / "state" / "pool").iterdir()) == []  # the cycle's folder and the stale one are gone
    model = worker.registry.load(worker.registry.current())
    labelled = ["a shelter for cats", "dogs and walks", "a primary school"]
    # The pool in the state store's order (by id), ranked whole in memory.
    edits = np.array([p.expected_edits for p in model.propose(texts)])
    whole = rank(edits, model.features_.vectors(texts), model.features_.vectors(labelled))
    lines = {x["asset_id"]: x["priority"] for x in map(json.loads, (tmp_path / "state" / "preannotations.jsonl")
                                                          .read_text().splitlines())}
    assert [lines[f"u{i}"] for i in range(len(texts))] == [round(float(v), 4) for v in whole.priority]
    predictions, vectors = model.propose_with_vectors(texts)
    assert predictions == model.propose(texts) and (vectors != model.features_.vectors(texts)).nnz == 0
