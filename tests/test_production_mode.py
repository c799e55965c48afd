"""The production mode, started as a user starts it (`stratoflow up --production`): the
CeleryExecutor with two Celery workers (as root, each in a PID namespace of its own, as
separate containers), Airflow's database and the store on the local PostgreSQL server,
Redis as the broker; a campaign submitted with the CLI runs on the workers, its jobs
followed across namespaces, and `stratoflow down` stops every process and leaves the
servers running.

Then it survives its own processes dying, as a site's would. Two campaigns run at once
(one test, for the suite's time): under the local one, the scheduler and the Celery worker
that runs a fill task are SIGKILLed together (the worker's whole PID namespace, as a
container that dies); under the cloud one, the triggerer while its VM's boot is deferred
to it. The supervisor restarts each; both campaigns complete with the histogram computed
straight from the data, each output once, and nothing left after the reaper."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cloud_sites import (
    assert_reference_histogram,
    fake_openstack,
    histogram,
    openstack_entry,
)
from tests.conftest import TEST_TEMPLATES, airflow_home_env, free_port
from tests.engine import component, wait_for

pytestmark = [pytest.mark.airflow, pytest.mark.postgres]

CLI = [sys.executable, "-m", "stratoflow.cli"]
LINE_COUNT = TEST_TEMPLATES / "dag" / "line_count.yaml"
REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "include" / "templates" / "dimuon_campaign.yaml"
# A worker that dies leaves its tasks "running" in Airflow's database until their heartbeat
# is this old (60 s in the production mode): then they fail and are retried. Shorter here,
# for the suite's time.
HEARTBEAT_TIMEOUT_S = 20
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
    prefix = f"sf_prod_{secrets.token_hex(4)}"
    broker = f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
    servers_or_skip(broker)
    # A VM boot waits in the triggerer on poll_interval_s; the fake holds it while told to.
    cloud = fake_openstack()
    entry, connections = openstack_entry(cloud, "cloud", poll_interval_s=0.5)
    sites = home / "sites.yaml"
    sites.write_text(
        "sites:\n  - name: local\n    kind: local\n    cores: 2\n    memory: auto\n"
        f"    allowed_roots: ['{{include}}', '{TEST_TEMPLATES}']\n" + entry
    )
    extra = {
        "STRATOFLOW_PRODUCTION_PREFIX": prefix,
        "STRATOFLOW_CELERY_BROKER_URL": broker,
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        **{f"AIRFLOW_CONN_{c.upper()}": json.dumps(conn) for c, conn in connections.items()},
    }
    from stratoflow.config import production as production_mode
    from stratoflow.embedded.production import drop_databases

    with airflow_home_env(home, sites, free_port(), **extra):
        try:
            # Each worker in a PID namespace of its own when this runs as root, as
            # separate containers: a job one starts is followed by the triggerer and
            # torn down by the other through its heartbeat and cancel marker.
            isolate = ["--isolate-workers"] if os.geteuid() == 0 else []
            up = cli("up", "--production", "--workers", "2", *isolate, timeout=400)
            assert up.returncode == 0, up.stdout + up.stderr
            yield {
                "home": home,
                "prefix": prefix,
                "broker": broker,
                "up": up.stdout,
                "cloud": cloud,
            }
        finally:
            down = cli("down", timeout=120)
            mode = production_mode()
            if mode is not None:
                drop_databases(mode)
            cloud.stop()
            assert down.returncode == 0, down.stdout + down.stderr


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


def task_instances(state: str, task_id: str) -> list[str]:
    """The ids of the task instances of ``task_id`` in ``state``, from Airflow's database."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from stratoflow import embedded

    engine = create_engine(embedded.airflow_database_url(), poolclass=NullPool)
    try:
        with engine.connect() as db:
            rows = db.execute(
                text("SELECT id FROM task_instance WHERE state = :s AND task_id = :t"),
                {"s": state, "t": task_id},
            ).all()
    finally:
        engine.dispose()
    return [str(r[0]) for r in rows]


