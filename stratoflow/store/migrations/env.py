"""Alembic environment. Stratoflow runs it programmatically (``stratoflow.store.migrate``)
and hands it an open connection; the URL fallback is for developers running ``alembic``
by hand with ``-x url=...``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from stratoflow.store.schema import VERSION_TABLE, metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from stratoflow.store.config import default_store_url
    from stratoflow.store.engine import WRITE_OPTION, make_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or default_store_url()
    engine = make_engine(url).execution_options(**{WRITE_OPTION: True})
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported for the Stratoflow store")
run_migrations_online()
