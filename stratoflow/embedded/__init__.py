"""The embedded Airflow: one machine, LocalExecutor, the local site, PostgreSQL from a wheel.

``stratoflow up`` starts the embedded PostgreSQL server (``database``), writes an
airflow.cfg into AIRFLOW_HOME (so a bare ``airflow`` command sees the same settings),
migrates Airflow's database and starts the supervisor (``supervisor``) in the background,
which runs Airflow's processes and restarts them when they exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from stratoflow.config import airflow_home as config_airflow_home
from stratoflow.config import embedded_db, embedded_pg_url
from stratoflow.config import production as production_mode
from stratoflow.embedded import health
from stratoflow.errors import StratoflowError
from stratoflow.filelock import locked
from stratoflow.store.config import EMBEDDED_STORE_DATABASE


class EmbeddedAirflowError(StratoflowError):
    pass


REPO = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 8080
ADMIN = "admin"


def airflow_home() -> Path:
    return config_airflow_home()


def api_port() -> int:
    return int(os.environ.get("STRATOFLOW_AIRFLOW_PORT") or DEFAULT_PORT)


def api_url() -> str:
    return os.environ.get("STRATOFLOW_AIRFLOW_URL") or f"http://localhost:{api_port()}"


def passwords_file(home: Path | None = None) -> Path:
    return (home or airflow_home()) / "stratoflow_passwords.json"


def admin_password(home: Path | None = None) -> str:
    path = passwords_file(home)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({ADMIN: secrets.token_urlsafe(12)}, fh)
    return json.loads(path.read_text())[ADMIN]


def _secret(home: Path, name: str) -> str:
    """A per-home secret, generated once: every Airflow component must share it."""
    path = home / f".{name}"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(64))  # HS512 wants >= 64 bytes
    return path.read_text().strip()


AIRFLOW_DATABASE = "airflow"


@contextlib.contextmanager
def one_trigger_at_a_time() -> Iterator[None]:
    """Serialise this machine's DAG-run triggers when Airflow runs on SQLite.

    On SQLite, Airflow 3.3's API server stalls when several triggers arrive at once: a
    trigger's audit-log insert waits on the event loop for the database lock that another
    request's transaction holds, and every request of the server waits with it (measured:
    9 of 10 concurrent triggers timed out). PostgreSQL, the embedded default, has no such
    lock, so there the triggers run side by side.
    """
    if embedded_db() != "sqlite":
        yield
        return
    with locked(airflow_home() / "stratoflow-trigger.lock"):
        yield


def airflow_database_url() -> str:
    mode = production_mode()
    if mode is not None:
        return mode.airflow_db_url
    if embedded_db() == "postgres":
        return embedded_pg_url(AIRFLOW_DATABASE)
    return f"sqlite:///{airflow_home() / 'airflow.db'}"


def write_airflow_cfg(home: Path | None = None, port: int | None = None) -> Path:
    home = home or airflow_home()
    port = port or api_port()
    home.mkdir(parents=True, exist_ok=True)
    admin_password(home)
    # Without shared secrets each component signs task tokens with its own random key
    # and every task fails with "Signature verification failed".
    jwt_secret, secret_key = _secret(home, "jwt_secret"), _secret(home, "secret_key")
    from stratoflow.embedded.production import celery_section

    mode = production_mode()
    executor = "LocalExecutor" if mode is None else "CeleryExecutor"
    cfg = f"""# Written by `stratoflow up`: the embedded single-machine Airflow.
[core]
dags_folder = {REPO / "dags"}
plugins_folder = {REPO / "plugins"}
executor = {executor}
load_examples = False
dags_are_paused_at_creation = False
parallelism = 8
max_active_tasks_per_dag = 8
# Stratoflow's admission queue orders waiting deployments (fair share, priorities); Airflow's
# default cap of 16 runs per DAG would hold the 17th run of a template back in FIFO order
# before it ever reached that queue. A waiting run costs one deferred trigger.
max_active_runs_per_dag = 1000
simple_auth_manager_users = {ADMIN}:admin
simple_auth_manager_passwords_file = {passwords_file(home)}

[database]
sql_alchemy_conn = {airflow_database_url()}

[dag_processor]
refresh_interval = 5
min_file_process_interval = 5

[scheduler]
task_queued_timeout = 600
# A killed scheduler's running tasks are taken over by its successor at the first check
# after its heartbeat is 30 s old (Airflow checks every 300 s: a campaign of the
# production mode's kill test sat still for 5 minutes).
orphaned_tasks_check_interval = 30
# A task whose worker died is failed, then retried, once its heartbeat is this old (300 s).
# Heartbeats come from the task's supervisor through the API server every few seconds.
task_instance_heartbeat_timeout = 60

[api]
# One worker: two were measured slower on 2 cores under a burst of 50 (max accept latency
# 2-3 s against under 1 s), each worker contending with the scheduler and triggerer.
workers = 1
port = {port}
base_url = http://localhost:{port}
secret_key = {secret_key}

[api_auth]
jwt_secret = {jwt_secret}

[logging]
base_log_folder = {home / "logs"}
"""
    if mode is not None:
        cfg += celery_section(mode)
    path = home / "airflow.cfg"
    path.write_text(cfg)
    return path


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def venv_env() -> dict[str, str]:
    """Airflow's children are started by the name ``airflow``: the venv's bin goes first."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["AIRFLOW_HOME"] = str(airflow_home())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _pidfile() -> Path:
    return airflow_home() / "stratoflow-supervisor.pid"


