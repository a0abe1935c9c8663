"""Label Studio (open source, self-hosted) over its REST API: schema from the labelling config, human truth from the
latest non-cancelled annotation, pre-annotations as predictions carrying the service's model version."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from automl.records import flatten
from automl.taxonomy import Taxonomy
from connectors.base import Asset, PreAnnotation, Priority, Pull, PushReport, SkipLog, TextCache, text_hash
from connectors.base import with_rules_file
from connectors.label_studio_client import LabelStudioClient, LabelStudioError
from connectors.label_studio_schema import LabelConfigError, LabelStudioSchema, parse_label_config, prediction
from connectors.settings import LabelStudioSettings


class LabelStudioConnector:
    """One project (`settings.project_id`, set) of the server `client` talks to. `rules` is an optional taxonomy
    file whose keyword rules apply to the labelling config's choices at the same place (see `with_rules`)."""

    platform = "label-studio"

    def __init__(self, settings: LabelStudioSettings, client: LabelStudioClient, rules: Path | None = None):
        self.settings, self.client = settings, client
        self.project = settings.project_id
        self.skipped = SkipLog()
        project = client.call("GET", f"/api/projects/{self.project}", f"read project {self.project}")
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
            params: dict = {"project": self.project, "fields": "all"}
            if cursor:
                params["query"] = _updated_after(cursor)
            for task in self.client.pages("/api/tasks", f"list the tasks of project {self.project}", **params):
                newest[0] = max(newest[0], task.get("updated_at") or "")
                asset = self._asset(task)
                if asset is not None:
                    yield asset
            self.skipped.report(f"label studio project {self.project}")

        return Pull(tasks(), complete=cursor is None, cursor=lambda: newest[0] or None)

    def _asset(self, task: dict) -> Asset | None:
        place = f"task {task.get('id')}"
        text = (task.get("data") or {}).get(self.schema.text_key)
        if not isinstance(text, str):
            self.skipped.skip(f"data.{self.schema.text_key} is missing or not text", place)
            return None
        if not text.strip():
            self.skipped.skip("empty text", place)
            return None
        kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not kept:
            return Asset(str(task["id"]), text, None, text_hash(text))
        latest = max(kept, key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id") or 0))
        unknown: list[str] = []
        codes = self.schema.codes_of(latest.get("result") or [], unknown)
        for what in unknown:
            self.skipped.skip(f"an annotation holds {what}, not in the labelling config (ignored)", place)
        return Asset(str(task["id"]), text, frozenset(codes), text_hash(text))

    # ---- push ---------------------------------------------------------------------------------------------------
    def push(self, items: Sequence[PreAnnotation], model_version: str) -> PushReport:
        report = PushReport()
        for start in range(0, len(items), self.settings.push_batch):
            batch = items[start:start + self.settings.push_batch]
            predictions = [{"task": int(item.asset_id), **prediction(
                flatten(item.proposals), model_version, self.schema, item.priority or 0.0)} for item in batch]
            self._validate(predictions)
            if self.settings.earlier_versions == "remove":
                self._remove_other_versions({p["task"] for p in predictions}, model_version)
            answer = self.client.call("POST", f"/api/projects/{self.project}/import/predictions",
                                      "import predictions", json=predictions)
            created = (answer or {}).get("created")
            if created != len(predictions):
                # Label Studio drops predictions it finds invalid and still answers 201: say so, loudly.
                raise LabelStudioError(f"Label Studio created {created} of {len(predictions)} predictions; the"
                                       " labelling config may have changed. Fix: check the project's config.")
            report.written += len(predictions)
        if items:
            self.client.call("PATCH", f"/api/projects/{self.project}", "set the project's model version",
                             json={"model_version": model_version})
        return report

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
        listed = self.client.call("GET", "/api/predictions", "list the predictions", params={"project": self.project})
        for item in listed:
            if item.get("task") in task_ids and item.get("model_version") != model_version:
                self.client.call("DELETE", f"/api/predictions/{item['id']}", "delete an earlier prediction")


def _updated_after(cursor: str) -> str:
    return json.dumps({"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:updated_at", "operator": "greater_or_equal", "type": "Datetime", "value": cursor}]}})
