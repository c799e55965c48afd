"""The INDIGO routes that read: the paged list, one deployment, its TOSCA template."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import PlainTextResponse

from stratoflow.api.actions import not_found
from stratoflow.api.auth import Caller, authenticated_caller
from stratoflow.api.indigo.views import Paged, Paging, deployment_resource

router = APIRouter(tags=["deployments"])
Authenticated = Depends(authenticated_caller)


def _owner(created_by: str | None, caller: Caller) -> str | None:
    """INDIGO's ``createdBy``: ``me`` is the caller; absent, everyone's. Who may list whose
    comes with identities (OIDC); until then, as ``GET /stratoflow/deployments?owner=``."""
    if created_by is None:
        return None
    return caller.name if created_by == "me" else created_by


@router.get("/deployments")
def list_deployments(
    request: Request,
    created_by: str | None = Query(
        None,
        alias="createdBy",
        min_length=1,
        max_length=256,
        description="`me`, or an owner's name; absent: every deployment",
    ),
    paging: Paging = Paged,
    caller: Caller = Authenticated,
) -> dict[str, Any]:
    """Deployments, newest first, one page: ``content``, ``page`` and ``links``."""
    from stratoflow.store import Store

    owner = _owner(created_by, caller)
    page, size = paging.page, paging.size
    with Store.open() as store:
        total = store.count_deployments(owner=owner)
        found = store.list_deployments(owner=owner, limit=size, offset=page * size)
    info = paging.info(total)
    pages = info["totalPages"]

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
        "page": info,
        "links": links,
    }


@router.get(
    "/deployments/{deployment_id}",
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
        raise not_found(deployment_id)
    return deployment_resource(deployment, str(request.url.replace(query="")))


@router.get(
    "/deployments/{deployment_id}/template",
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
            raise not_found(deployment_id)
        record = store.get_plan_record(deployment.plan_hash)
    if record is None or not record.get("template_text"):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"deployment {deployment_id} has no stored template"
        )
    return PlainTextResponse(record["template_text"])
