"""A real DAG run (`airflow dags test`) whose dataset lives in a OneData space: stage-in
reads each file over the Oneprovider REST API from the fake provider, one read is
corrupted, the declared checksum catches it, the task retries, the run completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratoflow.store import Store
from tests.cloud_sites import assert_no_secrets, site_in_catalogue
from tests.fakes.onedata_server import FakeOnedata

pytestmark = pytest.mark.airflow

TEMPLATES = Path(__file__).parent / "templates" / "dag"
TOKEN = "onedata-dagrun-token-" + "8d0c1b2a"
CONN_ID = "stratoflow_onedata_dagrun"


@pytest.fixture(scope="module")
def fake(airflow_env: dict[str, str]):
    fake = FakeOnedata(TOKEN, spaces=("exp",)).start()
    root = fake.roots["exp"]
    dag = fake._new("dag", root, "DIR")
    for part in sorted((TEMPLATES / "data").glob("part_*.txt")):
        fake._new(part.name, dag, "REG", part.read_bytes())
    entry = (
        f"  - name: space\n    kind: onedata\n    conn_id: {CONN_ID}\n"
        "    writable_roots: ['{home}']\n"
        f"    allowed_roots: ['{TEMPLATES}']\n"
    )
    conn = {"conn_type": "onedata", "host": fake.url, "password": TOKEN}
    try:
        with site_in_catalogue(airflow_env, entry, {CONN_ID: conn}):
            yield fake
    finally:
        fake.stop()


def test_stage_in_from_onedata_catches_a_corrupted_read_and_retries(run_dag, airflow_env, fake):
    fake.corrupt_reads = 1
    result = run_dag(TEMPLATES / "onedata_count.yaml")
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert fake.corrupt_reads == 0, "the corruption must really have happened"
    (retry,) = Store.open().step_events(dep.id, "retry")
    assert retry["step"] == "stage_in" and "part_0.txt" in retry["message"]
    total = Path(dep.outputs["stage_out"]["results_dir"]) / "total.txt"
    assert total.read_text() == "600 from 3\n"
    assert_no_secrets(airflow_env, result, {"access token": TOKEN})


def test_transfer_into_a_space_waits_for_its_qos_replicas(run_dag, fake):
    result = run_dag(TEMPLATES / "onedata_replicate.yaml")
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    out = dep.outputs["replicate"]
    assert sorted(f["url"] for f in out["files"]) == [
        "onedata://exp/replicas/part_0.txt",
        "onedata://exp/replicas/part_1.txt",
    ]
    assert set(out["qos"].values()) == {"fulfilled"} and len(out["qos"]) == 2
    assert fake.read("exp/replicas/part_0.txt") == (TEMPLATES / "data" / "part_0.txt").read_bytes()


def test_an_impossible_qos_fails_the_transfer_at_once_with_the_reason(run_dag, fake):
    result = run_dag(TEMPLATES / "onedata_replicate.yaml", {"qos": "country=XX"})
    dep = result["deployment"]
    assert dep.status == "CREATE_FAILED"
    assert "OneData QoS not satisfied" in dep.status_reason and "impossible" in dep.status_reason
    assert len(Store.open().step_events(dep.id, "retry")) == 0  # refused, not retried
