"""Stratoflow's deployments as the INDIGO orchestrator shows them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, Query

URL_PREFIX = "/orchestrator"  # where the plugin mounts the app: INDIGO's own path
DEFAULT_PAGE_SIZE = 20  # INDIGO's (Spring's) default
MAX_PAGE_SIZE = 100  # Airflow's own API pages at most 100 too


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


@dataclass(frozen=True)
class Paging:
    """INDIGO's (Spring's) ``page`` (0-based) and ``size`` query parameters."""

    page: int
    size: int

    def info(self, total: int) -> dict[str, int]:
        """The ``page`` object of a paged answer holding ``total`` elements in all."""
        return {
            "size": self.size,
            "totalElements": total,
            "totalPages": math.ceil(total / self.size),
            "number": self.page,
        }


def paging_query(
    page: int = Query(0, ge=0, le=10**6, description="0-based page number"),
    size: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="page size"),
) -> Paging:
    """FastAPI dependency: the request's paging."""
    return Paging(page, size)


Paged = Depends(paging_query)
