"""The unlabelled pool of one cycle, predicted chunk by chunk and set down in a scratch folder: each chunk's assets
and predictions, and its TF-IDF rows. Ranking and pushing read it back a chunk at a time, so a cycle's memory does
not grow with the pool. The folder goes when the cycle ends; one a crash left behind goes at the next cycle."""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from automl.records import Prediction

__all__ = ["PoolSpill", "SpilledAsset"]

_PREFIX = "pool-"


@dataclass(frozen=True)
class SpilledAsset:
    id: str
    text_hash: str


class PoolSpill:
    """Chunks added in order; texts are numbered across chunks from 0."""

    def __init__(self, parent: Path):
        parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=parent))
        self.starts: list[int] = []  # the number of each chunk's first text
        self.size = 0
        self._edits: list[float] = []
        self._similar: list[np.ndarray] = []

    @staticmethod
    def clear_stale(parent: Path) -> None:
        """Remove what a cycle that died left (call under the cycle lock: no other cycle's spill is there)."""
        for stale in parent.glob(f"{_PREFIX}*") if parent.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)

    def __enter__(self) -> PoolSpill:
        return self

    def __exit__(self, *_: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def add(self, assets: Sequence[SpilledAsset], predictions: Sequence[Prediction], rows: sp.csr_matrix,
            similar: np.ndarray) -> None:
        """One chunk: its assets, their predictions, TF-IDF rows and highest similarity to a labelled text."""
        number = len(self.starts)
        with (self.folder / f"{number:06d}.pkl").open("wb") as f:
            pickle.dump((list(assets), list(predictions)), f, protocol=pickle.HIGHEST_PROTOCOL)
        sp.save_npz(self.folder / f"{number:06d}.npz", sp.csr_matrix(rows), compressed=False)
        self.starts.append(self.size)
        self.size += len(assets)
        self._edits += [p.expected_edits for p in predictions]
        self._similar.append(similar)

    @property
    def expected_edits(self) -> np.ndarray:
        """Per text, the edits a labeller is expected to make on its pre-annotation (what the ranking needs of the
        predictions, held so that ranking does not read them all back)."""
        return np.array(self._edits)

    @property
    def similar(self) -> np.ndarray:
        """Per text, its highest TF-IDF similarity to a labelled text."""
        return np.concatenate(self._similar) if self._similar else np.zeros(0)

    def _rows(self, number: int) -> sp.csr_matrix:
        return sp.load_npz(self.folder / f"{number:06d}.npz").tocsr()

    def rows_of(self, indices: np.ndarray) -> sp.csr_matrix:
        """The TF-IDF rows of these texts (sorted numbers), reading each chunk that holds one of them once."""
        chunk_of = np.searchsorted(self.starts, indices, side="right") - 1
        parts = [self._rows(int(number))[indices[chunk_of == number] - self.starts[number]]
                 for number in np.unique(chunk_of)]
        return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, 0))

    def sweep(self) -> Iterator[tuple[int, sp.csr_matrix]]:
        """Every chunk's rows, as (number of its first text, rows)."""
        for number, start in enumerate(self.starts):
            yield start, self._rows(number)

    def chunks(self) -> Iterator[tuple[int, list[SpilledAsset], list[Prediction]]]:
        """Every chunk's assets and predictions, as (number of its first text, assets, predictions)."""
        for number, start in enumerate(self.starts):
            with (self.folder / f"{number:06d}.pkl").open("rb") as f:
                assets, predictions = pickle.load(f)
            yield start, assets, predictions
