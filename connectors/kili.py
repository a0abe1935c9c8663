"""The Kili platform through the official `kili` SDK: schema from the project's json interface, human labels and texts
pulled incrementally, pre-annotations pushed as PREDICTION labels named `<prefix>-v<N>`."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from gql.transport.exceptions import TransportServerError
from kili.client import Kili
from kili.exceptions import AuthenticationFailed, GraphQLError, MutationOutcomeUnknownError, NotFound
from pydantic import SecretStr

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
from connectors.errors import PlatformError
from connectors.kili_schema import InterfaceError, KiliSchema, parse_interface
from connectors.retry import is_transient_http, send_until_landed, transient_status, unavailable, with_retries
from connectors.settings import KiliSettings, SecuritySettings

__all__ = ["KiliConnector", "KiliError"]

log = logging.getLogger(__name__)

ASSET_FIELDS = ["id", "externalId", "content", "updatedAt", "labels.id", "labels.labelType", "labels.createdAt",
                "labels.jsonResponse"]
HUMAN_TYPES = ("DEFAULT", "REVIEW")


class KiliError(PlatformError):
    """Retrying cannot fix it (no key, a refused key, an unknown project, an unusable interface)."""


def is_transient(exc: BaseException) -> bool:
    """What the SDK lets through that waiting can fix. Not a mutation whose outcome is unknown: it may have landed,
    so the caller reads back instead of resending blindly."""
    if isinstance(exc, MutationOutcomeUnknownError):
        return False
    if isinstance(exc, TransportServerError) and isinstance(exc.code, int):  # a 500 the SDK does not retry
        return transient_status(exc.code)
    return is_transient_http(exc)


def model_name(prefix: str, version: str) -> str:
    return f"{prefix}-{version}"


class KiliConnector:
    """One Kili project (`settings.project_id`, set), through the SDK with `api_key`. `rules` is an optional
    taxonomy file whose keyword rules apply to the interface's categories at the same place (see `with_rules`).
    Content URLs are fetched from the API endpoint's address or `security.allowed_content_hosts` only (see
    `connectors.content`)."""

    platform = "kili"

    def __init__(self, settings: KiliSettings, api_key: SecretStr | None, rules: Path | None = None,
                 security: SecuritySettings | None = None):
        self.settings, self.rules_file = settings, rules
        self.skipped = SkipLog()
        if not api_key or not api_key.get_secret_value():
            raise KiliError("no Kili API key. Fix: set KILI_API_KEY, or KILI_API_KEY_FILE to a file holding it (an"
                            " API key from Kili's My account > API Key page).")
        self.where = f"Kili at {settings.endpoint or 'the default endpoint'}"
        try:
            self.kili = self._retrying(Kili)(api_key=api_key.get_secret_value(), api_endpoint=settings.endpoint)
        except AuthenticationFailed as exc:
            raise KiliError(f"{self.where} refused the API key ({exc}). Fix: check KILI_API_KEY and"
                            " KILI_API_ENDPOINT.") from None
        self.content = ContentPolicy.of(self.kili.api_endpoint, security or SecuritySettings())
        self.schema = self._load_schema()

    @property
    def destination(self) -> str:
        return f"kili:{self.settings.endpoint or 'default endpoint'}:{self.settings.project_id}"

    def __repr__(self) -> str:
        return f"KiliConnector(project_id={self.settings.project_id!r}, endpoint={self.settings.endpoint!r})"

    def _retrying(self, fn):
        return with_retries(fn, self.where, is_transient)

    @contextlib.contextmanager
    def _final_errors(self, doing: str) -> Iterator[None]:
        """Kili's answers that retrying cannot fix (project gone, interface changed under us) become a KiliError;
        transient errors the SDK let through after its own retries, a PlatformUnavailable."""
        try:
            yield
        except (GraphQLError, NotFound) as exc:
            raise KiliError(f"Kili refused {doing}: {exc}. Fix: check the project and its interface.") from None
        except Exception as exc:
            # A write still unknown after reading back is pushed again next cycle (overwrite: no duplicate).
            if is_transient(exc) or isinstance(exc, MutationOutcomeUnknownError):
                raise unavailable(self.where, exc) from exc
            raise

    def _load_schema(self) -> KiliSchema:
        pid = self.settings.project_id
        projects = self._retrying(self.kili.projects)(project_id=pid, fields=["id", "title", "jsonInterface"],
                                                      disable_tqdm=True)
        if not projects:
            raise KiliError(f"no Kili project {pid!r} for this API key. Fix: check --project-id (or"
                            " CLASSIE_KILI__PROJECT_ID): the part after /label/projects/ in the project's address.")
        interface = projects[0]["jsonInterface"]
        if isinstance(interface, str):
            interface = json.loads(interface)
        try:
            schema = parse_interface(interface)
        except InterfaceError as exc:
            raise KiliError(f"project {pid!r}: {exc}. Fix: add a CLASSIFICATION job to the interface.") from None
        self.taxonomy = with_rules_file(schema.taxonomy(), self.rules_file, "the Kili interface")
        return schema

    def pull_taxonomy(self) -> Taxonomy:
        return self.taxonomy

    # ---- pull -------------------------------------------------------------------------------------------------
    def pull(self, cursor: str | None, texts: TextCache | None = None) -> Pull:
        self.skipped = SkipLog()
        newest: list[str] = [cursor or ""]

        def assets() -> Iterator[Asset]:
            with self._final_errors("pulling assets"):
                pages = self.kili.assets(project_id=self.settings.project_id, fields=ASSET_FIELDS,
                                         as_generator=True, updated_at_gte=cursor, disable_tqdm=True)
                for raw in pages:
                    newest[0] = max(newest[0], raw.get("updatedAt") or "")
                    asset = self._asset(raw, texts)
                    if asset is not None:
                        yield asset
            self.skipped.report(f"kili project {self.settings.project_id}")

        return Pull(assets(), complete=cursor is None, cursor=lambda: newest[0] or None)

    def _asset(self, raw: dict, texts: TextCache | None) -> Asset | None:
        # The text cache is keyed by the content reference: Kili stores an upload under a new URL, while updatedAt
        # also moves for every label (our own predictions included), which would refetch texts for nothing.
        asset_id, content = raw["id"], raw.get("content") or ""
        version = content if content.startswith(("http://", "https://")) else text_hash(content)
        place = f"asset {asset_id}"
        text = texts.cached_text(asset_id, version) if texts else None
        if text is None:
            text = self._fetch_text(content, place)
            if text is None:
                return None
        if not text.strip():
            self.skipped.skip("empty text", place)
            return None
        human = [lb for lb in raw.get("labels") or [] if lb.get("labelType") in HUMAN_TYPES]
        if not human:
            return Asset(asset_id, text, None, version)
        # The latest REVIEW label wins; else the latest DEFAULT one.
        truth = max(human, key=lambda lb: (lb["labelType"] == "REVIEW", lb.get("createdAt") or ""))
        response = truth.get("jsonResponse") or {}
        if isinstance(response, str):
            try:
                response = json.loads(response)
            except json.JSONDecodeError as exc:  # a truncated label: the asset is not taken as unlabelled either
                self.skipped.skip(f"its {truth['labelType']} label's jsonResponse is not JSON ({exc.msg}; fix: label"
                                  " it again in Kili)", place)
                return None
        if not isinstance(response, dict):
            self.skipped.skip(f"its {truth['labelType']} label's jsonResponse is not a JSON object", place)
            return None
        unknown: list[str] = []
        if not response:  # also what the SDK makes of a jsonResponse it cannot parse (a truncated one)
            self.skipped.skip(f"its {truth['labelType']} label holds no answer (empty, or JSON that cannot be read;"
                              " fix: label it again in Kili)", place)
            return None
        codes = self.schema.codes_of(response, unknown)
        for what in unknown:
            self.skipped.skip(f"a label holds {what} (ignored)", place)
        if unknown and not codes:  # not "nothing applies": what it says is lost, so it teaches nothing
            self.skipped.skip("every answer of its label is outside the interface (asset left out)", place)
            return None
        return Asset(asset_id, text, frozenset(codes), version, label_ref=str(truth.get("id") or ""),
                     reviewed_at=(truth.get("createdAt") or "?") if truth["labelType"] == "REVIEW" else "")

    def _fetch_text(self, content: str, place: str) -> str | None:
        if not content.startswith(("http://", "https://")):
            return content  # text given inline
        # The SDK's http_client adds the API key to URLs under the endpoint only.
        return fetch_or_skip(content, self.kili.http_client, self.content, self.skipped, place, self.where)

    # ---- push -------------------------------------------------------------------------------------------------
    def push(self, items: Sequence[PreAnnotation], model_version: str) -> PushResult:
        with self._final_errors("pushing predictions"):
            return self._push(items, model_name(self.settings.model_name_prefix, model_version))

    def _push(self, items: Sequence[PreAnnotation], name: str) -> PushResult:
        result = PushResult()
        size = self.settings.push_batch
        for start in range(0, len(items), size):
            send_until_landed(items[start:start + size], lambda batch: self._create(batch, name),
                              lambda batch: self._assets_with_prediction([i.asset_id for i in batch], name),
                              lambda i: i.asset_id, MutationOutcomeUnknownError, f"push of pre-annotations ({name})")
            result.written += len(items[start:start + size])
        return result

    def push_priorities(self, ranking: Sequence[Priority], fresh: Collection[str]) -> int:
        """Kili's asset priority (an integer, higher is labelled sooner; 0, the default, is "not ranked") of the
        fresh assets: 1 + 99 x priority. `set_assets_priority` takes one value for many assets, so there is one call
        per value and hundred assets. Assets no longer waiting (being labelled, done) are declined by Kili."""
        by_value: dict[int, list[str]] = {}
        for p in ranking:
            if p.asset_id in fresh:
                by_value.setdefault(1 + round(99 * p.value), []).append(p.asset_id)
        taken = declined = 0
        with self._final_errors("setting asset priorities"):
            for value, ids in sorted(by_value.items(), reverse=True):
                outcome = self._retrying(self.kili.set_assets_priority)(priority=value, asset_ids=ids)
                taken += len(outcome["succeeded"])
                declined += len(outcome["declined"]) + len(outcome["failed"])
        if declined:
            log.info("kili project %s: %d asset(s) not waiting for a label kept their priority",
                     self.settings.project_id, declined)
        return taken

    def push_label_issues(self, flags: Sequence[LabelFlag], model_version: str) -> list[LabelFlag]:
        """An issue on each flagged label, its text saying what looks wrong and what the model suggests; reviewers
        see it on the label and in the project's issue list."""
        usable = [f for f in flags if f.label_ref]
        if len(usable) < len(flags):
            log.warning("kili project %s: %d label issue(s) not shown: the id of their label is not known yet (the"
                        " asset was pulled by an earlier release; the next complete pull brings it)",
                        self.settings.project_id, len(flags) - len(usable))
        size = self.settings.push_batch
        with self._final_errors("creating issues"):
            for start in range(0, len(usable), size):
                send_until_landed(usable[start:start + size], self._create_issues, self._issues_there,
                                  lambda f: (f.asset_id, f.message), MutationOutcomeUnknownError,
                                  f"creation of label issues ({model_version})")
        return usable

    def _create_issues(self, batch: list[LabelFlag]) -> None:
        self._retrying(self.kili.create_issues)(project_id=self.settings.project_id,
                                                label_id_array=[f.label_ref for f in batch],
                                                text_array=[f.message for f in batch])

    def _issues_there(self, batch: list[LabelFlag]) -> set[tuple[str, str]]:
        rows = self._retrying(self.kili.issues)(project_id=self.settings.project_id,
                                                 asset_id_in=sorted({f.asset_id for f in batch}),
                                                 fields=["assetId", "comments.text"], disable_tqdm=True)
        return {(r.get("assetId"), c.get("text")) for r in rows for c in r.get("comments") or []}

    def _create(self, batch: list[PreAnnotation], name: str) -> None:
        # overwrite=True replaces an earlier prediction of the same model name (same version, changed text), so an
        # asset never holds two pre-annotations of one version.
        self._retrying(self.kili.create_predictions)(
            project_id=self.settings.project_id,
            asset_id_array=[i.asset_id for i in batch],
            json_response_array=[self.schema.answer(flatten(i.proposals)) for i in batch],
            model_name=name,
            overwrite=True,
        )

    def _assets_with_prediction(self, asset_ids: list[str], name: str) -> set[str]:
        rows = self._retrying(self.kili.assets)(project_id=self.settings.project_id, asset_id_in=asset_ids,
                                                 fields=["id", "labels.labelType", "labels.modelName"],
                                                 disable_tqdm=True)
        return {r["id"] for r in rows
                if any(lb.get("labelType") == "PREDICTION" and lb.get("modelName") == name
                       for lb in r.get("labels") or [])}
