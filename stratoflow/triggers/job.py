"""Wait for a site job to finish without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class JobTrigger(BaseTrigger):
    """Polls the site's job status. Idempotent: it only reads, so running twice is safe.

    ``deadline`` (epoch seconds; the deployment's ``timeoutMins``): past it, the event's
    state is ``deadline`` while the job still runs (the step fails, and teardown stops
    the job)."""

    def __init__(
        self,
        site: str,
        alloc: dict,
        handle: str,
        poll_interval: float = 1.0,
        deadline: float | None = None,
    ):
        super().__init__()
        self.site = site
        self.alloc = alloc
        self.handle = handle
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "stratoflow.triggers.job.JobTrigger",
            {
                "site": self.site,
                "alloc": self.alloc,
                "handle": self.handle,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from stratoflow.execution.placement import compute_for_site
        from stratoflow.sites.base import Allocation

        compute = compute_for_site(self.site)
        alloc = Allocation.from_dict(self.alloc)
        while True:
            status = await asyncio.to_thread(compute.job_status, alloc, self.handle)
            if status.done:
                yield TriggerEvent({"handle": self.handle, "state": status.state})
                return
            if self.deadline is not None and time.time() >= self.deadline:
                yield TriggerEvent({"handle": self.handle, "state": "deadline"})
                return
            await asyncio.sleep(self.poll_interval)
