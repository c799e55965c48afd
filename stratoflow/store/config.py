"""Where Stratoflow keeps its own state.

Other layers import these two functions instead of reading the environment themselves, so
the defaults are decided in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

STORE_URL_ENV = "STRATOFLOW_STORE_URL"
HOME_ENV = "STRATOFLOW_HOME"


def stratoflow_home() -> Path:
    """``$STRATOFLOW_HOME``, else ``$AIRFLOW_HOME/stratoflow``, else ``~/airflow/stratoflow``.

    The directory is not created here: reading a path must not have side effects.
    """
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    airflow_home = os.environ.get("AIRFLOW_HOME") or "~/airflow"
    return Path(airflow_home).expanduser() / "stratoflow"


def default_store_url() -> str:
    """``$STRATOFLOW_STORE_URL``, else a SQLite file ``store.db`` under :func:`stratoflow_home`."""
    url = os.environ.get(STORE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{(stratoflow_home() / 'store.db').resolve()}"
