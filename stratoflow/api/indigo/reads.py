"""The INDIGO PaaS Orchestrator's deployments API, mounted by the Airflow plugin at
``/orchestrator`` as INDIGO serves it, so that clients that speak it (orchent, portals,
dashboards) need only a new base URL.

So far the read routes: ``GET /deployments`` (paged as INDIGO's Spring paging),
``GET /deployments/{id}`` with INDIGO's field names, and its ``/template``. Creating,
deleting and the resource routes are still the Stratoflow API's (``/stratoflow``); see
docs/api.md.

Authentication is the Stratoflow API's: Airflow's JWT on every route.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import PlainTextResponse

from stratoflow.api.auth import Caller, authenticated_caller

URL_PREFIX = "/orchestrator"
DEFAULT_PAGE_SIZE = 20  # INDIGO's (Spring's) default
MAX_PAGE_SIZE = 100  # Airflow's own API pages at most 100 too

app = FastAPI(
    title="Stratoflow: INDIGO-compatible deployments API",
    version="1",
    description=(
        "The INDIGO PaaS Orchestrator's `/deployments` routes over Stratoflow's "
        "deployments (read routes so far). Authenticate with a JWT from Airflow's "
        "`POST /auth/token` (`Authorization: Bearer <token>`)."
    ),
    docs_url="/docs",
    openapi_url="/openapi.json",
    redoc_url=None,
)

Authenticated = Depends(authenticated_caller)


def indigo_time(value: datetime) -> str:
    """INDIGO's date format, ``yyyy-MM-dd'T'HH:mmZ`` in UTC (minute precision)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M+0000")


def _not_found(deployment_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"deployment {deployment_id} not found")


def deployment_resource(deployment: Any, self_url: str) -> dict[str, Any]:
    """A deployment as INDIGO's ``DeploymentResource``: null fields are left out."""
    body = {
        "uuid": deployment.id,
        "creationTime": indigo_time(deployment.created_at),
        "updateTime": indigo_time(deployment.updated_at),
        # The backend's id of the deployment: INDIGO gives the IM's, here the DAG run's.
        "physicalId": deployment.run_id,
        "status": deployment.status.value,
        "statusReason": deployment.status_reason,
        "outputs": deployment.outputs,
        "task": deployment.task or "NONE",
        "cloudProviderName": deployment.site,
        "createdBy": {"subject": deployment.owner},
        "links": [
            {"rel": "self", "href": self_url},
            {"rel": "template", "href": f"{self_url}/template"},
        ],
    }
    return {k: v for k, v in body.items() if v is not None}


def _owner(created_by: str | None, caller: Caller) -> str | None:
    """INDIGO's ``createdBy``: ``me`` is the caller; absent, everyone's. Who may list whose
    comes with identities (OIDC); until then, as ``GET /stratoflow/deployments?owner=``."""
    if created_by is None:
        return None
    return caller.name if created_by == "me" else created_by


@app.get("/deployments", tags=["deployments"])
def list_deployments(
    request: Request,
    created_by: str | None = Query(
        None,
        alias="createdBy",
        min_length=1,
        max_length=256,
        description="`me`, or an owner's name; absent: every deployment",
    ),
    page: int = Query(0, ge=0, le=10**6, description="0-based page number"),
    size: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="page size"),
    caller: Caller = Authenticated,
) -> dict[str, Any]:
    """Deployments, newest first, one page: ``content``, ``page`` and ``links``."""
    from stratoflow.store import Store

    owner = _owner(created_by, caller)
    with Store.open() as store:
        total = store.count_deployments(owner=owner)
        found = store.list_deployments(owner=owner, limit=size, offset=page * size)
    pages = math.ceil(total / size)

    def page_url(number: int) -> str:
        return str(request.url.include_query_params(page=number, size=size))

    base = request.url.replace(query="")
    links = [{"rel": "self", "href": page_url(page)}]
    if page > 0:
        links.append({"rel": "prev", "href": page_url(max(min(page, pages) - 1, 0))})
    if page + 1 < pages:
        links.append({"rel": "next", "href": page_url(page + 1)})
    return {
        # Not url_for: Airflow mounts both plugin apps in one, and the name get_deployment
        # found the Stratoflow API's route first.
        "content": [deployment_resource(d, f"{base}/{d.id}") for d in found],
        "page": {"size": size, "totalElements": total, "totalPages": pages, "number": page},
        "links": links,
    }


@app.get(
    "/deployments/{deployment_id}",
    tags=["deployments"],
    responses={404: {"description": "no such deployment"}},
)
def get_deployment(
    request: Request,
    deployment_id: str = Path(max_length=64),
    caller: Caller = Authenticated,
) -> dict[str, Any]:
    """One deployment as INDIGO's ``DeploymentResource``."""
    from stratoflow.store import Store

    with Store.open() as store:
        deployment = store.get_deployment(deployment_id)
    if deployment is None:
        raise _not_found(deployment_id)
    return deployment_resource(deployment, str(request.url.replace(query="")))


@app.get(
    "/deployments/{deployment_id}/template",
    tags=["deployments"],
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "the TOSCA template"},
        404: {"description": "no such deployment, or no template stored for it"},
    },
)
def get_template(
    deployment_id: str = Path(max_length=64),
    caller: Caller = Authenticated,
) -> PlainTextResponse:
    """The TOSCA text the deployment was made from, as INDIGO's ``/template``."""
    from stratoflow.store import Store

    with Store.open() as store:
        deployment = store.get_deployment(deployment_id)
        if deployment is None:
            raise _not_found(deployment_id)
        record = store.get_plan_record(deployment.plan_hash)
    if record is None or not record.get("template_text"):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"deployment {deployment_id} has no stored template"
        )
    return PlainTextResponse(record["template_text"])
