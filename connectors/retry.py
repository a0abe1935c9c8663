"""The one retry policy for calls to a platform: exponential backoff with jitter, bounded, only for errors that
waiting can fix. When they persist, the caller gets a `PlatformUnavailable` naming the platform, not a traceback."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import requests
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from connectors.errors import PlatformUnavailable

__all__ = ["ATTEMPTS", "MAX_WAIT_SECONDS", "RETRY_CAUSE", "is_transient_http", "send_until_landed", "transient_status",
           "unavailable", "with_retries"]

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS, MAX_WAIT_SECONDS, MAX_SECONDS = 5, 20.0, 120.0
OUTCOME_UNKNOWN_ATTEMPTS = 3  # writes whose outcome is unknown: read back and sent again this often at most


def is_transient_http(exc: BaseException) -> bool:
    """Connection errors, timeouts, HTTP 429 and 5xx."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return transient_status(exc.response.status_code)
    return False


# Each retry's log record carries its cause here (the exception's type, with the HTTP status: "HTTPError 503"), so
# that the worker's metrics count retries by cause without parsing the message.
RETRY_CAUSE = "retry_cause"


def retry_cause(exc: BaseException | None) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return " ".join(filter(None, (type(exc).__name__ if exc is not None else "unknown",
                                  str(status) if isinstance(status, int) else "")))


def transient_status(status: int) -> bool:
    return status == 429 or status >= 500


def _brief(exc: BaseException | None, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def with_retries(fn: Callable[..., T], platform: str,
                 is_transient: Callable[[BaseException], bool] = is_transient_http,
                 what: str | None = None) -> Callable[..., T]:
    """`fn`, tried again while it fails with a transient error. `platform` names it in the log and in the error
    raised when the retries run out (e.g. "Label Studio at http://host:8080"); `what` names the call."""
    what = what or getattr(fn, "__name__", "a call")

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0  # tenacity sets it before before_sleep
        log.warning("%s: %s failed (%s); retry %d in %.1f s", platform, what, _brief(exc), state.attempt_number,
                    sleep, extra={RETRY_CAUSE: retry_cause(exc)})

    retrying = retry(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.5, max=MAX_WAIT_SECONDS),
        stop=stop_after_attempt(ATTEMPTS) | stop_after_delay(MAX_SECONDS),
        before_sleep=log_retry,
        reraise=True,
    )(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs) -> T:
        try:
            return retrying(*args, **kwargs)
        except Exception as exc:
            if is_transient(exc):
                raise unavailable(platform, exc) from exc
            raise

    return call


def send_until_landed(batch: Sequence[T], send: Callable[[list[T]], object], landed: Callable[[list[T]], set],
                      key: Callable[[T], object], outcome_unknown: type[BaseException] | tuple, what: str,
                      attempts: int = OUTCOME_UNKNOWN_ATTEMPTS, pause: float = 0.0) -> None:
    """A write never sent blindly again: when an attempt ends without knowing whether it landed (`outcome_unknown`:
    no answer, a proxy's 502), `landed` reads back which items (by `key`) the platform holds, and only the missing
    ones are sent again, after `pause` seconds (doubling), at most `attempts` times in all. `what` names the write."""
    todo = list(batch)
    for attempt in range(1, attempts + 1):
        try:
            send(todo)
            return
        except outcome_unknown as exc:
            if pause:
                time.sleep(min(pause * 2 ** attempt, 10.0))
            there = landed(todo)
            missing = [item for item in todo if key(item) not in there]
            log.warning("%s of %d: outcome unknown (%s); %d had landed, %d to send again", what, len(todo),
                        _brief(getattr(exc, "cause", None) or exc), len(todo) - len(missing), len(missing))
            if not missing:
                return
            if attempt == attempts:
                raise
            todo = missing


def unavailable(platform: str, exc: BaseException) -> PlatformUnavailable:
    return PlatformUnavailable(
        f"{platform} is unavailable ({_brief(exc)}), also after retries. Fix: check that"
        " it is running and that this machine reaches it (URL, network); a polling worker tries again next cycle.")
