"""The prediction of a large pool of texts in chunks on a Dask cluster's workers (connected with automl.cluster): the
model sent to the workers once, the chunks read as the results come back, a model lost with a worker sent again."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from distributed import Client, Future, KilledWorker

from automl.errors import ClusterError

if TYPE_CHECKING:
    import scipy.sparse as sp

    from automl.model import PreAnnotator
    from automl.records import Prediction

__all__ = ["MODEL_RESENDS", "predict_chunks"]

T = TypeVar("T")
MODEL_RESENDS = 3  # a model lost more often than this means the cluster is failing: an error, not a loop


def _propose(model: PreAnnotator, texts: list[str]) -> tuple[list[Prediction], sp.csr_matrix]:
    return model.propose_with_vectors(texts)


@dataclass
class _Shipment:
    """The model on the cluster's workers and the chunks out with it. Broadcast to every worker, but the scheduler's
    memory manager soon keeps a single copy, so a worker's death can lose the model and with it every chunk waiting
    on it (cancelled: "already forgotten"); the model is then sent again and the chunks not back yet resubmitted."""
    client: Client
    model: PreAnnotator
    shared: Future | None = None
    sent: int = 0
    pending: deque = field(default_factory=deque)  # (chunk, texts, future), in the order of `chunks`

    def send(self) -> None:
        if self.shared is not None:
            self.client.cancel([self.shared])
        if self.sent > MODEL_RESENDS:
            raise ClusterError(f"the Dask cluster lost the model {self.sent} times while predicting the pool. Look at"
                               " the Dask workers' logs (memory, restarts); nothing was pushed, the next cycle tries"
                               " again")
        self.shared = self.client.scatter(self.model, broadcast=True, hash=False)
        self.sent += 1

    def submit(self, chunk: T, texts: list[str]) -> None:
        self.pending.append((chunk, texts, self._future(texts)))

    def _future(self, texts: list[str]) -> Future:
        return self.client.submit(_propose, self.shared, texts, pure=False)

    def next_result(self) -> tuple[T, list[Prediction], sp.csr_matrix]:
        """The first chunk's predictions, waited for; the model sent again as often as it is lost on the way."""
        while True:
            chunk, texts, future = self.pending[0]
            try:
                predicted = future.result()
            except CancelledError:
                self.send()
                self.pending = deque((c, t, f if f.status == "finished" else self._future(t))
                                     for c, t, f in self.pending)
                continue
            except KilledWorker as exc:  # the scheduler gave up after the workers running it died, again and again
                raise ClusterError(f"the Dask cluster lost a prediction chunk: {exc}. Look at the Dask workers' logs"
                                   " (memory, the project not installed there); nothing was pushed, the next cycle"
                                   " tries again") from None
            self.pending.popleft()
            return (chunk, *predicted)

    def close(self) -> None:
        self.client.cancel([f for _, _, f in self.pending] + ([self.shared] if self.shared is not None else []))


def predict_chunks(client: Client, model: PreAnnotator, chunks: Iterable[T], texts: Callable[[T], Sequence[str]],
                   in_flight: int | None = None) -> Iterator[tuple[T, list[Prediction], sp.csr_matrix]]:
    """Each chunk with its texts' predictions and TF-IDF rows (`PreAnnotator.propose_with_vectors`), in the order of
    `chunks`, computed on the cluster's workers. The model is sent to the workers once, not with each chunk (again
    only if a worker's death loses it); at most `in_flight` chunks (default: twice the workers' threads) are out at a
    time, so the pool is read as the results come back. A chunk whose worker dies is computed again elsewhere."""
    shipment = _Shipment(client, model)
    limit = in_flight or max(2, 2 * sum(client.nthreads().values()))
    try:
        shipment.send()
        for chunk in chunks:
            shipment.submit(chunk, list(texts(chunk)))
            if len(shipment.pending) >= limit:
                yield shipment.next_result()
        while shipment.pending:
            yield shipment.next_result()
    finally:
        shipment.close()
