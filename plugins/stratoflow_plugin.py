"""Registers the Stratoflow REST API with Airflow's API server.

Airflow imports this file in several components (API server, scheduler, dag-processor),
so it stays cheap: it builds the FastAPI app object, and the app imports the store, the
TOSCA loader and Airflow's auth manager only inside its handlers.

Airflow does NOT authenticate plugin FastAPI apps; the app checks Airflow's JWT on every
route but /health (see stratoflow/api/auth.py).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from stratoflow.api import indigo
from stratoflow.api.app import app

URL_PREFIX = "/stratoflow"


class StratoflowPlugin(AirflowPlugin):
    name = "stratoflow"
    fastapi_apps = [
        {"app": app, "url_prefix": URL_PREFIX, "name": "Stratoflow API"},
        # INDIGO's own path: its clients need only the Airflow API server's address.
        {
            "app": indigo.app,
            "url_prefix": indigo.URL_PREFIX,
            "name": "INDIGO-compatible deployments API",
        },
    ]
    # A link in the Airflow UI's "Browse" menu to the interactive API docs.
    external_views = [
        {
            "name": "Stratoflow API",
            "href": f"{URL_PREFIX}/docs",
            "destination": "nav",
            "category": "browse",
        }
    ]
