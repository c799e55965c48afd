"""The embedded Airflow for real: `airflow standalone`, the REST API v2 and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stratoflow.store import Store
from tests.engine import assert_engine_alive

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[1]
LINE_COUNT = REPO / "tests" / "templates" / "dag" / "line_count.yaml"
CLI = [sys.executable, "-m", "stratoflow.cli"]


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
