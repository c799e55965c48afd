"""One orphan-reaper scenario, run by each cloud backend's tests against its own fake.

Four deployments hold resources at the site:
- ``live``: in progress, its records live                      -> kept
- ``lost``: its records say deleted, the resources remain       -> reaped
- ``ended``: CREATE_FAILED, but teardown never ran              -> reaped
- ``ghost``: created through another store, unknown to this one -> reaped
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stratoflow.maintenance.reaper import ReapResult, reap, reap_site
from stratoflow.sites.base import Compute
from stratoflow.store import Store

Provision = Callable[[str, Store], None]


def tagged_only(results: list[ReapResult]) -> list[ReapResult]:
    """The verdicts on tagged resources, without the reservations given back."""
    return [r for r in results if r.kind != "reservation"]


def run_reaper_scenario(site: Compute, store: Store, provision: Provision, tmp: Path) -> None:
    provision("live", store)
    provision("lost", store)
    for r in store.resources("lost"):
        store.mark_resource_deleted(r.key)  # a delete that "succeeded" but did not take
    ended = store.create_deployment("dag", f"run-{uuid.uuid4().hex[:6]}", "h", {}).id
    provision(ended, store)
    store.set_status(ended, "CREATE_FAILED", "job failed; teardown worker died")
    ghost_store = Store.open("sqlite:///" + str(tmp / f"ghost-{uuid.uuid4().hex[:6]}.db"))
    provision("ghost", ghost_store)

    tagged = site.list_tagged()
    live_ids = {r.external_id for r in store.resources("live")}
    assert live_ids and live_ids <= {t.external_id for t in tagged}
    orphans = {t.external_id for t in tagged} - live_ids
    assert len(orphans) >= 3

    # Everything is younger than the grace period: a provision may still be in flight.
    assert reap_site(site.name, site, store, run_id="young") == []
    # A dry run says what it would delete, and deletes nothing.
    dry = tagged_only(
        reap({site.name: site}, store, run_id="dry", grace=timedelta(0), dry_run=True)
    )
    assert {r.external_id for r in dry} == orphans
    assert {r.action for r in dry} == {"would_delete"}
    assert {t.external_id for t in site.list_tagged()} == orphans | live_ids

    later = datetime.now(UTC) + timedelta(hours=2)
    swept = reap_site(site.name, site, store, run_id="sweep", now=later)
    done = tagged_only(swept)
    # Capacity still held for nothing is given back: "lost" has no deployment record.
    assert {(r.deployment_id, r.reason) for r in swept if r not in done} <= {
        ("lost", "no deployment has this id")
    }
    assert {r.external_id for r in done} == orphans
    assert {r.action for r in done} == {"deleted"}, done
    reasons = {r.deployment_id: r.reason for r in done}
    assert "says deleted" in reasons["lost"]
    assert "ended CREATE_FAILED" in reasons[ended]
    assert any(d is None and "no resource record" in why for d, why in reasons.items())
    assert {t.external_id for t in site.list_tagged()} == live_ids
    assert store.resources(ended) == []  # the reaper closed the records it acted on
    logged = store.reaper_actions(site=site.name, run_id="sweep")
    logged = [a for a in logged if a["kind"] != "reservation"]
    assert sorted(a["external_id"] for a in logged) == sorted(orphans)
    assert all(a["action"] == "deleted" and a["reason"] for a in logged)

    # Nothing is left to reap; the live deployment's own teardown removes the rest.
    assert reap_site(site.name, site, store, run_id="again", now=later) == []
    site.teardown("live", store)
    assert site.list_tagged() == []
    ghost_store.close()
