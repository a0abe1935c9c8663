"""Which unlabelled text a human should label next: the ones the model is least sure of, kept apart from what is
labelled already and from each other, so that the top of the queue is not fifty near-duplicates.

Ranked batch-mode sampling (Cardoso et al., 2017, as modAL implements it), on the model's own figures: a text's
uncertainty is the edits a labeller is expected to make on its pre-annotation (every pre-fill deleted if wrong, every
missing label added if right), its novelty one minus its highest TF-IDF cosine similarity to a labelled text or to a
text ranked before it. Each next text maximises `a * novelty + (1 - a) * uncertainty`, with `a` the share of texts
still unlabelled: diversity first when little is labelled (a cold start), uncertainty once much is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["Ranking", "max_similarity", "rank", "rank_pool"]

# Texts ranked one by one (each pick updates every novelty); the rest follow by their score after those picks.
RANKED_ONE_BY_ONE = 500
_CHUNK = 2000


@dataclass(frozen=True)
class Ranking:
    priority: np.ndarray  # in [0, 1]; higher: label sooner. Sorting by it gives the ranked order.
    uncertainty: np.ndarray  # expected edits mapped to [0, 1)
    novelty: np.ndarray  # 1 - the highest similarity to a labelled text or a text ranked before


def rank(expected_edits: np.ndarray, pool: sp.csr_matrix, labelled: sp.csr_matrix | None,
         one_by_one: int = RANKED_ONE_BY_ONE) -> Ranking:
    """Priorities of the `pool` texts (rows of L2-normalised TF-IDF) given the labelled texts' rows."""
    n = pool.shape[0]
    n_labelled = labelled.shape[0] if labelled is not None else 0
    similar = max_similarity(pool, labelled) if n_labelled else np.zeros(n)
    return rank_pool(expected_edits, similar, n_labelled, lambda rows: pool[rows], lambda: iter([(0, pool)]),
                     one_by_one)


def rank_pool(expected_edits: np.ndarray, similar: np.ndarray, n_labelled: int,
              rows_of: Callable[[np.ndarray], sp.csr_matrix],
              sweep: Callable[[], Iterator[tuple[int, sp.csr_matrix]]],
              one_by_one: int = RANKED_ONE_BY_ONE) -> Ranking:
    """The same ranking for a pool whose TF-IDF rows are not held at once: `similar` is each text's highest
    similarity to a labelled text, `rows_of(indices)` gives the rows of a few texts (sorted indices), `sweep()` all
    of them chunk by chunk as (index of the chunk's first text, its rows).

    Only texts that can be among the first `one_by_one` are held: a text's score can only fall as texts are ranked,
    so once the last text ranked one by one scores above every text left out, no text left out could have been
    picked before it. Until then the candidates are widened."""
    n = len(expected_edits)
    uncertainty = expected_edits / (1.0 + expected_edits)
    share = n / (n + n_labelled) if n else 1.0
    opening = _score(similar, uncertainty, share)
    order = np.argsort(-opening, kind="stable")
    wanted = min(one_by_one, n)
    size = min(n, max(4 * wanted, _CHUNK))
    while True:
        candidates = np.sort(order[:size])
        picks, scores, novelty_at_pick = _one_by_one(rows_of(candidates), similar[candidates],
                                                     uncertainty[candidates], share, wanted)
        if size == n or not wanted or scores[-1] > opening[order[size]]:
            break
        size = min(n, size * 4)
    picked = candidates[picks]
    priority, novelty = np.zeros(n), np.zeros(n)
    priority[picked], novelty[picked] = scores, novelty_at_pick
    ceiling = float(scores[-1]) if wanted else 1.0
    final = similar.copy()
    if wanted:
        chosen = rows_of(np.sort(picked))
        for first, rows in sweep():
            block = slice(first, first + rows.shape[0])
            final[block] = np.maximum(final[block], max_similarity(rows, chosen))
    rest = np.ones(n, dtype=bool)
    rest[picked] = False
    priority[rest] = np.minimum(_score(final[rest], uncertainty[rest], share), ceiling)
    novelty[rest] = 1 - final[rest]
    return Ranking(np.clip(priority, 0.0, 1.0), uncertainty, np.clip(novelty, 0.0, 1.0))


def _score(similar: np.ndarray, uncertainty: np.ndarray, share: float) -> np.ndarray:
    """`a * novelty + (1 - a) * uncertainty`, `a` the share of texts still unlabelled."""
    return share * (1 - similar) + (1 - share) * uncertainty


def _one_by_one(rows: sp.csr_matrix, similar: np.ndarray, uncertainty: np.ndarray, share: float,
                count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick `count` of these texts one at a time, each maximising the score given the picks before it. Returns the
    picks (positions in `rows`), their scores (never above a pick before) and their novelty when picked."""
    similar = similar.copy()
    picked = np.zeros(rows.shape[0], dtype=bool)
    picks, scores, novelty = [], [], []
    ceiling = 1.0
    for _ in range(count):
        score = np.where(picked, -np.inf, _score(similar, uncertainty, share))
        best = int(np.argmax(score))
        ceiling = min(ceiling, float(score[best]))
        picks.append(best)
        scores.append(ceiling)
        novelty.append(1 - similar[best])
        picked[best] = True
        similar = np.maximum(similar, np.asarray((rows @ rows[best].T).todense()).ravel())
    return np.array(picks, dtype=int), np.array(scores), np.array(novelty)


def max_similarity(pool: sp.csr_matrix, other: sp.csr_matrix) -> np.ndarray:
    """Each `pool` row's highest cosine similarity to a row of `other` (both L2-normalised)."""
    out = np.zeros(pool.shape[0])
    other_t = other.T.tocsr()  # once: a product with a CSC matrix converts it for every block
    for start in range(0, pool.shape[0], _CHUNK):
        block = pool[start:start + _CHUNK] @ other_t
        # TF-IDF similarities are never negative, so a row's largest stored value is its maximum (0 when none is
        # stored), read straight from the product's rows; the sparse max(axis=1) first sorts every row's indices.
        filled = np.diff(block.indptr) > 0
        if filled.any():
            out[start:start + _CHUNK][filled] = np.maximum.reduceat(block.data, block.indptr[:-1][filled])
    return out
