"""Wait for Nova servers to become ACTIVE without holding a worker slot.

The provision operator calls ``OpenStackCompute.provision_start`` (servers at BUILD),
defers on this trigger, and on an ``active`` event calls ``provision_finish``; on ``error``
or ``timeout`` it calls ``cleanup_attempt`` and fails (Airflow retries, or fails over).

Idempotent: it only reads. It may run more than once (triggerer restart, HA triggerers),
so the deadline is absolute and travels in ``serialize()``: a re-run keeps the original
bound instead of starting a fresh one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class ServerActiveTrigger(BaseTrigger):
    """Poll ``GET /servers/{id}`` until all are ACTIVE, one is ERROR/gone, or time is up.

    Events: ``{"status": "active", "servers": {id: {"status", "addresses"}}}``,
    ``{"status": "error", "server_id", "message"}``, ``{"status": "timeout", "pending"}``.
    Transient API errors (5xx, lost replies) only delay the next poll.
    """

    def __init__(
        self,
        conn_id: str,
        server_ids: list[str],
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        echo: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.server_ids = list(server_ids)
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline) if deadline is not None else time.time() + self.timeout
        # Handed back in every event: the resumed task's state, because some runners
        # (`airflow dags test`) resume with the event alone, without the defer kwargs.
        self.echo = dict(echo or {})
        self._client: Any = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "stratoflow.triggers.openstack.ServerActiveTrigger",
            {
                "conn_id": self.conn_id,
                "server_ids": self.server_ids,
                "timeout": self.timeout,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "echo": self.echo,
            },
        )

    def _poll(self) -> dict[str, Any]:
        """One round (blocking: openstacksdk is synchronous, so it runs in a thread)."""
        from stratoflow.sites.openstack.api import is_not_found, is_transient, message_of

        if self._client is None:
            from stratoflow.hooks.openstack import OpenStackHook

            self._client = OpenStackHook(self.conn_id).get_conn()
        seen: dict[str, Any] = {}
        for sid in self.server_ids:
            try:
                s = self._client.compute.get_server(sid)
            except Exception as e:
                if is_not_found(e):
                    return {"status": "error", "server_id": sid, "message": "server is gone"}
                if is_transient(e):
                    return {"status": "retry", "message": message_of(e)}
                return {"status": "error", "server_id": sid, "message": message_of(e)}
            if s.status == "ERROR":
                fault = (s.fault or {}).get("message", "no fault message")
                return {"status": "error", "server_id": sid, "message": fault}
            seen[sid] = {"status": s.status, "addresses": dict(s.addresses or {})}
        if all(v["status"] == "ACTIVE" for v in seen.values()):
            return {"status": "active", "servers": seen}
        pending = sorted(k for k, v in seen.items() if v["status"] != "ACTIVE")
        return {"status": "pending", "pending": pending}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        pending = list(self.server_ids)
        while True:
            result = await asyncio.to_thread(self._poll)
            if result["status"] in ("active", "error"):
                yield TriggerEvent({**result, "echo": self.echo})
                return
            pending = result.get("pending", pending)
            if time.time() >= self.deadline:
                yield TriggerEvent({"status": "timeout", "pending": pending, "echo": self.echo})
                return
            await asyncio.sleep(self.poll_interval)
