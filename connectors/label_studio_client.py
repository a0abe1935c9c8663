"""The one Label Studio client: session, token, retries, pagination and errors, for the connector, `label-studio-init`
and anything else that calls Label Studio's REST API. Error messages never carry a secret.

Label Studio has two forms of token, both taken from LABEL_STUDIO_API_KEY and told apart here only (`token_form`):
- a Personal Access Token (PAT; what Account & Settings offers since legacy tokens are off by default): a JWT
  *refresh* token, exchanged for a short-lived access token (`POST /api/token/refresh/ {"refresh": PAT}` ->
  `{"access": JWT}`, valid 5 minutes in Label Studio 1.23.2), sent as `Authorization: Bearer <access>`, exchanged
  again a minute before it expires (by its own lifetime, `exp - iat`, so the two clocks need not agree) and once
  when a call is refused;
- a legacy token (40 hex characters, or whatever LABEL_STUDIO_USER_TOKEN set), sent as `Authorization: Token <token>`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator

import requests
from pydantic import SecretStr

from connectors.errors import PlatformError, PlatformUnavailable
from connectors.retry import transient_status, unavailable, with_retries

__all__ = ["LABEL_EVENTS", "LEGACY", "PAGE_SIZE", "PAT", "TRAINING_EVENTS", "LabelStudioClient", "LabelStudioError",
           "TokenRefused", "renew_at", "token_form"]

PAGE_SIZE = 100
TIMEOUT_SECONDS = 60
PAT, LEGACY = "Personal Access Token", "legacy token"
REFRESH_PATH = "/api/token/refresh/"
RENEW_BEFORE_SECONDS = 60.0  # an access token is exchanged again this long before it expires (half its life if shorter)
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]+")  # three base64url parts; "eyJ" is how '{"' (the header) begins
_LEGACY_OFF = "legacy token authentication has been disabled"  # Label Studio's 401 when legacy tokens are off
_TOKEN_SETTINGS = "Organization > API Tokens Settings"
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


def token_form(token: str) -> str:
    """`PAT` for a JWT (three base64url parts separated by dots), `LEGACY` for anything else; LabelStudioError (with
    the fix, never the token) for what no copy of a token looks like."""
    if _JWT.fullmatch(token):
        return PAT
    if not re.fullmatch(r"[\x21-\x7e]+", token):
        raise LabelStudioError("LABEL_STUDIO_API_KEY holds characters no token has (a space, a line break inside,"
                               " or non-ASCII such as the '…' of a shortened copy). Fix: copy the token again from"
                               " Account & Settings.")
    if token.startswith("eyJ") and token.count(".") == 1:
        raise LabelStudioError("LABEL_STUDIO_API_KEY is a Personal Access Token without its last part (the token"
                               " list shows tokens so shortened). Fix: create a token in Account & Settings and copy"
                               " it whole when it is shown.")
    return LEGACY


def _claims(jwt: str) -> dict:
    """A JWT's payload, unverified (the server checks signatures; the client only reads times); {} if unreadable."""
    try:
        part = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def renew_at(access: str, now: float) -> float:
    """When (on the clock `now` was read from, at its receipt) to exchange `access` again: RENEW_BEFORE_SECONDS (or
    half its lifetime, if shorter) before it expires. Its lifetime is `exp - iat`, read from the token itself."""
    claims = _claims(access)
    exp, iat = claims.get("exp"), claims.get("iat")
    lifetime = 0.0  # unreadable times: exchanged again before the next call
    if isinstance(exp, (int, float)) and isinstance(iat, (int, float)):
        lifetime = max(0.0, float(exp) - float(iat))
    return now + lifetime - min(RENEW_BEFORE_SECONDS, lifetime / 2)


def _said(detail: str) -> str:
    return detail.rstrip(". ") or "no reason given"


