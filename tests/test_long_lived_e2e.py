"""Long-lived deployments on the embedded Airflow: a 2-host cluster on the local site is
created, stays up holding its capacity, and is deleted through the REST API; a deployment
deleted while it waits in the queue is never provisioned; a VM deleted while it boots (on
the OpenStack fake) is stopped and removed; bad deletes change nothing."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from stratoflow.store import Store
from tests.engine import assert_engine_alive, is_queued

pytestmark = pytest.mark.airflow

CLUSTER = Path(__file__).resolve().parents[1] / "include" / "templates" / "local_cluster.yaml"
VM = Path(__file__).resolve().parent / "templates" / "dag" / "vm.yaml"
SITE = "pool"  # 2 cores (conftest's airflow_env)


@pytest.fixture(scope="module", autouse=True)
def cloud(airflow_env):
    """Site ``cloud`` (the OpenStack fake), in the catalogue and its Connection in the
    environment before the module's Airflow starts (autouse: set up first)."""
    from tests.cloud_sites import openstack_site

    with openstack_site(airflow_env) as fake:
        yield fake


def submit_cluster(owner: str, template: Path = CLUSTER, **inputs: object) -> str:
    from stratoflow.cli import register
    from stratoflow.submit import submit

    pairs = [f"{k}={v}" for k, v in {"site": SITE, **inputs}.items()]
    topology, plan = register(str(template), pairs, run=True)
    deployment_id, _run = submit(plan, topology.bound_inputs, owner=owner)
    return deployment_id


