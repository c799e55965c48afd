"""Build Airflow DAGs from compiled plans.

This runs at every parse of ``dags/``, so it does as little as possible: no TOSCA, no
database, no network, no YAML. Plans arrive as parsed JSON and steps map one-to-one to
operators.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, XComArg

from stratoflow.config import first_retry_delay_s
from stratoflow.deletion import DELETE_DAG_ID
from stratoflow.operators.broker import BrokerOperator
from stratoflow.operators.delete import DeleteOperator
from stratoflow.operators.job import JobOperator
from stratoflow.operators.lifecycle import REGISTERED_DATASETS
from stratoflow.operators.provision import ProvisionOperator, TeardownOperator
from stratoflow.operators.report import ReportOperator
from stratoflow.operators.staging import StageInOperator, StageOutOperator, TransferOperator
from stratoflow.plan import model as m
from stratoflow.plan.params import param_schema

_OPERATORS = {
    m.BROKER: BrokerOperator,
    m.PROVISION: ProvisionOperator,
    m.STAGE_IN: StageInOperator,
    m.STAGE_OUT: StageOutOperator,
    m.TRANSFER: TransferOperator,
    m.TEARDOWN: TeardownOperator,
    m.REPORT: ReportOperator,
}


DEPLOYMENT_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def build_delete_dag() -> DAG:
    """One DAG deletes every deployment: it reads the store's resource records, so it
    works whatever the template or the catalogue became since the create. A run per
    delete, its id carrying the deployment's (``delete__<id>__...``)."""
    with DAG(
        dag_id=DELETE_DAG_ID,
        schedule=None,
        params={
            "deployment_id": Param(
                type="string",
                pattern=DEPLOYMENT_ID_PATTERN,
                description="The deployment to delete (`stratoflow list` shows the ids).",
            )
        },
        description="Delete a deployment: remove every resource it holds, free its capacity",
        doc_md=(
            "Started by `stratoflow delete ID` or `DELETE /stratoflow/deployments/{id}`, "
            "which first set the deployment to DELETE_IN_PROGRESS and stop its create run."
        ),
        tags=["stratoflow", "delete"],
        catchup=False,
        is_paused_upon_creation=False,
        default_args={
            "retries": 3,
            "retry_delay": timedelta(seconds=5),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=5),
            "execution_timeout": timedelta(hours=1),
        },
    ) as dag:
        DeleteOperator(task_id="delete")
    return dag


def build_dag(plan: m.Plan) -> DAG:
    policy = plan["policy"]
    default_args = {
        "retries": policy["retries"],
        "retry_delay": timedelta(seconds=first_retry_delay_s(policy["retry_delay_s"])),
        "retry_exponential_backoff": policy["retry_backoff"],
        "max_retry_delay": timedelta(seconds=policy["max_retry_delay_s"]),
        "execution_timeout": timedelta(seconds=policy["timeout_s"]),
    }
    params = {}
    for name, definition in plan["inputs"].items():
        schema = param_schema(definition)
        if "default" in definition:
            params[name] = Param(definition["default"], **schema)
        else:  # no default: the trigger form and the REST API must be given a value
            params[name] = Param(**schema)
    with DAG(
        dag_id=plan["dag_id"],
        schedule=None,
        params=params,
        default_args=default_args,
        description=(plan.get("description") or plan["name"])[:200],
        doc_md=plan.get("description") or None,
        tags=["stratoflow", plan["name"]],
        catchup=False,
        is_paused_upon_creation=False,
    ) as dag:
        tasks: dict[str, Any] = {}
        for step in plan["steps"]:
            tasks[step["id"]] = _task(plan, step, tasks)
        for step in plan["steps"]:
            for upstream in step["upstream"]:
                tasks[upstream] >> tasks[step["id"]]
    return dag


def _task(plan: m.Plan, step: m.Step, tasks: dict[str, Any]) -> Any:
    kind = step["kind"]
    common: dict[str, Any] = {"task_id": step["id"], "plan": plan, "step": step}
    if kind == m.JOB:
        retries = step.get("retries")
        if isinstance(retries, int):
            common["retries"] = retries
        # execution_timeout counts the time deferred, so it must exceed the job's own
        # timeout (enforced by the site's runner); unknown until run time -> no cap here.
        timeout = step.get("timeout_s")
        common["execution_timeout"] = timedelta(seconds=timeout + 300) if timeout else None
        map_over = step.get("map_over")
        if map_over:
            partial = JobOperator.partial(
                max_active_tis_per_dagrun=step.get("max_parallel"), **common
            )
            return partial.expand(chunk=XComArg(tasks[map_over]))
        source = step.get("inputs_from")
        upstream_outputs = XComArg(tasks[source]) if source else None
        return JobOperator(upstream_outputs=upstream_outputs, **common)
    if kind in (m.STAGE_OUT, m.TRANSFER):
        # Their copies are registered as datasets; the policies that select one start.
        common["outlets"] = [REGISTERED_DATASETS]
    if kind == m.STAGE_OUT:
        return StageOutOperator(sources=[XComArg(tasks[s]) for s in step["from"]], **common)
    if kind == m.TEARDOWN:
        return TeardownOperator(**common).as_teardown(setups=tasks[step["setup"]])
    return _OPERATORS[kind](**common)
