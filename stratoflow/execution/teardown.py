"""Removing what a deployment holds, at every site it touched: the campaign's teardown
task and the delete DAG share this."""

from __future__ import annotations

from typing import Protocol

from stratoflow.errors import SiteError
from stratoflow.sites.base import Allocation, ResourceLedger
from stratoflow.sites.catalogue import catalogue, compute_for_site


class TeardownLedger(ResourceLedger, Protocol):
    """The ledger, plus what teardown needs beyond a site backend's calls."""

    def release_all(self, deployment_id: str) -> None: ...
    def leave_queue(self, deployment_id: str, reason: str) -> None: ...


def tear_down(
    deployment_id: str, ledger: TeardownLedger, alloc: Allocation | None = None, why: str = ""
) -> list[str]:
    """Delete every resource the store records for the deployment, at each of its sites,
    whatever its template or the catalogue says now; then free its capacity and take it out
    of the admission queue. Idempotent. Raises ``SiteError`` when something remains.

    ``alloc`` is what the create run's provision returned, when known: it names hosts that
    a crash may have left without a record. Returns the sites visited."""
    sites = {r.site for r in ledger.resources(deployment_id)}
    if alloc is not None:
        sites.add(alloc.site)
    gone = sorted(sites - set(catalogue()))
    if gone:
        raise SiteError(
            f"deployment {deployment_id} has resources at {', '.join(gone)}, which the site"
            " catalogue no longer lists: put the entry back (its resources are still there),"
            " then delete again"
        )
    for site in sorted(sites):
        compute_for_site(site).teardown(
            deployment_id, ledger, alloc if alloc and alloc.site == site else None
        )
    left = [r.key for r in ledger.resources(deployment_id)]
    if left:
        raise SiteError(f"teardown left resources behind: {', '.join(left)}")
    # Nothing is left at any site: its room goes to the next in line.
    ledger.release_all(deployment_id)
    ledger.leave_queue(deployment_id, why or "torn down")
    return sorted(sites)
