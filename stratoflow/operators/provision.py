"""Provision (an Airflow setup task) and teardown (its teardown task)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.execution.placement import compute_for_site, host_requests
from stratoflow.operators.base import StratoflowOperator
from stratoflow.plan.model import PROVISION
from stratoflow.sites.base import Allocation
from stratoflow.triggers.wait import SiteWaitTrigger


class ProvisionOperator(StratoflowOperator):
    """Create the deployment's resources at the next candidate site.

    Try n uses candidate n (the last one is reused), so Airflow's retries are the
    failover. The site backend removes a failed attempt's resources before raising: Airflow
    never runs a teardown whose setup failed.
    """

    ui_color = "#d9ead3"

    def run(self, context: Any) -> dict:
        bound = self.bound(context)
        candidates = bound["candidates"]
        site = candidates[min(context["ti"].try_number - 1, len(candidates) - 1)]
        deployment_id = bound["deployment_id"]
        compute = compute_for_site(site)
        try:
            hosts = host_requests(bound["hosts"])
            alloc = compute.provision_start(deployment_id, hosts, self.store)
            wait = compute.boot_wait(alloc)
        except SiteError as exc:
            raise SiteError(f"site {site}: {exc}") from exc
        if wait is not None:
            # VMs take minutes to boot: wait in the triggerer, not in a worker slot.
            state = {"site": site, "alloc": alloc.to_dict()}
            self.log.info(
                "%s: %d host(s) booting at %s; waiting on %s in the triggerer",
                deployment_id,
                len(alloc.hosts),
                site,
                wait.waiter,
            )
            self.defer(
                trigger=SiteWaitTrigger.from_spec(wait, echo=state),
                method_name="resume",
                kwargs=state,
                timeout=timedelta(seconds=(wait.timeout_s or 3600) + 300),
            )
        return self._provisioned(deployment_id, site, alloc)

    def resume(
        self, context: Any, event: dict | None = None, site: str = "", alloc: dict | None = None
    ) -> dict:
        """Back from the boot trigger: finish (addresses, agent) or clean up and fail."""
        if not event:
            # A retry can resume here without an event (see JobOperator): start again;
            # provision_start adopts the servers this deployment already has.
            return self.execute(context)

        state: dict[str, Any] = {"site": site, "alloc": alloc} if site else event.get("echo") or {}

        def finish() -> dict:
            compute = compute_for_site(state["site"])
            started = Allocation.from_dict(state["alloc"])
            status = (event or {}).get("status")
            if status != "active":
                why = (event or {}).get("message") or f"{status}: {event}"
                exc = SiteError(f"site {state['site']}: hosts did not boot: {why}")
                compute.cleanup_attempt(started.deployment_id, self.store, exc)
                raise exc
            try:
                done = compute.provision_finish(started, self.store)
            except SiteError as exc:
                raise SiteError(f"site {state['site']}: {exc}") from exc
            return self._provisioned(started.deployment_id, state["site"], done)

        return self.guarded(context, finish)

    def _provisioned(self, deployment_id: str, site: str, alloc: Allocation) -> dict:
        self.store.set_status(deployment_id, "CREATE_IN_PROGRESS", site=site)
        self.log.info(
            "provisioned %s at %s: %d cores, workdir %s",
            deployment_id,
            site,
            alloc.cores,
            alloc.workdir,
        )
        return alloc.to_dict()


class TeardownOperator(StratoflowOperator):
    """Remove everything the deployment holds at its site. Idempotent; keeps results."""

    ui_color = "#f4cccc"

    def run(self, context: Any) -> dict:
        deployment_id = self.deployment_id(context)
        data = context["ti"].xcom_pull(task_ids=PROVISION)
        alloc = Allocation.from_dict(data) if data else None
        sites = {r.site for r in self.store.resources(deployment_id)}
        if alloc:
            sites.add(alloc.site)
        for site in sorted(sites):
            compute_for_site(site).teardown(
                deployment_id, self.store, alloc if alloc and alloc.site == site else None
            )
        left = [r.key for r in self.store.resources(deployment_id)]
        if left:
            raise SiteError(f"teardown left resources behind: {', '.join(left)}")
        self.log.info("deployment %s torn down at %s", deployment_id, sorted(sites) or "no site")
        return {"sites": sorted(sites)}
