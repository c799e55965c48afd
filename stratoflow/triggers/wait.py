"""The one trigger: waits on a site-provided poll without holding a worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from stratoflow.sites.waits import WaitLoop, WaitSpec

CLASSPATH = "stratoflow.triggers.wait.SiteWaitTrigger"


class SiteWaitTrigger(BaseTrigger):
    """Poll the named waiter (see :mod:`stratoflow.sites.waits`) until it reports an end,
    fails for good, or the deadline passes; then yield its payload plus ``echo``.

    Only names and ids travel in the kwargs, never a secret: the waiter reads its
    credentials through the site's connection id. Idempotent: waiters only read, and the
    deadline is absolute, so a re-run (triggerer restart, HA triggerers) keeps its bound.
    """

    def __init__(
        self,
        waiter: str,
        kwargs: dict[str, Any],
        poll_interval_s: float,
        timeout_s: float | None = None,
        max_errors: int = 10,
        deadline: float | None = None,
        echo: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.spec = WaitSpec(
            waiter, dict(kwargs), float(poll_interval_s), timeout_s, int(max_errors), deadline
        )
        # Handed back in the event: `airflow dags test` resumes with the event alone.
        self.echo = dict(echo or {})

    @classmethod
    def from_spec(cls, spec: WaitSpec, echo: dict[str, Any] | None = None) -> SiteWaitTrigger:
        return cls(
            spec.waiter,
            spec.kwargs,
            spec.poll_interval_s,
            spec.timeout_s,
            spec.max_errors,
            spec.deadline,
            echo,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "waiter": self.spec.waiter,
                "kwargs": self.spec.kwargs,
                "poll_interval_s": self.spec.poll_interval_s,
                "timeout_s": self.spec.timeout_s,
                "max_errors": self.spec.max_errors,
                "deadline": self.spec.deadline,
                "echo": self.echo,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Site clients are synchronous (requests, openstacksdk): keep them off the loop.
        loop = await asyncio.to_thread(WaitLoop, self.spec)
        try:
            while (event := await asyncio.to_thread(loop.round)) is None:
                await asyncio.sleep(self.spec.poll_interval_s)
        finally:
            await asyncio.to_thread(loop.close)
        yield TriggerEvent({**event, "echo": self.echo})
