"""Kept so that a bulk-transfer wait deferred by an earlier Stratoflow still loads after
an upgrade; new waits use :class:`stratoflow.triggers.wait.SiteWaitTrigger`."""

from __future__ import annotations

from stratoflow.triggers.wait import SiteWaitTrigger


class FTS3JobsTrigger(SiteWaitTrigger):
    """The old signature, as the generic trigger waiting on ``fts3.jobs_done``."""

    def __init__(
        self,
        conn_id: str,
        job_ids: list[str],
        poll_interval: float = 30.0,
        poll_ids_per_request: int = 100,
        max_errors: int = 10,
    ):
        super().__init__(
            "fts3.jobs_done",
            {
                "conn_id": conn_id,
                "job_ids": list(job_ids),
                "poll_ids_per_request": int(poll_ids_per_request),
                "retry_backoff_s": min(float(poll_interval), 1.0),
            },
            poll_interval_s=poll_interval,
            max_errors=max_errors,
        )
