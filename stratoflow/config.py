"""Where Stratoflow's files are: its home (state, sandboxes, plans) and ``include/``.

Every layer imports these instead of reading the environment itself, so the defaults are
decided in one place. Reading a path never creates it.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "STRATOFLOW_HOME"


def stratoflow_home() -> Path:
    """``$STRATOFLOW_HOME``, else ``$AIRFLOW_HOME/stratoflow``, else ``~/airflow/stratoflow``."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    airflow_home = os.environ.get("AIRFLOW_HOME") or "~/airflow"
    return Path(airflow_home).expanduser() / "stratoflow"


def include_dir() -> Path:
    """The repository's ``include/`` (templates, site catalogue, demo data)."""
    return Path(__file__).resolve().parents[1] / "include"


def expand(value: str) -> str:
    """Expand ``{include}`` and ``{home}`` (STRATOFLOW_HOME) in a configured path."""
    return value.replace("{include}", str(include_dir())).replace("{home}", str(stratoflow_home()))
