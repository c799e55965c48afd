"""Wait for FTS3 jobs without holding a worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class FTS3JobsTrigger(BaseTrigger):
    """Poll FTS3 with bulk status queries until every job is terminal, then yield one event:

    ``{"status": "success" | "failed", "states": {job_id: state},
    "failures": {job_id: [[source, destination, reason], ...]}}``

    Idempotent: it only reads, so the triggerer may run it twice. Only the connection id
    travels in its kwargs; the token stays in the Airflow Connection. Transient FTS errors
    are retried inside each poll and across ``max_errors`` polls; an auth error fails at once.
    """

    def __init__(
        self,
        conn_id: str,
        job_ids: list[str],
        poll_interval: float = 30.0,
        poll_ids_per_request: int = 100,
        max_errors: int = 10,
    ):
        super().__init__()
        self.conn_id = conn_id
        self.job_ids = list(job_ids)
        self.poll_interval = float(poll_interval)
        self.poll_ids_per_request = int(poll_ids_per_request)
        self.max_errors = int(max_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "stratoflow.triggers.fts3.FTS3JobsTrigger",
            {
                "conn_id": self.conn_id,
                "job_ids": self.job_ids,
                "poll_interval": self.poll_interval,
                "poll_ids_per_request": self.poll_ids_per_request,
                "max_errors": self.max_errors,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from stratoflow.sites.fts3.errors import FTS3Unavailable
        from stratoflow.sites.fts3.jobs import JOB_TERMINAL
        from stratoflow.sites.fts3.transfer import FTS3Transfer

        transfer = FTS3Transfer(
            f"trigger-{self.conn_id}",
            {
                "conn_id": self.conn_id,
                "poll_ids_per_request": self.poll_ids_per_request,
                "request_attempts": 3,
                "retry_backoff_s": min(self.poll_interval, 1.0),
            },
        )
        errors = 0
        while True:
            try:
                # The fts3 client is synchronous (requests): keep it off the event loop.
                states = await asyncio.to_thread(transfer.poll, self.job_ids)
                errors = 0
            except FTS3Unavailable:
                errors += 1
                if errors >= self.max_errors:
                    raise
                await asyncio.sleep(self.poll_interval)
                continue
            if all(s in JOB_TERMINAL for s in states.values()):
                break
            await asyncio.sleep(self.poll_interval)
        unclean = [j for j, s in states.items() if s != "FINISHED"]
        failures = await asyncio.to_thread(transfer.failures, unclean) if unclean else {}
        yield TriggerEvent(
            {
                "status": "failed" if unclean else "success",
                "states": states,
                "failures": {j: [list(f) for f in fs] for j, fs in failures.items() if fs},
            }
        )
