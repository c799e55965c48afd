"""The embedded default survives its own processes dying: the supervisor restarts a killed
scheduler or triggerer and the runs complete; `down` then `up` keeps every deployment; a
component the supervisor gave up on makes waiters fail at once with the health report;
a port in use or a crashed supervisor's leftovers never make `up` hang."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stratoflow.embedded.health import pid_alive
from stratoflow.store import Store
from tests.engine import component, is_queued, wait_for

pytestmark = pytest.mark.airflow

QUEUED = Path(__file__).resolve().parent / "templates" / "dag" / "queued.yaml"
CLI = [sys.executable, "-m", "stratoflow.cli"]
TERMINAL = {"CREATE_COMPLETE", "CREATE_FAILED"}


def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env or os.environ
    )


def submit(inputs: dict) -> str:
    from stratoflow.cli import register
    from stratoflow.submit import submit as submit_plan

    topology, plan = register(str(QUEUED), [f"{k}={v}" for k, v in inputs.items()], run=True)
    deployment_id, _run = submit_plan(plan, topology.bound_inputs, owner="chaos")
    return deployment_id


def admitted(store: Store, deployment_id: str) -> bool:
    return (store.admission_record(deployment_id) or {}).get("state") == "admitted"


def final(store: Store, deployment_id: str, timeout: float = 240):
    return wait_for(
        lambda: (d := store.get_deployment(deployment_id)) and d.status.value in TERMINAL and d,
        timeout,
        f"deployment {deployment_id} to end",
    )


def test_a_killed_scheduler_is_restarted_and_the_run_completes(airflow_up):
    store = Store.open()
    deployment_id = submit({"site": "pool", "seconds": "15"})
    wait_for(lambda: admitted(store, deployment_id), 120, "the run to be admitted")
    time.sleep(3)  # into its job
    victim = component("scheduler").pid
    os.kill(victim, signal.SIGKILL)

    assert final(store, deployment_id).status.value == "CREATE_COMPLETE"
    scheduler = wait_for(
        lambda: (c := component("scheduler")).state == "running" and c.restarts and c, 30, "restart"
    )
    assert scheduler.restarts == 1 and scheduler.pid != victim
    assert scheduler.last_exit == "signal SIGKILL"
    shown = cli("health")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "signal SIGKILL" in shown.stdout


def test_a_killed_triggerer_while_a_run_waits_in_the_queue(airflow_up):
    store = Store.open()
    holder = submit({"site": "pool", "cores": 2, "seconds": "8"})
    wait_for(lambda: admitted(store, holder), 120, "the first run to be admitted")
    waiter = submit({"site": "pool", "seconds": "1"})
    wait_for(lambda: is_queued(store.get_deployment(waiter)), 120, "the second to queue")
    os.kill(component("triggerer").pid, signal.SIGKILL)

    assert final(store, holder).status.value == "CREATE_COMPLETE"
    done = final(store, waiter)
    assert done.status.value == "CREATE_COMPLETE", done.status_reason
    triggerer = component("triggerer")
    assert triggerer.restarts == 1 and triggerer.last_exit == "signal SIGKILL"


def test_a_restarted_api_server_sends_callbacks_though_no_client_calls(airflow_up):
    """Callbacks go out from the API server: after a restart, the supervisor's call to
    /stratoflow/health starts its sender, so a deployment that ends is reported though
    no client has called Stratoflow's API since."""
    import uuid

    from tests.fakes.callbacks import CallbackReceiver

    os.kill(component("api-server").pid, signal.SIGKILL)
    wait_for(
        lambda: (
            component("api-server").restarts == 1 and component("api-server").state == "running"
        ),
        120,
        "the API server to be restarted",
    )
    receiver = CallbackReceiver()
    try:
        store = Store.open()
        made = store.create_deployment(
            "callback_probe", f"run-{uuid.uuid4().hex}", "0" * 16, {}, "alice",
            options={"callback": receiver.url},
        )  # fmt: skip
        store.set_status(made.id, "CREATE_COMPLETE")
        wait_for(lambda: receiver.accepted(), 180, "the callback")
        assert receiver.accepted() == ["CREATE_COMPLETE"]
    finally:
        receiver.stop()


def test_down_then_up_keeps_the_deployments(airflow_up):
    from stratoflow.embedded import database

    before = {d.id: d.status for d in Store.open().list_deployments(limit=100)}
    assert before
    assert airflow_up.stop() is True
    assert not database.is_running()
    listing = cli("list")
    assert listing.returncode == 1 and "`stratoflow up` starts it" in listing.stderr
    airflow_up.start(wait_s=300)
    after = {d.id: d.status for d in Store.open().list_deployments(limit=100)}
    assert after == before


def test_a_component_given_up_on_makes_waiters_fail_at_once(airflow_up, monkeypatch):
    airflow_up.stop(keep_database=True)
    monkeypatch.setenv("STRATOFLOW_SUPERVISOR_MAX_RESTARTS", "0")
    airflow_up.start(wait_s=300)
    try:
        os.kill(component("scheduler").pid, signal.SIGKILL)
        wait_for(lambda: component("scheduler").state == "failed", 30, "the supervisor to give up")
        started = time.monotonic()
        done = cli("submit", str(QUEUED), "-i", "site=pool", "--wait", timeout=120)
        assert done.returncode == 1, done.stdout + done.stderr
        assert time.monotonic() - started < 60
        assert "gave up restarting: scheduler (signal SIGKILL)" in done.stderr
        assert "COMPONENT" in done.stderr  # the health report comes with it
        assert cli("health").returncode == 1
    finally:
        airflow_up.stop(keep_database=True)
        monkeypatch.delenv("STRATOFLOW_SUPERVISOR_MAX_RESTARTS")


def test_up_on_a_port_in_use_says_what_to_do(airflow_up):
    airflow_up.stop(keep_database=True)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", airflow_up.api_port()))
        squatter.listen()
        started = time.monotonic()
        done = cli("up", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {airflow_up.api_port()} is in use" in done.stderr
    assert "STRATOFLOW_AIRFLOW_PORT" in done.stderr
    assert time.monotonic() - started < 60
    assert airflow_up.supervisor_pid() is None


def test_up_after_a_crashed_supervisor_leaves_one_of_each(airflow_up):
    airflow_up.start(wait_s=300)
    old = {c.name: c.pid for c in airflow_up.health_report().components}
    supervisor = airflow_up.supervisor_pid()
    os.kill(supervisor, signal.SIGKILL)  # its children live on
    wait_for(lambda: not pid_alive(supervisor), 10, "the supervisor to die")
    assert pid_alive(old["scheduler"])
    airflow_up.start(wait_s=300)
    assert not pid_alive(old["scheduler"])
    new = {c.name: c.pid for c in airflow_up.health_report().components}
    for name in ("scheduler", "triggerer", "dag-processor", "api-server"):
        assert new[name] != old[name]
    home = os.environ["AIRFLOW_HOME"]
    schedulers = subprocess.run(
        ["pgrep", "-f", "airflow scheduler"], capture_output=True, text=True
    ).stdout.split()
    ours = [p for p in schedulers if f"AIRFLOW_HOME={home}".encode() in _environ(p)]
    assert ours == [str(new["scheduler"])]


def _environ(pid: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []
