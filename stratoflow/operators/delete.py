"""Delete: the one task of the delete DAG. It removes everything a deployment holds."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from stratoflow.errors import SiteError
from stratoflow.execution.teardown import tear_down
from stratoflow.operators.base import DeploymentOperator
from stratoflow.store.models import Task

#: How long to wait for a stopped create run's tasks to end before tearing down anyway.
CREATE_STOP_WAIT_S = 120.0
#: After a create run was stopped, a task in its last seconds may still finish a create
#: call: tear down once more after this long, to catch it (its record comes back "created").
SETTLE_S = 10.0
_ACTIVE = {"queued", "running", "deferred", "up_for_retry", "up_for_reschedule", "scheduled"}


class DeleteOperator(DeploymentOperator):
    """Remove every resource the store records for the deployment (not what its template
    says now), free its capacity, and end DELETE_COMPLETE; DELETE_FAILED when out of tries.
    Idempotent: a retry, or a later delete, finishes what a killed try left."""

    ui_color = "#f4cccc"
    works_as = Task.DEPLOYER

    def deployment_id(self, context: Any) -> str:
        return str(context["params"]["deployment_id"])

    def run(self, context: Any) -> dict:
        deployment_id = self.deployment_id(context)
        deployment = self.store.get_deployment(deployment_id)
        if deployment is None:
            raise AirflowFailException(f"no deployment {deployment_id}")
        stopped = self._wait_for_create_run(context, deployment.dag_id, deployment.run_id)
        sites = tear_down(deployment_id, self.store, why="deleted")
        if stopped:
            time.sleep(SETTLE_S)
            sites = sorted(set(sites) | set(tear_down(deployment_id, self.store, why="deleted")))
        self.store.set_status(deployment_id, "DELETE_COMPLETE", reason="", task="")
        self.log.info("deployment %s deleted at %s", deployment_id, sites or "no site")
        return {"sites": sites}

    def _wait_for_create_run(self, context: Any, dag_id: str, run_id: str) -> bool:
        """Wait until no task of the create run is active; True if one was."""
        ti = context["ti"]
        deadline = time.monotonic() + CREATE_STOP_WAIT_S
        was_active = False
        while True:
            try:
                states = ti.get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {})
            except Exception as exc:  # the create DAG is gone: nothing of it can run
                self.log.info("create run %s/%s not found (%s)", dag_id, run_id, exc)
                return was_active
            active = sorted(t for t, state in states.items() if state in _ACTIVE)
            if not active:
                return was_active
            was_active = True
            if time.monotonic() > deadline:
                raise SiteError(
                    f"the create run {dag_id}/{run_id} still has active tasks"
                    f" ({', '.join(active)}): stop it, then delete again"
                )
            self.log.info("waiting for the create run's tasks to stop: %s", ", ".join(active))
            time.sleep(2.0)

    def on_final_failure(self, context: Any, exc: BaseException) -> None:
        self.store.set_status(
            self.deployment_id(context), "DELETE_FAILED", reason=str(exc), task=""
        )
