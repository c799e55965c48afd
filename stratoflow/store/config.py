"""Where Stratoflow keeps its own state: the store's URL (the home is stratoflow.config)."""

from __future__ import annotations

import os

from stratoflow.config import (
    HOME_ENV,
    embedded_db,
    embedded_pg_url,
    production,
    stratoflow_home,
)

STORE_URL_ENV = "STRATOFLOW_STORE_URL"
EMBEDDED_STORE_DATABASE = "stratoflow"

__all__ = ["HOME_ENV", "STORE_URL_ENV", "default_store_url", "stratoflow_home"]


def default_store_url() -> str:
    """``$STRATOFLOW_STORE_URL``; else the database ``stratoflow`` on the embedded PostgreSQL
    server; else (``STRATOFLOW_EMBEDDED_DB=sqlite``) a file ``store.db`` in the home."""
    url = os.environ.get(STORE_URL_ENV)
    if url:
        return url
    mode = production()
    if mode is not None:
        return mode.store_url
    if embedded_db() == "postgres":
        return embedded_pg_url(EMBEDDED_STORE_DATABASE)
    return sqlite_store_url()


def sqlite_store_url() -> str:
    return f"sqlite:///{(stratoflow_home() / 'store.db').resolve()}"
