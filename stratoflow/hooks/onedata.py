"""OnedataHook: the Oneprovider REST API v3 with an access token from an Airflow Connection.

Connection: host = the provider's URL (``https://provider.example.org``), password = the
access token (sent as ``X-Auth-Token``), extra ``verify`` (false for test servers only or
a CA bundle path), ``timeout`` (seconds). The token is never logged.
"""

from __future__ import annotations

import logging

from airflow.sdk import BaseHook

from stratoflow.errors import SiteError
from stratoflow.sites.onedata.client import OnedataClient

log = logging.getLogger(__name__)


class OnedataHook(BaseHook):
    conn_name_attr = "onedata_conn_id"
    conn_type = "onedata"
    hook_name = "Stratoflow OneData"

    def __init__(self, conn_id: str, *, attempts: int = 4) -> None:
        super().__init__()
        self.conn_id, self.attempts = conn_id, attempts

    def get_conn(self) -> OnedataClient:
        conn = self.get_connection(self.conn_id)
        if not conn.host:
            raise SiteError(f"onedata: connection {self.conn_id!r} has no host (provider URL)")
        if not conn.password:
            raise SiteError(f"onedata: connection {self.conn_id!r} has no access token (password)")
        host = conn.host if "://" in conn.host else f"https://{conn.host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        extra = conn.extra_dejson or {}
        log.info("onedata connection %r: token auth at %s", self.conn_id, host)
        return OnedataClient(
            host,
            conn.password,
            verify=extra.get("verify", True),
            timeout=float(extra.get("timeout", 60)),
            attempts=self.attempts,
        )
