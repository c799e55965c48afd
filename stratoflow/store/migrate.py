"""Bring a store database to the current schema, once, whoever gets there first.

``Store.open()`` runs at the start of every Airflow task, so the common case (already at
head) is one indexed SELECT and never loads alembic. Only when the schema is missing or old
do we take a cross-process lock (a ``flock`` file beside a SQLite database, a PostgreSQL
advisory lock) and run alembic under it; the loser of the race re-checks and finds nothing
to do.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, exc, inspect, text

from stratoflow.filelock import locked
from stratoflow.store.engine import WRITE_OPTION, sqlite_path
from stratoflow.store.models import StoreError
from stratoflow.store.schema import VERSION_TABLE

log = logging.getLogger(__name__)

# Must equal the newest revision in migrations/versions (a test checks this): knowing it
# without parsing the revision scripts keeps the already-migrated path fast.
HEAD_REVISION = "0006"

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# PostgreSQL advisory locks take a bigint; derive a stable one from a name.
_PG_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"stratoflow.store.migrate").digest()[:8], "big", signed=True
)


def current_revision(conn: Connection) -> str | None:
    """The schema revision recorded in the database, None if it was never migrated.

    Leaves ``conn`` outside any transaction.
    """
    for attempt in range(3):
        try:
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
            break
        except exc.DBAPIError:
            conn.rollback()
            # Only a missing table means "never migrated"; anything else (a locked or
            # unreachable database) must surface, not trigger a migration.
            if not inspect(conn).has_table(VERSION_TABLE):
                conn.rollback()
                return None
            conn.rollback()
            # The table exists now: another process's migration committed between our
            # SELECT and the check (seen on PostgreSQL in CI). Read it again.
            if attempt == 2:
                raise
    conn.rollback()
    if len(rows) > 1:
        raise StoreError(f"store has several schema heads {rows}; migrate it by hand")
    return rows[0] if rows else None


# The stores whose schema this process has checked and need not check again: None until
# a long-lived server asks for it (check_schema_once).
_schema_checked: set[str] | None = None


def check_schema_once() -> None:
    """From now on, this process checks (and migrates) a store's schema at its first open
    only. For the API server, which opens the store for every request, where the check
    was a query each time. Nothing migrates a store under a running server: a newer
    Stratoflow migrates it when it starts, in place of the older one."""
    global _schema_checked
    if _schema_checked is None:
        _schema_checked = set()


def ensure_migrated(engine: Engine) -> bool:
    """Upgrade the database behind ``engine`` to :data:`HEAD_REVISION`.

    Returns True if this call ran migrations, False if the schema was already current.
    """
    # An in-memory SQLite store is a new, empty database for each engine: never skipped.
    in_memory = engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
    checked = None if in_memory else _schema_checked
    key = engine.url.render_as_string(hide_password=False)
    if checked is not None and key in checked:
        return False
    migrated = _migrate(engine)
    if checked is not None:
        checked.add(key)
    return migrated


def _migrate(engine: Engine) -> bool:
    with engine.connect() as conn:
        if current_revision(conn) == HEAD_REVISION:
            return False
    writer = engine.execution_options(**{WRITE_OPTION: True})
    with writer.connect() as conn, _migration_lock(engine, conn):
        rev = current_revision(conn)
        if rev == HEAD_REVISION:
            return False
        log.info("migrating Stratoflow store from %s to %s", rev or "empty", HEAD_REVISION)
        with conn.begin():
            _alembic_upgrade(conn)
        return True


def _alembic_upgrade(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    cfg = Config()
    # configparser interpolation: a '%' in the install path must be escaped.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = conn
    try:
        command.upgrade(cfg, "head")
    except CommandError as e:
        raise StoreError(
            f"cannot migrate the Stratoflow store: {e} (is the database from a newer Stratoflow?)"
        ) from e


@contextmanager
def _migration_lock(engine: Engine, conn: Connection) -> Iterator[None]:
    dialect = engine.dialect.name
    if dialect == "sqlite":
        path = sqlite_path(engine.url)
        if path is None:  # in-memory: private to this process
            yield
            return
        with locked(path.with_name(path.name + ".migrate.lock")):
            yield
    elif dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
    else:
        yield
