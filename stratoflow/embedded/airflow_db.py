"""`airflow db migrate`, run only when Airflow's database may be behind.

Every `stratoflow up` used to run it: four to six seconds of one of two cores, to learn
that nothing was to do. After a migration, the installed Airflow's version, the database
URL and the revision the database reached are recorded beside airflow.cfg; while all
three still hold (the revision read back from the database itself), it is skipped. A new
Airflow, another database, or a database that was reset migrates again.
"""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import version
from pathlib import Path

MARKER = "stratoflow-airflow-db.json"


def current_revision(url: str) -> str | None:
    """The revision Airflow's alembic recorded in the database; None when there is none."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # no table, no database, no server: a migration will say what is wrong
        return None
    finally:
        engine.dispose()


def _state(url: str) -> dict[str, str | None]:
    return {"airflow": version("apache-airflow"), "url": url, "revision": current_revision(url)}


def migrate(home: Path, url: str, command: list[str], env: dict[str, str]) -> bool:
    """Run ``command`` (`airflow db migrate`) unless the marker says the database is
    current; True if it ran. Raises RuntimeError with Airflow's message when it fails."""
    marker = home / MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded is not None and recorded.get("revision") and recorded == _state(url):
        return False
    marker.unlink(missing_ok=True)
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"airflow db migrate failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}"
        )
    marker.write_text(json.dumps(_state(url)))
    return True
