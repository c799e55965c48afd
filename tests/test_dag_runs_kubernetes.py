"""Real DAG runs (`airflow dags test`) on a kubernetes site: the real ``kubernetes`` client
over real HTTP against the fake API server and kubelet in ``tests/fakes/kube_server.py``.

The demo campaign must run unchanged, with only its ``site`` input changed, and give the
same histogram as on the local site; teardown must leave no namespace and no pod, and the
site's token must reach neither the task logs, nor XCom, nor the run's conf.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratoflow.store import Store
from tests.cloud_sites import assert_no_secrets, assert_same_demo_result, site_in_catalogue
from tests.requires import client_library

client_library("kubernetes")

from tests.fakes.kube_server import FakeKube  # noqa: E402

pytestmark = pytest.mark.airflow

TOKEN = "sk-kube-dagrun-3c1e5a7f-secret"
CONN_ID = "stratoflow_k8s_dagrun"


@pytest.fixture(scope="module")
def k8s_site(airflow_env: dict[str, str]):
    """Site ``k8s`` (kind kubernetes) in the session's catalogue, served by a fake."""
    fake = FakeKube(TOKEN, seed=11).start()
    workdir = Path(airflow_env["STRATOFLOW_HOME"]) / "sites" / "k8s"
    entry = (
        "  - name: k8s\n    kind: kubernetes\n"
        f"    conn_id: {CONN_ID}\n    cores: 4\n    memory: 8589934592\n"
        f"    workdir: {workdir}\n    retry_backoff_s: 0.05\n    kill_grace_s: 1\n"
        "    allowed_roots: ['{include}']\n"
    )
    conn = {"conn_type": "kubernetes_site", "host": fake.url, "password": TOKEN}
    try:
        with site_in_catalogue(airflow_env, entry, {CONN_ID: conn}):
            yield {"fake": fake, "workdir": workdir}
    finally:
        fake.stop()


def test_demo_campaign_runs_unchanged_on_kubernetes(run_dag, airflow_env, k8s_site):
    result = assert_same_demo_result(run_dag, "k8s")
    dep = result["deployment"]

    fake = k8s_site["fake"]
    assert fake.live() == (0, 0), "namespaces or pods left behind"
    assert not list((k8s_site["workdir"] / "deployments").glob("*")), "sandbox left behind"
    store = Store.open()
    assert store.resources(dep.id) == []
    records = store.resources(dep.id, include_deleted=True)
    assert [r.kind for r in records] == ["namespace"] and records[0].site == "k8s"

    assert_no_secrets(airflow_env, result, {"site token": TOKEN})


def test_reaper_dag_deletes_an_orphaned_namespace(airflow_env, k8s_site, tmp_path):
    """A namespace whose deployment the store never recorded (a worker died between the
    create and the record): the scheduled reaper DAG finds it by its labels, deletes it
    and logs what it did."""
    import subprocess
    import sys

    from stratoflow.execution.placement import compute_for_site
    from stratoflow.sites.base import HostRequest

    site = compute_for_site("k8s")
    elsewhere = Store.open("sqlite:///" + str(tmp_path / "elsewhere.db"))
    site.provision("orphan-dep", [HostRequest("w")], elsewhere)
    fake = k8s_site["fake"]
    assert fake.live()[0] == 1
    # And room held at k8s by an in-progress deployment whose DAG run was deleted from
    # Airflow: nothing would ever tear it down. The DAG asks Airflow (get_dr_count).
    store = Store.open()
    store.save_plan("e" * 64, "gone", "gone_dag", {"steps": []}, "t")
    gone = store.get_or_create_deployment("gone_dag", "deleted_run", "e" * 64, {})
    assert store.reserve("k8s", gone.id, 1, 1, 8, 1 << 40)

    airflow = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run(
        [airflow, "dags", "test", "stratoflow_reaper", "-c", json.dumps({"grace_s": 0})],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "state=success" in log, log[-3000:]
    assert fake.live() == (0, 0)
    released, action = store.reaper_actions(site="k8s")  # newest first
    assert action["action"] == "deleted" and "no resource record" in action["reason"]
    assert action["run_id"].startswith("stratoflow_reaper/")
    assert (released["kind"], released["deployment_id"]) == ("reservation", gone.id)
    assert released["reason"] == "the DAG run gone_dag/deleted_run no longer exists"
    assert store.reserved("k8s")["deployments"] == 0
    assert not list((k8s_site["workdir"] / "deployments").glob("*"))
