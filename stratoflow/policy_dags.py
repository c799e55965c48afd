"""One Airflow DAG per lifecycle policy (``dags/stratoflow_policies.py`` calls this).

Unlike the deployment DAGs, these read YAML at parse time: the policy files and the site
catalogue are small, and a policy's schedule lives in its file. A fault in them fails the
DAG file's import, so the Airflow UI shows each path-named fault.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param

from stratoflow.execution.policies import load_policy_set
from stratoflow.lifecycle.policy import Policy
from stratoflow.operators.lifecycle import (
    EvaluatePolicyOperator,
    ExecutePolicyOperator,
    PlanPolicyOperator,
    ReportPolicyOperator,
    VerifyPolicyOperator,
    policy_asset,
)


def build_policy_dag(policy: Policy) -> DAG:
    asset = policy_asset(policy.name)
    schedule = (
        AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(policy.schedule, timezone="UTC"), assets=asset
        )
        if policy.schedule
        else asset
    )
    with DAG(
        dag_id=policy.dag_id,
        description=policy.description or f"Lifecycle policy {policy.name}",
        doc_md=(
            f"Lifecycle policy `{policy.name}` from `{policy.source}`: {policy.copies} copies"
            f" on `{policy.storage.text}`. Runs on its schedule and when a dataset it selects"
            " is registered. `stratoflow policy plan` shows what a run would do."
        ),
        schedule=schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,  # two runs of one policy would plan against each other
        is_paused_upon_creation=False,
        tags=["stratoflow", "lifecycle"],
        params={"dry_run": Param(False, type="boolean", description="Plan, change nothing.")},
        default_args={
            "retries": 2,
            "retry_delay": timedelta(seconds=10),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=5),
            "execution_timeout": timedelta(hours=6),
        },
    ) as dag:
        steps = [
            EvaluatePolicyOperator(task_id="evaluate", policy=policy.name),
            PlanPolicyOperator(task_id="plan", policy=policy.name),
            ExecutePolicyOperator(task_id="execute", policy=policy.name),
            VerifyPolicyOperator(task_id="verify", policy=policy.name),
            ReportPolicyOperator(task_id="report", policy=policy.name),
        ]
        for upstream, downstream in zip(steps, steps[1:], strict=False):
            upstream >> downstream
    return dag


def build_policy_dags() -> dict[str, DAG]:
    return {p.dag_id: build_policy_dag(p) for p in load_policy_set().policies.values()}
