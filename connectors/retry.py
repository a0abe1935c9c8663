"""Retries for calls to a platform: exponential backoff with jitter, bounded, only for errors that waiting can fix
(connection errors, timeouts, HTTP 429 and 5xx)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import requests
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt, stop_after_delay, \
    wait_random_exponential

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    if type(exc).__name__ == "MutationOutcomeUnknownError":
        return False  # the write may have landed: the caller reads back instead of resending blindly
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    status = getattr(exc, "code", None)  # e.g. gql's TransportServerError, which the Kili SDK lets through on a 500
    if type(exc).__name__ == "TransportServerError" and isinstance(status, int):
        return status == 429 or status >= 500
    return False


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("%s failed (%s: %s); retry %d in %.1f s", getattr(state.fn, "__name__", "call"),
                type(exc).__name__, str(exc)[:200], state.attempt_number, state.next_action.sleep)


def transient_retry(fn: Callable[..., T], attempts: int = 5, max_wait: float = 20.0,
                    max_seconds: float = 120.0) -> Callable[..., T]:
    return retry(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.5, max=max_wait),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_seconds),
        before_sleep=_log_retry,
        reraise=True,
    )(fn)
