"""The INDIGO routes about what a deployment holds: its resources (one per TOSCA node
instance and cloud object), its log and its per-machine extra information."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import PlainTextResponse

from stratoflow.api.actions import not_found, owned_deployment, require_owner
from stratoflow.api.auth import Caller, authenticated_caller
from stratoflow.api.indigo.views import Paged, Paging, indigo_time

router = APIRouter(tags=["resources"])
Authenticated = Depends(authenticated_caller)
# The records that are machines (a VM, a sandbox, a namespace): /extrainfo has one each.
MACHINE_KINDS = ("instance", "server", "host", "sandbox", "namespace")
_NAMESPACE = uuid.UUID("6f1c2a52-53b1-4c39-9d7e-0c6f3bd0a6e2")


def resource_uuid(idempotency_key: str) -> str:
    """A resource's stable INDIGO id, from the key its record was made with."""
    return str(uuid.uuid5(_NAMESPACE, idempotency_key))


def _load(deployment_id: str) -> tuple[Any, list[dict[str, Any]]]:
    from stratoflow.resource_view import resource_views
    from stratoflow.store import Store

    with Store.open() as store:
        deployment = store.get_deployment(deployment_id)
        if deployment is None:
            raise not_found(deployment_id)
        return deployment, resource_views(store, deployment)


def _as_indigo(views: list[dict[str, Any]], deployment_url: str) -> list[dict[str, Any]]:
    """INDIGO's ``BaseResource`` of each record; ``requiredBy`` holds the ids of the
    resources whose nodes require this one's node."""
    by_node: dict[str, list[str]] = {}
    for v in views:
        by_node.setdefault(v["node"], []).append(resource_uuid(v["idempotency_key"]))
    out = []
    for v in views:
        rid = resource_uuid(v["idempotency_key"])
        body = {
            "uuid": rid,
            "creationTime": indigo_time(datetime.fromisoformat(v["created_at"])),
            "updateTime": indigo_time(datetime.fromisoformat(v["updated_at"])),
            "physicalId": v["external_id"],
            "state": v["node_state"],
            "toscaNodeType": v["node_type"],
            "toscaNodeName": v["node"],
            "requiredBy": [r for node in v["required_by"] for r in by_node.get(node, [])],
            "metadata": {"kind": v["kind"], "site": v["site"], "index": v["idx"]},
            "links": [
                {"rel": "self", "href": f"{deployment_url}/resources/{rid}"},
                {"rel": "deployment", "href": deployment_url},
            ],
        }
        out.append({k: x for k, x in body.items() if x is not None})
    return out


def _deployment_url(request: Request, deployment_id: str) -> str:
    path = request.url.path
    end = path.index(deployment_id) + len(deployment_id)
    return str(request.url.replace(path=path[:end], query=""))


@router.get(
    "/deployments/{deployment_id}/resources",
    responses={404: {"description": "no such deployment"}},
)
def list_resources(
    request: Request,
    deployment_id: str = Path(max_length=64),
    type: str | None = Query(
        None, min_length=1, max_length=256, description="only resources of this TOSCA type"
    ),
    paging: Paging = Paged,
    caller: Caller = Authenticated,
) -> dict[str, Any]:
    """The deployment's resources, oldest first, one page (a ``type`` filter gives one
    page holding all of that type, as INDIGO)."""
    _deployment, views = _load(deployment_id)
    found = _as_indigo(views, _deployment_url(request, deployment_id))
    if type is not None:
        found = [r for r in found if r.get("toscaNodeType") == type]
        paging = Paging(0, max(len(found), 1))
    start = paging.page * paging.size
    return {
        "content": found[start : start + paging.size],
        "page": paging.info(len(found)),
        "links": [{"rel": "self", "href": str(request.url)}],
    }


@router.get(
    "/deployments/{deployment_id}/resources/{resource_id}",
    responses={404: {"description": "no such deployment or resource"}},
)
def get_resource(
    request: Request,
    deployment_id: str = Path(max_length=64),
    resource_id: str = Path(max_length=64),
    caller: Caller = Authenticated,
) -> dict[str, Any]:
    """One resource of the deployment."""
    _deployment, views = _load(deployment_id)
    for resource in _as_indigo(views, _deployment_url(request, deployment_id)):
        if resource["uuid"] == resource_id:
            return resource
    raise HTTPException(
        status.HTTP_404_NOT_FOUND,
        f"deployment {deployment_id} has no resource {resource_id}",
    )


@router.get(
    "/deployments/{deployment_id}/log",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "the log, one event a line"},
        403: {"description": "not the caller's deployment"},
        404: {"description": "no such deployment"},
    },
)
def get_log(
    deployment_id: str = Path(max_length=64), caller: Caller = Authenticated
) -> PlainTextResponse:
    """What happened to the deployment's steps, one event a line (each try of each step:
    failures with their message, retries, successes). Only its owner may read it."""
    from stratoflow.store import Store

    owned_deployment(deployment_id, caller)
    with Store.open() as store:
        events = store.step_events(deployment_id)
    lines = []
    for e in events:
        step = e["step"] + (f"[{e['map_index']}]" if e["map_index"] >= 0 else "")
        message = f": {e['message']}" if e["message"] else ""
        stamp = e["created_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp} {step} try {e['try_number']} {e['kind']}{message}")
    return PlainTextResponse("".join(f"{line}\n" for line in lines))


@router.get(
    "/deployments/{deployment_id}/extrainfo",
    responses={
        403: {"description": "not the caller's deployment"},
        404: {"description": "no such deployment"},
    },
)
def get_extra_info(
    deployment_id: str = Path(max_length=64), caller: Caller = Authenticated
) -> list[dict[str, Any]]:
    """One entry per machine the deployment holds or held (VM, sandbox, namespace): its
    node, site, id at the site, state and addresses. Only its owner may read it."""
    deployment, views = _load(deployment_id)
    require_owner(deployment, caller)
    return [
        {
            "vmId": v["external_id"],
            "toscaNodeName": v["node"],
            "index": v["idx"],
            "site": v["site"],
            "state": v["node_state"],
            **{k: v["data"][k] for k in ("address", "public_address") if k in v["data"]},
        }
        for v in views
        if v["kind"] in MACHINE_KINDS
    ]
