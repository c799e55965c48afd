"""Triggering a deployment's DAG run through Airflow's REST API, as the caller.

The same submission as the CLI's (:func:`stratoflow.submit.submit`), but the client holds
the caller's own bearer token instead of the admin password: Airflow then applies its
permissions to the real user (can they see, unpause and trigger this DAG?) and its audit
log names them.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from stratoflow.client import AirflowAPIError, AirflowClient
from stratoflow.plan.model import Plan

log = logging.getLogger(__name__)

__all__ = [
    "AirflowAPIError",
    "airflow_base_url",
    "airflow_client_as",
    "submit_as",
    "submit_soon",
]
# Where every plan's DAG is defined (dags/), and the tag all of them carry.
PLANS_FILE, PLANS_TAG = "stratoflow_plans.py", "stratoflow"


def airflow_base_url() -> str:
    """Where Airflow's REST API is. From configuration, never from the request's Host
    header: the caller's token is sent there, so a client must not be able to choose it."""
    explicit = os.environ.get("STRATOFLOW_AIRFLOW_URL")
    if explicit:
        return explicit.rstrip("/")
    try:
        from airflow.configuration import conf

        configured = conf.get("api", "base_url", fallback="") or ""
    except Exception:  # no usable Airflow configuration: fall back to the embedded one
        configured = ""
    if configured.startswith(("http://", "https://")):
        return configured.rstrip("/")
    from stratoflow import embedded

    return embedded.api_url()


def airflow_client_as(token: str) -> AirflowClient:
    """A client of Airflow's REST API that acts as the caller (their own token)."""
    return AirflowClient(airflow_base_url(), token=token)


def submit_as(
    plan: Plan,
    inputs: dict[str, Any],
    owner: str,
    token: str,
    options: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Record the deployment, then trigger its run as the caller. Returns (id, run id)."""
    from stratoflow.submit import submit

    api = airflow_client_as(token)
    deployment_id, run_id = submit(plan, inputs, owner=owner, api=api, options=options)
    log.info("deployment %s (%s/%s) submitted by %s", deployment_id, plan["dag_id"], run_id, owner)
    return deployment_id, run_id


def submit_soon(
    plan: Plan,
    inputs: dict[str, Any],
    owner: str,
    token: str,
    options: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Record the deployment and have its run started, without waiting for a new DAG.

    A DAG Airflow knows is triggered at once, as the caller, and a refusal is raised as by
    :func:`submit_as`. A never-seen template's DAG is not parsed yet: the dag-processor is
    asked to parse the plans file next, and a background thread triggers the run once the
    DAG exists; a failure there makes the deployment CREATE_FAILED with the reason.
    Returns (deployment id, run id).
    """
    from stratoflow.submit import record, start

    dag_id = plan["dag_id"]
    deployment_id, run_id = record(plan, inputs, owner, options)
    api = airflow_client_as(token)
    try:
        ready = api.ready_now(dag_id)
    except AirflowAPIError:
        ready = True  # let start() meet the same fault and record it
    if ready:
        start(dag_id, run_id, deployment_id, inputs, api)
    else:
        api.request_parse(PLANS_FILE, PLANS_TAG)
        threading.Thread(
            target=_start_in_background,
            args=(dag_id, run_id, deployment_id, inputs, api),
            name=f"start-{deployment_id}",
            daemon=True,
        ).start()
    log.info("deployment %s (%s/%s) submitted by %s", deployment_id, dag_id, run_id, owner)
    return deployment_id, run_id


def _start_in_background(
    dag_id: str, run_id: str, deployment_id: str, inputs: dict[str, Any], api: AirflowClient
) -> None:
    from stratoflow.store import DeploymentStatus, Store
    from stratoflow.submit import start

    with Store.open() as store:
        deployment = store.get_deployment(deployment_id)
    if deployment is None or deployment.status != DeploymentStatus.CREATE_IN_PROGRESS:
        api.close()
        return  # deleted while its DAG was being parsed: nothing to start
    try:
        start(dag_id, run_id, deployment_id, inputs, api)
    except AirflowAPIError as exc:  # start() recorded it as the deployment's reason
        log.warning("deployment %s did not start: %s", deployment_id, exc)
    except Exception:
        log.exception("deployment %s: starting its run failed", deployment_id)
