"""The embedded Airflow: one machine, SQLite, LocalExecutor, the local site.

``stratoflow up`` writes an airflow.cfg into AIRFLOW_HOME (so a bare ``airflow`` command
sees the same settings) and starts ``airflow standalone`` in the background.
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

from stratoflow.errors import StratoflowError
from stratoflow.filelock import locked


class EmbeddedAirflowError(StratoflowError):
    pass


REPO = Path(__file__).resolve().parents[1]
DEFAULT_PORT = 8080
ADMIN = "admin"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser().resolve()


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


@contextlib.contextmanager
def one_trigger_at_a_time() -> Iterator[None]:
    """Serialise this machine's DAG-run triggers (a lock file in AIRFLOW_HOME).

    On SQLite, Airflow 3.3's API server stalls when several triggers arrive at once: a
    trigger's audit-log insert waits on the event loop for the database lock that another
    request's transaction holds, and every request of the server waits with it (measured:
    9 of 10 concurrent triggers timed out). A trigger takes ~0.1 s, so a queue of them
    costs little. Clients that call Airflow's trigger endpoint directly, several at once,
    can still meet this; PostgreSQL (the production mode) has no such lock.
    """
    with locked(airflow_home() / "stratoflow-trigger.lock"):
        yield


def write_airflow_cfg(home: Path | None = None, port: int | None = None) -> Path:
    home = home or airflow_home()
    port = port or api_port()
    home.mkdir(parents=True, exist_ok=True)
    admin_password(home)
    # Without shared secrets each component signs task tokens with its own random key
    # and every task fails with "Signature verification failed".
    jwt_secret, secret_key = _secret(home, "jwt_secret"), _secret(home, "secret_key")
    cfg = f"""# Written by `stratoflow up`: the embedded single-machine Airflow.
[core]
dags_folder = {REPO / "dags"}
plugins_folder = {REPO / "plugins"}
executor = LocalExecutor
load_examples = False
dags_are_paused_at_creation = False
parallelism = 8
max_active_tasks_per_dag = 8
simple_auth_manager_users = {ADMIN}:admin
simple_auth_manager_passwords_file = {passwords_file(home)}

[dag_processor]
refresh_interval = 5
min_file_process_interval = 5

[scheduler]
task_queued_timeout = 600

[api]
port = {port}
base_url = http://localhost:{port}
secret_key = {secret_key}

[api_auth]
jwt_secret = {jwt_secret}

[logging]
base_log_folder = {home / "logs"}
"""
    path = home / "airflow.cfg"
    path.write_text(cfg)
    return path


def venv_env() -> dict[str, str]:
    """Airflow's children are started by the name ``airflow``: the venv's bin goes first."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["AIRFLOW_HOME"] = str(airflow_home())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _pidfile() -> Path:
    return airflow_home() / "standalone.pid"


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


def start(wait_s: float = 240.0, log=print) -> None:
    """Start ``airflow standalone`` unless ours already answers; wait until healthy."""
    if is_healthy():
        _check_ours()
        return
    write_airflow_cfg()
    log_path = airflow_home() / "standalone.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "standalone"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=venv_env(),
            start_new_session=True,
        )
    _pidfile().write_text(str(proc.pid))
    log(f"starting Airflow (log: {log_path}) ...")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedAirflowError(
                f"airflow standalone exited with {proc.returncode}; see {log_path}"
            )
        if is_healthy():
            return
        time.sleep(1.0)
    raise EmbeddedAirflowError(f"Airflow did not become healthy in {wait_s:.0f} s; see {log_path}")


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
    """Collect ``airflow standalone`` if this process started it: an exited child that is
    not waited for stays a zombie, and the process group looks alive until it is reaped."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop() -> bool:
    """Stop the background Airflow started by ``start``; True if one was running."""
    pidfile = _pidfile()
    if not pidfile.exists():
        return False
    pid = int(pidfile.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return False
    for _ in range(60):
        _reap(pid)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return True
