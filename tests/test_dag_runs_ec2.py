"""Real DAG runs (`airflow dags test`) on an EC2 site: real boto3 over real HTTP against
moto in server mode, whose instances boot the Stratoflow agent from their user data
(tests/fakes/aws.py boot_agents)."""

from __future__ import annotations

import uuid

import pytest

from stratoflow.store import Store
from tests.cloud_sites import assert_no_secrets, assert_same_demo_result, site_in_catalogue
from tests.requires import client_library

client_library("boto3")

from tests.fakes.aws import (  # noqa: E402
    aws_connection_env,
    boot_agents,
    honour_client_token,
    shared_moto_url,
)

pytestmark = pytest.mark.airflow

SECRET = "ec2-dagrun-secret-" + uuid.uuid4().hex
CONN_ID = "stratoflow_ec2_dagrun"


@pytest.fixture(scope="module")
def booter(airflow_env: dict[str, str]):
    """Site ``burst`` (kind ec2) in the session's catalogue, served by moto."""
    import json

    _name, value = aws_connection_env(CONN_ID, shared_moto_url(), SECRET, max_attempts=3)
    entry = (
        "  - name: burst\n    kind: ec2\n"
        f"    conn_id: {CONN_ID}\n    region: us-east-1\n    image_id: ami-12345678\n"
        "    instance_types:\n      - {name: m5.large, cpus: 2, mem: 8 GiB}\n"
        "    poll_interval_s: 0.1\n    boot_timeout_s: 60\n    terminate_timeout_s: 30\n"
        "    allowed_roots: ['{include}']\n"
    )
    with honour_client_token(), boot_agents() as vms:
        with site_in_catalogue(airflow_env, entry, {CONN_ID: json.loads(value)}):
            yield vms


def test_demo_campaign_runs_unchanged_on_ec2(run_dag, airflow_env, booter):
    from stratoflow.hooks.agent import agent_token

    result = assert_same_demo_result(run_dag, "burst")
    dep = result["deployment"]
    secrets = {"secret key": SECRET, "agent token": agent_token(CONN_ID, dep.id)}
    assert_no_secrets(airflow_env, result, secrets)
    assert booter.running() == []  # terminated, agent and all
    store = Store.open()
    assert store.resources(dep.id) == []
    assert {r.kind for r in store.resources(dep.id, include_deleted=True)} == {"instance"}


def test_a_cluster_with_a_volume_each_is_created_then_deleted(run_dag, run_delete, booter):
    from pathlib import Path

    import boto3

    template = Path(__file__).parent / "templates" / "dag" / "cluster_volumes.yaml"
    result = run_dag(template)
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    ec2 = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=shared_moto_url(),
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    mine = [{"Name": "tag:stratoflow:deployment", "Values": [dep.id]}]
    volumes = ec2.describe_volumes(Filters=mine)["Volumes"]
    assert sorted(dep.outputs["volumes"]) == sorted(v["VolumeId"] for v in volumes)
    assert [(v["Size"], v["State"]) for v in volumes] == [(10, "in-use")] * 3
    assert len(dep.outputs["addresses"]) == 3
    store = Store.open()
    kinds = sorted(r.kind for r in store.resources(dep.id))
    assert kinds == ["instance"] * 3 + ["volume"] * 3
    from stratoflow.resource_view import resource_views

    views = resource_views(store, store.get_deployment(dep.id), include_deleted=False)
    assert {(v["node_type"], tuple(v["required_by"]), v["node_state"]) for v in views} == {
        ("tosca.nodes.Compute", (), "CREATED"),
        ("tosca.nodes.BlockStorage", ("node",), "CREATED"),
    }

    deleted, log = run_delete(dep.id)
    assert deleted.status == "DELETE_COMPLETE", f"{deleted.status_reason}\n{log[-3000:]}"
    assert ec2.describe_volumes(Filters=mine)["Volumes"] == []
    live = mine + [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    assert ec2.describe_instances(Filters=live)["Reservations"] == []
    assert booter.running() == []
    assert store.resources(dep.id) == []
