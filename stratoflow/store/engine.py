"""Engines tuned for many short-lived Airflow task processes writing at once."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool, StaticPool

from stratoflow.retry import retrying

# Execution option that marks an engine whose transactions will write. On SQLite those start
# with BEGIN IMMEDIATE: a deferred transaction that reads and then tries to write cannot
# wait for the lock in WAL mode (it fails with SQLITE_BUSY at once, busy_timeout or not).
WRITE_OPTION = "stratoflow_write"

SQLITE_BUSY_TIMEOUT_S = 30.0


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


_shared: dict[tuple[str, int], Engine] = {}
_shared_lock = threading.Lock()


#: The databases the store is written and tested for: admission and reservations take
#: SQLite's write lock or PostgreSQL's advisory locks, and no other database gets either.
BACKENDS = ("sqlite", "postgresql")


def store_url(url: str | URL) -> URL:
    """``url`` parsed, if it names a database the store supports (else StoreError)."""
    from stratoflow.store.config import STORE_URL_ENV
    from stratoflow.store.models import StoreError

    try:
        u = make_url(url)
    except exc.ArgumentError:
        raise StoreError(
            f"{STORE_URL_ENV}: not a database URL (expected sqlite:///<file> or"
            " postgresql://<user>@<host>/<database>)"
        ) from None
    if u.get_backend_name() not in BACKENDS:
        raise StoreError(
            f"{STORE_URL_ENV}: the store runs on SQLite or PostgreSQL, got a"
            f" {u.get_backend_name()!r} URL ({u.render_as_string(hide_password=True)})"
        )
    return u


def shared_engine(url: str | URL) -> tuple[Engine, bool]:
    """The engine for ``url``, and whether it is shared. A database server's engine is
    made once per process and kept: a store opened per request or per trigger poll then
    reuses pooled connections, where a new engine each time cost a connection (a new
    server process, on PostgreSQL) and its teardown. SQLite engines hold no connection
    (NullPool) and are made each time."""
    u = store_url(url)
    if u.get_backend_name() == "sqlite":
        return make_engine(u), False
    key = (u.render_as_string(hide_password=False), os.getpid())
    with _shared_lock:
        engine = _shared.get(key)
        if engine is None:
            engine = _shared[key] = make_engine(u)
    return engine, True


def make_engine(url: str | URL) -> Engine:
    u = store_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u)
    return _server_engine(u)


def _sqlite_engine(u: URL) -> Engine:
    path = sqlite_path(u)
    connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    if path is None:
        # One shared connection, or every checkout would see a new empty database.
        engine = create_engine(
            u, poolclass=StaticPool, connect_args={**connect_args, "check_same_thread": False}
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        # NullPool: opening a SQLite file costs microseconds, and no connection can then be
        # inherited across a fork by a task process.
        engine = create_engine(u, poolclass=NullPool, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module; SQLAlchemy's "begin" hook below emits it.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if path is not None:
                _switch_to_wal(cur)
                # In WAL mode NORMAL is durable against application crashes and much cheaper.
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _switch_to_wal(cur: Any) -> None:
    """``PRAGMA journal_mode = WAL``, waiting out the lock. On a new file, the first
    switch needs an exclusive lock and, when several processes open the file at once,
    SQLite can refuse it with "database is locked" at once, busy_timeout or not (seen
    with eight processes opening one new store). Eleven tries from 50 ms, doubling up to
    retry.MAX_BACKOFF_S, wait about as long as the busy timeout (30 s) in all."""
    retrying(
        lambda: cur.execute("PRAGMA journal_mode = WAL"),
        attempts=11,
        backoff_s=0.05,
        transient=lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e),
    )


def _server_engine(u: URL) -> Engine:
    # A process keeps at most as many connections as it used at once, up to pool_size: a
    # task keeps one, and the API server (a thread per request) keeps enough for a burst
    # instead of opening and closing a connection (a PostgreSQL backend) per request.
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 8, "max_overflow": 8}
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("psycopg2", "psycopg"):
        kwargs["connect_args"] = {"application_name": "stratoflow", "connect_timeout": 10}
    engine = create_engine(u, **kwargs)

    # A pooled connection must never be used by two processes (a task forked from a parent
    # that already held a Store). SQLAlchemy's documented recipe: tag each connection with
    # its pid and refuse it, so the pool opens a fresh one, in any other process.
    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, record: Any, proxy: Any) -> None:
        pid = os.getpid()
        if record.info.get("pid") != pid:
            record.dbapi_connection = proxy.dbapi_connection = None
            raise exc.DisconnectionError(
                f"connection record belongs to pid {record.info.get('pid')}, attempting to "
                f"check out in pid {pid}"
            )

    return engine
