"""Glue between plans and the site catalogue: a plan's demand, the sites' offers."""

from __future__ import annotations

from typing import Any

from stratoflow.admission import SiteRoom
from stratoflow.broker import SiteOffer
from stratoflow.sites.base import HostRequest, VolumeRequest
from stratoflow.sites.catalogue import (
    catalogue,
    compute_for,
    compute_for_site,
    runs_jobs,
    storage_for_url,
)
from stratoflow.sites.kinds import kinds
from stratoflow.sites.queue_policy import QueuePolicy
from stratoflow.tosca.scalars import parse_size

__all__ = [
    "catalogue",
    "compute_for_site",
    "demand",
    "host_requests",
    "site_offers",
    "site_rooms",
    "storage_for_url",
]

UNBOUNDED_CORES, UNBOUNDED_MEMORY = 1 << 20, 1 << 60


def _size(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else parse_size(value)


def host_requests(hosts: list[dict]) -> list[HostRequest]:
    return [
        HostRequest(
            node=h["node"],
            count=int(h.get("count") or 1),
            num_cpus=int(h.get("num_cpus") or 1),
            mem_bytes=_size(h.get("mem_size") or "1 GB"),
            disk_bytes=_size(h["disk_size"]) if h.get("disk_size") else None,
            gpus=int(h.get("num_gpus") or 0),
            image=(h.get("os") or {}).get("distribution"),
            public_endpoint=bool(h.get("public_endpoint")),
            volumes=tuple(
                VolumeRequest(v["node"], _size(v.get("size") or "1 GB"), v.get("device"))
                for v in h.get("volumes") or []
            ),
        )
        for h in hosts
    ]


def block_storage_nodes(hosts: list[dict]) -> list[str]:
    """The BlockStorage nodes a deployment's hosts attach (the broker needs a kind for them)."""
    return sorted({v["node"] for h in hosts for v in h.get("volumes") or []})


def demand(hosts: list[dict]) -> tuple[int, int]:
    """Total cores and memory bytes the deployment's hosts ask for."""
    requests = host_requests(hosts)
    return (
        sum(r.count * r.num_cpus for r in requests),
        sum(r.count * r.mem_bytes for r in requests),
    )


def site_rooms() -> dict[str, SiteRoom]:
    """Every compute site's capacity and queue policy, for admission."""
    rooms = {}
    for name, offer in site_offers().items():
        if offer.runs_jobs:
            policy = QueuePolicy.parse(name, catalogue()[name].config)
            rooms[name] = SiteRoom(
                name,
                float(offer.cores),
                offer.mem_bytes,
                takes_overflow=policy.takes_overflow,
                max_priority=policy.max_priority,
                queue_timeout_s=policy.queue_timeout_s,
            )
    return rooms


def site_offers() -> dict[str, SiteOffer]:
    offers = {}
    for name, site in catalogue().items():
        if not runs_jobs(site):
            offers[name] = SiteOffer(name, site.kind, 0, 0, runs_jobs=False)
            continue
        capacity = compute_for(site).capacity()
        cores, memory = capacity.cores or 0, capacity.mem_bytes or 0
        if capacity.quota_decides:
            # A cloud without capacity hints: its own quota answers at provision time.
            cores, memory = cores or UNBOUNDED_CORES, memory or UNBOUNDED_MEMORY
        block_storage = kinds()[site.kind].block_storage
        offers[name] = SiteOffer(name, site.kind, cores, memory, block_storage=block_storage)
    return offers
