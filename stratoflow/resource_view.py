"""A deployment's resource records as users see them (CLI and REST): each record with its
TOSCA node's type and the nodes that require it, from the deployment's plan."""

from __future__ import annotations

from typing import Any

from stratoflow.store import Deployment, Store


def resource_views(
    store: Store, deployment: Deployment, include_deleted: bool = True
) -> list[dict[str, Any]]:
    """Records with ``node_type`` and ``required_by`` (known for long-lived plans, which
    record their node graph; None and [] otherwise) besides the record's own fields."""
    plan = store.get_plan(deployment.plan_hash) or {}
    nodes = plan.get("nodes") or {}
    views = []
    for record in store.resources(deployment.id, include_deleted=include_deleted):
        info = nodes.get(record.node) or {}
        views.append(
            {
                **record.to_dict(),
                "node_type": info.get("type"),
                "required_by": list(info.get("required_by") or []),
            }
        )
    return views
