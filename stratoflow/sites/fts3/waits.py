"""Waiting for FTS3 jobs in the triggerer: bulk status queries until every job ends."""

from __future__ import annotations

from typing import Any

from stratoflow.sites.fts3.errors import FTS3Unavailable
from stratoflow.sites.fts3.jobs import JOB_TERMINAL
from stratoflow.sites.fts3.transfer import FTS3Transfer
from stratoflow.sites.waits import Waiter


class JobsDone(Waiter):
    """Poll until every job is terminal; then ``{"status": "success" | "failed",
    "states": {job_id: state}, "failures": {job_id: [[source, destination, reason]]}}``.

    FTS being unavailable (5xx, no answer) only delays the next poll, up to the trigger's
    ``max_errors`` in a row; an auth error fails at once.
    """

    def __init__(
        self,
        conn_id: str,
        job_ids: list[str],
        poll_ids_per_request: int = 100,
        retry_backoff_s: float = 1.0,
    ):
        self.job_ids = list(job_ids)
        self.transfer = FTS3Transfer(
            f"wait-{conn_id}",
            {
                "conn_id": conn_id,
                "poll_ids_per_request": int(poll_ids_per_request),
                "retry_attempts": 3,
                "retry_backoff_s": float(retry_backoff_s),
            },
        )

    def poll(self) -> dict[str, Any] | None:
        states = self.transfer.poll(self.job_ids)
        if not all(s in JOB_TERMINAL for s in states.values()):
            return None
        unclean = [j for j, s in states.items() if s != "FINISHED"]
        failures = self.transfer.failures(unclean) if unclean else {}
        return {
            "status": "failed" if unclean else "success",
            "states": states,
            "failures": {j: [list(f) for f in fs] for j, fs in failures.items() if fs},
        }

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, FTS3Unavailable)
