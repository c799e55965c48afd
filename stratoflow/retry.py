"""The retry loop shared by Stratoflow's REST clients (Airflow's API, the VM agent, OneData).

Transport errors and 5xx are retried with exponential back-off; an expected status is
returned; any other status is handed to ``refuse``, which builds the exception to raise
(each service words its errors differently). Only for calls that are safe to repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

MAX_BACKOFF_S = 10.0


def backoff(attempt: int, backoff_s: float) -> float:
    """The pause before retry number ``attempt`` (1, 2, ...): doubling, capped."""
    return min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)


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
