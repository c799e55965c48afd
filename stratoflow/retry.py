"""Retrying calls that are safe to repeat: one back-off, one pair of config keys.

Every site kind retries a transiently failed call (5xx, throttling, a lost reply) the
same way: up to ``retry_attempts`` tries, pausing ``retry_backoff_s`` and then twice as
long each time, never more than :data:`MAX_BACKOFF_S`. :func:`retrying` is the loop for
client libraries that raise; :func:`call_with_retries` the one for ``httpx`` responses
(Airflow's API, the VM agent, OneData), where an expected status is returned and any
other 4xx is handed to ``refuse``.
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


def call_with_retries(
    what: str,
    fn: Callable[[], httpx.Response],
    ok: tuple[int, ...],
    *,
    attempts: int,
    backoff_s: float,
    detail: Callable[[httpx.Response], str],
    refuse: Callable[[httpx.Response, str], Exception],
    give_up: Callable[[str], Exception],
) -> httpx.Response:
    last = ""
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(backoff(attempt, backoff_s))
        try:
            r = fn()
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
            continue
        if r.status_code in ok:
            return r
        if r.status_code < 500:
            raise refuse(r, detail(r))
        last = f"{r.status_code} {detail(r)}"
    raise give_up(last)
