"""Waiting for Nova servers to become ACTIVE: the one boot check, for the triggerer (after
``provision_start``) and for the blocking ``provision``."""

from __future__ import annotations

from typing import Any

from stratoflow.sites.credentials import credentials
from stratoflow.sites.openstack.api import is_not_found, is_transient, message_of
from stratoflow.sites.waits import Waiter


class ServersActive(Waiter):
    """``GET /servers/{id}`` for each server until all are ACTIVE or one is ERROR/gone.

    Events: ``{"status": "active", "servers": {id: {"status", "addresses"}}}``,
    ``{"status": "error", "server_id", "message"}`` (``"server_status": "ERROR"`` when
    Nova says so), and on timeout ``{"status": "timeout", "pending": [ids]}``. Transient
    API errors (5xx, lost replies) only delay the next poll: the deadline bounds them.
    """

    def __init__(self, conn_id: str, server_ids: list[str], connection: Any = None):
        self.conn_id = conn_id
        self.server_ids = list(server_ids)
        self.pending = list(server_ids)
        self._conn = connection

    def poll(self) -> dict[str, Any] | None:
        if self._conn is None:
            self._conn = credentials().openstack_connection(self.conn_id)
        seen: dict[str, Any] = {}
        for sid in self.server_ids:
            try:
                s = self._conn.compute.get_server(sid)
            except Exception as e:
                if is_not_found(e):
                    return {"status": "error", "server_id": sid, "message": "server is gone"}
                if is_transient(e):
                    return None
                return {"status": "error", "server_id": sid, "message": message_of(e)}
            if s.status == "ERROR":
                fault = (s.fault or {}).get("message", "no fault message")
                return {
                    "status": "error",
                    "server_id": sid,
                    "server_status": "ERROR",
                    "message": fault,
                }
            seen[sid] = {"status": s.status, "addresses": dict(s.addresses or {})}
        self.pending = sorted(k for k, v in seen.items() if v["status"] != "ACTIVE")
        return None if self.pending else {"status": "active", "servers": seen}

    def on_timeout(self) -> dict[str, Any]:
        return {"status": "timeout", "pending": self.pending}
