"""Label Studio (open source, self-hosted) over its REST API: schema from the labelling config, human truth from the
latest non-cancelled annotation, pre-annotations as predictions carrying the service's model version."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import requests

from automl.taxonomy import Taxonomy
from connectors.base import Asset, PreAnnotation, Pull, PushReport, SkipLog, TextCache, text_hash
from connectors.label_studio_schema import LabelConfigError, LabelStudioSchema, parse_label_config
from connectors.retry import transient_retry

log = logging.getLogger(__name__)


def send(http: requests.Session, method: str, url: str, retry: bool = True, **kwargs) -> requests.Response:
    """One call; 429 and 5xx raise, so that `transient_retry` tries again (connection errors and timeouts too)."""
    def once() -> requests.Response:
        response = http.request(method, url, timeout=60, **kwargs)
        if response.status_code == 429 or response.status_code >= 500:
            response.raise_for_status()
        return response

    return (transient_retry(once) if retry else once)()


class LabelStudioError(RuntimeError):
    """Retrying cannot fix it (no token, a refused token, an unknown project, an unusable config)."""


@dataclass(frozen=True)
class LabelStudioSettings:
    project_id: int
    url: str | None = None  # default: LABEL_STUDIO_URL
    token: str | None = None  # default: LABEL_STUDIO_API_KEY
    earlier_versions: Literal["keep", "remove"] = "keep"  # what happens to predictions of earlier versions
    page_size: int = 100
    push_batch: int = 500

    def __repr__(self) -> str:  # the token must never reach a log line
        return f"LabelStudioSettings(project_id={self.project_id}, url={self.url!r})"


class LabelStudioConnector:
    platform = "label-studio"

    def __init__(self, settings: LabelStudioSettings):
        self.settings = settings
        self.skipped = SkipLog()
        self.url = (settings.url or os.environ.get("LABEL_STUDIO_URL") or "").rstrip("/")
        token = settings.token or os.environ.get("LABEL_STUDIO_API_KEY")
        if not self.url:
            raise LabelStudioError("no Label Studio URL. Fix: pass --url or set LABEL_STUDIO_URL.")
        if not token:
            raise LabelStudioError("no Label Studio token. Fix: set LABEL_STUDIO_API_KEY (Account & Settings).")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"
        project = self._get(f"/api/projects/{settings.project_id}", what="the project")
        try:
            self.schema: LabelStudioSchema = parse_label_config(project.get("label_config") or "")
        except LabelConfigError as exc:
            raise LabelStudioError(f"project {settings.project_id}: {exc}. Fix: add a <Taxonomy> or <Choices>"
                                   " control to the labelling interface.") from None
        self.text_key = sorted(self.schema.text_keys)[0]

    # ---- HTTP ---------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        return send(self.http, method, self.url + path, **kwargs)

    def _get(self, path: str, what: str, **params) -> dict | list:
        response = self._request("GET", path, params=params or None)
        if response.status_code in (401, 403):
            raise LabelStudioError(f"Label Studio at {self.url} refused the token ({response.status_code}). Fix:"
                                   " check LABEL_STUDIO_API_KEY (and that legacy tokens are enabled).")
        if response.status_code == 404:
            raise LabelStudioError(f"{what} was not found at {self.url} (404). Fix: check --project-id and --url.")
        response.raise_for_status()
        return response.json()

    def pull_taxonomy(self) -> Taxonomy:
        return self.schema.taxonomy()

    # ---- pull ---------------------------------------------------------------------------------------------------
    def pull(self, cursor: str | None, texts: TextCache | None = None) -> Pull:
        """Tasks page by page; with a cursor, only those updated after it (a Data Manager filter)."""
        self.skipped = SkipLog()
        newest = [cursor or ""]

        def tasks() -> Iterator[Asset]:
            page = 1
            params: dict = {"project": self.settings.project_id, "fields": "all",
                            "page_size": self.settings.page_size}
            if cursor:
                params["query"] = _updated_after(cursor)
            while True:
                response = self._request("GET", "/api/tasks", params={**params, "page": page})
                if response.status_code == 404:  # past the last page
                    break
                response.raise_for_status()
                body = response.json()
                batch = body.get("tasks", body) if isinstance(body, dict) else body
                if not batch:
                    break
                for task in batch:
                    newest[0] = max(newest[0], task.get("updated_at") or "")
                    asset = self._asset(task)
                    if asset is not None:
                        yield asset
                if len(batch) < self.settings.page_size:
                    break
                page += 1
            self.skipped.report(f"label studio project {self.settings.project_id}")

        return Pull(tasks(), complete=cursor is None, cursor=lambda: newest[0] or None)

    def _asset(self, task: dict) -> Asset | None:
        place = f"task {task.get('id')}"
        text = (task.get("data") or {}).get(self.text_key)
        if not isinstance(text, str):
            self.skipped.skip(f"data.{self.text_key} is missing or not text", place)
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
            predictions = []
            for item in batch:
                flat = [p for ps in item.proposals.values() for p in ps]
                predictions.append({"task": int(item.asset_id), "model_version": model_version,
                                    "score": max((p.confidence for p in flat), default=0.0),
                                    "result": self.schema.result(flat)})
            self._validate(predictions)
            if self.settings.earlier_versions == "remove":
                self._remove_other_versions({p["task"] for p in predictions}, model_version)
            response = self._request("POST", f"/api/projects/{self.settings.project_id}/import/predictions",
                                     json=predictions)
            response.raise_for_status()
            created = (response.json() or {}).get("created")
            if created != len(predictions):
                # Label Studio drops predictions it finds invalid and still answers 201: say so, loudly.
                raise LabelStudioError(f"Label Studio created {created} of {len(predictions)} predictions; the"
                                       " labelling config may have changed. Fix: check the project's config.")
            report.written += len(predictions)
        if items:
            self._request("PATCH", f"/api/projects/{self.settings.project_id}",
                          json={"model_version": model_version}).raise_for_status()
        return report

    def _validate(self, predictions: list[dict]) -> None:
        """Label Studio stores predictions without checking them against the config: check here."""
        for prediction in predictions:
            unknown: list[str] = []
            self.schema.codes_of(prediction["result"], unknown)
            if unknown:
                raise LabelStudioError(f"prediction for task {prediction['task']} names {unknown}, not in the"
                                       " labelling config")

    def _remove_other_versions(self, task_ids: set[int], model_version: str) -> None:
        listed = self._get("/api/predictions", what="the predictions", project=self.settings.project_id)
        for prediction in listed:
            if prediction.get("task") in task_ids and prediction.get("model_version") != model_version:
                self._request("DELETE", f"/api/predictions/{prediction['id']}").raise_for_status()


def _updated_after(cursor: str) -> str:
    return json.dumps({"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:updated_at", "operator": "greater_or_equal", "type": "Datetime", "value": cursor}]}})
