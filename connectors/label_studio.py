"""Label Studio (open source, self-hosted) over its REST API: schema from the labelling config, human truth from the
latest non-cancelled annotation, pre-annotations as predictions carrying the service's model version."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from automl.records import flatten
from automl.taxonomy import Taxonomy
from connectors.base import (
    Asset,
    LabelFlag,
    PreAnnotation,
    Priority,
    Pull,
    PushResult,
    SkipLog,
    TextCache,
    text_hash,
    with_rules_file,
)
from connectors.content import ContentPolicy, fetch_or_skip
from connectors.errors import PlatformUnavailable
from connectors.label_studio_client import LabelStudioClient, LabelStudioError
from connectors.label_studio_schema import LabelConfigError, LabelStudioSchema, parse_label_config, prediction
from connectors.retry import ATTEMPTS, send_until_landed
from connectors.settings import LabelStudioSettings, SecuritySettings

__all__ = ["ANNOTATION_FIELDS", "NOTE_KEY", "NOTE_ON_KEY", "TASK_FIELDS", "TASK_PAGE_SIZE", "LabelStudioConnector",
           "data_url"]

log = logging.getLogger(__name__)
# Where a task shows the likely mistakes in its label: the open-source server has no comments API, so they go into
# the task's data, which the Data Manager shows as a column labellers can filter on ("is not empty").
NOTE_KEY = "classie_label_issue"
# The annotation a note is about, "<id>@<updated_at>": once the task's label is another, the note is outdated.
NOTE_ON_KEY = "classie_label_issue_on"
NOTE_SEPARATOR = " | "
# What a pull reads: Label Studio's `include` (a sparse fieldset, applied to each task and to its annotations alike)
# names the fields used here. Without it each task comes with its predictions, drafts, counters and who updated it,
# which Label Studio 1.23.2 gathers with queries per task: ~5x the server time and twice the bytes (3,446 tasks,
# benchmarks/label_studio_cycle.py). `fields=all` is still needed for the annotations to be sent at all.
TASK_FIELDS = ("id", "data", "updated_at", "annotations")
ANNOTATION_FIELDS = ("id", "result", "was_cancelled", "created_at", "updated_at")
# Tasks per page of a pull: each request costs Label Studio a fixed share (the filter, the page's totals) on top of
# its tasks, so fewer, larger pages. A server that caps the size (TASK_API_PAGE_SIZE_MAX) is read to the end all
# the same (`LabelStudioClient.pages` follows the answer's total).
TASK_PAGE_SIZE = 1000



def data_url(server: str, value: str) -> str:
    """Where a task's text URL points, as the browser resolves it: relative ones against the server; Label Studio's
    own paths (`/data/upload/...`) under the path prefix the server is reached through (`http://host/ls` behind a
    proxy), which resolving alone would drop."""
    value, prefix = value.strip(), urlsplit(server).path.rstrip("/")
    if prefix and value.startswith("/") and not value.startswith("//") and not value.startswith(prefix + "/"):
        value = prefix + value
    return urljoin(server.rstrip("/") + "/", value)

class LabelStudioConnector:
    """One project (`settings.project_id`, set) of the server `client` talks to. `rules` is an optional taxonomy
    file whose keyword rules apply to the labelling config's choices at the same place (see `with_rules`). A text
    object with valueType="url" has its URL fetched (a relative one, like Label Studio's own uploads, from the server
    with the client's token), from the server's address or `security.allowed_content_hosts` only (see
    `connectors.content`)."""

    platform = "label-studio"

    def __init__(self, settings: LabelStudioSettings, client: LabelStudioClient, rules: Path | None = None,
                 security: SecuritySettings | None = None):
        self.settings, self.client = settings, client
        self.content = ContentPolicy.of(client.url, security or SecuritySettings())
        self.project = settings.project_id
        self.skipped = SkipLog()
        self.outdated_notes: set[str] = set()  # tasks whose label changed since its issue note: taken down next push
        project = client.call_object("GET", f"/api/projects/{self.project}", f"read project {self.project}")
        try:
            self.schema: LabelStudioSchema = parse_label_config(project.get("label_config") or "")
        except LabelConfigError as exc:
            raise LabelStudioError(f"project {self.project}: {exc}. Fix: add a <Taxonomy> or <Choices>"
                                   " control to the labelling interface.") from None
        self.taxonomy = with_rules_file(self.schema.taxonomy(), rules,
                                        f"the labelling config of project {self.project}")

    @property
    def destination(self) -> str:
        return f"label-studio:{self.client.url}:{self.project}"

    def pull_taxonomy(self) -> Taxonomy:
        return self.taxonomy

    # ---- pull ---------------------------------------------------------------------------------------------------
    def pull(self, cursor: str | None, texts: TextCache | None = None) -> Pull:
        """Tasks page by page; with a cursor, only those updated after it (a Data Manager filter)."""
        self.skipped = SkipLog()
        newest = [cursor or ""]

        def tasks() -> Iterator[Asset]:
            params: dict = {"project": self.project, "fields": "all",
                            "include": ",".join(dict.fromkeys(TASK_FIELDS + ANNOTATION_FIELDS))}
            if cursor:
                params["query"] = _updated_after(cursor)
            for task in self.client.pages("/api/tasks", f"list the tasks of project {self.project}",
                                          page_size=TASK_PAGE_SIZE, **params):
                newest[0] = max(newest[0], task.get("updated_at") or "")
                asset = self._asset(task, texts)
                if asset is not None:
                    yield asset
            self.skipped.report(f"label studio project {self.project}")

        return Pull(tasks(), complete=cursor is None, cursor=lambda: newest[0] or None)

    def _asset(self, task: dict, texts: TextCache | None = None) -> Asset | None:
        place = f"task {task.get('id')}"
        text, version = self._text(task, place, texts)
        if text is None:
            return None
        if not text.strip():
            self.skipped.skip("empty text", place)
            return None
        latest = _latest(task)
        if (task.get("data") or {}).get(NOTE_ON_KEY) not in (None, _note_on(latest)):
            self.outdated_notes.add(str(task["id"]))
        if latest is None:
            return Asset(str(task["id"]), text, None, version)
        if "result" not in latest:  # never read as "nothing applies": that would teach the model a wrong label
            raise LabelStudioError(f"{self.client.where} sent {place}'s annotation {latest.get('id')} without its"
                                   " result (the pull names the fields it reads with `include`). Fix: check that the"
                                   " server is a Label Studio release this one supports (1.23.2 is tested).")
        unknown: list[str] = []
        codes = self.schema.codes_of(latest.get("result") or [], unknown)
        for what in unknown:
            self.skipped.skip(f"an annotation holds {what}, not in the labelling config (ignored)", place)
        if unknown and not codes:  # not "nothing applies": what it says is lost, so it teaches nothing
            self.skipped.skip("every choice of its annotation is outside the labelling config (task left out)",
                              place)
            return None
        return Asset(str(task["id"]), text, frozenset(codes), version, label_ref=str(latest.get("id") or ""))

    def _text(self, task: dict, place: str, texts: TextCache | None) -> tuple[str | None, str]:
        """The task's text and its version: the field's value and its hash; for a valueType="url" object, the text
        at the URL (fetched once per URL, None after a counted skip) and the URL."""
        value = (task.get("data") or {}).get(self.schema.text_key)
        if not isinstance(value, str):
            self.skipped.skip(f"data.{self.schema.text_key} is missing or not text", place)
            return None, ""
        if not self.schema.text_is_url or not value.strip():
            return value, text_hash(value)
        url = data_url(self.client.url, value)
        cached = texts.cached_text(str(task.get("id")), url) if texts else None
        if cached is not None:
            return cached, url
        return fetch_or_skip(url, self.client.http, self.content, self.skipped, place, self.client.where), url

    # ---- push ---------------------------------------------------------------------------------------------------
    def push(self, items: Sequence[PreAnnotation], model_version: str) -> PushResult:
        result = PushResult()
        for start in range(0, len(items), self.settings.push_batch):
            batch = items[start:start + self.settings.push_batch]
            predictions = [{"task": int(item.asset_id), **prediction(
                flatten(item.proposals), model_version, self.schema, item.priority or 0.0)} for item in batch]
            self._validate(predictions)
            if self.settings.earlier_versions == "remove":
                self._remove_other_versions({p["task"] for p in predictions}, model_version)
            self._import(predictions, model_version)
            result.written += len(predictions)
        if items:
            self.client.call("PATCH", f"/api/projects/{self.project}", "set the project's model version",
                             json={"model_version": model_version})
        return result

    def _import(self, predictions: list[dict], model_version: str) -> None:
        """One batch, never sent blindly again: an attempt without an answer (a dropped connection, a 502 from a
        proxy) may have landed (see `send_until_landed`)."""
        def send(batch: list[dict]) -> None:
            answer = self.client.call_object("POST", f"/api/projects/{self.project}/import/predictions",
                                             "import predictions", retry=False, json=batch)
            created = answer.get("created")
            if created != len(batch):
                # Label Studio drops predictions it finds invalid and still answers 201: say so, loudly.
                raise LabelStudioError(f"Label Studio created {created} of {len(batch)} predictions; the"
                                       " labelling config may have changed. Fix: check the project's config.")

        send_until_landed(predictions, send,
                          lambda batch: self._tasks_with_version({p["task"] for p in batch}, model_version),
                          lambda p: p["task"], PlatformUnavailable, f"import of predictions ({model_version})",
                          attempts=ATTEMPTS, pause=0.5)

    def _predictions(self) -> list[dict]:
        return self.client.call_list("GET", "/api/predictions", "list the predictions",
                                     params={"project": self.project})

    def _tasks_with_version(self, task_ids: set[int], model_version: str) -> set[int]:
        return {item["task"] for item in self._predictions() if item.get("task") in task_ids
                and item.get("model_version") == model_version}

    def push_label_issues(self, flags: Sequence[LabelFlag], model_version: str) -> list[LabelFlag]:
        """Each flagged task's note (`NOTE_KEY` in its data, a Data Manager column) gains the flags' messages; the
        notes of tasks whose label changed since are taken down first."""
        for task_id in sorted(self.outdated_notes):
            self._rewrite_note(task_id, [])
        self.outdated_notes.clear()
        by_task: dict[str, list[LabelFlag]] = {}
        for flag in flags:
            by_task.setdefault(flag.asset_id, []).append(flag)
        shown: list[LabelFlag] = []
        for task_id, group in by_task.items():
            if self._rewrite_note(task_id, group):
                shown += group
            else:
                log.info("label studio task %s: labelled again since the training; its %d label issue(s) not"
                         " shown", task_id, len(group))
        return shown

    def _rewrite_note(self, task_id: str, flags: Sequence[LabelFlag]) -> bool:
        """The task's note with the messages of `flags` (all about one label) added, or, when there are none or
        about a label no longer there, with a note about an earlier label taken down. Read, merged and written
        whole (a PATCH replaces `data`), so sending it again after a lost answer changes nothing. True if the
        flags' label is still the task's."""
        task = self.client.call_object("GET", f"/api/tasks/{task_id}", f"read task {task_id}")
        data = dict(task.get("data") or {})
        latest = _latest(task)
        on = _note_on(latest)
        wanted = {k: v for k, v in data.items() if k not in (NOTE_KEY, NOTE_ON_KEY)}
        current = bool(flags) and latest is not None and str(latest.get("id")) == flags[0].label_ref
        if current:
            notes = str(data.get(NOTE_KEY) or "").split(NOTE_SEPARATOR) if data.get(NOTE_ON_KEY) == on else []
            notes += [f.message for f in flags if f.message not in notes]
            wanted |= {NOTE_KEY: NOTE_SEPARATOR.join(n for n in notes if n), NOTE_ON_KEY: on}
        elif data.get(NOTE_ON_KEY) == on:
            wanted = data  # a note about the label there is now stays
        if wanted != data:
            self.client.call("PATCH", f"/api/tasks/{task_id}", f"write the label issue note of task {task_id}",
                             json={"data": wanted})
        return current

    def push_priorities(self, ranking: Sequence[Priority], fresh: Collection[str]) -> int:
        """Nothing more to send: each prediction carries its task's priority as its score."""
        return 0

    def _validate(self, predictions: list[dict]) -> None:
        """Label Studio stores predictions without checking them against the config: check here."""
        for item in predictions:
            unknown: list[str] = []
            self.schema.codes_of(item["result"], unknown)
            if unknown:
                raise LabelStudioError(f"prediction for task {item['task']} names {unknown}, not in the"
                                       " labelling config")

    def _remove_other_versions(self, task_ids: set[int], model_version: str) -> None:
        for item in self._predictions():
            if item.get("task") in task_ids and item.get("model_version") != model_version:
                gone = self.client.send("DELETE", f"/api/predictions/{item['id']}")
                if gone.status_code >= 400 and gone.status_code != 404:  # 404: a retry after a deletion that landed
                    raise LabelStudioError(f"{self.client.where} could not delete prediction {item['id']}"
                                           f" ({gone.status_code}: {self.client.detail(gone)})")


def _latest(task: dict) -> dict | None:
    """The annotation that is the task's label: the newest one not cancelled."""
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not kept:
        return None
    return max(kept, key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id") or 0))


def _note_on(annotation: dict | None) -> str:
    if annotation is None:
        return ""
    return f"{annotation.get('id')}@{annotation.get('updated_at') or annotation.get('created_at')}"


def _updated_after(cursor: str) -> str:
    return json.dumps({"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:updated_at", "operator": "greater_or_equal", "type": "Datetime", "value": cursor}]}})
