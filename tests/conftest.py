"""Shared pytest fixtures. Each section belongs to one module's owner; keep them grouped."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stratoflow.hooks.credentials import use_airflow_connections

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from stratoflow.store import Store

# =========================================================================================
# Store fixtures (owner: stratoflow/store)
#
#   store_backend    "sqlite" | "postgres" (parametrized; postgres params carry the
#                    ``postgres`` marker)
#   store_url        URL of a fresh, empty, unmigrated store on that backend
#   store            Store.open(store_url), closed afterwards: every test using it runs on
#                    both backends
#   sqlite_store     a migrated SQLite store in tmp_path, for other modules' tests that
#                    only need *a* store
#   pg_database_url  session-wide PostgreSQL database sf_test_<random>, dropped at the end.
#                    Unreachable server: FAIL when $CI is set, skip otherwise.
#   isolated_stratoflow_home  STRATOFLOW_HOME=tmp_path, STRATOFLOW_STORE_URL unset, the
#                    embedded database SQLite (so the default store is a file there)
# =========================================================================================

# Modules that take minutes on their own go to the two xdist workers first (`make test`
# runs whole modules per worker, in collection order): started last, the production mode's
# 4 minutes ran on one worker after the other had finished, and the suite took 14 min.
SLOW_MODULES_FIRST = ("test_production_mode.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        if name in SLOW_MODULES_FIRST:
            return SLOW_MODULES_FIRST.index(name)
        return len(SLOW_MODULES_FIRST)

    items.sort(key=rank)  # stable: every other module keeps its order


PG_SERVER_URL = os.environ.get(
    "STRATOFLOW_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)

STORE_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _pg_admin_engine() -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(
        PG_SERVER_URL,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 5},
    )


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    admin = _pg_admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:  # any failure to reach the server
        admin.dispose()
        reason = f"PostgreSQL unreachable at {make_url(PG_SERVER_URL)!r}: {e}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so the postgres tests must run)", pytrace=False)
        pytest.skip(f"{reason} (set CI=1 to make this an error)")
    name = f"sf_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def reset_pg_database(url: str) -> None:
    """Empty the database: what a brand-new one looks like, without CREATE DATABASE's cost."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def fresh_store_url(request: pytest.FixtureRequest, backend: str, directory: Path) -> str:
    """URL of an empty store on ``backend``; SQLite files go in ``directory``."""
    if backend == "sqlite":
        return f"sqlite:///{directory / 'store.db'}"
    url = request.getfixturevalue("pg_database_url")
    reset_pg_database(url)
    return url


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_url(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> str:
    return fresh_store_url(request, store_backend, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    from stratoflow.store import Store

    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    from stratoflow.store import Store

    s = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def isolated_stratoflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "stratoflow-home"
    monkeypatch.setenv("STRATOFLOW_HOME", str(home))
    monkeypatch.delenv("STRATOFLOW_STORE_URL", raising=False)
    # The store's default without a server: the SQLite file in the home.
    monkeypatch.setenv("STRATOFLOW_EMBEDDED_DB", "sqlite")
    return home


# ======================= end of store fixtures ===========================================


# =========================================================================================
# Airflow fixtures (owner: dags/ and stratoflow/operators)
#
#   airflow_env   session-wide AIRFLOW_HOME (the embedded PostgreSQL server, started once
#                 per worker, and the LocalExecutor config from stratoflow.embedded),
#                 migrated once; STRATOFLOW_HOME under it; a site
#                 catalogue that may also read the test templates' data. Sets os.environ
#                 for the session so in-process registration and the subprocesses agree.
#   run_dag       register a template and run one real DAG run with `airflow dags test`
#   (tests/engine.py: assert_engine_alive(), for every wait on runs)
# =========================================================================================

REPO = Path(__file__).resolve().parents[1]

# Sites built directly by tests read their credentials from Airflow Connections
# (AIRFLOW_CONN_* variables), as tasks do.
use_airflow_connections()
TEST_TEMPLATES = REPO / "tests" / "templates"


# Deployments per chaos test (test_openstack_site, test_ec2_site): 10 in the suite; a soak
# sets more (bench/README.md).
CHAOS_ROUNDS = int(os.environ.get("STRATOFLOW_CHAOS_ROUNDS") or 10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def airflow_home_env(home: Path, sites: Path, port: int, **extra: str) -> Iterator[dict[str, str]]:
    """This process's environment for an Airflow home of the tests (and whatever it starts),
    set for the duration."""
    env = {
        "AIRFLOW_HOME": str(home),
        "STRATOFLOW_HOME": str(home / "stratoflow"),
        "STRATOFLOW_SITES": str(sites),
        # Its catalogue declares no storage endpoint: no lifecycle policy applies (the
        # shipped ones would fail to load); tests of policies bring their own.
        "STRATOFLOW_POLICIES": str(home / "no-policies"),
        "STRATOFLOW_AIRFLOW_PORT": str(port),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Retries after 1 s, 2 s, ... instead of 5 s, 10 s: the failure paths run as in
        # production, only sooner.
        "STRATOFLOW_RETRY_DELAY_S": "1",
        # A module's Airflow is killed 3 s after asking it to stop (it kept the suite
        # waiting up to 13 s per module); nothing in it outlives the module.
        "STRATOFLOW_SUPERVISOR_STOP_GRACE_S": "3",
        **extra,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("STRATOFLOW_STORE_URL", raising=False)
        mp.delenv("STRATOFLOW_PLANS_DIR", raising=False)
        mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        yield env


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("airflow_home")
    sites = home / "sites.yaml"
    roots = f"    allowed_roots: ['{{include}}', '{TEST_TEMPLATES}']\n"
    sites.write_text(
        "sites:\n"
        + "".join(
            f"  - name: {name}\n    kind: local\n    cores: 2\n    memory: auto\n" + roots
            for name in ("local", "alpha", "beta")
        )
        # Small sites for the admission queue's tests (test_queue_e2e.py): `pool` holds two
        # one-core runs at a time, `tight` one, and gives up on a wait after 12 s.
        + "  - name: pool\n    kind: local\n    cores: 2\n    memory: auto\n"
        "    max_priority: 10\n"
        + "  - name: tight\n    kind: local\n    cores: 1\n    memory: auto\n"
        "    queue_timeout_s: 12\n    takes_overflow: false\n"
    )
    port = free_port()
    with airflow_home_env(home, sites, port) as env:
        from stratoflow import embedded
        from stratoflow.embedded import database

        # One embedded PostgreSQL server per worker (its home's), for the whole session:
        # Airflow's database and the store's, shared by every module's Airflow.
        embedded.start_database()
        try:
            embedded.write_airflow_cfg(home, port)
            embedded.migrate_airflow_db()
            yield env
        finally:
            database.stop()


@pytest.fixture(scope="module")
def airflow_up(airflow_env: dict[str, str]):
    """The embedded Airflow (its supervised processes) running on airflow_env's home and port.

    Module-scoped on purpose: `run_dag` runs `airflow dags test` on the same home, and a
    live dag-processor and scheduler beside it race it for the `dag` rows and for the
    test run's task instances (seen in CI as UNIQUE constraint failures on dag.dag_id).
    """
    from stratoflow import embedded

    embedded.start(wait_s=300)
    try:
        yield embedded
    finally:
        embedded.stop(keep_database=True)


@pytest.fixture(scope="module")
def airflow(airflow_up) -> Iterator[Any]:
    """An HTTP client of the module's embedded Airflow (no credentials)."""
    import httpx

    with httpx.Client(base_url=airflow_up.api_url(), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def token(airflow, airflow_up) -> str:
    """An access token of the embedded Airflow's admin."""
    r = airflow.post(
        "/auth/token", json={"username": "admin", "password": airflow_up.admin_password()}
    )
    assert r.status_code in (200, 201), r.text
    return r.json()["access_token"]


@pytest.fixture
def run_dag(airflow_env: dict[str, str]):
    import json
    import re
    import subprocess
    import sys

    from stratoflow.cli import register
    from stratoflow.store import Store, deployment_id_for

    def run(template: Path, conf: dict | None = None, timeout: float = 400) -> dict:
        from stratoflow import embedded

        assert embedded.supervisor_pid() is None, "the embedded Airflow is up on run_dag's home"
        _topology, plan = register(str(template))
        airflow = str(Path(sys.executable).with_name("airflow"))
        proc = subprocess.run(
            [airflow, "dags", "test", plan["dag_id"], "-c", json.dumps(conf or {})],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ,
        )
        log = proc.stdout + proc.stderr
        match = re.search(r"run_id=(manual__[^,\s]+)", log)
        assert match, f"no DAG run in the output:\n{log[-4000:]}"
        run_id = match.group(1)
        deployment = Store.open().get_deployment(deployment_id_for(plan["dag_id"], run_id))
        return {
            "plan": plan,
            "run_id": run_id,
            "log": log,
            "deployment": deployment,
            "run_failed": "DagRun failed" in log or "state=failed" in log,
        }

    return run


@pytest.fixture
def run_delete(airflow_env: dict[str, str]):
    """Delete a deployment as `stratoflow delete` does, with the delete DAG's run done by
    `airflow dags test` (no embedded Airflow up): returns (deployment, log)."""
    import json
    import subprocess
    import sys

    from stratoflow.deletion import DELETE_DAG_ID
    from stratoflow.store import Store

    def run(deployment_id: str, timeout: float = 300) -> tuple[Any, str]:
        store = Store.open()
        store.begin_delete(deployment_id, "delete requested by the test")
        store.leave_queue(deployment_id, "deleted by the test")
        airflow = str(Path(sys.executable).with_name("airflow"))
        conf = json.dumps({"deployment_id": deployment_id})
        proc = subprocess.run(
            [airflow, "dags", "test", DELETE_DAG_ID, "-c", conf],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ,
        )
        return store.get_deployment(deployment_id), proc.stdout + proc.stderr

    return run
