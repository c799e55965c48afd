"""The retry loop shared by Stratoflow's own REST clients (the VM agent, OneData).

Transport errors and 5xx are retried with exponential back-off; an expected status is
returned; any other status is handed to ``refuse``, which builds the exception to raise
(each service words its errors differently). Only for calls that are safe to repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


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
            time.sleep(min(backoff_s * 2 ** (attempt - 1), 10.0))
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
