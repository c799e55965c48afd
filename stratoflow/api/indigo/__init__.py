"""The INDIGO PaaS Orchestrator's deployments API, mounted by the Airflow plugin at
``/orchestrator`` as INDIGO serves it, so that clients that speak it (orchent, portals,
dashboards) need only a new base URL.

Routes: ``GET /deployments`` (paged as INDIGO's Spring paging), ``POST /deployments``
(TOSCA text or a catalogue name), ``GET`` and ``DELETE /deployments/{id}`` and its
``/template``, ``/resources``, ``/log`` and ``/extrainfo``. See docs/api.md.

Authentication is the Stratoflow API's: Airflow's JWT on every route.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from stratoflow.api.callbacks import background_work
from stratoflow.api.indigo import reads, resources, writes
from stratoflow.api.indigo.views import URL_PREFIX
from stratoflow.api.strictness import answer_as_documented, refuse_unknown_query

app = FastAPI(
    title="Stratoflow: INDIGO-compatible deployments API",
    version="1",
    description=(
        "The INDIGO PaaS Orchestrator's `/deployments` routes over Stratoflow's "
        "deployments. Authenticate with a JWT from Airflow's `POST /auth/token` "
        "(`Authorization: Bearer <token>`)."
    ),
    docs_url="/docs",
    openapi_url="/openapi.json",
    redoc_url=None,
    dependencies=[Depends(refuse_unknown_query), Depends(background_work)],
)
answer_as_documented(app)
app.include_router(reads.router)
app.include_router(writes.router)
app.include_router(resources.router)

__all__ = ["URL_PREFIX", "app"]
