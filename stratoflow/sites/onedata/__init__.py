"""The onedata backend: verified staging to and from OneData spaces (Oneprovider REST v3),
and replication through QoS requirements and transfers, waited on by a trigger.

Nothing here opens a connection until a copy is made, so registering it is free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OnedataSite", "OnedataStorage", "register"]


def register() -> None:
    """Register ``onedata://`` URLs and the storage-only site kind ``onedata``."""
    from stratoflow.sites.catalogue import register_compute, register_storage
    from stratoflow.sites.onedata.config import validate_entry
    from stratoflow.sites.waits import register_waiter

    register_storage("onedata", "onedata", "stratoflow.sites.onedata:OnedataStorage")
    register_compute("onedata", "stratoflow.sites.onedata:OnedataSite", validate_entry)
    register_waiter("onedata.replicas_done", "stratoflow.sites.onedata.waits:ReplicasDone")


def __getattr__(name: str) -> Any:
    if name == "OnedataStorage":
        from stratoflow.sites.onedata.storage import OnedataStorage

        return OnedataStorage
    if name == "OnedataSite":
        from stratoflow.sites.onedata.config import OnedataSite

        return OnedataSite
    raise AttributeError(name)
