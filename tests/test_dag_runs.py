"""Real Airflow DAG runs (`airflow dags test`): the spine's behaviour as a user sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratoflow.store import Store
from tests.cloud_sites import assert_reference_histogram

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[1]
DAG_TEMPLATES = REPO / "tests" / "templates" / "dag"
DEMO = REPO / "include" / "templates" / "dimuon_campaign.yaml"


def _sandbox(airflow_env: dict, deployment_id: str) -> Path:
    return Path(airflow_env["STRATOFLOW_HOME"]) / "sites" / "local" / "deployments" / deployment_id


def _assert_torn_down(airflow_env: dict, deployment_id: str) -> None:
    store = Store.open()
    assert not _sandbox(airflow_env, deployment_id).exists(), "sandbox left behind"
    assert store.resources(deployment_id) == [], "live resource records left behind"
    assert all(r.state == "deleted" for r in store.resources(deployment_id, include_deleted=True))


def test_demo_campaign_completes_and_stages_out_results(run_dag, airflow_env, tmp_path):
    result = run_dag(DEMO)
    dep = result["deployment"]
    assert dep is not None, result["log"][-3000:]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert not result["run_failed"]
    stage_out = dep.outputs["stage_out"]
    names = sorted(Path(f["url"]).name for f in stage_out["files"])
    assert names == ["mass_histogram.json", "mass_spectrum.png"]
    results = Path(stage_out["results_dir"])
    histogram = json.loads((results / "mass_histogram.json").read_text())
    assert histogram["n_pairs"] == 57651  # every pair of the 4 shipped files, counted once
    # The same histogram as the analysis script makes from the data directly (the
    # production mode's kill tests compare with this too).
    assert_reference_histogram(histogram, tmp_path)
    assert (results / "mass_spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert dep.outputs["usage"]["bytes_moved"] > 3_000_000
    assert dep.outputs["usage"]["core_seconds"] > 0
    _assert_torn_down(airflow_env, dep.id)


def test_failing_job_is_retried_then_torn_down_with_its_error(run_dag, airflow_env):
    result = run_dag(DAG_TEMPLATES / "line_count.yaml", {"mode": "fail"})
    dep = result["deployment"]
    assert result["run_failed"]
    assert dep.status == "CREATE_FAILED"
    assert "calibration constants missing for run 42" in dep.status_reason
    assert "exit code 3" in dep.status_reason
    events = Store.open().step_events(dep.id)
    count_tries = {(e["map_index"], e["try_number"]) for e in events if e["step"] == "count"}
    assert {(0, 1), (0, 2)} <= count_tries, "the job was not retried"
    assert "teardown" not in dep.status_reason
    _assert_torn_down(airflow_env, dep.id)


def test_job_killed_mid_run_is_retried_without_partial_or_duplicate_outputs(run_dag, airflow_env):
    result = run_dag(DAG_TEMPLATES / "line_count.yaml", {"mode": "kill-once"})
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert "killed by SIGKILL" in result["log"]
    results = Path(dep.outputs["stage_out"]["results_dir"])
    assert sorted(p.name for p in results.iterdir()) == ["total.txt"]
    # 200 lines per file, each file counted exactly once: no PARTIAL, no duplicates.
    assert (results / "total.txt").read_text() == "600 from 3\n"
    _assert_torn_down(airflow_env, dep.id)


def test_checksum_mismatch_fails_staging_and_names_the_file(run_dag, airflow_env):
    result = run_dag(DAG_TEMPLATES / "bad_checksum.yaml")
    dep = result["deployment"]
    assert dep.status == "CREATE_FAILED"
    assert "part_0.txt" in dep.status_reason and "sha256" in dep.status_reason
    events = Store.open().step_events(dep.id)
    assert any(e["step"] == "stage_in" and e["kind"] == "retry" for e in events)
    _assert_torn_down(airflow_env, dep.id)


def test_plain_jobs_run_in_dependency_order_and_stage_out_everything(run_dag, airflow_env):
    result = run_dag(DAG_TEMPLATES / "pipeline.yaml", {"greeting": "bonjour; rm -rf /"})
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    results = Path(dep.outputs["stage_out"]["results_dir"])
    assert (results / "greeting.txt").read_text() == "bonjour; rm -rf /\n"
    _assert_torn_down(airflow_env, dep.id)


def test_data_transfer_copies_and_verifies_every_file(run_dag, airflow_env):
    destination = Path(airflow_env["STRATOFLOW_HOME"]) / "transfers" / "copy1"
    result = run_dag(DAG_TEMPLATES / "transfer.yaml", {"destination": destination.as_uri()})
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    copied = sorted(p.name for p in destination.iterdir())
    assert copied == ["part_0.txt", "part_1.txt"]
    source = DAG_TEMPLATES / "data" / "part_1.txt"
    assert (destination / "part_1.txt").read_bytes() == source.read_bytes()
    assert dep.outputs["usage"]["bytes_moved"] == 3490 + 3782


def test_transfer_outside_writable_roots_is_refused(run_dag, airflow_env):
    result = run_dag(DAG_TEMPLATES / "transfer.yaml", {"destination": "file:///etc/stratoflow-x"})
    dep = result["deployment"]
    assert dep.status == "CREATE_FAILED"
    assert "/etc/stratoflow-x" in dep.status_reason
    assert not Path("/etc/stratoflow-x").exists()


def test_provision_fails_over_to_the_next_site_and_records_why(run_dag, airflow_env):
    # A real fault at alpha: its sites directory is a file, so no sandbox can be made there.
    alpha = Path(airflow_env["STRATOFLOW_HOME"]) / "sites" / "alpha"
    alpha.parent.mkdir(parents=True, exist_ok=True)
    alpha.write_text("not a directory")
    try:
        result = run_dag(DAG_TEMPLATES / "failover.yaml")
    finally:
        alpha.unlink()
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert dep.site == "beta"
    assert dep.status_reason.startswith("completed at beta after failover: ")
    assert "site alpha: local: cannot create sandbox" in dep.status_reason
    assert any("alpha" in e for e in dep.outputs["failover"])
    assert "after alpha failed" in dep.outputs["placement"]
    assert (
        Path(dep.outputs["stage_out"]["results_dir"]) / "total.txt"
    ).read_text() == "600 from 3\n"
    _assert_torn_down(airflow_env, dep.id)


def test_a_full_first_site_overflows_to_the_next_without_a_retry(run_dag, airflow_env):
    store = Store.open()
    # Another deployment holds all of alpha's cores: the run goes to beta at once.
    assert store.reserve("alpha", "someone-else", 2, 1 << 30, 2, 1 << 40)
    try:
        result = run_dag(DAG_TEMPLATES / "failover.yaml")
    finally:
        store.release("alpha", "someone-else")
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert dep.site == "beta"
    assert dep.outputs["placement"] == "beta: candidate 2; alpha was full or had a queue"
    assert "failover" not in dep.outputs  # capacity is no fault: no retry was spent
    assert [e for e in store.step_events(dep.id) if e["kind"] in ("retry", "failed")] == []
    assert not list(
        (Path(airflow_env["STRATOFLOW_HOME"]) / "sites" / "alpha").glob("deployments/*")
    )
    _assert_torn_down(airflow_env, dep.id)
