"""Report: the last task. It turns the run's outcome into the deployment's status."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from stratoflow.execution.report import deployment_outcome
from stratoflow.operators.base import StratoflowOperator
from stratoflow.plan.model import PROVISION, STAGE_OUT, TEARDOWN, TRANSFER


class ReportOperator(StratoflowOperator):
    """Runs whatever happened upstream (trigger rule ALL_DONE).

    It fails the run when the deployment failed, so the DAG run's state and the
    deployment's status always agree.
    """

    ui_color = "#ead1dc"
    bounded_by_deadline = False

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("trigger_rule", "all_done")
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)

    def run(self, context: Any) -> dict:
        ti = context["ti"]
        deployment_id = self.deployment_id(context)
        kinds = {s["id"]: s["kind"] for s in self.plan["steps"]}
        results = {
            step_id: ti.xcom_pull(task_ids=step_id)
            for step_id, kind in kinds.items()
            if kind in (PROVISION, STAGE_OUT, TEARDOWN, TRANSFER)
        }
        self.log.info(
            "steps that returned a result: %s",
            sorted(k for k, v in results.items() if v is not None),
        )
        bound = self.bound(context)
        outcome = deployment_outcome(
            self.plan,
            results,
            self.store.step_events(deployment_id),
            bound.get("inputs") or {},
            self.store.usage_totals(deployment_id),
        )
        if bound:  # the broker ran, so the deployment record exists
            self.store.set_status(
                deployment_id,
                outcome.status,
                reason=outcome.reason,
                outputs=outcome.outputs,
                task="",
            )
        if outcome.status != "CREATE_COMPLETE":
            raise AirflowFailException(f"deployment {deployment_id} failed: {outcome.reason}")
        self.log.info("deployment %s complete: %s", deployment_id, outcome.outputs)
        return outcome.outputs
