"""Concurrent HTTP clients for the benchmarks: ``clients`` threads, each with its own
connection to this process's embedded Airflow, take items off one queue until it is empty."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def drain(
    items: Iterable[T],
    clients: int,
    call: Callable[[Any, T], None],
    headers: dict[str, str] | None = None,
    token_for: Callable[[Any], str] | None = None,
) -> None:
    """``call(http, item)`` for every item, from ``clients`` threads at once. Each thread's
    ``http`` is an ``httpx.Client`` on the embedded Airflow with ``headers``, or with a bearer
    token of its own from ``token_for(http)``."""
    import httpx

    from stratoflow import embedded

    work: queue.Queue[T] = queue.Queue()
    for item in items:
        work.put(item)

    def client() -> None:
        with httpx.Client(base_url=embedded.api_url(), timeout=120, headers=headers) as http:
            if token_for is not None:
                http.headers["Authorization"] = f"Bearer {token_for(http)}"
            while True:
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    return
                call(http, item)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
