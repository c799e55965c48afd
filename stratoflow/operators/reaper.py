"""The orphan reaper as an Airflow operator: one mapped task per catalogue site."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from stratoflow.errors import SiteError
from stratoflow.hooks.credentials import use_airflow_connections

# The maintenance DAG imports only this operator: a cloud site's credentials come from
# Airflow Connections here too (without this, reaping an OpenStack site failed).
use_airflow_connections()


class ReaperOperator(BaseOperator):
    """Delete the orphans at one site (see ``stratoflow.maintenance.reaper``).

    The DAG's params choose the grace period and a dry run. A resource it could not delete
    fails the task, so Airflow retries it and the failure shows in the UI."""

    template_fields = ("site",)
    ui_color = "#fce5cd"

    def __init__(self, *, site: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.site = site

    def execute(self, context: Any) -> dict:
        from stratoflow.execution.placement import compute_for_site
        from stratoflow.maintenance.reaper import reap_site
        from stratoflow.store import Store

        params = context["params"]
        grace = timedelta(seconds=float(params["grace_s"]))
        run_id = f"{context['dag'].dag_id}/{context['run_id']}"
        results = reap_site(
            self.site,
            compute_for_site(self.site),
            Store.open(),
            run_id=run_id,
            grace=grace,
            dry_run=bool(params["dry_run"]),
            run_exists=lambda dag_id, run_id: (
                context["ti"].get_dr_count(dag_id, run_ids=[run_id]) > 0
            ),
        )
        counts: dict[str, int] = {}
        for r in results:
            counts[r.action] = counts.get(r.action, 0) + 1
        self.log.info("site %s: %s", self.site, counts or "no orphans")
        failed = [r for r in results if r.action == "failed"]
        if failed:
            raise SiteError(
                f"site {self.site}: {len(failed)} orphan(s) could not be deleted: "
                + "; ".join(f"{r.kind} {r.external_id}: {r.reason}" for r in failed)
            )
        return {"site": self.site, **counts}
