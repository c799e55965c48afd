"""Where Stratoflow keeps its own state: the store's URL (the home is stratoflow.config)."""

from __future__ import annotations

import os

from stratoflow.config import HOME_ENV, stratoflow_home

STORE_URL_ENV = "STRATOFLOW_STORE_URL"

__all__ = ["HOME_ENV", "STORE_URL_ENV", "default_store_url", "stratoflow_home"]


def default_store_url() -> str:
    """``$STRATOFLOW_STORE_URL``, else a SQLite file ``store.db`` under :func:`stratoflow_home`."""
    url = os.environ.get(STORE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{(stratoflow_home() / 'store.db').resolve()}"
