"""The orphan reaper: the backstop behind teardown.

Teardown always runs, but a worker can die between a create call and its record, a cloud
can lose a delete, a deployment's teardown can give up. The reaper lists what each site
carries with Stratoflow's tags, compares it with the store's write-ahead records, and
deletes what nothing live accounts for once it is older than a grace period (a resource
younger than that may belong to a provision still in flight).

Rules, per tagged resource (``why_orphaned``):
- no record holds its idempotency key -> orphan (created behind the store's back);
- its record says deleted -> orphan (a delete that did not take);
- its record names another resource id -> orphan (a duplicate for one key);
- its deployment has ended (not ``*_IN_PROGRESS``) -> orphan (teardown left it);
- otherwise it is in use and kept. A record at another site that shares the cloud account
  is in use too: the reaper never deletes what another live record accounts for.

Then the site's capacity reservations: one held for a deployment that ended, or whose DAG
run is gone, and that holds no live resource there, is given back (local sites have no
tagged resources, so a teardown that never ran would otherwise keep their room forever).

Every deletion (or failure, or dry-run verdict) is written to the store's reaper log.
Plain Python: no Airflow import, so the CLI and the DAG share it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stratoflow.sites.base import Compute, TaggedResource

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=1)

#: Whether Airflow still has the DAG run (dag_id, run_id); None: the caller cannot tell.
RunExists = Callable[[str, str], bool | None]


@dataclass(frozen=True)
class ReapResult:
    site: str
    kind: str
    external_id: str
    key: str
    deployment_id: str | None
    action: str  # "deleted" | "failed" | "would_delete"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def why_orphaned(resource: TaggedResource, record: Any, deployment: Any) -> str | None:
    """Why ``resource`` is an orphan, or None when something live accounts for it.

    ``record`` is the store's record for the resource's key (None if there is none),
    ``deployment`` the record's deployment (None if unknown)."""
    if record is None:
        return f"no resource record holds key {resource.key or '(none)'}"
    state = str(getattr(record.state, "value", record.state))
    if state == "deleted":
        return f"its record {record.key} says deleted"
    if record.external_id and record.external_id != resource.external_id:
        return f"a duplicate: record {record.key} names {record.external_id}"
    if deployment is not None and not deployment.status.in_progress:
        return f"deployment {deployment.id} ended {deployment.status.value} and left it"
    return None


def reap_site(
    site: str,
    compute: Compute,
    store: Any,
    *,
    run_id: str,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
    dry_run: bool = False,
    run_exists: RunExists | None = None,
) -> list[ReapResult]:
    """Delete the orphans at one site, then give back the capacity held for nothing there;
    return (and record) what was done."""
    now = now or datetime.now(UTC)
    results: list[ReapResult] = []
    for res in compute.list_tagged():
        age = now - res.created_at if res.created_at else None
        if age is not None and age < grace:
            continue  # possibly a provision in flight: its record may not be written yet
        record = store.resource(res.key) if res.key else None
        deployment = store.get_deployment(record.deployment_id) if record else None
        reason = why_orphaned(res, record, deployment)
        if reason is None:
            continue
        if age is None:
            reason += "; age unknown"
        else:
            reason += f"; {int(age.total_seconds())} s old"
        action = "would_delete"
        if not dry_run:
            try:
                compute.delete_tagged(res)
                action = "deleted"
                if record is not None and record.external_id in (None, res.external_id):
                    store.mark_resource_deleted(record.key)
                if deployment is not None and not deployment.status.in_progress:
                    store.release(site, deployment.id)  # its capacity is free again
            except Exception as e:  # one stuck resource must not stop the sweep
                action, reason = "failed", f"{reason}; delete failed: {e}"
                log.error("reaper: %s %s at %s: %s", res.kind, res.external_id, site, reason)
        dep_id = record.deployment_id if record else None
        result = ReapResult(site, res.kind, res.external_id, res.key, dep_id, action, reason)
        store.record_reaper_action(run_id=run_id, **result.to_dict())
        log.info("reaper: %s %s %s at %s: %s", action, res.kind, res.external_id, site, reason)
        results.append(result)
    return results + release_stale_reservations(
        site, store, run_id=run_id, grace=grace, now=now, dry_run=dry_run, run_exists=run_exists
    )


def why_reservation_stale(
    deployment: Any, holds_resources: bool, run_exists: bool | None
) -> str | None:
    """Why a reservation is held for nothing, or None while something may still use it.

    Capacity follows what the site holds: while a live resource record remains, the
    reservation stays (the orphan pass above deletes the resource, then releases)."""
    if holds_resources:
        return None
    if deployment is None:
        return "no deployment has this id"
    if not deployment.status.in_progress:
        return f"deployment {deployment.id} ended {deployment.status.value} and holds nothing"
    if run_exists is False:
        return f"the DAG run {deployment.dag_id}/{deployment.run_id} no longer exists"
    return None


def release_stale_reservations(
    site: str,
    store: Any,
    *,
    run_id: str,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
    dry_run: bool = False,
    run_exists: RunExists | None = None,
) -> list[ReapResult]:
    """Give back the capacity held at ``site`` for deployments that ended, or whose DAG
    run is gone, and that hold no resource there: a teardown that never ran (a deleted
    run, a killed worker) must not keep a local site's room forever. A reservation younger
    than ``grace`` is left alone: its provision may be writing its first record."""
    now = now or datetime.now(UTC)
    results = []
    live = {r.deployment_id for r in store.live_resources(site)}
    for deployment_id, reserved_at in store.reservations_at(site):
        if reserved_at is not None and now - reserved_at < grace:
            continue
        deployment = store.get_deployment(deployment_id)
        exists = None
        if deployment is not None and run_exists is not None:
            exists = run_exists(deployment.dag_id, deployment.run_id)
        reason = why_reservation_stale(deployment, deployment_id in live, exists)
        if reason is None:
            continue
        action = "would_delete" if dry_run else "deleted"
        if not dry_run:
            store.release(site, deployment_id)
        result = ReapResult(site, "reservation", deployment_id, "", deployment_id, action, reason)
        store.record_reaper_action(run_id=run_id, **result.to_dict())
        log.info("reaper: %s the reservation of %s at %s: %s", action, deployment_id, site, reason)
        results.append(result)
    return results


def reap(
    sites: Mapping[str, Compute],
    store: Any,
    *,
    run_id: str,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
    dry_run: bool = False,
    on_site_error: Callable[[str, Exception], None] | None = None,
    run_exists: RunExists | None = None,
) -> list[ReapResult]:
    """Reap every site; a site that cannot be listed is reported and skipped."""
    out: list[ReapResult] = []
    for name, compute in sites.items():
        try:
            out += reap_site(
                name,
                compute,
                store,
                run_id=run_id,
                grace=grace,
                now=now,
                dry_run=dry_run,
                run_exists=run_exists,
            )
        except Exception as e:
            if on_site_error is None:
                raise
            on_site_error(name, e)
    return out
