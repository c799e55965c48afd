"""Helpers for the lifecycle policy DAG-run tests: a catalogue and policies of a module's
own, a policy DAG run with `airflow dags test`, and the replicas of a dataset by file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml


@contextmanager
def policy_catalogue(
    root: Path,
    sites: dict[str, Any],
    policies: dict[str, Any],
    connections: dict[str, dict] | None = None,
) -> Iterator[None]:
    """``sites`` (with its ``endpoints``) as the site catalogue and ``policies`` as the only
    policy file while the block runs, with the Airflow Connections the sites use."""
    from stratoflow.sites import catalogue

    (root / "sites.yaml").write_text(yaml.safe_dump(sites))
    (root / "policies").mkdir(exist_ok=True)
    (root / "policies" / "test.yaml").write_text(yaml.safe_dump(policies))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRATOFLOW_SITES", str(root / "sites.yaml"))
        mp.setenv("STRATOFLOW_POLICIES", str(root / "policies"))
        for conn_id, conn in (connections or {}).items():
            mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        catalogue.catalogue.cache_clear()
        try:
            yield
        finally:
            catalogue.catalogue.cache_clear()


def run_policy(name: str, timeout: float = 300) -> str:
    """One run of the policy's DAG (`airflow dags test`); its log. It must succeed."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    try:
        proc = subprocess.run(
            [airflow, "dags", "test", f"stratoflow_policy_{name}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else ""
        pytest.fail(f"policy {name}: no end in {timeout} s:\n{out[-6000:]}")
    log = proc.stdout + proc.stderr
    assert "state=success" in log or "DagRunState.SUCCESS" in log, log[-4000:]
    return log


def replicas_by_file(store: Any, dataset: str) -> dict[str, list]:
    ds = store.dataset(dataset)
    names = {f.id: f.name for f in store.dataset_files(ds.id)}
    found: dict[str, list] = {}
    for r in store.dataset_replicas(ds.id):
        found.setdefault(names[r.file_id], []).append(r)
    return found
