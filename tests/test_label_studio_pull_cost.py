"""What a pull costs Label Studio: each task answered with the fields the connector reads and nothing more, in pages of
`TASK_PAGE_SIZE`, and the same assets as from whole tasks. Label Studio 1.23.2 gathers a task's predictions, drafts and
who updated it with queries per task: reading 3,446 tasks with them took 41 s (median of 3) in 35 pages of 100, 8 s
without them in 4, and the cycle after an import reads them all again (the cursor's overlap). Counted, not timed."""

from __future__ import annotations

from datetime import datetime
from math import ceil
from urllib.parse import parse_qs, urlsplit

import pytest

from automl.records import Proposal
from conftest import JsonHandler, example_rows, serving
from connectors.base import PreAnnotation
from connectors.label_studio import ANNOTATION_FIELDS, NOTE_ON_KEY, TASK_FIELDS, TASK_PAGE_SIZE, LabelStudioConnector
from connectors.label_studio_client import LabelStudioClient, LabelStudioError
from connectors.settings import LabelStudioSettings
from label_studio_server import label_studio  # noqa: F401 - the session fixture
from service.cycle.worker import overlapped
from test_label_studio_connector import annotation, labelled_rows, taxonomy_config

LABELLED, UNLABELLED = 130, 90  # more than the 100 a page held before: the old pull took 3 requests


def _connector(server, project: int) -> tuple[LabelStudioConnector, list[dict]]:
    """A connector on a project of `server`, and a record of each task list it is answered (its query, its tasks)."""
    connector = LabelStudioConnector(LabelStudioSettings(project_id=project),
                                     LabelStudioClient(server.url, server.token))
    answers: list[dict] = []

    def seen(response, *_args, **_kwargs):
        if urlsplit(response.url).path.rstrip("/") == "/api/tasks" and response.status_code == 200:
            answers.append({"query": parse_qs(urlsplit(response.url).query), "tasks": response.json()["tasks"]})

    connector.client.http.hooks["response"].append(seen)
    return connector, answers


def _assets(connector: LabelStudioConnector, tasks: list[dict]) -> list:
    return [a for a in (connector._asset(t) for t in tasks) if a is not None]


def test_a_pull_reads_the_fields_it_uses_in_few_pages_and_a_quiet_one_reads_one_task(label_studio):  # noqa: F811
    client = label_studio.client
    project = client.create_project("pull-cost", taxonomy_config())["id"]
    rows = labelled_rows(LABELLED)
    ids = client.import_tasks(project, [{"data": {"text": text}, "annotations": [{"result": annotation(codes)}]}
                                        for text, codes in rows])
    unlabelled = client.import_tasks(project, [{"data": {"text": text}}
                                               for _, text, _ in example_rows("test.csv", UNLABELLED)])
    # What the connector must still tell apart: a newer annotation over an older one, a cancelled one that is not the
    # label, a note about a label that has changed since.
    client.create_annotation(ids[0], annotation({"ED101"}))
    client.create_annotation(ids[1], annotation({"AN"}), was_cancelled=True)
    client.request("PATCH", f"/api/tasks/{ids[2]}", json={"data": {"text": rows[2][0], NOTE_ON_KEY: "1@then"}})
    connector, answers = _connector(label_studio, project)
    connector.push([PreAnnotation(str(t), "h", {"subject": [Proposal("subject:AN", 0.9, "model")]})
                    for t in unlabelled], "v1")  # predictions a task list would otherwise carry

    pulled = connector.pull(None)
    assets = list(pulled.assets)
    assert len(answers) == ceil((LABELLED + UNLABELLED) / TASK_PAGE_SIZE) == 1
    tasks = answers[0]["tasks"]
    assert answers[0]["query"].get("include") == [",".join(dict.fromkeys(TASK_FIELDS + ANNOTATION_FIELDS))]
    assert {key for t in tasks for key in t} <= {*TASK_FIELDS, "created_at"}  # no predictions, drafts, counters
    assert {key for t in tasks for a in t["annotations"] for key in a} == set(ANNOTATION_FIELDS)

    # The same assets, labels and notes to take down as from the whole tasks Label Studio sends without `include`.
    whole = client.tasks(project)
    assert all(t["predictions"] for t in whole if t["id"] in unlabelled)
    reference, _ = _connector(label_studio, project)
    assert assets == _assets(reference, whole)
    assert connector.outdated_notes == reference.outdated_notes == {str(ids[2])}
    assert sum(a.labels is not None for a in assets) == LABELLED
    refs = {a.id: a.label_ref for a in assets}
    annotations = {t["id"]: sorted(a["id"] for a in t["annotations"]) for t in whole}
    assert refs[str(ids[0])] == str(annotations[ids[0]][1])  # the newer of two
    assert refs[str(ids[1])] == str(annotations[ids[1]][0])  # the cancelled one is not the label

    # Nothing changed: a pull from the cursor reads the newest task again (updated_at >= cursor), in one request.
    cursor = pulled.cursor()
    assert cursor is not None
    assert cursor == max(t["updated_at"] for t in whole)
    answers.clear()
    assert len(list(connector.pull(cursor).assets)) <= 1 and len(answers) == 1
    # The worker's re-read of the cursor's overlap: every task stamped in the 10 s before it, in one request.
    start = overlapped(cursor, 10)
    answers.clear()
    reread = list(connector.pull(start).assets)
    stamped = sum(datetime.fromisoformat(t["updated_at"]) >= datetime.fromisoformat(start) for t in whole)
    assert len(reread) == stamped > 1 and len(answers) == 1


class _CappedTasks(JsonHandler):
    """A project of 230 tasks behind a server that caps a page at 40 (Label Studio's TASK_API_PAGE_SIZE_MAX), whose
    last annotation comes without its result."""

    calls: list[dict] = []
    CONFIG = ('<View><Text name="text" value="$text"/>'
              '<Choices name="c" toName="text"><Choice value="A"/></Choices></View>')

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/projects/1":
            return self.reply(200, {"id": 1, "label_config": self.CONFIG})
        self.calls.append(query)
        page, size = int(query["page"]), min(int(query["page_size"]), 40)
        ids = list(range((page - 1) * size, min(230, page * size)))
        if not ids:
            return self.reply(404, {"detail": "Invalid page."})
        tasks = [{"id": i, "data": {"text": f"task {i}"}, "updated_at": "2026-12-08T00:00:00Z", "annotations": []}
                 for i in ids]
        if ids[-1] == 229:
            tasks[-1]["annotations"] = [{"id": 7, "was_cancelled": False, "updated_at": "2026-12-08T00:00:00Z"}]
        return self.reply(200, {"total": 230, "total_annotations": 1, "total_predictions": 0, "tasks": tasks})


@pytest.fixture
def capped():
    _CappedTasks.calls = []
    with serving(_CappedTasks) as url:
        yield url


def test_a_server_that_caps_the_page_size_is_read_to_the_end_and_a_missing_result_stops_the_pull(capped):
    client = LabelStudioClient(capped, "0123456789abcdef0123456789abcdef01234567")
    read = [t["id"] for t in client.pages("/api/tasks", "list tasks", page_size=TASK_PAGE_SIZE, project=1)]
    assert read == list(range(230))  # a page shorter than asked is not the last while the total says more are left
    assert len(_CappedTasks.calls) == ceil(230 / 40)  # and none past the end

    connector = LabelStudioConnector(LabelStudioSettings(project_id=1), client)
    with pytest.raises(LabelStudioError, match=r"task 229's annotation 7 without its result .* Fix: check that the"):
        list(connector.pull(None).assets)  # never learned as "nothing applies"
