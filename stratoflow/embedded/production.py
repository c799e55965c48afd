"""The production mode on one machine: the embedded default's supervisor and folders, with
Airflow's CeleryExecutor, its metadata and the store on a PostgreSQL server, Redis as the
broker, and separate Celery workers.

``stratoflow up --production`` records the mode in the Airflow home (stratoflow.config),
makes the two databases if the server lacks them, and starts the API server, scheduler,
dag-processor, triggerer and the workers; ``stratoflow down`` stops them and leaves the
servers alone: they are the site's, not ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL, make_url

from stratoflow.config import Production, airflow_home, production_file
from stratoflow.errors import StratoflowError

if TYPE_CHECKING:
    from sqlalchemy import Engine

SERVER_ENV = "STRATOFLOW_PG_SERVER"
BROKER_ENV = "STRATOFLOW_CELERY_BROKER_URL"
PREFIX_ENV = "STRATOFLOW_PRODUCTION_PREFIX"
DEFAULT_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
# Each worker serves its task logs on its own port (Airflow's default is 8793 for all).
LOG_PORT_BASE = 8793


class ProductionError(StratoflowError):
    pass


@dataclass(frozen=True)
class ProcessSpec:
    """One supervised Airflow process: its name, its command after ``airflow``, its env."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    #: Run in a PID namespace of its own (``unshare --pid --fork --mount-proc``).
    isolated: bool = False


def configure(
    workers: int = 2,
    worker_concurrency: int = 4,
    isolate_workers: bool = False,
    server: str | None = None,
    broker: str | None = None,
    prefix: str | None = None,
) -> Production:
    """The production mode for this Airflow home, recorded there."""
    server = (server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
    broker = broker or os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    prefix = prefix or os.environ.get(PREFIX_ENV) or "stratoflow"
    if not prefix.replace("_", "").isalnum():
        raise ProductionError(f"{PREFIX_ENV}={prefix!r}: expected letters, digits and '_'")
    if not 1 <= workers <= 16:
        raise ProductionError(f"--workers {workers}: expected 1 to 16")
    try:
        base = make_url(server)
    except Exception:
        raise ProductionError(f"{SERVER_ENV}={server!r}: not a database URL") from None
    if base.get_backend_name() != "postgresql":
        raise ProductionError(f"{SERVER_ENV}: expected a postgresql:// server URL, got {server!r}")
    if not broker.startswith(("redis://", "rediss://")):
        raise ProductionError(f"{BROKER_ENV}: expected a redis:// URL, got {broker!r}")

    def db(name: str) -> str:
        return base.set(database=f"{prefix}_{name}").render_as_string(hide_password=False)

    mode = Production(
        airflow_db_url=db("airflow"),
        store_url=db("store"),
        broker_url=broker,
        workers=workers,
        worker_concurrency=worker_concurrency,
        isolate_workers=isolate_workers,
    )
    path = production_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mode.to_json())
    return mode


def forget() -> None:
    """Back to the embedded default in this home."""
    production_file().unlink(missing_ok=True)


def _server_admin(mode: Production) -> tuple[Engine, list[URL]]:
    """An autocommit engine on the server's ``postgres`` database, and the URLs of the
    mode's two databases. Both are on one server (configure() makes them so)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    urls = [make_url(u) for u in (mode.airflow_db_url, mode.store_url)]
    server = urls[0].set(database="postgres")
    return create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool), urls


def prepare_servers(mode: Production) -> None:
    """Make the two databases if the server lacks them, and check the broker answers:
    each missing service is named with how to start it."""
    from sqlalchemy import text

    admin, urls = _server_admin(mode)
    server = admin.url
    try:
        with admin.connect() as conn:
            for u in urls:
                found = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}
                ).first()
                if found is None:
                    conn.execute(text(f'CREATE DATABASE "{u.database}"'))
    except Exception as e:
        raise ProductionError(
            f"the PostgreSQL server at {server.render_as_string(hide_password=True)} cannot be"
            f" used ({type(e).__name__}: {str(e).strip().splitlines()[0]}); start it, or"
            f" set {SERVER_ENV}"
        ) from None
    finally:
        admin.dispose()
    import redis

    try:
        redis.Redis.from_url(mode.broker_url, socket_connect_timeout=5).ping()
    except redis.RedisError as e:
        raise ProductionError(
            f"the Celery broker at {mode.broker_url} does not answer ({e}); start Redis, or"
            f" set {BROKER_ENV}"
        ) from None


def drop_databases(mode: Production) -> None:
    """Drop the mode's two databases and empty its broker database: for throwaway homes
    (tests, benchmarks), never called by ``down``."""
    import redis
    from sqlalchemy import text

    admin, urls = _server_admin(mode)
    try:
        with admin.connect() as conn:
            for u in urls:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)'))
    finally:
        admin.dispose()
    redis.Redis.from_url(mode.broker_url).flushdb()


def celery_section(mode: Production) -> str:
    """airflow.cfg's [celery] section (the executor and database are set above it)."""
    # Celery's result backend: Airflow's database, through the same driver (psycopg2; a
    # bare postgresql:// made Airflow's loader ask for psycopg 3, which is not installed).
    backend = "db+" + mode.airflow_db_url
    return f"""
[celery]
broker_url = {mode.broker_url}
result_backend = {backend}
worker_concurrency = {mode.worker_concurrency}

[celery_broker_transport_options]
# A task still running after this long is handed to another worker by Redis. Stratoflow's
# long waits defer to the triggerer, so no task should come near a day.
visibility_timeout = 86400
"""


def worker_specs(mode: Production) -> list[ProcessSpec]:
    return [
        ProcessSpec(
            f"celery-worker-{i}",
            ("celery", "worker", "--celery-hostname", f"worker{i}@%h"),
            {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(LOG_PORT_BASE + i)},
            isolated=mode.isolate_workers,
        )
        for i in range(1, mode.workers + 1)
    ]


def describe(mode: Production) -> str:
    hidden = [
        make_url(u).render_as_string(hide_password=True)
        for u in (mode.airflow_db_url, mode.store_url)
    ]
    return (
        f"production mode ({airflow_home()}): CeleryExecutor with {mode.workers} workers"
        f" (broker {mode.broker_url}); Airflow's database {hidden[0]}, the store {hidden[1]}"
    )
