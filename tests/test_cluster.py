"""The search and the pool's prediction on a real Dask cluster (a scheduler and two worker processes on loopback)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.sparse as sp

from automl.cluster import connect
from automl.errors import ClusterError
from automl.pool_prediction import predict_chunks
from automl.search import SearchRun, Workspace, search_ensemble
from automl.settings import ComputeSettings, ModelSettings
from conftest import EXAMPLE, example_rows, write_assets
from service.app.factory import build_worker
from service.config import Secrets, load_settings
from tests.dask_cluster import LocalDaskCluster, tasks_run
from tests.test_search import data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalDaskCluster(tmp_path_factory.mktemp("dask")) as running:
        yield running


def test_the_search_on_the_cluster_finds_what_it_finds_here(cluster, tmp_path):
    X, Y = data(seed=3)
    settings = ModelSettings(max_evaluations=3, n_jobs=2)  # the initial design's first three, whatever the order
    here, here_report = search_ensemble(X, Y, settings, SearchRun(30, seed=7, workspace=Workspace(tmp_path / "a")))
    there, there_report = search_ensemble(X, Y, settings, SearchRun(
        30, seed=7, workspace=Workspace(tmp_path / "b", scheduler=cluster.address)))
    assert there_report.fallback == "" and there_report.evaluations == here_report.evaluations == 3
    assert there_report.members == here_report.members
    assert tasks_run(cluster.address).get("run_wrapper")  # SMAC's evaluations ran on the cluster's workers
    np.testing.assert_allclose(there.fit(X, Y).predict_proba(X), here.fit(X, Y).predict_proba(X))


def test_an_address_where_no_scheduler_answers_is_a_clear_error():
    with pytest.raises(ClusterError, match=r"no Dask scheduler answers there.*dask scheduler"):
        with connect("tcp://127.0.0.1:9", timeout_seconds=2):
            pass


def test_a_search_whose_cluster_is_not_there_fails_instead_of_falling_back_to_the_default_model(tmp_path):
    X, Y = data()
    run = SearchRun(30, seed=1, workspace=Workspace(tmp_path, scheduler="tcp://127.0.0.1:9", connect_seconds=2))
    with pytest.raises(ClusterError, match="no Dask scheduler answers"):
        search_ensemble(X, Y, ModelSettings(max_evaluations=1), run)


def test_the_setting_takes_an_address_and_an_empty_one_is_unset():
    assert ComputeSettings(scheduler="tcp://dask:8786").scheduler == "tcp://dask:8786"
    assert ComputeSettings(scheduler=" ").scheduler is None
    with pytest.raises(ValueError, match="scheduler"):
        ComputeSettings(scheduler="dask:8786")


def _pool_project(root, scheduler: str | None = None):
    rows = example_rows("train.csv", 300) + [(i, text, "") for i, text, _ in example_rows("test.csv", 120)]
    root.mkdir(parents=True, exist_ok=True)
    write_assets(root / "assets.csv", rows)
    settings = load_settings(None, {
        "state_dir": str(root / "state"), "files": {"assets": str(root / "assets.csv")},
        "taxonomy": {"path": str(EXAMPLE / "taxonomy.csv"), "facet_roots": {"population": ["BE"]}},
        "model": {"budget_seconds": 10, "seed": 3},  # no search: the default model at every level, as it repeats
        "compute": {"scheduler": scheduler, "chunk_size": 10}})
    return build_worker(settings, Secrets())


def _pushed(worker) -> list[dict]:
    rows = [json.loads(line) for line in worker.settings.output_path.read_text().splitlines()]
    return sorted(({k: v for k, v in row.items() if k != "created_at"} for row in rows), key=lambda r: r["asset_id"])


def test_the_pool_is_predicted_on_the_cluster_as_here_and_a_lost_worker_loses_nothing(cluster, tmp_path):
    here = _pool_project(tmp_path / "here")
    here.train_now()
    shutil.copytree(tmp_path / "here" / "state", tmp_path / "there" / "state")  # one model, predicted twice
    here.run_once()
    there = _pool_project(tmp_path / "there", cluster.address)
    beat, killed = there.beat, []

    def kill_one(phase, force=False, **detail):  # a worker dies once the first chunks are back
        if phase == "predicting" and not killed:
            cluster.kill("worker-1")
            killed.append(detail["done"])
        beat(phase, force, **detail)

    there.beat = kill_one
    try:
        report = there.run_once()
    finally:
        cluster.start_worker("worker-1")
        cluster.wait_for(2)
    assert killed == [10] and not report.trained and report.predicted == 120 and report.abandoned == 0
    assert tasks_run(cluster.address).get("propose")  # the chunks ran there
    expected, got = _pushed(here), _pushed(there)
    assert len(got) == len({r["asset_id"] for r in got}) == 120  # nothing pushed twice
    assert got == expected


def test_a_model_lost_with_its_workers_is_sent_again_and_every_chunk_comes_back(cluster, tmp_path):
    project = _pool_project(tmp_path)
    model = project.registry.load(project.train_now())
    texts = [text for _, text, _ in example_rows("test.csv", 60)]
    chunks = [texts[start:start + 10] for start in range(0, len(texts), 10)]
    expected = model.propose_with_vectors(texts)
    with connect(cluster.address, timeout_seconds=60) as client:
        scatter, sent = client.scatter, []
        client.scatter = lambda *args, **kwargs: sent.append(1) or scatter(*args, **kwargs)
        got, lost = [], []
        for chunk, predicted, rows in predict_chunks(client, model, chunks, lambda chunk: chunk, in_flight=2):
            if not lost:  # every worker holding the model dies (a fresh one joins if none is left)
                lost.extend(_kill_holders(cluster, client, "PreAnnotator-"))
            got.append((chunk, predicted, rows))
    try:
        assert lost and len(sent) >= 2  # the model was lost, and sent again
        assert [chunk for chunk, _, _ in got] == chunks  # in order, none twice, none missing
        assert [p for _, predicted, _ in got for p in predicted] == expected[0]
        np.testing.assert_allclose(sp.vstack([rows for _, _, rows in got]).toarray(), expected[1].toarray())
    finally:
        _restore(cluster)


def _kill_holders(cluster, client, prefix: str) -> list[str]:
    names = {address: info["name"] for address, info in client.scheduler_info()["workers"].items()}
    holders = {names[address] for key, where in client.who_has().items() if key.startswith(prefix) for address in where}
    if holders >= set(names.values()):
        cluster.start_worker("worker-spare")
    for name in holders:
        cluster.kill(name)
    return sorted(holders)


def _restore(cluster) -> None:
    if "worker-spare" in cluster.processes:
        cluster.kill("worker-spare")
    for name in ("worker-0", "worker-1"):
        if name not in cluster.processes:
            cluster.start_worker(name)
    cluster.wait_for(2)


class _LosingCluster:
    """A client whose cluster loses the model every time: every chunk comes back cancelled ("already forgotten")."""

    def __init__(self):
        self.scattered, self.cancelled = 0, []

    def nthreads(self) -> dict[str, int]:
        return {"worker": 1}

    def scatter(self, model, **options):
        self.scattered += 1
        return f"model-{self.scattered}"

    def submit(self, *args, **options):
        return _Forgotten()

    def cancel(self, futures) -> None:
        self.cancelled.extend(futures)


class _Forgotten:
    status = "cancelled"

    def result(self):
        from concurrent.futures import CancelledError

        raise CancelledError("already forgotten")


def test_a_model_lost_again_and_again_is_a_clear_error_not_a_loop():
    client = _LosingCluster()
    with pytest.raises(ClusterError, match=r"lost the model 4 times.*workers' logs.*nothing was pushed"):
        list(predict_chunks(client, None, [["a"], ["b"]], lambda chunk: chunk))
    assert client.scattered == 4  # sent once, and again 3 times
    assert {"model-1", "model-2", "model-3", "model-4"} <= set(client.cancelled)  # none left on the cluster
    assert sum(isinstance(f, _Forgotten) for f in client.cancelled) == 2  # nor the chunks still out
