"""The embedded Airflow for real: `airflow standalone`, the REST API v2 and the CLI; and a
lifecycle policy started by Airflow's scheduler through its Asset when a campaign's
results are registered, then run by hand with `stratoflow policy run --wait`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stratoflow.store import Store
from tests.engine import assert_engine_alive

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[1]
LINE_COUNT = REPO / "tests" / "templates" / "dag" / "line_count.yaml"
CLI = [sys.executable, "-m", "stratoflow.cli"]


POLICY = "line-count-copies"


@pytest.fixture(scope="module", autouse=True)
def lifecycle(airflow_env, tmp_path_factory):
    """Two storage endpoints and a policy over line_count's results, in the catalogue and
    the environment before the module's Airflow starts (autouse: set up first)."""
    from stratoflow.sites import catalogue

    sites = Path(airflow_env["STRATOFLOW_SITES"])
    before = sites.read_text()
    doc = yaml.safe_load(before)
    (local,) = [site for site in doc["sites"] if site["name"] == "local"]
    local["allowed_roots"] = [*local["allowed_roots"], "{home}/test-results", "{home}/copies"]
    local["writable_roots"] = ["{home}"]
    doc["endpoints"] = [
        {
            "name": name,
            "site": "local",
            "url": url,
            "attributes": {"type": "DISK", "cost": cost},
        }
        for name, url, cost in (
            ("results", "{home}/test-results", 5),  # where line_count stages out
            ("copies", "{home}/copies", 1),
        )
    ]
    sites.write_text(yaml.safe_dump(doc))
    policies = tmp_path_factory.mktemp("policies")
    policy = {"datasets": {"name": "line_count/*", "meta": {"kind": "results"}}}
    policy.update(copies=2, storage="type=DISK", schedule=None)
    (policies / "e2e.yaml").write_text(yaml.safe_dump({"policies": {POLICY: policy}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRATOFLOW_POLICIES", str(policies))
        catalogue.catalogue.cache_clear()
        try:
            yield
        finally:
            sites.write_text(before)
            catalogue.catalogue.cache_clear()


def cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=os.environ
    )


def test_submit_wait_status_and_list(airflow_up):
    done = cli("submit", str(LINE_COUNT), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    deployment_id = done.stdout.splitlines()[0].strip()
    assert f"deployment {deployment_id}: CREATE_COMPLETE" in done.stdout
    assert "/runs/stratoflow__" in done.stdout  # the URL of the run in the Airflow UI
    assert "total.txt" in done.stdout
    status = cli("status", deployment_id)
    assert status.returncode == 0 and "CREATE_COMPLETE" in status.stdout
    assert deployment_id in cli("list").stdout


def test_failed_run_exits_1_with_the_jobs_error(airflow_up):
    done = cli("submit", str(LINE_COUNT), "-i", "mode=fail", "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CREATE_FAILED" in done.stdout
    assert "calibration constants missing" in done.stdout


def test_rest_trigger_uses_typed_params_and_rejects_bad_conf(airflow_up):
    from stratoflow.cli import register
    from stratoflow.client import AirflowAPIError
    from stratoflow.store import deployment_id_for
    from stratoflow.submit import client

    _topology, plan = register(str(LINE_COUNT))
    api = client()
    dag_id = plan["dag_id"]
    api.wait_for_dag(dag_id)
    details = api.dag_details(dag_id)
    mode = details["params"]["mode"]
    assert mode["value"] == "ok"
    assert mode["schema"]["enum"] == ["ok", "fail", "kill-once"]

    with pytest.raises(AirflowAPIError) as bad:
        api.trigger(dag_id, "rest__bogus", {"mode": "bogus"})
    assert bad.value.status == 400 and "mode" in str(bad.value)

    run_id = "rest__e2e"
    api.unpause(dag_id)
    api.trigger(dag_id, run_id, {"mode": "ok"})
    deadline = time.monotonic() + 300
    while api.get_run(dag_id, run_id)["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, "run did not finish"
        assert_engine_alive()
        time.sleep(2)
    assert api.get_run(dag_id, run_id)["state"] == "success"
    dep = Store.open().get_deployment(deployment_id_for(dag_id, run_id))
    assert dep.status == "CREATE_COMPLETE"
    assert Path(dep.outputs["stage_out"]["results_dir"], "total.txt").read_text() == "600 from 3\n"


def test_registered_results_start_their_policy_through_its_asset(airflow_up):
    from stratoflow.submit import client

    done = cli("submit", str(LINE_COUNT), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    dataset = f"line_count/{done.stdout.splitlines()[0].strip()}"
    store = Store.open()
    dag_id = f"stratoflow_policy_{POLICY}"
    deadline = time.monotonic() + 180
    # No one but the policy copies: a second AVAILABLE replica means its run happened.
    while True:
        replicas = store.dataset_replicas(store.dataset(dataset).id)
        if sorted(r.endpoint for r in replicas if r.state.value == "AVAILABLE") == [
            "copies",
            "results",
        ]:
            break
        assert time.monotonic() < deadline, f"{dataset} still has {replicas}"
        assert_engine_alive()
        time.sleep(1)
    with client() as api:
        kinds = {r["run_type"] for r in api.runs(dag_id) if r["state"] == "success"}
    assert "asset_triggered" in kinds, kinds

    ran = cli("policy", "run", POLICY, "--wait", timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"policy {POLICY}: run manual__run__" in ran.stdout and " success;" in ran.stdout
    rules = cli("rule", "list", "--policy", POLICY)
    assert dataset in rules.stdout and "OK" in rules.stdout, rules.stdout
