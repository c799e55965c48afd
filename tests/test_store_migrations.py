"""Schema migrations: applied by Store.open(), idempotent, in step with schema.py, cheap
to re-check."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from stratoflow.store import Store, StoreError
from stratoflow.store.engine import make_engine
from stratoflow.store.migrate import HEAD_REVISION, MIGRATIONS_DIR, current_revision
from stratoflow.store.schema import VERSION_TABLE, metadata

TABLES = {"plans", "deployments", "step_events", "resources", "reservations", "usage"}
TABLES |= {"reaper_actions"}


def test_head_constant_matches_revision_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD_REVISION]


def test_open_migrates_then_is_idempotent(store_url: str):
    first = Store.open(store_url)
    assert first.migrated
    first.create_deployment("dag", "run", "h", {"keep": "me"})
    first.close()
    for _ in range(2):
        again = Store.open(store_url)
        assert not again.migrated
        assert again.find_deployment("dag", "run").inputs == {"keep": "me"}
        again.close()
    engine = make_engine(store_url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == HEAD_REVISION
            assert TABLES | {VERSION_TABLE} <= set(inspect(conn).get_table_names())
            # Airflow's own version table is never created or touched
            assert "alembic_version" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_models_match_migrations(store: Store):
    """Autogenerate finds nothing to do: schema.py and the revisions agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_unmigrated_open_is_possible(store_url: str):
    s = Store.open(store_url, migrate=False)
    try:
        with s.engine.connect() as conn:
            assert current_revision(conn) is None
    finally:
        s.close()


def test_newer_schema_is_refused(store_url: str):
    Store.open(store_url).close()
    engine = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'zzzz_future'"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer Stratoflow"):
        Store.open(store_url)


def test_reopen_of_a_current_store_only_reads_its_revision(store_url: str):
    """Tasks open the store freely, so reopening a migrated one must not run alembic or
    any DDL: one read of the recorded revision (plus the connection's own setup)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    first = Store.open(store_url)
    assert first.migrated is True
    first.close()
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement.strip().split()[0].upper())

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        again = Store.open(store_url)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    again.close()
    assert again.migrated is False
    assert not {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE"} & set(statements), statements
    assert statements.count("SELECT") == 1, statements


def test_sqlite_uses_wal_and_busy_timeout(tmp_path: Path):
    s = Store.open(f"sqlite:///{tmp_path / 'x' / 'store.db'}")  # parent dir is created
    try:
        with s.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    finally:
        s.close()


def test_in_memory_sqlite_keeps_its_data():
    with Store.open("sqlite://") as s:
        d = s.create_deployment("dag", "run", "h", {})
        assert s.get_deployment(d.id) == d


def test_a_server_checks_the_schema_at_its_first_open_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """After check_schema_once (the API server), only a store's first open checks it."""
    from stratoflow.store import migrate

    url = f"sqlite:///{tmp_path / 'store.db'}"
    checks: list[str] = []
    real = migrate._migrate
    monkeypatch.setattr(migrate, "_migrate", lambda engine: checks.append("") or real(engine))
    Store.open(url).close()
    Store.open(url).close()
    assert len(checks) == 2  # a CLI command or a task checks at every open

    monkeypatch.setattr(migrate, "_schema_checked", None)
    migrate.check_schema_once()
    checks.clear()
    for _ in range(3):
        Store.open(url).close()
    assert len(checks) == 1
