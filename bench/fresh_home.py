"""A fresh embedded default for a benchmark: its own Airflow home, database and port."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any


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


def production_mode_for_bench(prefix: str) -> Any:
    """Configure this home for the production mode (CeleryExecutor, two workers) on the
    machine's PostgreSQL and Redis, in databases and a Redis database of its own, which
    ``drop_databases(mode)`` removes at the end. Returns the mode."""
    import random
    import uuid

    from stratoflow.embedded import production

    mode = production.configure(
        workers=2,
        prefix=f"{prefix}_{uuid.uuid4().hex[:8]}",
        broker=f"redis://127.0.0.1:6379/{random.randint(1, 15)}",
    )
    print(production.describe(mode), flush=True)
    return mode
