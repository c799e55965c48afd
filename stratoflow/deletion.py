"""Deleting a deployment: what the CLI's ``delete`` and ``DELETE /deployments/{id}`` share.

The deployment moves to DELETE_IN_PROGRESS first (nothing new is created for it from then
on: the store refuses new resource records), leaves the admission queue, and its create run
is stopped when it still runs. Then a run of the delete DAG removes what the store records.
"""

from __future__ import annotations

import logging
import uuid

from stratoflow.client import AirflowAPIError, AirflowClient
from stratoflow.store import Deployment, Store

log = logging.getLogger(__name__)

DELETE_DAG_ID = "stratoflow_delete"  # built by dag_factory.build_delete_dag
_RUNNING = {"queued", "running"}


def delete_run_id(deployment_id: str) -> str:
    return f"delete__{deployment_id}__{uuid.uuid4().hex[:8]}"


def request_delete(
    deployment_id: str, api: AirflowClient, requested_by: str, store: Store | None = None
) -> tuple[Deployment, str]:
    """Start deleting; return (the deployment as it was, the delete run's id).

    Raises ``NotFound``, ``DeleteConflict`` (a delete runs or is done) or, when Airflow
    cannot start the delete run, ``AirflowAPIError`` after marking it DELETE_FAILED.
    """
    own = store is None
    store = store or Store.open()
    try:
        before = store.begin_delete(deployment_id, f"delete requested by {requested_by}")
        store.leave_queue(deployment_id, f"deleted by {requested_by}")
        run_id = delete_run_id(deployment_id)
        try:
            _stop_create_run(api, before)
            api.start_run(
                DELETE_DAG_ID,
                run_id,
                {"deployment_id": deployment_id},
                note=f"deployment {deployment_id} (delete)",
            )
        except AirflowAPIError as exc:
            store.set_status(deployment_id, "DELETE_FAILED", reason=f"could not start: {exc}")
            raise
        log.info("deployment %s: delete run %s started by %s", deployment_id, run_id, requested_by)
        return before, run_id
    finally:
        if own:
            store.close()


def _stop_create_run(api: AirflowClient, deployment: Deployment) -> None:
    """Stop the create run if it still runs: what it waits on is cancelled, and the delete
    DAG waits for its tasks to end before removing anything."""
    if not deployment.status.value.startswith("CREATE_"):
        return  # an earlier delete stopped it, or an update's run is not ours to stop
    try:
        run = api.get_run(deployment.dag_id, deployment.run_id)
    except AirflowAPIError as exc:
        if exc.status == 404:  # its DAG or run is gone: nothing of it can run
            return
        raise
    if run.get("state") in _RUNNING:
        api.stop_run(deployment.dag_id, deployment.run_id)
        log.info("deployment %s: create run %s stopped", deployment.id, deployment.run_id)
