"""The production mode, started as a user starts it (`stratoflow up --production`): the
CeleryExecutor with two Celery workers (as root, each in a PID namespace of its own, as
separate containers), Airflow's database and the store on the local PostgreSQL server,
Redis as the broker; a campaign submitted with the CLI runs on the workers, its jobs
followed across namespaces, and `stratoflow down` stops every process and leaves the
servers running."""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_TEMPLATES, airflow_home_env, free_port

pytestmark = [pytest.mark.airflow, pytest.mark.postgres]

CLI = [sys.executable, "-m", "stratoflow.cli"]
LINE_COUNT = TEST_TEMPLATES / "dag" / "line_count.yaml"
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def servers_or_skip(broker: str) -> None:
    """Both servers answer, or the module is skipped (an error on CI, which has both)."""
    import redis
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    try:
        engine = create_engine(f"{PG_SERVER}/postgres", poolclass=NullPool)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        redis.Redis.from_url(broker, socket_connect_timeout=3).ping()
    except Exception as e:
        reason = f"the production mode needs PostgreSQL and Redis on this machine: {e}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this must run)", pytrace=False)
        pytest.skip(reason)


def cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=os.environ
    )


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    home = tmp_path_factory.mktemp("production_home")
    sites = home / "sites.yaml"
    sites.write_text(
        "sites:\n  - name: local\n    kind: local\n    cores: 2\n    memory: auto\n"
        f"    allowed_roots: ['{{include}}', '{TEST_TEMPLATES}']\n"
    )
    prefix = f"sf_prod_{secrets.token_hex(4)}"
    broker = f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
    servers_or_skip(broker)
    extra = {
        "STRATOFLOW_PRODUCTION_PREFIX": prefix,
        "STRATOFLOW_CELERY_BROKER_URL": broker,
    }
    with airflow_home_env(home, sites, free_port(), **extra):
        try:
            # Each worker in a PID namespace of its own when this runs as root, as
            # separate containers: a job one starts is followed by the triggerer and
            # torn down by the other through its heartbeat and cancel marker.
            isolate = ["--isolate-workers"] if os.geteuid() == 0 else []
            up = cli("up", "--production", "--workers", "2", *isolate, timeout=400)
            assert up.returncode == 0, up.stdout + up.stderr
            yield {"home": home, "prefix": prefix, "broker": broker, "up": up.stdout}
        finally:
            down = cli("down", timeout=120)
            _drop(prefix, broker)
            assert down.returncode == 0, down.stdout + down.stderr


def _drop(prefix: str, broker: str) -> None:
    import redis
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        for name in ("airflow", "store"):
            conn.execute(text(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)'))
    admin.dispose()
    redis.Redis.from_url(broker).flushdb()


def test_a_campaign_runs_on_the_celery_workers(production):
    from stratoflow import embedded
    from stratoflow.store import Store

    assert "CeleryExecutor with 2 workers" in production["up"]
    report = embedded.health_report()
    running = {c.name: c.state for c in report.components}
    assert running == {
        name: "running"
        for name in (
            "scheduler",
            "dag-processor",
            "triggerer",
            "api-server",
            "celery-worker-1",
            "celery-worker-2",
        )
    }, running

    if os.geteuid() == 0:  # each worker sees only its own PID namespace, as a container
        namespaces = set()
        for name in ("celery-worker-1", "celery-worker-2"):
            (pid,) = [c.pid for c in report.components if c.name == name]  # unshare's
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            namespaces |= {os.stat(f"/proc/{child}/ns/pid").st_ino for child in children}
        assert len(namespaces) == 2 and os.stat("/proc/self/ns/pid").st_ino not in namespaces

    done = cli("submit", str(LINE_COUNT), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    deployment_id = done.stdout.splitlines()[0].strip()
    assert f"deployment {deployment_id}: CREATE_COMPLETE" in done.stdout

    # The store is the server's database, not a file in the home.
    store = Store.open()
    assert store.engine.url.database == f"{production['prefix']}_store"
    assert store.get_deployment(deployment_id).status == "CREATE_COMPLETE"
    # The tasks ran in the Celery workers: each received task is logged by its worker.
    logs = production["home"] / "logs" / "embedded"
    received = sum(
        (logs / f"celery-worker-{i}.log").read_text().count("execute_workload") for i in (1, 2)
    )
    assert received >= 5, received  # broker, provision, the jobs, stage-out, teardown...
