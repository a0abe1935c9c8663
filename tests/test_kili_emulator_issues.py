"""Kili issues through the real kili SDK (26.x), start-up checks on, against the local emulator.

What the SDK sends, read in its source and checked here on the wire:
- `create_issues(project_id, label_id_array, object_mid_array=None, text_array=None)`: no look-up first, one
  `createIssues(issues: [IssueToCreate!]!, where: AssetWhere!)` per batch (up to 100) with
  `issues=[{labelID, objectMid, type: "ISSUE", assetId: null, text}]`, `where={project: {id}}`; returns
  `[{"id": issue_id}]`. The text becomes the issue's first comment (`comments.text`).
- `issues(project_id, fields, first, skip, disable_tqdm, asset_id, asset_id_in, issue_type, status, as_generator)`
  and `count_issues(project_id, asset_id, asset_id_in, issue_type, status)`: `countIssues(where: IssueWhere!)`, then
  (for `issues`, when the count is not 0) `issues(where, skip, first)`, with
  `where={project: {id}, asset: {id}, assetIn, status, type}`. There is no label filter. The SDK's GraphQL client
  drops null values from `where` (and its `project`/`asset`/`label`/`issue` parts) before sending, so without an
  asset id `asset` arrives as `{}`; nulls inside `issues` items are sent as they are.
"""

# The fixtures imported from test_kili_emulator are parameters here: not redefinitions.
# ruff: noqa: F811
from __future__ import annotations

import pytest
from kili.client import Kili
from kili.exceptions import GraphQLError

from kili_emulator import KiliEmulator
from test_kili_emulator import answer, emulator, home, kili, operations  # noqa: F401 - fixtures reused

ISSUE_FIELDS = ["id", "type", "status", "assetId", "labelId", "objectMid", "createdAt", "comments.text"]
TEXT = "This label looks wrong: the model suggests HE"


def labelled(emulator: KiliEmulator, *asset_ids: str) -> list[str]:
    """Assets with one human (DEFAULT) label each; returns the label ids."""
    ids = []
    for asset_id in asset_ids:
        emulator.add_asset(asset_id, f"text {asset_id}")
        ids.append(emulator.add_label(asset_id, "DEFAULT", answer("ED"))["id"])
    return ids


def test_create_issues_sends_one_mutation_and_returns_the_ids(kili: Kili, emulator: KiliEmulator) -> None:
    [first, second] = labelled(emulator, "a1", "a2")

    result = kili.create_issues(
        project_id=emulator.project_id, label_id_array=[first, second], text_array=[TEXT, None]
    )

    assert result == [{"id": "issue-1"}, {"id": "issue-2"}]
    assert operations(emulator) == ["createIssues"]  # no look-up of the labels' assets
    assert emulator.requests[0]["variables"] == {
        "issues": [
            {"labelID": first, "objectMid": None, "type": "ISSUE", "assetId": None, "text": TEXT},
            {"labelID": second, "objectMid": None, "type": "ISSUE", "assetId": None, "text": None},
        ],
        "where": {"project": {"id": emulator.project_id}},
    }
    assert [(i["type"], i["status"], i["content"], i["labelId"], i["assetId"]) for i in emulator.issues] == [
        ("ISSUE", "OPEN", TEXT, first, "a1"),
        ("ISSUE", "OPEN", None, second, "a2"),
    ]
    assert emulator.writes() == ["createIssues"]


def test_issues_come_back_with_their_text_as_the_first_comment(kili: Kili, emulator: KiliEmulator) -> None:
    [label_id] = labelled(emulator, "a1")
    [created] = kili.create_issues(project_id=emulator.project_id, label_id_array=[label_id], text_array=[TEXT])
    emulator.requests.clear()

    issues = kili.issues(project_id=emulator.project_id, fields=ISSUE_FIELDS, asset_id="a1")

    assert issues == [
        {
            "id": created["id"],
            "type": "ISSUE",
            "status": "OPEN",
            "assetId": "a1",
            "labelId": label_id,
            "objectMid": None,
            "createdAt": emulator.issues[0]["createdAt"],
            "comments": [{"text": TEXT}],
        }
    ]
    assert issues[0]["createdAt"].endswith("Z")
    assert operations(emulator) == ["countIssues", "issues"]
    where = {"project": {"id": emulator.project_id}, "asset": {"id": "a1"}}  # the SDK drops the null filters
    assert [request["variables"] for request in emulator.requests] == [
        {"where": where},
        {"where": where, "skip": 0, "first": 1},
    ]
    # the SDK's default fields
    assert kili.issues(project_id=emulator.project_id) == [
        {"id": created["id"], "createdAt": issues[0]["createdAt"], "status": "OPEN", "type": "ISSUE", "assetId": "a1"}
    ]


