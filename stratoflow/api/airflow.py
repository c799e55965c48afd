"""Triggering a deployment's DAG run through Airflow's REST API, as the caller.

Like :func:`stratoflow.submit.submit`, but authenticated with the caller's own bearer
token instead of the admin password: Airflow then applies its permissions to the real
user (can they see, unpause and trigger this DAG?) and its audit log names them.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

import httpx

log = logging.getLogger(__name__)

DAG_APPEAR_TIMEOUT_S = 120.0


class AirflowCallError(Exception):
    """Airflow refused or failed a call; ``status`` is its HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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


class CallerAirflow:
    """The few ``/api/v2`` calls a submission needs, with the caller's bearer token."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def __enter__(self) -> CallerAirflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _request(self, method: str, path: str, ok_404: bool = False, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise AirflowCallError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if ok_404 and r.status_code == 404:
            return None
        if r.status_code >= 300:
            raise AirflowCallError(
                r.status_code, f"{method} {path}: HTTP {r.status_code}: {r.text[:300]}"
            )
        return r.json()

    def wait_for_dag(self, dag_id: str, timeout: float = DAG_APPEAR_TIMEOUT_S) -> dict:
        """A newly registered plan appears after the dag-processor's next pass."""
        deadline = time.monotonic() + timeout
        while True:
            dag = self._request("GET", f"/api/v2/dags/{dag_id}", ok_404=True)
            if dag is not None:
                return dag
            if time.monotonic() > deadline:
                raise AirflowCallError(
                    504, f"DAG {dag_id} did not appear in Airflow within {timeout:.0f} s"
                )
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> dict:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        return self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)


def submit_as(
    plan: dict[str, Any], inputs: dict[str, Any], owner: str, token: str
) -> tuple[str, str]:
    """Record the deployment, then trigger its run as the caller. Returns (id, run id).

    The record comes first (as in ``stratoflow.submit``) so a failure to trigger is visible
    as CREATE_FAILED with its reason, never as a run nobody knows about.
    """
    from stratoflow.store import Store, deployment_id_for

    dag_id = plan["dag_id"]
    run_id = f"stratoflow__{uuid.uuid4().hex[:16]}"
    deployment_id = deployment_id_for(dag_id, run_id)
    with Store.open() as store:
        store.create_deployment(dag_id, run_id, plan["hash"], inputs, owner=owner, id=deployment_id)
        try:
            with CallerAirflow(airflow_base_url(), token) as api:
                dag = api.wait_for_dag(dag_id)
                # Only unpause when needed: a user may be allowed to trigger a DAG but
                # not to edit it.
                if dag.get("is_paused"):
                    api.unpause(dag_id)
                api.trigger(dag_id, run_id, inputs)
        except AirflowCallError as exc:
            store.set_status(
                deployment_id, "CREATE_FAILED", reason=f"could not start the run: {exc}"
            )
            raise
    log.info("deployment %s (%s/%s) submitted by %s", deployment_id, dag_id, run_id, owner)
    return deployment_id, run_id
