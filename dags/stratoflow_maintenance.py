"""Stratoflow's maintenance DAGs: the scheduled orphan reaper.

STRATOFLOW_REAPER_SCHEDULE (cron or preset, default @hourly) and
STRATOFLOW_REAPER_GRACE_S (default 3600) set its rhythm and how old an orphan must be.
Trigger it by hand with dry_run=true to see what it would delete.
"""

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, Param, task

from stratoflow.operators.reaper import ReaperOperator

with DAG(
    dag_id="stratoflow_reaper",
    description="Delete cloud resources that no live Stratoflow deployment accounts for.",
    schedule=os.environ.get("STRATOFLOW_REAPER_SCHEDULE", "@hourly"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["stratoflow", "maintenance"],
    params={
        "grace_s": Param(
            int(os.environ.get("STRATOFLOW_REAPER_GRACE_S", "3600")),
            type="integer",
            minimum=0,
            description="Only resources older than this many seconds are reaped.",
        ),
        "dry_run": Param(False, type="boolean", description="Record, but delete nothing."),
    },
) as reaper:

    @task(retries=2, retry_delay=timedelta(seconds=30))
    def catalogue_sites() -> list[str]:
        from stratoflow.sites.catalogue import compute_sites

        return compute_sites()  # storage services hold no resources of ours

    ReaperOperator.partial(
        task_id="reap",
        retries=3,
        retry_delay=timedelta(seconds=30),
        retry_exponential_backoff=True,
    ).expand(site=catalogue_sites())
