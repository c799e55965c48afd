"""Retrying calls that are safe to repeat: one back-off, one pair of config keys.

Every site kind retries a transiently failed call (5xx, throttling, a lost reply) the
same way: up to ``retry_attempts`` tries, pausing ``retry_backoff_s`` and then twice as
long each time, never more than :data:`MAX_BACKOFF_S`. :func:`retrying` is the one loop;
:func:`call_with_retries` puts ``httpx`` responses (Airflow's API, the VM agent, OneData)
through it: an expected status is returned, another 4xx is handed to ``refuse``, a 5xx or
a transport error is retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from stratoflow.errors import Issue

T = TypeVar("T")

MAX_BACKOFF_S = 10.0
#: The site catalogue keys each kind used to have for the same two knobs.
RENAMED_KEYS = {
    "api_retries": "retry_attempts",
    "create_attempts": "retry_attempts",
    "request_attempts": "retry_attempts",
    "agent_retries": "retry_attempts",
    "retry_delay_s": "retry_backoff_s",
    "api_backoff_s": "retry_backoff_s",
}


def backoff(attempt: int, backoff_s: float) -> float:
    """The pause before retry number ``attempt`` (1, 2, ...): doubling, capped."""
    return min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)


def renamed_key_issues(path: str, entry: dict[str, Any]) -> list[Issue]:
    """A catalogue entry still using an old retry key gets the new name, not "unknown"."""
    return [
        Issue(f"{path}.{key}", f"renamed to {RENAMED_KEYS[key]} (same meaning)")
        for key in entry
        if key in RENAMED_KEYS
    ]


def retrying(
    fn: Callable[[], T],
    *,
    attempts: int,
    backoff_s: float,
    transient: Callable[[Exception], bool],
    on_retry: Callable[[Exception, int], None] | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """``fn()``, retried while it raises what ``transient`` accepts. After ``attempts``
    tries, or at once for anything else, the exception propagates: callers word it."""
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:
            if attempt == attempts or not transient(e):
                raise
            if on_retry is not None:
                on_retry(e, attempt)
            sleep(backoff(attempt, backoff_s))
    raise AssertionError("unreachable")


def create_or_adopt(
    find: Callable[[], T | None],
    create: Callable[[], T],
    *,
    attempts: int,
    backoff_s: float,
    transient: Callable[[Exception], bool],
    on_retry: Callable[[Exception, int], None] | None = None,
) -> tuple[T, bool]:
    """``(resource, created)``: the resource found by its idempotency key, else created.

    Every attempt looks up first, so a create whose reply was lost (it happened, the
    answer did not arrive) is adopted on the next attempt instead of being made twice. Only
    for resources that carry their key (a name, a tag), so that ``find`` can see them."""

    def attempt() -> tuple[T, bool]:
        found = find()
        if found is not None:
            return found, False
        return create(), True

    return retrying(
        attempt, attempts=attempts, backoff_s=backoff_s, transient=transient, on_retry=on_retry
    )


def call_with_retries(
    what: str,
    fn: Callable[[], httpx.Response],
    ok: tuple[int, ...],
    *,
    attempts: int,
    backoff_s: float,
    detail: Callable[[httpx.Response], str],
    refuse: Callable[[httpx.Response, str], Exception],
    give_up: Callable[[str, int], Exception],
) -> httpx.Response:
    """``give_up(last, status)`` gets the last failure and its HTTP status (0: no answer)."""

    def send() -> httpx.Response:
        r = fn()
        if r.status_code in ok:
            return r
        if r.status_code < 500:
            raise refuse(r, detail(r))
        raise _ServerError(r.status_code, f"{r.status_code} {detail(r)}")

    try:
        return retrying(
            send,
            attempts=attempts,
            backoff_s=backoff_s,
            transient=lambda e: isinstance(e, _ServerError | httpx.HTTPError),
        )
    except _ServerError as e:
        raise give_up(str(e), e.status) from None
    except httpx.HTTPError as e:
        raise give_up(f"{type(e).__name__}: {e}", 0) from None


class _ServerError(Exception):
    """A 5xx answer, inside :func:`call_with_retries` only."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
