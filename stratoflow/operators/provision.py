"""Provision (an Airflow setup task) and teardown (its teardown task)."""

from __future__ import annotations

from typing import Any

from stratoflow.errors import SiteError
from stratoflow.execution.placement import compute_for_site, host_requests
from stratoflow.operators.base import StratoflowOperator
from stratoflow.plan.model import PROVISION
from stratoflow.sites.base import Allocation


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
            alloc = compute.provision(deployment_id, host_requests(bound["hosts"]), self.store)
        except SiteError as exc:
            raise SiteError(f"site {site}: {exc}") from exc
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