def parents() -> dict[int, int]:
    """Every process's parent, as this PID namespace sees them."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            # The command may hold spaces and parentheses: the fields after its last ")".
            found[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    return found


def worker_running(ti_id: str) -> str | None:
    """The Celery worker that runs task instance ``ti_id``: an ancestor of the process
    titled ``airflow worker -- <ti id>`` (Airflow gives each task a process group of its
    own, so the worker's group does not tell)."""
    workers = {component(n).pid: n for n in ("celery-worker-1", "celery-worker-2")}
    tree = parents()
    for pid in tree:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if title.startswith(f"airflow worker -- {ti_id}"):
            while pid in tree and pid not in workers:
                pid = tree[pid]
            return workers.get(pid)
    return None


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything under it at once, as a container that dies."""
    tree = parents()
    doomed, grew = {pid}, True
    while grew:
        below = {p for p, parent in tree.items() if parent in doomed} - doomed
        doomed |= below
        grew = bool(below)
    for victim in doomed:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def submit(template: Path, *inputs: str) -> str:
    done = cli("submit", str(template), *(a for i in inputs for a in ("-i", i)))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()[0].strip()


def final(deployment_id: str, timeout: float = 400):
    from stratoflow.store import Store

    store = Store.open()
    return wait_for(
        lambda: (
            (d := store.get_deployment(deployment_id))
            and d.status.value in {"CREATE_COMPLETE", "CREATE_FAILED"}
            and d
        ),
        timeout,
        f"deployment {deployment_id} to end",
    )


def run_reaper() -> None:
    """A run of the reaper DAG (as the hourly one, with no grace period); every site's
    task must succeed (the cloud site's needs its Airflow Connection)."""
    import uuid

    from stratoflow.submit import client

    run_id = f"test_{uuid.uuid4().hex[:8]}"
    with client() as api:
        api.trigger("stratoflow_reaper", run_id, {"grace_s": 0})
        run = wait_for(
            lambda: (
                (r := api.get_run("stratoflow_reaper", run_id))["state"] in {"success", "failed"}
                and r
            ),
            180,
            "the reaper's run",
        )
        states = {t["task_id"]: t["state"] for t in api.task_instances("stratoflow_reaper", run_id)}
    assert run["state"] == "success", states


def assert_complete_and_clean(deployments: list, tmp_path: Path) -> None:
    from stratoflow.store import Store

    for deployment in deployments:
        assert deployment.status.value == "CREATE_COMPLETE", deployment.status_reason
        assert_reference_histogram(histogram(deployment), tmp_path)
        results = Path(deployment.outputs["stage_out"]["results_dir"])
        expected = ["mass_histogram.json", "mass_spectrum.png"]
        assert sorted(p.name for p in results.iterdir()) == expected
        assert sorted(Path(f["url"]).name for f in deployment.outputs["stage_out"]["files"]) == (
            expected
        )

    run_reaper()
    store = Store.open()
    held = [d for site in ("local", "cloud") for d, _ in store.reservations_at(site)]
    sandbox = Path(os.environ["STRATOFLOW_HOME"]) / "sites" / "local" / "deployments"
    for deployment in deployments:
        assert store.resources(deployment.id) == []
        assert deployment.id not in held
        assert not (sandbox / deployment.id).exists()
        stray = subprocess.run(["pgrep", "-f", deployment.id], capture_output=True, text=True)
        assert stray.stdout.split() == [], "a process of the deployment outlived it"


def test_killed_processes_mid_campaign_the_campaigns_complete(production, tmp_path):
    """Two demo campaigns at once, each losing processes under it: on the local site, the
    scheduler and the worker that runs a fill (its whole tree, as a container dies); on
    the cloud site, the triggerer while the VM's boot is deferred in it."""
    cloud = production["cloud"]
    cloud.build_polls = 10**9  # the cloud VM stays in BUILD until released below
    try:
        on_cloud = submit(DEMO, "site=cloud")
        # Two cores a fill: the four fills run one after another, so some are still to come.
        on_local = submit(DEMO, "cpus_per_job=2")
        _ti, victim = wait_for(
            lambda: next(
                ((t, w) for t in task_instances("running", "fill") if (w := worker_running(t))),
                None,
            ),
            300,
            "a fill task to run on a worker",
            every=0.1,  # a fill task lasts a second or two
        )
        killed = {victim: component(victim).pid, "scheduler": component("scheduler").pid}
        for pid in killed.values():  # the worker with its tasks and jobs
            kill_tree(pid)

        wait_for(lambda: task_instances("deferred", "provision"), 300, "the boot to defer")
        polls = lambda: sum(s["_polls"] for s in cloud.servers.values())  # noqa: E731
        seen = wait_for(polls, 60, "the triggerer to poll the VM")
        killed["triggerer"] = component("triggerer").pid
        kill_tree(killed["triggerer"])
        wait_for(
            lambda: component("triggerer").pid != killed["triggerer"],
            60,
            "the triggerer's restart",
        )
        # The new triggerer takes the boot over (once the dead one's heartbeat is stale).
        wait_for(lambda: polls() > seen + 2, 120, "the boot to be polled again")
    finally:
        cloud.build_polls = 0

    done = [final(on_local), final(on_cloud)]
    assert done[1].site == "cloud"
    assert_complete_and_clean(done, tmp_path)
    assert cloud.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert cloud.vms.running() == []
    for name, pid in killed.items():
        restarted = component(name)
        assert restarted.state == "running" and restarted.pid != pid, name
        assert restarted.last_exit == "signal SIGKILL", name