def _as_is(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """No authorization: the refresh call carries its token in the body."""
    return request


class LabelStudioClient:
    """Calls to one Label Studio server with one token. `redact` names more secrets that its error messages must
    not show (e.g. the API token a webhook carries)."""

    def __init__(self, url: str | None, token: SecretStr | str | None, redact: Iterable[SecretStr | str] = ()):
        self.url = (url or "").strip().rstrip("/")
        token = _plain(token).strip()  # a secret file's or a variable's line break is not part of the token
        if not self.url:
            raise LabelStudioError("no Label Studio URL. Fix: pass --url or set LABEL_STUDIO_URL.")
        if not token:
            raise LabelStudioError("no Label Studio token. Fix: set LABEL_STUDIO_API_KEY to a Personal Access Token"
                                   " (or a legacy token) from Account & Settings.")
        self.where = f"Label Studio at {self.url}"
        self.token_form = token_form(token)
        self._token = token
        self._secrets = tuple(s for s in (token, *map(_plain, redact)) if s)
        self._access = ""  # a PAT's current access token, and when to exchange it again (time.monotonic)
        self._renew_at = 0.0
        self._auth_lock = threading.Lock()
        self.http = requests.Session()
        self.http.auth = self._authorize  # on every request of the session: API calls and texts fetched from URLs

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r})"

    def send(self, method: str, path: str, retry: bool = True, **kwargs) -> requests.Response:
        """One call, tried again on connection errors, timeouts, 429 and 5xx unless `retry` is False (a write whose
        lost answer may have landed). A refused token raises `TokenRefused`; other statuses are the caller's."""
        def once() -> requests.Response:
            response = self.http.request(method, self.url + path, timeout=TIMEOUT_SECONDS,
                                         auth=functools.partial(self._authorize, retry=retry), **kwargs)
            if transient_status(response.status_code):
                response.raise_for_status()
            return response

        call = with_retries(once, self.where, what=f"{method} {path}") if retry else once
        response = self._sent(call)
        if response.status_code == 401 and self.token_form == PAT:  # expired early, or revoked: exchange once more
            self._renew(force=True, retry=retry)
            response = self._sent(call)
        if response.status_code in (401, 403):
            raise self._refused(response)
        return response

    def _sent(self, call) -> requests.Response:
        try:
            return call()
        except requests.RequestException as exc:  # not retried: one failure is final
            raise unavailable(self.where, exc) from None

    # ---- the token: its form decides the Authorization header -------------------------------------------------
    def _authorize(self, request: requests.PreparedRequest, retry: bool = True) -> requests.PreparedRequest:
        """The Authorization header of each request; a PAT's access token is exchanged first when due, tried again
        as the call is (`retry`)."""
        if self.token_form == LEGACY:
            request.headers["Authorization"] = f"Token {self._token}"
        else:
            request.headers["Authorization"] = f"Bearer {self._renew(retry=retry)}"
        return request

    def _renew(self, force: bool = False, retry: bool = True) -> str:
        """The PAT's access token, exchanged for a new one when due (or `force`d)."""
        with self._auth_lock:
            if force or not self._access or time.monotonic() >= self._renew_at:
                self._access = self._exchange(retry)
                self._renew_at = renew_at(self._access, time.monotonic())
            return self._access

    def _exchange(self, retry: bool = True) -> str:
        """A new access token for the PAT, asked with the one retry policy (unless not `retry`: the caller polls).
        The PAT travels in the body only, and neither it nor the answer is ever part of a message."""
        def once() -> requests.Response:
            response = self.http.post(self.url + REFRESH_PATH, json={"refresh": self._token}, auth=_as_is,
                                      timeout=TIMEOUT_SECONDS)
            if transient_status(response.status_code):
                response.raise_for_status()
            return response

        response = self._sent(with_retries(once, self.where, what=f"POST {REFRESH_PATH} (a new access token)")
                              if retry else once)
        if response.status_code in (401, 403):
            raise TokenRefused(
                f"{self.where} refused the token ({response.status_code}): the Personal Access Token was revoked, has"
                f" expired or is another server's (Label Studio says: {_said(self.detail(response))}). Fix: create a"
                " new one in Account & Settings and set LABEL_STUDIO_API_KEY to it.")
        if response.status_code >= 400:
            raise self._not_label_studio(f"POST {REFRESH_PATH} answered {response.status_code}",
                                         " An older Label Studio without Personal Access Tokens takes its legacy"
                                         " token instead.")
        try:
            access = response.json().get("access")
        except (ValueError, AttributeError):
            access = None
        if not isinstance(access, str) or not _JWT.fullmatch(access):
            raise self._not_label_studio(f"POST {REFRESH_PATH} answered no access token")
        return access

    def _refused(self, response: requests.Response) -> TokenRefused:
        status, detail = response.status_code, self.detail(response)
        if status == 401 and self.token_form == LEGACY and _LEGACY_OFF in detail:
            return TokenRefused(
                f"{self.where} refused the token (401): this server has legacy tokens off. Fix: use a Personal"
                f" Access Token from Account & Settings as LABEL_STUDIO_API_KEY, or enable Legacy Tokens in"
                f" {_TOKEN_SETTINGS}.")
        if status == 401 and self.token_form == PAT:  # a fresh access token refused: the server takes no JWT
            return TokenRefused(
                f"{self.where} refused the token (401): this server has Personal Access Tokens off (it refused a"
                f" fresh access token). Fix: use the legacy token from Account & Settings as LABEL_STUDIO_API_KEY, or"
                f" enable Personal Access Tokens in {_TOKEN_SETTINGS}.")
        if status == 401:
            return TokenRefused(f"{self.where} refused the token (401): {_said(detail)}. Fix: check"
                                " LABEL_STUDIO_API_KEY: copy it again from Account & Settings (a Personal Access"
                                " Token, or the legacy token where legacy tokens are on).")
        return TokenRefused(f"{self.where} refused the token (403): {_said(detail)}. Fix: check that"
                            " LABEL_STUDIO_API_KEY is the token of a user of the project's organization, with the"
                            " rights the call needs.")

    def _not_label_studio(self, seen: str, more: str = "") -> LabelStudioError:
        return LabelStudioError(f"{self.where} does not look like Label Studio ({seen}). Fix: check --url (or"
                                " LABEL_STUDIO_URL); behind a proxy it includes the path prefix Label Studio is"
                                f" served under, e.g. http://host/label-studio.{more}")

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

    def pages(self, path: str, what: str, page_size: int = PAGE_SIZE, **params) -> Iterator[dict]:
        """The items of a paged list, page after page: `/api/tasks` answers {"tasks": [...], "total": N} and 404 past
        the last page, `/api/projects` answers {"results": [...], "next": ...}. A page shorter than `page_size` is the
        last unless the answer's total says more are left (a server whose TASK_API_PAGE_SIZE_MAX caps the size)."""
        page, read = 1, 0
        while True:
            response = self.send("GET", path, params={**params, "page": page, "page_size": page_size})
            if response.status_code == 404:  # past the last page; a web page's 404 is no Label Studio's
                if not _is_json(response):
                    raise self._not_label_studio(f"GET {path} answered a 404 page")
                return
            body = self._json(response, what)
            items = (body.get("tasks") or body.get("results") or []) if isinstance(body, dict) else body
            yield from items
            read += len(items)
            total = body.get("total") if isinstance(body, dict) else None
            last = read >= total if isinstance(total, int) else len(items) < page_size
            if not items or last or (isinstance(body, dict) and "next" in body and not body["next"]):
                return
            page += 1

    def _json(self, response: requests.Response, what: str) -> dict | list:
        if response.status_code == 404:
            if not _is_json(response):  # Label Studio's API answers JSON even to 404; a web page is someone else
                raise self._not_label_studio(f"{response.request.method} {self._path(response)} answered a 404 page")
            raise LabelStudioError(f"{self.where} could not {what}: not found (404). Fix: check --project-id and"
                                   " --url.")
        if response.status_code >= 400:
            raise LabelStudioError(f"{self.where} could not {what} ({response.status_code}:"
                                   f" {self.detail(response)})")
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise self._not_label_studio(f"{response.request.method} {self._path(response)} answered no JSON"
                                         ) from None

    def _path(self, response: requests.Response) -> str:
        """The request's path under the URL given (a query left out: it may hold anything)."""
        url = (response.request.url or "").split("?")[0]
        return url[len(self.url):] if url.startswith(self.url) else url

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
        for secret in (*self._secrets, self._access):
            if secret:
                text = text.replace(secret, "***")
        return text

    def wait_until_up(self, wait_seconds: float) -> None:
        """Label Studio may still be starting (a fresh one migrates its database first): ask until it answers, for
        at most `wait_seconds`. A refused token is final at once."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                self.call_object("GET", "/api/current-user/whoami", "tell whose token it is", retry=False)
                return
            except PlatformUnavailable:
                if time.monotonic() >= deadline:
                    raise PlatformUnavailable(
                        f"{self.where} is unreachable: no answer within {wait_seconds:.0f} s. Fix: check --url /"
                        " LABEL_STUDIO_URL and that Label Studio is running.") from None
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _is_json(response: requests.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True
