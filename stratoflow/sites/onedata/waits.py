"""Waiting for OneData QoS requirements and transfers in the triggerer."""

from __future__ import annotations

from typing import Any

from stratoflow.sites.credentials import credentials
from stratoflow.sites.onedata.client import OnedataError
from stratoflow.sites.onedata.replication import (
    QOS_DONE,
    TRANSFER_DONE,
    qos_states,
    transfer_states,
)
from stratoflow.sites.waits import Waiter


class ReplicasDone(Waiter):
    """Poll until every QoS requirement is fulfilled or impossible and every transfer has
    ended; then ``{"status": "success" | "failed", "qos": {id: status},
    "transfers": {id: status}}``. A refused token (401/403) fails at once; other errors
    only delay the next poll, up to the trigger's ``max_errors`` in a row."""

    def __init__(
        self, conn_id: str, qos_ids: list[str] | None = None, transfer_ids: list[str] | None = None
    ):
        self.conn_id = conn_id
        self.qos_ids, self.transfer_ids = list(qos_ids or []), list(transfer_ids or [])
        self._client: Any = None

    def poll(self) -> dict[str, Any] | None:
        if self._client is None:
            self._client = credentials().onedata_client(self.conn_id)
        qos = qos_states(self._client, self.qos_ids)
        transfers = transfer_states(self._client, self.transfer_ids)
        if not (set(qos.values()) <= QOS_DONE and set(transfers.values()) <= TRANSFER_DONE):
            return None
        ok = all(s == "fulfilled" for s in qos.values()) and all(
            s == "completed" for s in transfers.values()
        )
        return {"status": "success" if ok else "failed", "qos": qos, "transfers": transfers}

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, OnedataError) and exc.status not in (401, 403)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
