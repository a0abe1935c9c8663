"""The one Label Studio client: session, token, retries, pagination and errors, for the connector, `label-studio-init`
and anything else that calls Label Studio's REST API. Error messages never carry a secret."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import requests
from pydantic import SecretStr

from connectors.errors import PlatformError, PlatformUnavailable
from connectors.retry import transient_status, unavailable, with_retries

__all__ = ["LABEL_EVENTS", "PAGE_SIZE", "TRAINING_EVENTS", "LabelStudioClient", "LabelStudioError", "TokenRefused"]

PAGE_SIZE = 100
TIMEOUT_SECONDS = 60
# The annotation events a project's webhook subscribes to (Label Studio 1.23.2; the plural ones come from bulk
# actions: imports, Data Manager deletions). The API also trains on the singular deletion and on the ML backend's
# "Start training" button.
LABEL_EVENTS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
TRAINING_EVENTS = frozenset(LABEL_EVENTS) | {"ANNOTATION_DELETED", "START_TRAINING"}


class LabelStudioError(PlatformError):
    """Label Studio refused what retrying cannot fix (no token, a refused token, an unknown project, a bad request)."""


class TokenRefused(LabelStudioError):
    """Label Studio answered 401 or 403."""


def _plain(secret: SecretStr | str | None) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else (secret or "")


class LabelStudioClient:
    """Calls to one Label Studio server with one token. `redact` names more secrets that its error messages must
    not show (e.g. the API token a webhook carries)."""

    def __init__(self, url: str | None, token: SecretStr | str | None, redact: Iterable[SecretStr | str] = ()):
        self.url = (url or "").rstrip("/")
        token = _plain(token)
        if not self.url:
            raise LabelStudioError("no Label Studio URL. Fix: pass --url or set LABEL_STUDIO_URL.")
        if not token:
            raise LabelStudioError("no Label Studio token. Fix: set LABEL_STUDIO_API_KEY (Account & Settings).")
        self.where = f"Label Studio at {self.url}"
        self._secrets = tuple(s for s in (token, *map(_plain, redact)) if s)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r})"

    def send(self, method: str, path: str, retry: bool = True, **kwargs) -> requests.Response:
        """One call, tried again on connection errors, timeouts, 429 and 5xx unless `retry` is False (a write whose
        lost answer may have landed). A refused token raises `TokenRefused`; other statuses are the caller's."""
        def once() -> requests.Response:
            response = self.http.request(method, self.url + path, timeout=TIMEOUT_SECONDS, **kwargs)
            if transient_status(response.status_code):
                response.raise_for_status()
            return response

        try:
            response = (with_retries(once, self.where, what=f"{method} {path}") if retry else once)()
        except requests.RequestException as exc:  # not retried: one failure is final
            raise unavailable(self.where, exc) from None
        if response.status_code in (401, 403):
            raise TokenRefused(f"{self.where} refused the token ({response.status_code}). Fix: check"
                               " LABEL_STUDIO_API_KEY (and that legacy tokens are enabled).")
        return response

    def call(self, method: str, path: str, what: str, retry: bool = True, **kwargs) -> dict | list:
        """The JSON answer of a call that must succeed; `what` says what it does ("read project 3") for the error."""
        return self._json(self.send(method, path, retry=retry, **kwargs), what)

    def call_object(self, method: str, path: str, what: str, retry: bool = True, **kwargs) -> dict:
        """`call` for an endpoint that answers a JSON object (a project, a task, an import's counts)."""
        body = self.call(method, path, what, retry=retry, **kwargs)
        if not isinstance(body, dict):
            raise self._not_json(what, "object")
        return body

    def call_list(self, method: str, path: str, what: str, retry: bool = True, **kwargs) -> list:
        """`call` for an endpoint that answers a JSON list (of predictions, webhooks, ML backends)."""
        body = self.call(method, path, what, retry=retry, **kwargs)
        if isinstance(body, list):
            return body
        if body == {}:  # an answer without content (`_json`): nothing listed
            return []
        raise self._not_json(what, "list")

    def _not_json(self, what: str, kind: str) -> LabelStudioError:
        return LabelStudioError(f"{self.where} could not {what}: the answer is not a JSON {kind}. Fix: check that"
                                " --url (or LABEL_STUDIO_URL) is a Label Studio server.")

    def pages(self, path: str, what: str, **params) -> Iterator[dict]:
        """The items of a paged list, page after page: `/api/tasks` answers {"tasks": [...]} and 404 past the last
        page, `/api/projects` answers {"results": [...], "next": ...}."""
        page = 1
        while True:
            response = self.send("GET", path, params={**params, "page": page, "page_size": PAGE_SIZE})
            if response.status_code == 404:
                return
            body = self._json(response, what)
            items = (body.get("tasks") or body.get("results") or []) if isinstance(body, dict) else body
            yield from items
            if len(items) < PAGE_SIZE or (isinstance(body, dict) and "next" in body and not body["next"]):
                return
            page += 1

    def _json(self, response: requests.Response, what: str) -> dict | list:
        if response.status_code == 404:
            raise LabelStudioError(f"{self.where} could not {what}: not found (404). Fix: check --project-id and"
                                   " --url.")
        if response.status_code >= 400:
            raise LabelStudioError(f"{self.where} could not {what} ({response.status_code}:"
                                   f" {self.detail(response)})")
        return response.json() if response.content else {}

    def detail(self, response: requests.Response) -> str:
        """What an error answer says, briefly, with the secrets taken out."""
        try:
            body = response.json()
        except ValueError:
            return self.redact(response.text[:300])
        if isinstance(body, dict):
            errors = body.get("validation_errors") or body.get("detail") or body
            body = errors.get("non_field_errors", errors) if isinstance(errors, dict) else errors
            if isinstance(body, list) and len(body) == 1:
                body = body[0]
        return self.redact(str(body)[:500])

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def wait_until_up(self, wait_seconds: float) -> None:
        """Label Studio may still be starting (a fresh one migrates its database first): ask until it answers, for
        at most `wait_seconds`. A refused token is final at once."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                self.send("GET", "/api/current-user/whoami", retry=False)
                return
            except PlatformUnavailable:
                if time.monotonic() >= deadline:
                    raise PlatformUnavailable(
                        f"{self.where} is unreachable: no answer within {wait_seconds:.0f} s. Fix: check --url /"
                        " LABEL_STUDIO_URL and that Label Studio is running.") from None
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
