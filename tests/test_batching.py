"""Concurrent /predict calls are predicted together: fewer model calls, the same answers as one by one."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from service.app.batching import Batcher


class SlowModel:
    """Answers each text with its own prediction after a fixed cost per call, noting each batch's size."""

    def __init__(self, seconds: float = 0.05, fail: bool = False):
        self.seconds, self.fail, self.batches = seconds, fail, []

    def propose(self, texts):
        self.batches.append(len(texts))
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("the model broke")
        return [f"prediction of {t}" for t in texts]


def run(coroutine):
    return asyncio.run(coroutine)


def test_calls_that_wait_go_together_and_each_gets_its_own_answers():
    model, executor = SlowModel(), ThreadPoolExecutor(max_workers=1)
    batcher = Batcher(executor, batch_texts=8)
    requests_ = [[f"t{i}-{j}" for j in range(1 + i % 3)] for i in range(12)]

    async def main():
        return await asyncio.gather(*(batcher.propose(model, texts) for texts in requests_))

    answers = run(main())
    assert answers == [[f"prediction of {t}" for t in texts] for texts in requests_]
    # 24 texts in 12 calls arriving at once: model calls of at most 8 texts, each call's texts in one of them
    assert len(model.batches) < len(requests_) and max(model.batches) <= 8 and sum(model.batches) == 24


def test_a_lone_call_and_a_large_one_go_alone_and_an_error_reaches_every_waiting_call():
    executor = ThreadPoolExecutor(max_workers=1)
    model = SlowModel(0.0)
    assert run(Batcher(executor, batch_texts=4).propose(model, [str(i) for i in range(10)])) == [
        f"prediction of {i}" for i in range(10)]
    assert model.batches == [10]

    broken, batcher = SlowModel(0.05, fail=True), Batcher(executor)

    async def main():
        return await asyncio.gather(*(batcher.propose(broken, ["x"]) for _ in range(5)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in run(main()))
    assert run(batcher.propose(SlowModel(0.0), ["after"])) == ["prediction of after"]  # it goes on


@pytest.fixture
def served(tmp_path, small_taxonomy):
    from automl.model import PreAnnotator
    from automl.settings import ModelSettings
    from automl.taxonomy_file import load_taxonomy
    from service.app.api import create_app
    from service.config import ApiSettings
    from service.store.registry import ModelRegistry
    from test_api import running  # uvicorn on a free loopback port, as `serve` runs it

    registry = ModelRegistry(tmp_path / "models")
    registry.register(PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings()).fit([], []), "fp", {})
    app = create_app(ApiSettings(), "tok", registry, lambda: None)
    with running(app) as url:
        yield url, app


def test_concurrent_requests_get_the_answers_they_would_get_alone(served):
    url, app = served
    texts = ["a cat shelter", "dogs and their walkers", "a school for nurses", "mental health and cats", "nothing"]
    bodies = [{"tasks": [{"id": i * 10 + j, "data": {"text": texts[(i + j) % len(texts)]}} for j in range(1 + i % 3)]}
              for i in range(24)]
    auth = {"Authorization": "Bearer tok"}
    alone = [requests.post(f"{url}/predict", json=b, headers=auth).json() for b in bodies]
    together: list = [None] * len(bodies)

    def ask(i: int) -> None:
        together[i] = requests.post(f"{url}/predict", json=bodies[i], headers=auth).json()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
