"""The real kili SDK, start-up checks on, against the local Kili emulator (tests/kili_emulator.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from gql.transport.exceptions import TransportServerError
from kili.client import Kili
from kili.exceptions import AuthenticationFailed, GraphQLError, MutationOutcomeUnknownError, NotFound

from kili_emulator import KiliEmulator, format_timestamp, isolate_kili_sdk

MODEL = "classie-automl-v1"
ASSET_FIELDS = [
    "id",
    "externalId",
    "content",
    "updatedAt",
    "labels.id",
    "labels.labelType",
    "labels.createdAt",
    "labels.jsonResponse",
    "labels.modelName",
]
PREDICTION_FIELDS = ["id", "labelOf.id", "modelName", "labelType", "jsonResponse", "createdAt"]


def _job(instruction: str, input_: str, categories: dict[str, list[str]], is_child: bool = False) -> dict:
    return {
        "mlTask": "CLASSIFICATION",
        "instruction": instruction,
        "required": 0,
        "isChild": is_child,
        "content": {
            "input": input_,
            "categories": {code: {"name": code.title(), "children": children} for code, children in categories.items()},
        },
    }


JSON_INTERFACE = {
    "jobs": {
        "SUBJECT": _job("Subject", "checkbox", {"HE": ["HE_SUB"], "ED": []}),
        "HE_SUB": _job("Health topic", "checkbox", {"HE1": [], "HE2": []}, is_child=True),
        "POPULATION": _job("Population", "radio", {"CHILDREN": [], "ELDERLY": []}),
    }
}
# A hierarchical answer: the chosen category nests the answer of its child job.
NESTED_ANSWER = {
    "SUBJECT": {
        "categories": [
            {
                "name": "HE",
                "confidence": 91,
                "children": {"HE_SUB": {"categories": [{"name": "HE2", "confidence": 77}]}},
            },
            {"name": "ED", "confidence": 55},
        ]
    },
    "POPULATION": {"categories": [{"name": "ELDERLY", "confidence": 64}]},
}


def answer(*codes: str) -> dict:
    return {"SUBJECT": {"categories": [{"name": code} for code in codes]}}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    isolate_kili_sdk(monkeypatch, home)
    return home


@pytest.fixture
def emulator(home: Path) -> Iterator[KiliEmulator]:
    with KiliEmulator(json_interface=JSON_INTERFACE) as emulator:
        yield emulator


@pytest.fixture
def kili(emulator: KiliEmulator) -> Kili:
    client = Kili(api_key=emulator.api_key, api_endpoint=emulator.endpoint)
    emulator.requests.clear()  # tests count the calls they make, not the start-up checks
    return client


def operations(emulator: KiliEmulator) -> list[str | None]:
    return [request["operation"] for request in emulator.requests]


def test_construction_runs_the_start_up_checks(emulator: KiliEmulator, home: Path) -> None:
    assert "KILI_SDK_SKIP_CHECKS" not in os.environ

    Kili(api_key=emulator.api_key, api_endpoint=emulator.endpoint)

    assert operations(emulator) == ["viewer", "version", "__schema", "apiKeys"]
    assert emulator.requests[-1]["variables"] == {"where": {"key": emulator.api_key}}
    # the introspected schema is cached under the test's home, keyed by the emulator's version
    cached = list((home / ".cache" / "kili" / "graphql").glob("*.graphql"))
    assert [path.name.split("_", 1)[1] for path in cached] == [f"{emulator.version}.graphql"]


def test_a_wrong_key_fails_at_the_viewer_check_without_prompting(
    emulator: KiliEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def prompt(*_args: object, **_kwargs: object) -> str:
        raise AssertionError("the SDK prompted for a key")

    monkeypatch.setattr("getpass.getpass", prompt)

    with pytest.raises(AuthenticationFailed):
        Kili(api_key="wrong", api_endpoint=emulator.endpoint)

    assert operations(emulator) == ["viewer"]
    with pytest.raises(AuthenticationFailed):  # no key at all: no TTY under pytest, so no prompt
        Kili(api_endpoint=emulator.endpoint)


def test_projects_returns_the_json_interface_as_a_dict(kili: Kili, emulator: KiliEmulator) -> None:
    projects = kili.projects(project_id=emulator.project_id, fields=["id", "title", "inputType", "jsonInterface"])

    assert projects == [
        {"id": "project-1", "title": "Emulated project", "inputType": "TEXT", "jsonInterface": JSON_INTERFACE}
    ]
    assert operations(emulator) == ["countProjects", "projects"]


def test_an_unknown_project_is_an_empty_answer_as_in_kili(kili: Kili, emulator: KiliEmulator) -> None:
    assert kili.projects(project_id="unknown", fields=["id"]) == []
    assert kili.count_projects(project_id="unknown") == 0
    with pytest.raises(NotFound):  # the SDK needs the project's workflow before listing assets
        kili.assets(project_id="unknown", fields=["id"])


def test_120_assets_come_back_in_pages(kili: Kili, emulator: KiliEmulator) -> None:
    for i in range(120):
        emulator.add_asset(f"asset-{i:03d}", f"text {i}", external_id=f"ext-{i}")
    emulator.add_label("asset-007", "DEFAULT", answer("ED"))

    assert kili.count_assets(project_id=emulator.project_id) == 120
    assets = list(
        kili.assets(project_id=emulator.project_id, fields=ASSET_FIELDS, as_generator=True, disable_tqdm=True)
    )

    assert [asset["id"] for asset in assets] == [f"asset-{i:03d}" for i in range(120)]
    assert assets[7]["labels"][0]["jsonResponse"] == answer("ED")
    # the SDK asks for 50 assets a page when label json responses are requested
    pages = [request["variables"] for request in emulator.requests if request["operation"] == "assets"]
    assert [(page["skip"], page["first"]) for page in pages] == [(0, 50), (50, 50), (100, 20)]


def test_updated_at_gte_returns_only_what_changed(kili: Kili, emulator: KiliEmulator) -> None:
    for i in range(5):
        emulator.add_asset(f"a{i}", f"text {i}")
    cutoff = emulator.assets["a4"]["updatedAt"]
    emulator.set_text("a1", "new text")
    emulator.add_label("a3", "REVIEW", answer("HE"))

    def changed_since(stamp: str | None, **filters: object) -> list[str]:
        assets = kili.assets(
            project_id=emulator.project_id,
            fields=["id", "updatedAt"],
            updated_at_gte=stamp,
            as_generator=True,
            disable_tqdm=True,
            **filters,
        )
        return [asset["id"] for asset in assets]

    assert changed_since(cutoff) == ["a1", "a3", "a4"]  # >=: the asset at the cutoff comes back
    assert changed_since(emulator.assets["a3"]["updatedAt"]) == ["a3"]
    assert changed_since(None) == ["a0", "a1", "a2", "a3", "a4"]
    assert changed_since(None, asset_id_in=["a2", "a0"]) == ["a0", "a2"]
    stamps = [emulator.assets[f"a{i}"]["updatedAt"] for i in (0, 2, 4, 1, 3)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert datetime.strptime(stamps[0], "%Y-%m-%dT%H:%M:%S.%fZ").year == datetime.now(UTC).year


def test_labels_of_every_type_come_back_parsed(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")
    types = ["AUTOSAVE", "DEFAULT", "INFERENCE", "PREDICTION", "REVIEW"]
    for i, label_type in enumerate(types):
        model = "old-model" if label_type in ("INFERENCE", "PREDICTION") else None
        emulator.add_label("a1", label_type, answer("ED" if i % 2 else "HE"), model_name=model)

    [asset] = kili.assets(project_id=emulator.project_id, fields=ASSET_FIELDS)

    assert [label["labelType"] for label in asset["labels"]] == types
    assert [label["jsonResponse"] for label in asset["labels"]] == [answer("HE"), answer("ED")] * 2 + [answer("HE")]
    assert [label["modelName"] for label in asset["labels"]] == [None, None, "old-model", "old-model", None]
    assert asset["updatedAt"] > asset["labels"][-1]["createdAt"]


def test_create_predictions_writes_what_labels_reads_back(kili: Kili, emulator: KiliEmulator) -> None:
    for asset_id in ("a1", "a2", "a3"):
        emulator.add_asset(asset_id, f"text {asset_id}")
    emulator.add_label("a3", "DEFAULT", answer("ED"))
    before = {asset_id: asset["updatedAt"] for asset_id, asset in emulator.assets.items()}

    result = kili.create_predictions(
        project_id=emulator.project_id,
        asset_id_array=["a1", "a2"],
        json_response_array=[NESTED_ANSWER, answer("ED")],
        model_name=MODEL,
    )

    assert result == {"id": emulator.project_id}
    assert operations(emulator) == ["appendManyLabels"]
    predictions = kili.labels(project_id=emulator.project_id, type_in=["PREDICTION"], fields=PREDICTION_FIELDS)
    assert [(p["labelOf"]["id"], p["modelName"], p["labelType"]) for p in predictions] == [
        ("a1", MODEL, "PREDICTION"),
        ("a2", MODEL, "PREDICTION"),
    ]
    assert predictions[0]["jsonResponse"] == NESTED_ANSWER  # nested children intact
    assert predictions[0]["createdAt"].endswith("Z")
    assert [label["labelType"] for label in emulator.labels] == ["DEFAULT", "PREDICTION", "PREDICTION"]
    assert emulator.assets["a1"]["updatedAt"] > before["a1"] and emulator.assets["a3"]["updatedAt"] == before["a3"]


def test_overwrite_replaces_only_the_predictions_of_that_model(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")
    emulator.add_label("a1", "PREDICTION", answer("HE"), model_name="other-model")

    def push(codes: str, overwrite: bool) -> None:
        kili.create_predictions(
            project_id=emulator.project_id,
            asset_id_array=["a1"],
            json_response_array=[answer(codes)],
            model_name=MODEL,
            overwrite=overwrite,
        )

    push("ED", overwrite=False)
    push("HE", overwrite=False)
    assert [(label["modelName"], label["jsonResponse"]) for label in emulator.labels] == [
        ("other-model", answer("HE")),
        (MODEL, answer("ED")),
        (MODEL, answer("HE")),
    ]
    push("ED", overwrite=True)
    assert [(label["modelName"], label["jsonResponse"]) for label in emulator.labels] == [
        ("other-model", answer("HE")),
        (MODEL, answer("ED")),
    ]


def test_predictions_for_an_unknown_asset_are_refused_whole(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")

    with pytest.raises(GraphQLError, match="not found") as caught:
        kili.create_predictions(
            project_id=emulator.project_id,
            asset_id_array=["a1", "missing"],
            json_response_array=[answer("ED"), answer("HE")],
            model_name=MODEL,
        )

    assert caught.value.error[0]["extensions"]["context"] == {"reason": "AssetNotFound", "assetIds": ["missing"]}
    assert emulator.labels == []


def test_content_is_served_with_the_api_key_only(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "Une école à Paris ✓")
    [asset] = kili.assets(project_id=emulator.project_id, fields=["id", "content"])

    response = kili.http_client.get(asset["content"])
    assert response.status_code == 200 and response.text == "Une école à Paris ✓"
    assert requests.get(asset["content"], timeout=5).status_code == 401
    assert requests.get(asset["content"], headers={"Authorization": "X-API-Key: wrong"}, timeout=5).status_code == 401

    emulator.set_text("a1", "changed")
    [changed] = kili.assets(project_id=emulator.project_id, fields=["content"])
    assert changed["content"] != asset["content"] and kili.http_client.get(changed["content"]).text == "changed"


def test_a_502_after_the_write_leaves_the_outcome_unknown(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")
    emulator.inject("502", "appendManyLabels", apply_first=True)

    with pytest.raises(MutationOutcomeUnknownError):
        kili.create_predictions(
            project_id=emulator.project_id, asset_id_array=["a1"], json_response_array=[answer("ED")], model_name=MODEL
        )

    assert emulator.calls("appendManyLabels") == 1  # never resent by the SDK
    assert [(label["labelType"], label["modelName"]) for label in emulator.labels] == [("PREDICTION", MODEL)]


def test_a_dropped_mutation_is_not_resent(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")
    emulator.inject("drop", "appendManyLabels")

    with pytest.raises(MutationOutcomeUnknownError):
        kili.create_predictions(
            project_id=emulator.project_id, asset_id_array=["a1"], json_response_array=[answer("ED")], model_name=MODEL
        )

    assert emulator.calls("appendManyLabels") == 1 and emulator.labels == []


def test_a_429_on_assets_is_retried(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")
    emulator.inject("429", "assets")

    start = time.monotonic()
    assets = kili.assets(project_id=emulator.project_id, fields=["id"])

    assert [asset["id"] for asset in assets] == ["a1"]
    assert emulator.calls("assets") == 2
    assert time.monotonic() - start < 5  # one full-jitter back-off: up to 1 s


def test_a_429_on_a_mutation_is_resent_and_lands_once(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")
    emulator.retry_after = 0  # the SDK honours Retry-After instead of backing off
    emulator.inject("429", "appendManyLabels", times=3)

    kili.create_predictions(
        project_id=emulator.project_id, asset_id_array=["a1"], json_response_array=[answer("ED")], model_name=MODEL
    )

    assert emulator.calls("appendManyLabels") == 4
    assert len(emulator.labels) == 1


def test_a_dropped_query_is_retried(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")
    emulator.inject("drop", "countAssets")

    assert kili.count_assets(project_id=emulator.project_id) == 1
    assert emulator.calls("countAssets") == 2


def test_a_500_on_a_query_is_not_retried(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.inject("500", "countAssets")

    with pytest.raises(TransportServerError, match="500"):  # gql's error, not wrapped by the SDK
        kili.count_assets(project_id=emulator.project_id)

    assert emulator.calls("countAssets") == 1


def test_a_timed_out_query_is_retried_once(kili: Kili, emulator: KiliEmulator) -> None:
    emulator.add_asset("a1", "text")
    # Both delays shortened: the SDK's read timeout is 60 s, the emulator's default delay 65 s.
    kili.graphql_client._gql_transport.default_timeout = 0.5
    emulator.timeout_seconds = 2
    emulator.inject("timeout", "countAssets")

    assert kili.count_assets(project_id=emulator.project_id) == 1
    assert emulator.calls("countAssets") == 2


def test_a_failing_content_get_is_left_to_the_caller(kili: Kili, emulator: KiliEmulator) -> None:
    asset = emulator.add_asset("a1", "text")
    emulator.inject("502", "files")

    assert kili.http_client.get(asset["content"]).status_code == 502  # plain requests: no retry
    assert kili.http_client.get(asset["content"]).text == "text"


def test_timestamps_are_kili_shaped() -> None:
    moment = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-11-21T10:00:00.123Z"
    emulator = KiliEmulator()
    try:
        asset = emulator.add_asset("a1", "text", updated_at="2030-01-01T00:00:00.000Z")
        emulator.add_label("a1", "DEFAULT", answer("ED"), created_at="2030-01-02T00:00:00.000Z")
        assert asset["updatedAt"] > "2030-01-02T00:00:00.000Z"  # never back in time
    finally:
        emulator.stop()
