"""Stratoflow's deployments as the INDIGO orchestrator shows them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def indigo_time(value: datetime) -> str:
    """INDIGO's date format, ``yyyy-MM-dd'T'HH:mmZ`` in UTC (minute precision)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M+0000")


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
        "callback": (deployment.options or {}).get("callback"),
        "cloudProviderName": deployment.site,
        "createdBy": {"subject": deployment.owner},
        "links": [
            {"rel": "self", "href": self_url},
            {"rel": "resources", "href": f"{self_url}/resources"},
            {"rel": "template", "href": f"{self_url}/template"},
        ],
    }
    return {k: v for k, v in body.items() if v is not None}
