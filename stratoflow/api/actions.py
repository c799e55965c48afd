"""What both deployments APIs (``/stratoflow`` and the INDIGO-compatible ``/orchestrator``)
do on a caller's behalf, with the HTTP errors they answer."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, status

from stratoflow.api.auth import Caller
from stratoflow.errors import TemplateError


def invalid(issues: list[tuple[list[str], str]]) -> HTTPException:
    """HTTP 422 naming each field at fault, in FastAPI's own shape (the one the OpenAPI
    documents give): ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``."""
    return HTTPException(
        # A literal: Starlette renamed the constant (..._ENTITY -> ..._CONTENT).
        status_code=422,
        detail=[{"loc": list(loc), "msg": msg, "type": "value_error"} for loc, msg in issues],
    )


def template_faults(exc: TemplateError) -> HTTPException:
    """422 with each fault of a template: ``loc`` is ``["body", "template", <TOSCA path>]``
    (an input's fault too: its path is ``topology_template.inputs.<name>``)."""
    return invalid(
        [(["body", "template", *([i.path] if i.path else [])], i.message) for i in exc.issues]
    )


def not_found(deployment_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"deployment {deployment_id} not found")


def airflow_failed(exc: Exception) -> HTTPException:
    """Airflow refused the caller (403), did not answer in time (504) or failed (502)."""
    code = getattr(exc, "status", 0)
    return HTTPException(
        status.HTTP_403_FORBIDDEN
        if code in (401, 403)
        else status.HTTP_504_GATEWAY_TIMEOUT
        if code == 504
        else status.HTTP_502_BAD_GATEWAY,
        str(exc),
    )


def require_owner(deployment: Any, caller: Caller) -> None:
    """403 unless the caller owns the deployment."""
    if deployment.owner != caller.name:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"deployment {deployment.id} belongs to {deployment.owner}, not {caller.name}",
        )


def owned_deployment(deployment_id: str, caller: Caller) -> Any:
    """The caller's deployment: 404 for an unknown one, 403 for another owner's."""
    from stratoflow.store import Store

    with Store.open() as store:
        deployment = store.get_deployment(deployment_id)
    if deployment is None:
        raise not_found(deployment_id)
    require_owner(deployment, caller)
    return deployment


def delete_as(deployment_id: str, caller: Caller) -> str:
    """Start deleting the caller's deployment; the delete run's id. 409 when a delete runs
    already or it is deleted."""
    from stratoflow.api.airflow import AirflowAPIError, airflow_client_as
    from stratoflow.deletion import request_delete
    from stratoflow.store import DeleteConflict, NotFound, Store

    owned_deployment(deployment_id, caller)
    with Store.open() as store:
        try:
            with airflow_client_as(caller.token) as api:
                _before, run_id = request_delete(deployment_id, api, caller.name, store)
        except NotFound:
            raise not_found(deployment_id) from None
        except DeleteConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        except AirflowAPIError as exc:
            raise airflow_failed(exc) from None
    return run_id


def reset_delete_as(deployment_id: str, caller: Caller) -> None:
    """DELETE_IN_PROGRESS -> DELETE_FAILED for the caller's deployment; 409 otherwise."""
    from stratoflow.store import DeleteConflict, NotFound, Store

    owned_deployment(deployment_id, caller)
    with Store.open() as store:
        try:
            store.reset_stuck_delete(deployment_id, f"delete reset by {caller.name}")
        except NotFound:
            raise not_found(deployment_id) from None
        except DeleteConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
