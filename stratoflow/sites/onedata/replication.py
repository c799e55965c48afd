"""Replication in OneData: QoS requirements (the declarative way, like a Rucio rule) and
transfers (the imperative way). Plain functions over ``OnedataClient``;
``waits.ReplicasDone`` waits on them."""

from __future__ import annotations

from typing import Any

from stratoflow.sites.onedata.storage import split_url

QOS_DONE = {"fulfilled", "impossible"}
TRANSFER_DONE = {"completed", "failed", "cancelled", "skipped"}


def require_replicas(client: Any, urls: list[str], expression: str, replicas: int) -> list[str]:
    """One QoS requirement per file; returns their ids (wait with ``qos_states``)."""
    ids = []
    for url in urls:
        space, rel = split_url(url)
        fid = client.file_id(f"{space}/{rel}")
        if fid is None:
            raise FileNotFoundError(f"{url}: no such file")
        ids.append(client.add_qos(fid, expression, replicas))
    return ids


def qos_states(client: Any, requirement_ids: list[str]) -> dict[str, str]:
    return {rid: str(client.qos(rid).get("status", "unknown")) for rid in requirement_ids}


def replicate(client: Any, urls: list[str], provider: str = "") -> list[str]:
    """One replication transfer per file to ``provider``; returns the transfer ids."""
    ids = []
    for url in urls:
        space, rel = split_url(url)
        fid = client.file_id(f"{space}/{rel}")
        if fid is None:
            raise FileNotFoundError(f"{url}: no such file")
        ids.append(client.start_transfer(fid, "replication", provider))
    return ids


def transfer_states(client: Any, transfer_ids: list[str]) -> dict[str, str]:
    return {t: str(client.transfer(t).get("transferStatus", "unknown")) for t in transfer_ids}
