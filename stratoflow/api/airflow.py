"""Triggering a deployment's DAG run through Airflow's REST API, as the caller.

The same submission as the CLI's (:func:`stratoflow.submit.submit`), but the client holds
the caller's own bearer token instead of the admin password: Airflow then applies its
permissions to the real user (can they see, unpause and trigger this DAG?) and its audit
log names them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from stratoflow.client import AirflowAPIError, AirflowClient
from stratoflow.plan.model import Plan

log = logging.getLogger(__name__)

__all__ = ["AirflowAPIError", "airflow_base_url", "airflow_client_as", "submit_as"]


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
