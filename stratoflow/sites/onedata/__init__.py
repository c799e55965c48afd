"""The onedata backend: verified staging to and from OneData spaces (Oneprovider REST v3),
and replication through QoS requirements and transfers, waited on by a trigger.

Nothing here opens a connection until a copy is made, so registering it is free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OnedataStorage", "register"]


def register() -> None:
    """Declare the kind ``onedata``: it serves ``onedata://`` URLs and runs no jobs."""
    from stratoflow.sites.kinds import SiteKind, register_kind
    from stratoflow.sites.onedata.config import OnedataConfig

    register_kind(
        SiteKind(
            "onedata",
            "a OneData space provider",
            OnedataConfig,
            storage={"onedata": "stratoflow.sites.onedata:OnedataStorage"},
            waiters={"onedata.replicas_done": "stratoflow.sites.onedata.waits:ReplicasDone"},
        )
    )


def __getattr__(name: str) -> Any:
    if name == "OnedataStorage":
        from stratoflow.sites.onedata.storage import OnedataStorage

        return OnedataStorage
    raise AttributeError(name)
