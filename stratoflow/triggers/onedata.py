"""Wait for OneData QoS requirements or transfers without holding a worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class OnedataReplicationTrigger(BaseTrigger):
    """Poll until every QoS requirement is fulfilled or impossible and every transfer has
    ended, then yield ``{"status": "success" | "failed", "qos": {id: status},
    "transfers": {id: status}}``. It only reads, so the triggerer may run it twice; only
    the connection id travels in its kwargs."""

    def __init__(
        self,
        conn_id: str,
        qos_ids: list[str] | None = None,
        transfer_ids: list[str] | None = None,
        poll_interval: float = 10.0,
        max_errors: int = 10,
        echo: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.conn_id = conn_id
        self.qos_ids, self.transfer_ids = list(qos_ids or []), list(transfer_ids or [])
        self.poll_interval, self.max_errors = float(poll_interval), int(max_errors)
        # Handed back in the event: `airflow dags test` resumes with the event alone.
        self.echo = dict(echo or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "stratoflow.triggers.onedata.OnedataReplicationTrigger",
            {
                "conn_id": self.conn_id,
                "qos_ids": self.qos_ids,
                "transfer_ids": self.transfer_ids,
                "poll_interval": self.poll_interval,
                "max_errors": self.max_errors,
                "echo": self.echo,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from stratoflow.hooks.onedata import OnedataHook
        from stratoflow.sites.onedata.client import OnedataError
        from stratoflow.sites.onedata.replication import (
            QOS_DONE,
            TRANSFER_DONE,
            qos_states,
            transfer_states,
        )

        client = await asyncio.to_thread(OnedataHook(self.conn_id).get_conn)
        errors = 0
        try:
            while True:
                try:
                    qos = await asyncio.to_thread(qos_states, client, self.qos_ids)
                    transfers = await asyncio.to_thread(transfer_states, client, self.transfer_ids)
                    errors = 0
                except OnedataError as e:
                    errors += 1
                    if e.status in (401, 403) or errors >= self.max_errors:
                        raise
                    await asyncio.sleep(self.poll_interval)
                    continue
                if set(qos.values()) <= QOS_DONE and set(transfers.values()) <= TRANSFER_DONE:
                    break
                await asyncio.sleep(self.poll_interval)
        finally:
            client.close()
        ok = all(s == "fulfilled" for s in qos.values()) and all(
            s == "completed" for s in transfers.values()
        )
        yield TriggerEvent(
            {
                "status": "success" if ok else "failed",
                "qos": qos,
                "transfers": transfers,
                "echo": self.echo,
            }
        )
