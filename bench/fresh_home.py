"""A fresh embedded default for a benchmark: its own Airflow home, database and port."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_fresh_embedded_home(prefix: str) -> Path:
    """Point this process (and the Airflow it starts) at a new temporary home, with none of
    the caller's store, database or Airflow settings; return the home."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        AIRFLOW_HOME=str(home / "airflow"),
        STRATOFLOW_HOME=str(home / "airflow" / "stratoflow"),
        STRATOFLOW_AIRFLOW_PORT=str(free_port()),
    )
    for name in ("STRATOFLOW_STORE_URL", "STRATOFLOW_EMBEDDED_DB", "STRATOFLOW_AIRFLOW_URL"):
        os.environ.pop(name, None)
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    return home
