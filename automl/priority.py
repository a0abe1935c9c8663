"""Which unlabelled text a human should label next: the ones the model is least sure of, kept apart from what is
labelled already and from each other, so that the top of the queue is not fifty near-duplicates.

Ranked batch-mode sampling (Cardoso et al., 2017, as modAL implements it), on the model's own figures: a text's
uncertainty is the edits a labeller is expected to make on its pre-annotation (every pre-fill deleted if wrong, every
missing label added if right), its novelty one minus its highest TF-IDF cosine similarity to a labelled text or to a
text ranked before it. Each next text maximises `a * novelty + (1 - a) * uncertainty`, with `a` the share of texts
still unlabelled: diversity first when little is labelled (a cold start), uncertainty once much is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

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
    uncertainty = expected_edits / (1.0 + expected_edits)
    similar = _max_similarity(pool, labelled) if labelled is not None and labelled.shape[0] else np.zeros(n)
    share = n / (n + (labelled.shape[0] if labelled is not None else 0)) if n else 1.0
    priority, novelty = np.zeros(n), np.zeros(n)
    picked = np.zeros(n, dtype=bool)
    ceiling = 1.0
    for _ in range(min(one_by_one, n)):
        score = np.where(picked, -np.inf, share * (1 - similar) + (1 - share) * uncertainty)
        best = int(np.argmax(score))
        ceiling = min(ceiling, float(score[best]))  # never above a text ranked before it
        priority[best], novelty[best], picked[best] = ceiling, 1 - similar[best], True
        similar = np.maximum(similar, np.asarray((pool @ pool[best].T).todense()).ravel())
    rest = ~picked
    priority[rest] = np.minimum(share * (1 - similar[rest]) + (1 - share) * uncertainty[rest], ceiling)
    novelty[rest] = 1 - similar[rest]
    return Ranking(np.clip(priority, 0.0, 1.0), uncertainty, np.clip(novelty, 0.0, 1.0))


def _max_similarity(pool: sp.csr_matrix, other: sp.csr_matrix) -> np.ndarray:
    out = np.zeros(pool.shape[0])
    other_t = other.T.tocsc()
    for start in range(0, pool.shape[0], _CHUNK):
        block = pool[start:start + _CHUNK] @ other_t
        out[start:start + _CHUNK] = block.max(axis=1).toarray().ravel() if block.nnz else 0.0
    return out
