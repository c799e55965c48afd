"""Site brokering: from a placement request and the site catalogue, an ordered list of
candidate sites. Provision walks this list on retries (failover)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stratoflow.errors import Issue, TemplateError


@dataclass(frozen=True)
class SiteOffer:
    """What the broker needs to know about a site (a view of the catalogue entry)."""

    name: str
    kind: str
    cores: int
    mem_bytes: int
    runs_jobs: bool = True  # False: a storage or transfer service, never a candidate
    block_storage: bool = False  # it can attach block volumes to hosts


def rank_sites(
    placement: Mapping[str, Any],
    demand_cores: int,
    demand_mem: int,
    offers: Mapping[str, SiteOffer],
    block_storage: list[str] | None = None,
) -> list[str]:
    """Return candidate site names, best first.

    An explicit ``site`` or ``sites`` list is honoured in the order given; otherwise every
    site whose kind is allowed is a candidate, in catalogue order (the operator lists the
    preferred site first). Sites that could never hold the request, or cannot attach the
    ``block_storage`` nodes' volumes, are dropped; if none is left the error says why for
    each.
    """
    site, sites, kinds = (
        placement.get("site"),
        placement.get("sites") or [],
        placement.get("kinds") or [],
    )
    wanted = [site] if site else list(sites)
    for i, name in enumerate(wanted):
        if name not in offers:
            path = "placement.site" if site else f"placement.sites[{i}]"
            known = ", ".join(sorted(offers)) or "none"
            raise TemplateError(Issue(path, f"unknown site '{name}' (known sites: {known})"))
    if not wanted:
        wanted = list(offers)
    reasons: list[str] = []
    candidates: list[str] = []
    for name in wanted:
        offer = offers[name]
        if not offer.runs_jobs:
            reasons.append(f"{name}: kind '{offer.kind}' stores or moves data, it runs no jobs")
        elif kinds and offer.kind not in kinds:
            reasons.append(f"{name}: kind '{offer.kind}' not in {kinds}")
        elif block_storage and not offer.block_storage:
            reasons.append(
                f"{name}: kind '{offer.kind}' cannot attach block storage"
                f" ({', '.join(block_storage)})"
            )
        elif offer.cores < demand_cores:
            reasons.append(f"{name}: needs {demand_cores} cores, site has {offer.cores}")
        elif offer.mem_bytes < demand_mem:
            reasons.append(
                f"{name}: needs {demand_mem} bytes of memory, site has {offer.mem_bytes}"
            )
        else:
            candidates.append(name)
    if not candidates:
        raise TemplateError(
            Issue("placement", "no site can run this deployment: " + "; ".join(reasons))
        )
    return candidates


def placement_priority(placement: Mapping[str, Any]) -> int:
    """The queue priority a deployment asks for (the site caps it at its max_priority)."""
    value = placement.get("priority")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not -100 <= value <= 100:
        raise TemplateError(
            Issue("placement.priority", f"expected an integer -100..100, got {value!r}")
        )
    return value
