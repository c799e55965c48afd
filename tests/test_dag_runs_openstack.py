"""Real DAG runs (`airflow dags test`) on an OpenStack site: real openstacksdk over real
HTTP against the fake Keystone/Nova/Neutron/Glance, whose VMs boot the Stratoflow agent
from their cloud-init user data (tests/fakes/vm_boot.py). Stage-in uploads to the agent,
jobs run there, stage-out downloads, every copy verified.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratoflow.store import Store

pytest.importorskip("openstack")

from tests.fakes.openstack_server import FakeOpenStack  # noqa: E402

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning", "ignore::DeprecationWarning"),
]

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "include" / "templates" / "dimuon_campaign.yaml"
PASSWORD = "os-dagrun-password-71c2"
CONN_ID = "stratoflow_os_dagrun"


@pytest.fixture(scope="module")
def os_site(airflow_env: dict[str, str]):
    """Add site ``cloud`` (kind openstack) to the session's catalogue, served by a fake."""
    fake = FakeOpenStack(seed=3).start()
    fake.users.add(("alice", PASSWORD))
    sites = Path(airflow_env["STRATOFLOW_SITES"])
    before = sites.read_text()
    sites.write_text(
        before
        + "  - name: cloud\n    kind: openstack\n"
        + f"    conn_id: {CONN_ID}\n    image: ubuntu-22.04\n    network: private\n"
        + "    poll_interval_s: 0.1\n    retry_delay_s: 0.05\n    boot_timeout_s: 60\n"
        + "    allowed_roots: ['{include}']\n"
    )
    extra = {"project_name": "demo", "user_domain_name": "Default", "region_name": "RegionOne"}
    conn = {"conn_type": "openstack", "host": fake.auth_url, "login": "alice"}
    conn |= {"password": PASSWORD, "extra": extra}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        from stratoflow.execution import placement

        placement.catalogue.cache_clear()
        try:
            yield fake
        finally:
            sites.write_text(before)
            placement.catalogue.cache_clear()
            fake.stop()


def _histogram(dep) -> dict:
    results = Path(dep.outputs["stage_out"]["results_dir"])
    return json.loads((results / "mass_histogram.json").read_text())


def test_demo_campaign_runs_unchanged_on_openstack(run_dag, airflow_env, os_site):
    local = run_dag(DEMO)["deployment"]
    assert local.status == "CREATE_COMPLETE", local.status_reason

    result = run_dag(DEMO, {"site": "cloud"})
    dep = result["deployment"]
    assert dep is not None, result["log"][-3000:]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert dep.site == "cloud"
    assert _histogram(dep) == _histogram(local)
    names = sorted(Path(f["url"]).name for f in dep.outputs["stage_out"]["files"])
    assert names == ["mass_histogram.json", "mass_spectrum.png"]
    assert "started at cloud" in result["log"]

    assert os_site.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert os_site.vms.running() == []
    store = Store.open()
    assert store.resources(dep.id) == []
    assert {r.kind for r in store.resources(dep.id, include_deleted=True)} == {"server"}
    assert PASSWORD not in result["log"]
