"""Real DAG runs (`airflow dags test`) whose dataset lives in S3: stage-in downloads each
object with the real boto3 client over HTTP from moto, through a proxy that corrupts one
download; the corrupted copy is caught by its declared checksum, the task retries, and
the run completes with verified data, on the local site and on an OpenStack VM."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from stratoflow.store import Store
from tests.cloud_sites import assert_no_secrets, site_in_catalogue
from tests.requires import client_library

client_library("boto3")

from tests.fakes.aws import Rule, aws_connection_env, fault_proxy, shared_moto_url  # noqa: E402

pytestmark = pytest.mark.airflow

TEMPLATES = Path(__file__).parent / "templates" / "dag"
BUCKET = "stratoflow-dag-data"
SECRET = "s3-dagrun-secret-" + uuid.uuid4().hex
CONN_ID = "stratoflow_s3_dagrun"


@pytest.fixture(scope="module")
def proxy(airflow_env: dict[str, str]):
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=shared_moto_url(),
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=BUCKET)
    for part in sorted((TEMPLATES / "data").glob("part_*.txt")):
        s3.put_object(Bucket=BUCKET, Key=part.name, Body=part.read_bytes())
    with fault_proxy(seed=5) as p:
        _name, value = aws_connection_env(CONN_ID, p.url, SECRET, max_attempts=2)
        entry = (
            "  - name: store\n    kind: s3\n"
            f"    conn_id: {CONN_ID}\n    region: us-east-1\n    writable_roots: ['{{home}}']\n"
        )
        with site_in_catalogue(airflow_env, entry, {CONN_ID: json.loads(value)}):
            yield p


def test_stage_in_from_s3_catches_a_corrupted_download_and_retries(run_dag, airflow_env, proxy):
    rule = proxy.add(Rule("corrupt", method="GET", path_contains="part_1.txt", times=1))
    result = run_dag(TEMPLATES / "s3_count.yaml")
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert rule.fired == 1, "the corruption must really have happened"
    (retry,) = Store.open().step_events(dep.id, "retry")  # caught, then retried
    assert retry["step"] == "stage_in" and "ChecksumMismatch" in retry["message"]
    assert "part_1.txt" in retry["message"]
    total = Path(dep.outputs["stage_out"]["results_dir"]) / "total.txt"
    assert total.read_text() == "600 from 3\n"
    assert_no_secrets(airflow_env, result, {"secret key": SECRET})


def test_stage_in_from_s3_onto_an_openstack_vm(run_dag, airflow_env, proxy):
    """S3 -> the Airflow worker (verified) -> the VM's agent (verified again)."""
    client_library("openstack")
    from tests.cloud_sites import openstack_site

    with openstack_site(airflow_env) as fake:
        result = run_dag(TEMPLATES / "s3_count.yaml", {"sites": ["cloud"]})
        assert fake.vms.running() == []
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert dep.site == "cloud"
    total = Path(dep.outputs["stage_out"]["results_dir"]) / "total.txt"
    assert total.read_text() == "600 from 3\n"
