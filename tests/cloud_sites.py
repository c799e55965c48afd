"""Helpers for DAG-run tests on a cloud site: add the site to the session's catalogue (and
its connection to the environment the `airflow dags test` subprocesses inherit)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "include" / "templates" / "dimuon_campaign.yaml"
_LOCAL: dict[str, dict] = {}


@contextmanager
def site_in_catalogue(
    airflow_env: dict[str, str], entry: str, connections: dict[str, dict]
) -> Iterator[None]:
    """Append ``entry`` (YAML lines of one site) to the catalogue while the block runs."""
    from stratoflow.execution import placement

    sites = Path(airflow_env["STRATOFLOW_SITES"])
    before = sites.read_text()
    sites.write_text(before + entry)
    with pytest.MonkeyPatch.context() as mp:
        for conn_id, conn in connections.items():
            mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        placement.catalogue.cache_clear()
        try:
            yield
        finally:
            sites.write_text(before)
            placement.catalogue.cache_clear()


def histogram(deployment) -> dict:
    results = Path(deployment.outputs["stage_out"]["results_dir"])
    return json.loads((results / "mass_histogram.json").read_text())


def reference_histogram(tmp_path: Path) -> dict:
    """The demo's histogram computed straight from the shipped data by its own script."""
    dimuon = DEMO.parent / "dimuon"
    script = dimuon / "analysis.py"
    hists = []
    for i, data in enumerate(sorted((dimuon / "data").glob("dimuon_*.csv.gz"))):
        out = tmp_path / f"fill{i}"
        subprocess.run([sys.executable, script, "fill", data, "--out", out], check=True)
        hists.append(out / "hist.json")
    merged = tmp_path / "merged"
    subprocess.run([sys.executable, script, "merge", *hists, "--out", merged], check=True)
    return json.loads((merged / "mass_histogram.json").read_text())


def assert_reference_histogram(found: dict, tmp_path: Path) -> None:
    """``found`` (a demo run's histogram) is the reference: equal but for its input names,
    which stage-in prefixes with each file's place in the dataset (00000_dimuon_000...)."""
    found, expected = dict(found), reference_histogram(tmp_path)
    assert [n.split("_", 1)[1] for n in found.pop("inputs")] == expected.pop("inputs")
    assert found == expected


def assert_same_demo_result(run_dag, site: str) -> dict:
    """Run the demo locally and at ``site`` (only the placement input differs); the
    histograms must be identical. Returns the cloud run's result."""
    if "histogram" not in _LOCAL:  # once per session: every cloud compares with it
        local = run_dag(DEMO)["deployment"]
        assert local.status == "CREATE_COMPLETE", local.status_reason
        _LOCAL["histogram"] = histogram(local)
    result = run_dag(DEMO, {"site": site})
    dep = result["deployment"]
    assert dep is not None, result["log"][-3000:]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert dep.site == site
    assert histogram(dep) == _LOCAL["histogram"]
    names = sorted(Path(f["url"]).name for f in dep.outputs["stage_out"]["files"])
    assert names == ["mass_histogram.json", "mass_spectrum.png"]
    assert f"started at {site}" in result["log"]
    return result


def assert_no_secrets(airflow_env: dict[str, str], result: dict, secrets: dict[str, str]) -> None:
    """Scan everything a user or operator can read about the run: its task logs (`dags
    test` prints them; any log files too), its XComs and its conf (straight from the test's
    own metadata DB)."""
    from sqlalchemy import create_engine, text

    from stratoflow import embedded

    home = Path(airflow_env["AIRFLOW_HOME"])
    run_id = result["run_id"]
    logs = result["log"] + "".join(
        p.read_text(errors="replace") for p in (home / "logs").rglob("*") if p.is_file()
    )
    engine = create_engine(embedded.airflow_database_url())
    try:
        with engine.connect() as db:
            args = {"run_id": run_id}
            xcom = db.execute(text("SELECT value FROM xcom WHERE run_id = :run_id"), args).all()
            conf = db.execute(text("SELECT conf FROM dag_run WHERE run_id = :run_id"), args).all()
    finally:
        engine.dispose()
    places = {"task logs": logs, "XCom": repr(xcom), "run conf": repr(conf)}
    assert result["plan"]["dag_id"] in logs and xcom, "the scan must see the run's logs and XComs"
    for what, secret in secrets.items():
        assert len(secret) >= 8
        for where, content in places.items():
            assert secret not in content, f"the {what} leaked into the {where}"


OS_PASSWORD = "os-dagrun-password-71c2"
OS_CONN_ID = "stratoflow_os_dagrun"


def openstack_entry(
    fake: Any, name: str = "cloud", poll_interval_s: float = 0.1
) -> tuple[str, dict]:
    """Site ``name`` (kind openstack) served by ``fake``: its catalogue entry (YAML lines)
    and its Airflow connections."""
    entry = (
        f"  - name: {name}\n    kind: openstack\n"
        f"    conn_id: {OS_CONN_ID}\n    image: ubuntu-22.04\n    network: private\n"
        "    public_network: public\n"
        f"    poll_interval_s: {poll_interval_s}\n    retry_backoff_s: 0.05\n"
        "    boot_timeout_s: 60\n    allowed_roots: ['{include}']\n"
    )
    extra = {"project_name": "demo", "user_domain_name": "Default", "region_name": "RegionOne"}
    conn = {"conn_type": "openstack", "host": fake.auth_url, "login": "alice"}
    conn |= {"password": OS_PASSWORD, "extra": extra}
    return entry, {OS_CONN_ID: conn}


def fake_openstack() -> Any:
    from tests.fakes.openstack_server import FakeOpenStack

    fake = FakeOpenStack(seed=3).start()
    fake.users.add(("alice", OS_PASSWORD))
    return fake


@contextmanager
def openstack_site(airflow_env: dict[str, str], name: str = "cloud") -> Iterator[Any]:
    """Site ``name`` (kind openstack) in the catalogue, served by a FakeOpenStack whose VMs
    run the agent. Yields the fake."""
    fake = fake_openstack()
    try:
        with site_in_catalogue(airflow_env, *openstack_entry(fake, name)):
            yield fake
    finally:
        fake.stop()
