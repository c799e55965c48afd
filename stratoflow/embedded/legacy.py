"""Homes made by earlier versions, whose embedded default ran on SQLite.

Their store (``store.db``: deployments, resource records, reservations, usage...) is
copied into the embedded PostgreSQL the first time ``stratoflow up`` runs on them, then
renamed so that it is never copied twice. Airflow's own SQLite database (the old runs'
task logs and history in the UI) is left where it was, untouched, and named in the message.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Integer, func, select, text

from stratoflow.config import stratoflow_home
from stratoflow.errors import StratoflowError

MIGRATED_SUFFIX = ".migrated-to-postgres"


class LegacyHomeError(StratoflowError):
    pass


def legacy_store() -> Path | None:
    """The SQLite store of an earlier version in this home, if one waits to be copied."""
    if os.environ.get("STRATOFLOW_STORE_URL"):
        return None  # the store is configured elsewhere: the home's file is not in use
    path = stratoflow_home() / "store.db"
    return path if path.exists() else None


def refuse_ambiguous_home() -> None:
    """A home that has both an old SQLite store and a copy marker is ambiguous: say so."""
    path = legacy_store()
    if path is not None and path.with_name(path.name + MIGRATED_SUFFIX).exists():
        raise LegacyHomeError(
            f"{path} exists beside {path.name}{MIGRATED_SUFFIX}, which was already copied "
            "into the embedded PostgreSQL. Move one of them away; or set "
            "STRATOFLOW_EMBEDDED_DB=sqlite to keep running on the SQLite store."
        )


def migrate_sqlite_store(log=print) -> int:
    """Copy an earlier SQLite store into the (running, empty) embedded PostgreSQL store.

    Returns how many deployments were copied. Refuses, changing nothing, when the
    PostgreSQL store already holds deployments: merging two histories is not a guess to
    make for the user.
    """
    path = legacy_store()
    if path is None:
        return 0
    from stratoflow.store import Store
    from stratoflow.store.config import default_store_url
    from stratoflow.store.schema import deployments, metadata

    old = Store.open(f"sqlite:///{path}")  # brings its schema to the current version
    new = Store.open(default_store_url())
    try:
        with new.engine.begin() as dst:
            if dst.execute(select(func.count()).select_from(deployments)).scalar():
                raise LegacyHomeError(
                    f"{path} (an earlier SQLite store) was not copied: the embedded "
                    "PostgreSQL store already holds deployments. Move the file away to "
                    "keep it aside, or set STRATOFLOW_EMBEDDED_DB=sqlite to use it."
                )
            copied = 0
            with old.engine.connect() as src:
                for table in metadata.sorted_tables:
                    rows = [dict(r._mapping) for r in src.execute(select(table))]
                    if rows:
                        dst.execute(table.insert(), rows)
                    if table is deployments:
                        copied = len(rows)
                    _advance_sequence(dst, table)
    finally:
        old.close()
        new.close()
    path.rename(path.with_name(path.name + MIGRATED_SUFFIX))
    from stratoflow.embedded import airflow_home

    airflow_db = airflow_home() / "airflow.db"
    log(
        f"copied {copied} deployments from the earlier SQLite store {path} into the "
        f"embedded PostgreSQL; the file is kept as {path.name}{MIGRATED_SUFFIX}"
        + (
            f". Airflow's old run history stays in {airflow_db} (not carried over)."
            if airflow_db.exists()
            else ""
        )
    )
    return copied


def _advance_sequence(conn, table) -> None:  # noqa: ANN001 - a Connection and a Table
    """Rows copied with their ids leave a serial's sequence behind them: move it on."""
    pk = list(table.primary_key.columns)
    if len(pk) != 1 or not isinstance(pk[0].type, Integer) or not pk[0].autoincrement:
        return
    name = pk[0].name
    conn.execute(
        text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{name}'), "
            f"COALESCE((SELECT MAX({name}) FROM {table.name}), 0) + 1, false)"
        )
    )
