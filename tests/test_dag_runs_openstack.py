"""Real DAG runs (`airflow dags test`) on an OpenStack site: real openstacksdk over real
HTTP against the fake Keystone/Nova/Neutron/Glance, whose VMs boot the Stratoflow agent
from their cloud-init user data (tests/fakes/vm_boot.py). Stage-in uploads to the agent,
jobs run there, stage-out downloads, every copy verified.
"""

from __future__ import annotations

import pytest

from stratoflow.store import Store
from tests.cloud_sites import (
    OS_CONN_ID,
    OS_PASSWORD,
    assert_no_secrets,
    assert_same_demo_result,
    openstack_site,
)
from tests.requires import client_library

client_library("openstack")


pytestmark = [
    pytest.mark.airflow,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning", "ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def fake(airflow_env: dict[str, str]):
    """Site ``cloud`` (kind openstack) in the session's catalogue, served by a fake."""
    with openstack_site(airflow_env) as fake:
        yield fake


def test_demo_campaign_runs_unchanged_on_openstack(run_dag, airflow_env, fake):
    from stratoflow.hooks.agent import agent_token

    result = assert_same_demo_result(run_dag, "cloud")
    dep = result["deployment"]
    secrets = {"site password": OS_PASSWORD, "agent token": agent_token(OS_CONN_ID, dep.id)}
    assert_no_secrets(airflow_env, result, secrets)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert fake.vms.running() == []
    # Provision waited for ACTIVE in the triggerer, not in a worker slot.
    assert "waiting on openstack.servers_active in the triggerer" in result["log"]
    store = Store.open()
    assert store.resources(dep.id) == []
    assert {r.kind for r in store.resources(dep.id, include_deleted=True)} == {"server"}


def test_quota_exceeded_fails_over_to_the_next_site_and_records_why(run_dag, fake):
    from pathlib import Path

    template = Path(__file__).parent / "templates" / "dag" / "failover.yaml"
    fake.quota["instances"] = 0
    try:
        result = run_dag(template, {"sites": ["cloud", "local"]})
    finally:
        fake.quota["instances"] = 10
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert dep.site == "local"
    assert "cloud" in dep.status_reason and "Quota exceeded for instances" in dep.status_reason
    (why,) = [e for e in dep.outputs["failover"] if "cloud" in e]
    assert "Quota exceeded" in why
    assert (Path(dep.outputs["stage_out"]["results_dir"]) / "total.txt").read_text() == (
        "600 from 3\n"
    )
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}


def test_a_server_that_fails_to_boot_is_cleaned_up_and_the_run_fails_over(run_dag, fake):
    from pathlib import Path

    template = Path(__file__).parent / "templates" / "dag" / "failover.yaml"
    fake.fail_boots = 1  # the next server goes to ERROR: "No valid host was found"
    result = run_dag(template, {"sites": ["cloud", "local"]})
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert dep.site == "local"
    (why,) = [e for e in dep.outputs["failover"] if "cloud" in e]
    assert "hosts did not boot" in why and "No valid host" in why
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert fake.vms.running() == []


def test_a_vm_stays_up_until_deleted(run_dag, run_delete, fake):
    from pathlib import Path

    result = run_dag(Path(__file__).parent / "templates" / "dag" / "vm.yaml")
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    (server,) = fake.leftovers()["servers"]
    assert dep.outputs["server_id"] == server
    assert dep.outputs["public_ip"] and dep.outputs["private_ip"]
    assert dep.outputs["public_ip"] != dep.outputs["private_ip"]
    store = Store.open()
    assert {r.kind for r in store.resources(dep.id)} == {"server", "floating_ip"}

    deleted, log = run_delete(dep.id)
    assert deleted.status == "DELETE_COMPLETE", f"{deleted.status_reason}\n{log[-3000:]}"
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert store.resources(dep.id) == []
    assert {r.state for r in store.resources(dep.id, include_deleted=True)} == {"deleted"}
