"""Stratoflow's own state store (plans, deployments, resource records, capacity, usage).

Separate from Airflow's metadata DB, which Airflow 3 tasks may not touch. The embedded
PostgreSQL by default (SQLite under ``$STRATOFLOW_HOME`` when the embedded default is set to
SQLite), any server via ``$STRATOFLOW_STORE_URL``. No Airflow imports.
"""

from stratoflow.store.config import default_store_url, stratoflow_home
from stratoflow.store.models import (
    LIVE_STATES,
    DeleteConflict,
    Deployment,
    DeploymentStatus,
    NotFound,
    ResourceRecord,
    ResourceState,
    StoreError,
    Task,
    resource_key,
)
from stratoflow.store.starts import STARTING
from stratoflow.store.store import Store, deployment_id_for

__all__ = [
    "LIVE_STATES",
    "DeleteConflict",
    "Deployment",
    "DeploymentStatus",
    "STARTING",
    "NotFound",
    "ResourceRecord",
    "ResourceState",
    "Store",
    "StoreError",
    "Task",
    "default_store_url",
    "deployment_id_for",
    "resource_key",
    "stratoflow_home",
]