def test_listing_and_counting_filter_by_asset_status_and_type(kili: Kili, emulator: KiliEmulator) -> None:
    [l1, l2, _] = labelled(emulator, "a1", "a2", "a3")
    kili.create_issues(project_id=emulator.project_id, label_id_array=[l1, l2, l1], text_array=["x", "y", "z"])
    emulator.add_issue(l2, "already fixed", status="SOLVED")

    def listed(**filters: object) -> list[str]:
        return [issue["comments"][0]["text"] for issue in
                kili.issues(project_id=emulator.project_id, fields=["comments.text"], **filters)]

    assert listed() == ["x", "y", "z", "already fixed"]  # creation order
    assert listed(asset_id="a1") == ["x", "z"]
    assert listed(asset_id_in=["a2", "a3"]) == ["y", "already fixed"]
    assert listed(status="OPEN") == ["x", "y", "z"]
    assert listed(asset_id="a2", status="SOLVED", issue_type="ISSUE") == ["already fixed"]
    assert listed(issue_type="QUESTION") == [] and listed(asset_id="a3") == []
    assert listed(first=2, skip=1) == ["y", "z"]
    project = emulator.project_id
    assert kili.count_issues(project_id=project) == 4
    assert kili.count_issues(project_id=project, asset_id="a1") == 2
    assert kili.count_issues(project_id=project, asset_id_in=["a1", "a2"], status="OPEN") == 3
    assert kili.count_issues(project_id=project, status="CANCELLED") == 0
    assert kili.count_issues(project_id=project, issue_type="ISSUE", status="SOLVED") == 1
    assert kili.count_issues(project_id="other-project") == 0
    emulator.requests.clear()
    assert kili.issues(project_id=project, status="CANCELLED") == []
    assert operations(emulator) == ["countIssues"]  # a count of 0 sends no page
    assert emulator.requests[0]["variables"] == {
        "where": {"project": {"id": project}, "asset": {}, "status": "CANCELLED"}
    }


def test_an_unknown_label_is_refused_whole(kili: Kili, emulator: KiliEmulator) -> None:
    [label_id] = labelled(emulator, "a1")

    with pytest.raises(GraphQLError, match="not found") as caught:
        kili.create_issues(
            project_id=emulator.project_id, label_id_array=[label_id, "label-missing"], text_array=[TEXT, TEXT]
        )

    assert caught.value.error[0]["extensions"]["context"] == {"reason": "LabelNotFound", "labelIds": ["label-missing"]}
    assert emulator.issues == []  # nothing written, not even the valid one
    assert kili.count_issues(project_id=emulator.project_id) == 0


def test_a_label_of_another_project_is_refused(kili: Kili, emulator: KiliEmulator) -> None:
    [label_id] = labelled(emulator, "a1")

    with pytest.raises(GraphQLError, match="Project other-project not found"):
        kili.create_issues(project_id="other-project", label_id_array=[label_id], text_array=[TEXT])

    assert emulator.issues == []


def test_assets_return_label_ids_and_filter_by_issue(kili: Kili, emulator: KiliEmulator) -> None:
    [l1, _] = labelled(emulator, "a1", "a2")
    kili.create_issues(project_id=emulator.project_id, label_id_array=[l1], text_array=[TEXT])

    assets = kili.assets(project_id=emulator.project_id, fields=["id", "labels.id", "issues.comments.text"])

    assert [(asset["id"], [label["id"] for label in asset["labels"]]) for asset in assets] == [
        ("a1", [l1]),
        ("a2", [emulator.labels[1]["id"]]),
    ]
    assert [asset["issues"] for asset in assets] == [[{"comments": [{"text": TEXT}]}], []]

    def with_issues(**filters: str) -> list[str]:
        return [asset["id"] for asset in kili.assets(project_id=emulator.project_id, fields=["id"], **filters)]

    assert with_issues(issue_type="ISSUE", issue_status="OPEN") == ["a1"]
    assert with_issues(issue_status="SOLVED") == []
    assert kili.count_assets(project_id=emulator.project_id, issue_type="ISSUE") == 1
