"""The worker against a real Label Studio behind a proxy that answers 10% of the requests with 429 or 502 or drops
the connection, before the request reaches Label Studio or after it has handled it (a write that landed, its answer
lost): every cycle finishes, and every unlabelled task holds exactly one prediction of the version."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import example_rows
from fault_proxy import FaultProxy
from label_studio_server import label_studio  # noqa: F401 - the session fixture
from service.app.factory import build_worker
from service.config import Secrets, load_settings
from test_label_studio_connector import annotation, labelled_rows, taxonomy_config


@pytest.mark.slow
def test_faults_between_the_worker_and_label_studio_lose_and_duplicate_nothing(tmp_path, label_studio):  # noqa: F811
    client = label_studio.client
    project = client.create_project("faults", taxonomy_config())["id"]
    client.import_tasks(project, [{"data": {"text": text}, "annotations": [{"result": annotation(codes)}]}
                                  for text, codes in labelled_rows(60)])
    client.import_tasks(project, [{"data": {"text": text}} for _, text, _ in example_rows("test.csv", 30)])

    with FaultProxy(label_studio.url, rate=0.1, seed=11) as proxy:
        # The faults that would duplicate a prediction if the push were simply sent again: scripted, so that they
        # surely happen; the seeded 10% come on top, on every kind of call.
        proxy.script("POST", "/import/predictions", "502 after")
        proxy.script("POST", "/import/predictions", "drop after")
        proxy.script("GET", "/api/tasks", "drop before")
        settings = load_settings(None, {
            "platform": "label-studio", "state_dir": str(tmp_path / "state"),
            "label_studio": {"project_id": project, "url": proxy.url, "push_batch": 2},  # many calls
            "model": {"budget_seconds": 30, "max_evaluations": 2, "cv_folds": 3, "min_examples": 5},
            "worker": {"batch_size": 10},
        })
        worker = build_worker(settings, Secrets(label_studio_api_key=label_studio.token))
        first = worker.run_once()
        new = client.import_tasks(project, [{"data": {"text": f"{text} (more)"}}
                                            for _, text, _ in example_rows("test.csv", 50)[30:]])
        proxy.script("POST", "/import/predictions", "502 after")
        second = worker.run_once()

    unlabelled = sorted(int(t["id"]) for t in client.tasks(project) if not t["annotations"])
    counts = Counter((p["task"], p["model_version"]) for p in client.predictions(project))
    assert first.trained and first.model_version == "v1" and not second.trained
    assert len(unlabelled) == 50 and set(new) <= set(unlabelled)
    assert {t: counts[(t, "v1")] for t in unlabelled} == {t: 1 for t in unlabelled}
    assert sum(counts.values()) == 50  # nothing anywhere else either
    after = [f for f, method, path in proxy.injected if f.endswith("after") and "/import/predictions" in path]
    assert len(after) >= 3 and len(proxy.injected) >= 4 + 3, proxy.injected  # the scripted 4, and random ones
    assert 0.03 < (len(proxy.injected) - 4) / (len(proxy.injected) - 4 + proxy.passed) < 0.25
