"""Waiting in the admission queue, in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from stratoflow.admission import Admitted, Queued, SiteRoom
from stratoflow.store.admission import LEASE_S
from stratoflow.store.models import Task

CLASSPATH = "stratoflow.triggers.admission.AdmissionTrigger"
# After it fires, the deployment keeps its place this long while a worker picks it up.
RESUME_HOLD_S = 120.0


class AdmissionTrigger(BaseTrigger):
    """Beat the deployment's heartbeat in the queue and fire when it is its turn and a
    candidate has room (``ready``), when the queue timeout passes (``timeout``, with the
    last waiting reason), or when it is no longer queued (``gone``).

    It only reads and beats; the operator admits (reserving capacity) when it resumes, so
    a run stopped in between never holds capacity. The deadline is absolute, so a re-run
    of the trigger keeps its bound.
    """

    def __init__(
        self,
        deployment_id: str,
        rooms: dict[str, dict[str, Any]],
        deadline: float,
        poll_interval_s: float = 1.0,
        lease_s: float = LEASE_S,
    ) -> None:
        super().__init__()
        self.deployment_id = deployment_id
        self.rooms = {name: dict(room) for name, room in rooms.items()}
        self.deadline = float(deadline)
        self.poll_interval_s = float(poll_interval_s)
        self.lease_s = float(lease_s)

    @classmethod
    def waiting(
        cls, deployment_id: str, rooms: dict[str, SiteRoom], deadline: float, poll_s: float
    ) -> AdmissionTrigger:
        return cls(deployment_id, {n: asdict(r) for n, r in rooms.items()}, deadline, poll_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "deployment_id": self.deployment_id,
                "rooms": self.rooms,
                "deadline": self.deadline,
                "poll_interval_s": self.poll_interval_s,
                "lease_s": self.lease_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from stratoflow.store import Store

        store = await asyncio.to_thread(Store.open)
        try:
            event = await self._wait(store)
        finally:
            await asyncio.to_thread(store.close)
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        """The user stopped the task while it waited (mark failed, clear, or the whole
        run): leave the line now. Nothing was provisioned, so nothing else is left."""
        from stratoflow.store import Store

        def leave() -> None:
            with Store.open() as store:
                why = "stopped while waiting for capacity: nothing was provisioned"
                store.leave_queue(self.deployment_id, why)
                store.set_status(self.deployment_id, "CREATE_FAILED", reason=why, task="")

        await asyncio.to_thread(leave)

    async def _wait(self, store: Any) -> dict[str, Any]:
        rooms = {name: SiteRoom(**room) for name, room in self.rooms.items()}
        reason = ""
        while True:
            place = await asyncio.to_thread(
                store.queue_place, self.deployment_id, rooms, self.lease_s, RESUME_HOLD_S
            )
            if isinstance(place, Admitted):
                return {"status": "ready", "site": place.site}
            if place is None:
                return {"status": "gone"}
            if isinstance(place, Queued) and place.reason != reason:
                reason = place.reason
                await asyncio.to_thread(
                    store.set_status,
                    self.deployment_id,
                    "CREATE_IN_PROGRESS",
                    reason=reason,
                    task=Task.BROKERING,
                )
            if time.time() >= self.deadline:
                return {"status": "timeout", "reason": reason}
            await asyncio.sleep(self.poll_interval_s)
