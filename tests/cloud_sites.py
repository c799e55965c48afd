"""Helpers for DAG-run tests on a cloud site: add the site to the session's catalogue (and
its connection to the environment the `airflow dags test` subprocesses inherit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