def supervisor_log() -> Path:
    return airflow_home() / "supervisor.log"


def health_report() -> health.HealthReport | None:
    return health.read(airflow_home())


def engine_problem() -> str | None:
    """Why runs cannot progress on the embedded Airflow, with its health report; None when
    they can, or when Airflow is not ours (an Airflow elsewhere has no report here)."""
    report = health_report()
    if report is None:
        return None  # not started here: an Airflow run some other way is not ours to judge
    why = health.problem(report)
    return None if why is None else f"{why}\n{health.render(report)}"


def is_healthy(timeout: float = 2.0) -> bool:
    try:
        r = httpx.get(f"{api_url()}/api/v2/monitor/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    if r.status_code != 200:
        return False
    body = r.json()
    return all(
        body.get(k, {}).get("status") == "healthy"
        for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    )


def start_database() -> None:
    """The embedded PostgreSQL, with Airflow's and the store's databases (no-op on SQLite);
    in the production mode, the server's databases and the broker, checked."""
    mode = production_mode()
    if mode is not None:
        from stratoflow.embedded.production import prepare_servers

        prepare_servers(mode)
        return
    if embedded_db() != "postgres":
        return
    from stratoflow.embedded import database, legacy

    legacy.refuse_ambiguous_home()
    database.start(databases=(AIRFLOW_DATABASE, EMBEDDED_STORE_DATABASE))
    legacy.migrate_sqlite_store()


def migrate_airflow_db() -> None:
    """Bring Airflow's database to the installed Airflow's schema (skipped when current)."""
    from stratoflow.embedded import airflow_db

    try:
        airflow_db.migrate(
            airflow_home(), airflow_database_url(), [airflow_bin(), "db", "migrate"], venv_env()
        )
    except RuntimeError as e:
        raise EmbeddedAirflowError(str(e)) from e


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def supervisor_pid() -> int | None:
    try:
        pid = int(_pidfile().read_text())
    except (OSError, ValueError):
        return None
    return pid if health.pid_alive(pid) else None


def start(wait_s: float = 240.0, log=print) -> None:
    """Start the database and the supervised Airflow unless ours runs; wait until healthy."""
    if supervisor_pid() is not None and is_healthy():
        _check_ours()
        return
    start_database()
    if supervisor_pid() is None:
        from stratoflow.embedded.supervisor import kill_leftovers

        _reap_pidfile()
        kill_leftovers(airflow_home())
        if _port_taken(api_port()):
            if is_healthy():
                _check_ours()
            raise EmbeddedAirflowError(
                f"port {api_port()} is in use by another program; stop it or set "
                "STRATOFLOW_AIRFLOW_PORT to another port"
            )
        write_airflow_cfg()
        migrate_airflow_db()
        with open(supervisor_log(), "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stratoflow.embedded.supervisor"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=venv_env(),
                start_new_session=True,
            )
        _pidfile().write_text(str(proc.pid))
        log(f"starting Airflow (logs: {supervisor_log()}, {airflow_home() / 'logs/embedded'})")
    _wait_healthy(wait_s)


def _wait_healthy(wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        pid = supervisor_pid()
        if pid is None:
            _reap_pidfile()
            raise EmbeddedAirflowError(f"the supervisor exited; see {supervisor_log()}")
        report = health_report()
        # Until the new supervisor writes its first report, the file is its predecessor's.
        if report is not None and report.supervisor_pid == pid:
            why = health.problem(report)
            if why is not None:
                raise EmbeddedAirflowError(f"{why}\n{health.render(report)}")
        if is_healthy():
            return
        time.sleep(1.0)
    raise EmbeddedAirflowError(
        f"Airflow did not become healthy in {wait_s:.0f} s\n{health.render(health_report())}"
    )


def _reap_pidfile() -> None:
    with contextlib.suppress(OSError, ValueError):
        _reap(int(_pidfile().read_text()))


def _check_ours() -> None:
    """A healthy Airflow on our port may be someone else's: our password must work there."""
    r = httpx.post(
        f"{api_url()}/auth/token",
        json={"username": ADMIN, "password": admin_password()},
        timeout=10,
    )
    if r.status_code >= 300:
        raise EmbeddedAirflowError(
            f"an Airflow that is not this one ({airflow_home()}) answers at {api_url()}; "
            "stop it or set STRATOFLOW_AIRFLOW_PORT to another port"
        )


def _reap(pid: int) -> None:
    """Collect the supervisor if this process started it: an exited child that is not
    waited for stays a zombie, and looks alive until it is reaped."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(keep_database: bool = False) -> bool:
    """Stop the supervised Airflow (and, unless ``keep_database``, the embedded database);
    True if something was running."""
    stopped = False
    pidfile = _pidfile()
    pid = supervisor_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(int(60 / 0.2)):
            _reap(pid)
            if not health.pid_alive(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        stopped = True
    pidfile.unlink(missing_ok=True)
    # A supervisor killed outright leaves its children: kill what is left of them.
    from stratoflow.embedded.supervisor import kill_leftovers

    kill_leftovers(airflow_home())
    if not keep_database and production_mode() is None and embedded_db() == "postgres":
        from stratoflow.embedded import database

        stopped = database.stop() or stopped
    return stopped
