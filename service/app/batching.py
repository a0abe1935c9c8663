"""Predictions for concurrent /predict calls made together: the calls that arrive while the model is busy wait, and
go into its next call as one batch. One model call of 20 texts costs about as much as 5 calls of one (TF-IDF and
every level's ensemble have a fixed cost per call), so under load this multiplies what the API answers per second
(3 times with 32 clients, see the README); a lone call is not delayed at all. Each text's prediction does not depend
on the others in its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automl.model import PreAnnotator
    from automl.records import Prediction

__all__ = ["Batcher"]

BATCH_TEXTS = 64  # texts per model call at most (a larger request still goes alone, in one call)


@dataclass
class _Waiting:
    model: PreAnnotator
    texts: Sequence[str]
    answer: asyncio.Future


class Batcher:
    """Runs `model.propose` in `executor` (one thread: calls side by side would only fight over the interpreter
    lock), one batch at a time. Lives on one event loop."""

    def __init__(self, executor: Executor, batch_texts: int = BATCH_TEXTS):
        self.executor, self.batch_texts = executor, batch_texts
        self._waiting: list[_Waiting] = []
        self._draining = False

    async def propose(self, model: PreAnnotator, texts: Sequence[str]) -> list[Prediction]:
        loop = asyncio.get_running_loop()
        waiting = _Waiting(model, texts, loop.create_future())
        self._waiting.append(waiting)
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await waiting.answer

    def _next_batch(self) -> list[_Waiting]:
        """The oldest calls for the same model, up to `batch_texts` texts (at least one call)."""
        batch = [self._waiting.pop(0)]
        size = len(batch[0].texts)
        while (self._waiting and self._waiting[0].model is batch[0].model
               and size + len(self._waiting[0].texts) <= self.batch_texts):
            size += len(self._waiting[0].texts)
            batch.append(self._waiting.pop(0))
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch = self._next_batch()
                texts = [t for w in batch for t in w.texts]
                try:
                    predictions = await loop.run_in_executor(self.executor, batch[0].model.propose, texts)
                except Exception as exc:  # noqa: BLE001 - each call waiting on this batch gets the error
                    for w in batch:
                        if not w.answer.done():
                            w.answer.set_exception(exc)
                    continue
                start = 0
                for w in batch:
                    if not w.answer.done():  # its client may have gone: the others still get theirs
                        w.answer.set_result(predictions[start:start + len(w.texts)])
                    start += len(w.texts)
        finally:
            self._draining = False
