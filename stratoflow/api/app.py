"""The Stratoflow REST API (FastAPI), mounted by the Airflow plugin at ``/stratoflow``.

Every route except ``/health`` depends on :func:`authenticated_caller`: Airflow itself does
not authenticate plugin apps. Validation errors use FastAPI's shape,
``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``; a template's fault has ``loc``
``["body", "template", <its TOSCA path>]``.

Handlers that do blocking work (store, compiling, calling Airflow) are plain ``def``, so
FastAPI runs them in its thread pool and the API server's event loop stays free; that
matters because POST /deployments calls back into the same API server.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from stratoflow.api.actions import (
    airflow_failed,
    delete_as,
    invalid,
    not_found,
    template_faults,
)
from stratoflow.api.auth import Caller, authenticated_caller
from stratoflow.api.callbacks import background_work
from stratoflow.api.strictness import answer_as_documented, refuse_unknown_query

log = logging.getLogger(__name__)

MAX_LIST = 500


class DeploymentRequest(BaseModel):
    template: str = Field(
        max_length=256,
        # No `examples`: a fuzzer of the document would start real campaigns with it.
        description="A catalogue template file name, e.g. `dimuon_campaign.yaml`.",
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="The template's inputs; omitted ones take defaults."
    )
    keep_last_attempt: bool = Field(
        False,
        description="When provisioning fails at every candidate site, keep the last "
        "attempt's resources for debugging (INDIGO's keepLastAttempt); deleting the "
        "deployment removes them.",
    )


class DeploymentCreated(BaseModel):
    id: str
    dag_id: str
    run_id: str
    status: str


app = FastAPI(
    title="Stratoflow API",
    version="1",
    description=(
        "Deploy TOSCA templates from the Stratoflow catalogue as Airflow DAG runs. "
        "Authenticate with a JWT from Airflow's `POST /auth/token` "
        "(`Authorization: Bearer <token>`)."
    ),
    docs_url="/docs",
    openapi_url="/openapi.json",
    redoc_url=None,
    dependencies=[Depends(refuse_unknown_query), Depends(background_work)],
)
answer_as_documented(app)

Authenticated = Depends(authenticated_caller)


@app.get("/health", tags=["meta"])
def health() -> dict[str, str]:
    """Liveness: no authentication, touches nothing."""
    return {"status": "ok"}


@app.get("/deployments", tags=["deployments"])
def list_deployments(
    owner: str | None = Query(None, max_length=256, description="only this owner's"),
    limit: int = Query(100, ge=1, le=MAX_LIST),
    caller: Caller = Authenticated,
) -> list[dict[str, Any]]:
    """Deployments, newest first."""
    from stratoflow.store import Store

    with Store.open() as store:
        return [d.to_dict() for d in store.list_deployments(owner=owner, limit=limit)]


@app.get(
    "/deployments/{deployment_id}",
    tags=["deployments"],
    responses={404: {"description": "no such deployment"}},
)
def get_deployment(
    deployment_id: str = Path(max_length=64),
    caller: Caller = Authenticated,
) -> dict[str, Any]:
    """A deployment with its resources (deleted ones too) and usage, like
    ``stratoflow status --json``."""
    from stratoflow.resource_view import resource_views
    from stratoflow.store import Store

    with Store.open() as store:
        deployment = store.get_deployment(deployment_id)
        if deployment is None:
            raise not_found(deployment_id)
        info = deployment.to_dict()
        info["resources"] = resource_views(store, deployment)
        info["usage"] = store.usage_totals(deployment_id)
    return info


@app.post(
    "/deployments",
    status_code=status.HTTP_201_CREATED,
    tags=["deployments"],
    responses={
        422: {"description": "unknown template or invalid inputs, each fault by its path"},
        403: {"description": "Airflow refused the caller the DAG run"},
        502: {"description": "Airflow could not be reached or failed"},
    },
)
def create_deployment(
    request: DeploymentRequest, caller: Caller = Authenticated
) -> DeploymentCreated:
    """Validate the inputs, register the template's plan and trigger its DAG run as the
    caller (their token is forwarded to Airflow's REST API)."""
    from stratoflow.api.airflow import AirflowAPIError, submit_as
    from stratoflow.api.catalogue import BadTemplateName, resolve_template
    from stratoflow.errors import TemplateError
    from stratoflow.registration import register_template

    try:
        path = resolve_template(request.template)
    except BadTemplateName as exc:
        raise invalid([(["body", "template"], str(exc))]) from None
    try:
        # Validation precedes any write: bad inputs register nothing and deploy nothing.
        topology, plan = register_template(str(path), request.inputs)
    except TemplateError as exc:
        raise template_faults(exc) from None
    try:
        deployment_id, run_id = submit_as(
            plan,
            topology.bound_inputs,
            owner=caller.name,
            token=caller.token,
            options={"keep_last_attempt": True} if request.keep_last_attempt else None,
        )
    except AirflowAPIError as exc:
        raise airflow_failed(exc) from None
    return DeploymentCreated(
        id=deployment_id, dag_id=plan["dag_id"], run_id=run_id, status="CREATE_IN_PROGRESS"
    )


@app.delete(
    "/deployments/{deployment_id}",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["deployments"],
    responses={
        404: {"description": "no such deployment"},
        403: {"description": "not the caller's deployment, or Airflow refused the run"},
        409: {"description": "a delete is already running, or the deployment is deleted"},
        502: {"description": "Airflow could not be reached or failed"},
    },
)
def delete_deployment(
    deployment_id: str = Path(max_length=64),
    caller: Caller = Authenticated,
) -> DeploymentCreated:
    """Stop the deployment's create run if it still runs, take it out of the queue, and
    start a run of the delete DAG that removes every resource it holds. The deployment is
    DELETE_IN_PROGRESS at once; DELETE_COMPLETE or DELETE_FAILED when the run ends.
    Deleting a DELETE_FAILED deployment tries again. Only its owner may delete it."""
    from stratoflow.deletion import DELETE_DAG_ID

    run_id = delete_as(deployment_id, caller)
    return DeploymentCreated(
        id=deployment_id, dag_id=DELETE_DAG_ID, run_id=run_id, status="DELETE_IN_PROGRESS"
    )


@app.get("/queue", tags=["deployments"])
def queue(
    site: str | None = Query(None, max_length=255, description="only this site's queue"),
    caller: Caller = Authenticated,
) -> list[dict[str, Any]]:
    """Deployments waiting for capacity, per site, in the order they will be admitted."""
    from stratoflow.execution.placement import site_rooms
    from stratoflow.store import Store

    rooms = site_rooms()
    if site is not None and site not in rooms:
        raise invalid([(["query", "site"], f"no compute site {site!r}; known: {', '.join(rooms)}")])
    with Store.open() as store:
        entries = store.queue_listing(rooms)
    return [e for e in entries if site is None or e["site"] == site]


@app.get("/templates", tags=["catalogue"])
def templates(caller: Caller = Authenticated) -> list[dict[str, Any]]:
    """The template catalogue: name, DAG id, description and typed inputs of each."""
    from stratoflow.api.catalogue import list_templates

    return list_templates()


@app.get("/sites", tags=["catalogue"])
def sites(caller: Caller = Authenticated) -> list[dict[str, Any]]:
    """The site catalogue: name, kind and capacity of each site (never credentials)."""
    from stratoflow.api.catalogue import list_sites
    from stratoflow.errors import TemplateError

    try:
        return list_sites()
    except TemplateError:
        log.exception("the site catalogue is invalid")
        raise HTTPException(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            "the site catalogue is invalid; see the API server's log",
        ) from None
