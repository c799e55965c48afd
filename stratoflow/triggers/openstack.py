"""Kept so that a boot wait deferred by an earlier Stratoflow still loads after an
upgrade; new waits use :class:`stratoflow.triggers.wait.SiteWaitTrigger`."""

from __future__ import annotations

from typing import Any

from stratoflow.triggers.wait import SiteWaitTrigger


class ServerActiveTrigger(SiteWaitTrigger):
    """The old signature, as the generic trigger waiting on ``openstack.servers_active``."""

    def __init__(
        self,
        conn_id: str,
        server_ids: list[str],
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        echo: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            "openstack.servers_active",
            {"conn_id": conn_id, "server_ids": list(server_ids)},
            poll_interval_s=poll_interval,
            timeout_s=float(timeout),  # WaitSpec turns it into a deadline when none is given
            deadline=deadline,
            echo=echo,
        )
