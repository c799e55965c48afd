"""The bearer token a VM's Stratoflow agent accepts, derived from the site's connection.

token = HMAC-SHA256(secret, deployment id). The secret is the connection's extra
``agent_secret`` or, failing that, its password or application-credential secret; it
never leaves the Airflow side. The derived token goes into the VM's user data (readable
on that VM only) and is recomputed by every task that talks to the agent, so no task
passes it through XCom, the run conf or the store.
"""

from __future__ import annotations

import hmac

from airflow.sdk import BaseHook

from stratoflow.errors import SiteError


def agent_token(conn_id: str, deployment_id: str) -> str:
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson or {}
    secret = (
        extra.get("agent_secret")
        or conn.password
        or extra.get("application_credential_secret")
        or extra.get("aws_secret_access_key")
    )
    if not secret:
        raise SiteError(
            f"connection {conn_id!r} has no agent_secret (extra), password or credential"
            " secret to derive the agent token from"
        )
    mac = hmac.new(str(secret).encode(), f"stratoflow-agent:{deployment_id}".encode(), "sha256")
    return mac.hexdigest()
