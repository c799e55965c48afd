"""Kept so that a replication wait deferred by an earlier Stratoflow still loads after an
upgrade; new waits use :class:`stratoflow.triggers.wait.SiteWaitTrigger`."""

from __future__ import annotations

from typing import Any

from stratoflow.triggers.wait import SiteWaitTrigger


class OnedataReplicationTrigger(SiteWaitTrigger):
    """The old signature, as the generic trigger waiting on ``onedata.replicas_done``."""

    def __init__(
        self,
        conn_id: str,
        qos_ids: list[str] | None = None,
        transfer_ids: list[str] | None = None,
        poll_interval: float = 10.0,
        max_errors: int = 10,
        echo: dict[str, Any] | None = None,
    ):
        super().__init__(
            "onedata.replicas_done",
            {
                "conn_id": conn_id,
                "qos_ids": list(qos_ids or []),
                "transfer_ids": list(transfer_ids or []),
            },
            poll_interval_s=poll_interval,
            max_errors=max_errors,
            echo=echo,
        )