def wait_for(store: Store, deployment_id: str, done: set[str], timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        d = store.get_deployment(deployment_id)
        if d is not None and d.status.value in done:
            return d
        assert time.monotonic() < deadline, f"{deployment_id} still {d and d.status}"
        assert_engine_alive()
        time.sleep(1)


@pytest.fixture(scope="module")
def rest(airflow_up):
    from stratoflow import embedded

    with httpx.Client(base_url=embedded.api_url(), timeout=60) as http:
        login = {"username": embedded.ADMIN, "password": embedded.admin_password()}
        token = http.post("/auth/token", json=login).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def test_a_local_cluster_stays_up_until_deleted(rest, capsys):
    import json

    from stratoflow import embedded
    from stratoflow.cli import main

    store = Store.open()
    deployment_id = submit_cluster(embedded.ADMIN, hosts=2, cores=1)
    created = wait_for(store, deployment_id, {"CREATE_COMPLETE", "CREATE_FAILED"})
    assert created.status.value == "CREATE_COMPLETE", created.status_reason
    assert created.outputs["head_address"] == "127.0.0.1"
    assert created.outputs["addresses"] == ["127.0.0.1", "127.0.0.1"]
    assert created.outputs["ssh"] == "ssh://127.0.0.1:22"
    hosts = store.resources(deployment_id)
    assert [(r.kind, r.node, r.index) for r in hosts] == [
        ("host", "cluster", 0),
        ("host", "cluster", 1),
    ]
    homes = [Path(r.external_id) for r in hosts]
    assert [p.name for p in homes] == ["cluster-0", "cluster-1"] and all(p.is_dir() for p in homes)
    sandbox = str(homes[0].parents[1])
    assert main(["resources", deployment_id]) == 0
    listing = capsys.readouterr().out
    assert "cluster[1]  host (tosca.nodes.Compute)" in listing and f"{SITE}:{homes[1]}" in listing
    assert main(["outputs", deployment_id]) == 0
    assert json.loads(capsys.readouterr().out)["head_address"] == "127.0.0.1"
    # It holds its two cores after its create run ended: a campaign would have released them.
    time.sleep(2)
    assert store.reserved(SITE)["cores"] == 2.0

    r = rest.delete(f"/stratoflow/deployments/{deployment_id}")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "DELETE_IN_PROGRESS"
    assert r.json()["run_id"].startswith(f"delete__{deployment_id}__")
    again = rest.delete(f"/stratoflow/deployments/{deployment_id}")
    assert again.status_code == 409 and "a delete is running" in again.json()["detail"]

    deleted = wait_for(store, deployment_id, {"DELETE_COMPLETE", "DELETE_FAILED"})
    assert deleted.status.value == "DELETE_COMPLETE", deleted.status_reason
    from stratoflow.submit import client

    with client() as api:
        delete_run = api.get_run("stratoflow_delete", r.json()["run_id"])
    assert delete_run["note"] == f"deployment {deployment_id} (delete)"
    assert not Path(sandbox).exists()
    assert store.resources(deployment_id) == []
    assert store.reserved(SITE)["cores"] == 0.0
    assert rest.delete(f"/stratoflow/deployments/{deployment_id}").status_code == 409


def test_a_deployment_deleted_while_queued_is_never_provisioned(airflow_up):
    from stratoflow.cli import main

    store = Store.open()
    holder = submit_cluster("dora", hosts=2, cores=1)
    assert wait_for(store, holder, {"CREATE_COMPLETE"}).site == SITE
    waiter = submit_cluster("dora", hosts=1, cores=1)
    deadline = time.monotonic() + 120
    while not is_queued(store.get_deployment(waiter)):
        assert time.monotonic() < deadline, "the second cluster never waited in the queue"
        time.sleep(1)

    assert main(["delete", waiter, "--wait", "--timeout", "240"]) == 0
    gone = store.get_deployment(waiter)
    assert gone.status.value == "DELETE_COMPLETE"
    assert store.resources(waiter, include_deleted=True) == []
    assert store.queue_listing({}) == []

    assert main(["delete", holder, "--wait", "--timeout", "240"]) == 0
    assert store.reserved(SITE)["cores"] == 0.0


def test_bad_deletes_change_nothing(rest, capsys):
    from stratoflow.cli import main

    unknown = "00000000-0000-4000-8000-000000000000"
    assert main(["delete", unknown]) == 2
    assert "not found" in capsys.readouterr().err
    assert rest.delete(f"/stratoflow/deployments/{unknown}").status_code == 404
    assert rest.delete(f"/stratoflow/deployments/{'x' * 65}").status_code == 422


def test_a_vm_deleted_while_it_boots_is_stopped_and_removed(rest, cloud):
    from stratoflow import embedded
    from stratoflow.submit import client

    store = Store.open()
    cloud.build_polls = 10**6  # it never becomes ACTIVE: provision waits in the triggerer
    try:
        deployment_id = submit_cluster(embedded.ADMIN, VM, site="cloud")
        deadline = time.monotonic() + 120
        while not any(r.external_id for r in store.resources(deployment_id)):
            assert time.monotonic() < deadline, "the server was never created"
            assert_engine_alive()
            time.sleep(1)
        assert len(cloud.leftovers()["servers"]) == 1
        r = rest.delete(f"/stratoflow/deployments/{deployment_id}")
        assert r.status_code == 202, r.text
        deleted = wait_for(store, deployment_id, {"DELETE_COMPLETE", "DELETE_FAILED"})
    finally:
        cloud.build_polls = 2
    assert deleted.status.value == "DELETE_COMPLETE", deleted.status_reason
    assert cloud.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    with client() as api:
        create = api.get_run(deleted.dag_id, deleted.run_id)
    assert create["state"] == "failed"  # stopped, and it never set CREATE_* over the delete
    assert create["note"] == f"deployment {deployment_id} (create)"  # shown in the UI


def test_keep_last_attempt_keeps_only_the_last_failed_attempt(cloud, capsys):
    from stratoflow.cli import main, register
    from stratoflow.submit import submit

    store = Store.open()
    cloud.fail_boots = 10  # every server goes to ERROR: "No valid host was found"
    try:
        topology, plan = register(str(VM), ["site=cloud"], run=True)
        deployment_id, _run = submit(
            plan, topology.bound_inputs, owner="erin", options={"keep_last_attempt": True}
        )
        failed = wait_for(store, deployment_id, {"CREATE_FAILED", "CREATE_COMPLETE"}, 300)
    finally:
        cloud.fail_boots = 0
    assert failed.status.value == "CREATE_FAILED"
    assert "kept for debugging (keepLastAttempt)" in failed.status_reason
    assert failed.task is None
    # Three tries at the one candidate: the first two were cleaned up, the last is kept.
    (server,) = cloud.leftovers()["servers"]
    (kept,) = store.resources(deployment_id)
    assert kept.kind == "server" and kept.external_id == server
    assert main(["resources", deployment_id]) == 0
    assert f"cloud:{server}" in capsys.readouterr().out

    assert main(["delete", deployment_id, "--wait", "--timeout", "240"]) == 0
    assert cloud.leftovers() == {"servers": [], "ports": [], "floatingips": []}


def _task_processes(ti_id: str) -> list[int]:
    """The processes running task instance ``ti_id``: Airflow 3 titles the task's process
    ``airflow worker -- <ti id>`` (its LocalExecutor supervisor adds the executor's name)."""
    import os

    wanted = f"airflow worker -- {ti_id}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if title == wanted:
            found.append(int(pid))
    return found


def test_a_delete_killed_midway_is_finished_by_its_retry(rest, cloud):
    import os
    import signal

    from stratoflow import embedded
    from stratoflow.submit import client

    store = Store.open()
    deployment_id = submit_cluster(embedded.ADMIN, VM, site="cloud")
    created = wait_for(store, deployment_id, {"CREATE_COMPLETE", "CREATE_FAILED"})
    assert created.status.value == "CREATE_COMPLETE", created.status_reason
    (server,) = cloud.leftovers()["servers"]
    cloud.delete_polls = 10**6  # the server stays "deleting": the delete task waits on it
    try:
        r = rest.delete(f"/stratoflow/deployments/{deployment_id}")
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        deadline = time.monotonic() + 120
        while not (cloud.servers.get(server) or {}).get("_deleting"):
            assert time.monotonic() < deadline, "the delete never asked for the server to go"
            time.sleep(0.5)
        with client() as api:
            (task,) = api.task_instances("stratoflow_delete", run_id)
        victims = _task_processes(task["id"])
        assert victims, f"no process runs the delete task {task['id']}"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
    finally:
        cloud.delete_polls = 1
    deleted = wait_for(store, deployment_id, {"DELETE_COMPLETE", "DELETE_FAILED"}, 300)
    assert deleted.status.value == "DELETE_COMPLETE", deleted.status_reason
    assert cloud.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert store.resources(deployment_id) == []
    with client() as api:
        (task,) = api.task_instances("stratoflow_delete", run_id)
    assert task["state"] == "success" and task["try_number"] >= 2
