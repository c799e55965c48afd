"""The embedded Airflow's supervisor: runs each Airflow process and restarts it when it exits.

``airflow standalone`` does not restart a component that exits, and the API server then
goes on accepting runs that nothing schedules. This process runs the API server,
scheduler, dag-processor and triggerer (each in its own process group, with its own log),
restarts one that exits after a back-off, logs why it exited, and gives up on one that
keeps dying, leaving it ``failed`` in the health report for every waiter to see. It also
watches the embedded PostgreSQL server and restarts it the same way.

    python -m stratoflow.embedded.supervisor   (started by ``stratoflow up``)

SIGTERM or SIGINT stops every component, then the supervisor; the database is left to
``stratoflow down``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stratoflow.embedded import health
from stratoflow.embedded.health import BACKOFF, FAILED, RUNNING, STOPPED, ComponentHealth
from stratoflow.embedded.production import ProcessSpec

log = logging.getLogger("stratoflow.supervisor")

AIRFLOW_COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
POLL_S = 0.5
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 30.0
# A process that ran this long before exiting starts its back-off afresh.
STABLE_AFTER_S = 60.0
STOP_GRACE_S = 30.0
# How long the API server may take to answer its first request after a start.
WAKE_TIMEOUT_S = 300.0
# How long a stop waits for the processes to exit on SIGTERM before SIGKILL (the suite
# sets a few seconds: its Airflows hold nothing a kill could lose).
STOP_GRACE_ENV = "STRATOFLOW_SUPERVISOR_STOP_GRACE_S"
MAX_RESTARTS_ENV = "STRATOFLOW_SUPERVISOR_MAX_RESTARTS"
WINDOW_ENV = "STRATOFLOW_SUPERVISOR_WINDOW_S"


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


@dataclass
class Component:
    """One supervised thing: an Airflow process we spawn, or the database we watch."""

    health: ComponentHealth
    #: What to run (an Airflow process); None for the database, which is watched.
    spec: ProcessSpec | None = None
    started_mono: float = 0.0
    next_start: float = 0.0
    streak: int = 0  # exits since it last ran stably: sets the back-off
    exits: list[float] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return self.health.name


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    def __init__(
        self,
        airflow_home: Path,
        database: str,
        airflow_bin: str,
        env: dict[str, str],
        extra: Sequence[ProcessSpec] = (),
    ):
        """``database``: ``postgres`` (the embedded server, watched and restarted),
        ``sqlite``, or ``server`` (the production mode's: not ours to watch); ``extra``:
        processes beside Airflow's four (the production mode's Celery workers)."""
        self.home = airflow_home
        self.database = database
        self.airflow_bin = airflow_bin
        self.env = env
        self.max_restarts = _int_env(MAX_RESTARTS_ENV, 5)
        self.window_s = _int_env(WINDOW_ENV, 600)
        self.stopping = False
        specs = [ProcessSpec(name, (name,)) for name in AIRFLOW_COMPONENTS] + list(extra)
        self.components = [Component(ComponentHealth("postgres"))] if database == "postgres" else []
        self.components += [Component(ComponentHealth(p.name), p) for p in specs]
        self.report = health.HealthReport(
            os.getpid(), health.now_iso(), database, [c.health for c in self.components]
        )
        self.logs = airflow_home / "logs" / "embedded"
        self.logs.mkdir(parents=True, exist_ok=True)

    # ---- the database: watched, not owned (pg_ctl runs it in the background) ----------

    def _database_pid(self) -> int | None:
        from stratoflow.embedded import database

        return database.running_pid()

    def _start_database(self, comp: Component) -> None:
        from stratoflow.embedded import database

        database.start()
        comp.health.pid = database.server_pid()

    # ---- Airflow processes ------------------------------------------------------------

    def _spawn(self, comp: Component) -> None:
        assert comp.spec is not None
        argv = [self.airflow_bin, *comp.spec.args]
        if comp.spec.isolated:
            # Its own PID namespace: it sees none of the other processes, as a separate
            # container would not (--kill-child: it dies with unshare).
            argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
        out = open(self.logs / f"{comp.name}.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            comp.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **comp.spec.env},
                start_new_session=True,
            )
        finally:
            out.close()
        comp.health.pid = comp.proc.pid
        started = health.start_ticks(comp.proc.pid)
        if started is not None:
            comp.health.groups = [*comp.health.groups, [comp.proc.pid, started]][-20:]

    def _start(self, comp: Component) -> None:
        try:
            if comp.spec is None:  # the database
                self._start_database(comp)
            else:
                self._spawn(comp)
        except Exception as exc:  # a start that fails is an exit like any other
            log.error("%s: could not start: %s", comp.name, exc)
            self._exited(comp, f"could not start: {exc}"[:300])
            return
        comp.health.state = RUNNING
        comp.health.since = health.now_iso()
        comp.started_mono = time.monotonic()
        log.info("%s: started (pid %s)", comp.name, comp.health.pid)
        self._publish()
        if comp.name == "api-server":
            threading.Thread(target=wake_stratoflow_api, name="wake-api", daemon=True).start()

    def _exit_of(self, comp: Component) -> str | None:
        """How the component ended, or None while it runs."""
        if comp.spec is None:  # the database
            return None if self._database_pid() else "the server is not running"
        assert comp.proc is not None
        code = comp.proc.poll()
        return None if code is None else describe_exit(code)

    def _exited(self, comp: Component, why: str) -> None:
        now = time.monotonic()
        ran_s = now - comp.started_mono if comp.started_mono else 0.0
        comp.streak = 1 if ran_s >= STABLE_AFTER_S else comp.streak + 1
        comp.exits = [t for t in comp.exits if now - t < self.window_s] + [now]
        comp.health.last_exit = why
        comp.health.last_exit_at = health.now_iso()
        comp.health.pid = None
        if len(comp.exits) > self.max_restarts:
            comp.health.state = FAILED
            log.error(
                "%s: %s after %.0f s; %d exits in %d s: giving up (see %s)",
                comp.name, why, ran_s, len(comp.exits), self.window_s, self._log_of(comp),
            )  # fmt: skip
        else:
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (comp.streak - 1))
            comp.health.state = BACKOFF
            comp.next_start = now + delay
            log.warning(
                "%s: %s after %.0f s; restart %d in %.0f s (see %s)",
                comp.name, why, ran_s, comp.health.restarts + 1, delay, self._log_of(comp),
            )  # fmt: skip
        self._publish()

    def _log_of(self, comp: Component) -> Path:
        if comp.spec is None:  # the database
            from stratoflow.embedded import database

            return database.log_path()
        return self.logs / f"{comp.name}.log"

    # ---- the loop ---------------------------------------------------------------------

    def _publish(self) -> None:
        self.report.stopping = self.stopping
        health.write(self.home, self.report)

    def run(self) -> None:
        kill_leftovers(self.home)
        for comp in self.components:
            if comp.spec is None and (pid := self._database_pid()):
                comp.health.pid, comp.health.state = pid, RUNNING
                comp.health.since, comp.started_mono = health.now_iso(), time.monotonic()
                continue
            self._start(comp)
        while not self.stopping:
            for comp in self.components:
                state = comp.health.state
                if state == RUNNING:
                    why = self._exit_of(comp)
                    if why is not None:
                        self._exited(comp, why)
                elif state == BACKOFF and time.monotonic() >= comp.next_start:
                    comp.health.restarts += 1
                    self._start(comp)
            time.sleep(POLL_S)
        self.shutdown()

    def shutdown(self) -> None:
        self._publish()
        airflow = [c for c in self.components if c.proc is not None]
        for comp in airflow:
            _signal_groups(_live_groups(comp.health), signal.SIGTERM)
        deadline = time.monotonic() + _int_env(STOP_GRACE_ENV, int(STOP_GRACE_S))
        for comp in airflow:
            assert comp.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for comp in airflow:
            _signal_groups(_live_groups(comp.health), signal.SIGKILL)
            comp.health.state, comp.health.pid = STOPPED, None
        log.info("all components stopped")
        self._publish()


def wake_stratoflow_api(timeout_s: float = WAKE_TIMEOUT_S) -> bool:
    """Call the API server's ``/stratoflow/health`` once it answers. Stratoflow's API
    starts its background work (the run starters, the callback sender, the sweep of
    starts a stopped server lost) with its first request: Airflow gives a plugin's app no
    startup event. Without this call, a restarted server would send no callback until a
    client called it."""
    import httpx

    from stratoflow import embedded
    from stratoflow.tls import tls_context

    url = f"{embedded.api_url()}/stratoflow/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=10, verify=tls_context()).status_code == 200:
                return True
        time.sleep(1.0)
    log.warning("api-server: %s did not answer in %.0f s", url, timeout_s)
    return False


def _signal_groups(pgids: list[int], sig: signal.Signals) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def kill_leftovers(airflow_home: Path, wait_s: float = 15.0) -> None:
    """Kill what a crashed earlier supervisor of this home left running (two schedulers
    on one database would both schedule; an old API server holds the port), and wait
    until they are gone."""
    old = health.read(airflow_home)
    if old is None or old.supervisor_pid == os.getpid():
        return
    left = [
        (comp.name, pgid, ticks)
        for comp in old.components
        for pgid, ticks in comp.groups
        if _group_alive(pgid, ticks)
    ]
    for name, pgid, _ in left:
        log.warning("%s: killing process group %d left by an earlier run", name, pgid)
        _signal_groups([pgid], signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while any(_group_alive(pgid, ticks) for _, pgid, ticks in left):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)


def _live_groups(comp: ComponentHealth) -> list[int]:
    return [pgid for pgid, ticks in comp.groups if _group_alive(pgid, ticks)]


def _group_alive(pgid: int, ticks: int) -> bool:
    """Does a process of this group, started by us at ``ticks``, still run?

    The leader may be gone while its children (a scheduler's task processes) live on in
    its group; Linux does not reuse a PID while a group bears it. Once the whole group is
    gone the number may be reused, by a process whose start time then differs.
    """
    leader = health.start_ticks(pgid)
    if leader is not None and leader != ticks:
        return False
    return any(_members(pgid))


def _members(pgid: int) -> Iterator[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            yield int(entry.name)


def lock_path(airflow_home: Path) -> Path:
    return airflow_home / "stratoflow-supervisor.lock"


def main() -> int:
    from stratoflow import embedded
    from stratoflow.config import embedded_db, production

    home = embedded.airflow_home()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s supervisor: %(message)s",
        stream=sys.stdout,
    )
    lock = open(lock_path(home), "a")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another supervisor runs for %s", home)
        return 3
    mode = production()
    if mode is None:
        sup = Supervisor(home, embedded_db(), embedded.airflow_bin(), embedded.venv_env())
    else:
        from stratoflow.embedded.production import worker_specs

        sup = Supervisor(
            home, "server", embedded.airflow_bin(), embedded.venv_env(), worker_specs(mode)
        )

    def stop(signum: int, _frame: object) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        sup.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sup.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
