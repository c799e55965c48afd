"""Lifecycle policy DAGs run for real (`airflow dags test`) on the local site's storage:
two copies made from one and verified, then a second run with nothing to do; a corrupted
replica found by verify_every, marked BAD and replaced in the same run; a campaign's
staged-out results registered as a dataset, announcing the policy that selects them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stratoflow.lifecycle.model import NewFile, ReplicaState
from stratoflow.sites.checksums import file_checksums

POLICIES = {
    "policies": {
        "two-disk": {
            "datasets": {"name": "exp/*"},
            "copies": 2,
            "storage": "type=DISK",
            "verify_every": "1s",
            "grace": 0,
            "schedule": None,
        },
        "line-count-results": {
            "datasets": {"name": "line_count/*", "meta": {"kind": "results"}},
            "copies": 2,
            "storage": "type=DISK",
            "schedule": None,
        },
    }
}
TEMPLATES = Path(__file__).resolve().parents[1] / "tests" / "templates"


@pytest.fixture(scope="module")
def lifecycle_env(airflow_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    sites = {
        "sites": [
            {
                "name": "local",
                "kind": "local",
                "cores": 2,
                "memory": "auto",
                "allowed_roots": ["{include}", str(TEMPLATES), str(root), "{home}/test-results"],
                "writable_roots": ["{home}", str(root)],
            }
        ],
        "endpoints": [
            {
                "name": name,
                "site": "local",
                "url": str(root / name),
                "attributes": {"type": kind, "cost": cost},
            }
            for name, kind, cost in (
                ("disk-a", "DISK", 1),
                ("disk-b", "DISK", 2),
                ("tape", "TAPE", 9),
            )
        ]
        # Where line_count stages out (output_location: test-results).
        + [
            {
                "name": "results",
                "site": "local",
                "url": "{home}/test-results",
                "attributes": {"type": "DISK", "cost": 5},
            }
        ],
    }
    (root / "sites.yaml").write_text(yaml.safe_dump(sites))
    (root / "policies").mkdir()
    (root / "policies" / "test.yaml").write_text(yaml.safe_dump(POLICIES))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRATOFLOW_SITES", str(root / "sites.yaml"))
        mp.setenv("STRATOFLOW_POLICIES", str(root / "policies"))
        from stratoflow.sites import catalogue

        catalogue.catalogue.cache_clear()
        yield root
        catalogue.catalogue.cache_clear()


def run_policy(name: str) -> str:
    airflow = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run(
        [airflow, "dags", "test", f"stratoflow_policy_{name}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )
    log = proc.stdout + proc.stderr
    assert "state=success" in log or "DagRunState.SUCCESS" in log, log[-4000:]
    return log


def register(root: Path, store, dataset: str, names: list[str]) -> None:
    from stratoflow.execution.datasets import register_files

    files = []
    for name in names:
        path = root / "disk-a" / dataset / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"events of {name}\n" * 100)
        size, adler32, sha256 = file_checksums(path)
        files.append(NewFile(name, path.as_uri(), size, adler32, sha256))
    register_files(store, dataset, files, source="test")


def replicas_by_file(store, dataset: str) -> dict[str, list]:
    ds = store.dataset(dataset)
    names = {f.id: f.name for f in store.dataset_files(ds.id)}
    found: dict[str, list] = {}
    for r in store.dataset_replicas(ds.id):
        found.setdefault(names[r.file_id], []).append(r)
    return found


def test_two_copies_from_one_then_a_second_run_does_nothing_then_a_corrupt_copy_is_replaced(
    lifecycle_env,
):
    from stratoflow.execution.lifecycle_run import plan
    from stratoflow.store import Store

    store = Store.open()
    register(lifecycle_env, store, "exp/run1", ["a.csv", "b.csv"])

    run_policy("two-disk")
    by_file = replicas_by_file(store, "exp/run1")
    for name, reps in by_file.items():
        assert sorted((r.endpoint, r.state) for r in reps) == [
            ("disk-a", ReplicaState.AVAILABLE),
            ("disk-b", ReplicaState.AVAILABLE),
        ], name
        assert all(r.verified_at is not None for r in reps)
        copy = lifecycle_env / "disk-b" / "exp" / "run1" / name
        assert copy.read_text() == (lifecycle_env / "disk-a" / "exp" / "run1" / name).read_text()
    (rule,) = store.rules("two-disk")
    assert rule.state.value == "OK", rule.state_reason
    # The next run has nothing to do but the periodic checks.
    ds = store.dataset("exp/run1")
    (next_plan,) = plan(store, "two-disk", [ds.id])
    assert {a["kind"] for a in next_plan["actions"]} <= {"verify"}

    # A copy rots on disk: the next run's verification finds it, marks it BAD and copies
    # it again from the good one, in the same run.
    rotten = lifecycle_env / "disk-b" / "exp" / "run1" / "a.csv"
    rotten.write_text("bit rot\n")
    log = run_policy("two-disk")
    assert "checksum mismatch" in log
    (fixed,) = [r for r in replicas_by_file(store, "exp/run1")["a.csv"] if r.endpoint == "disk-b"]
    assert fixed.state == ReplicaState.AVAILABLE
    assert rotten.read_text() == (lifecycle_env / "disk-a" / "exp" / "run1" / "a.csv").read_text()


def test_a_campaigns_results_are_registered_and_announce_the_policy_that_selects_them(
    lifecycle_env, run_dag
):
    from stratoflow.store import Store

    result = run_dag(TEMPLATES / "dag" / "line_count.yaml")
    assert result["deployment"].status.value == "CREATE_COMPLETE", result["log"][-3000:]
    dataset = f"line_count/{result['deployment'].id}"
    assert "policies started: ['line-count-results']" in result["log"]
    store = Store.open()
    shown = store.dataset(dataset)
    assert shown.meta == {
        "template": "line_count",
        "deployment": result["deployment"].id,
        "kind": "results",
    }
    [(name, [replica])] = replicas_by_file(store, dataset).items()
    assert (name, replica.endpoint, replica.state) == (
        "total.txt",
        "results",
        ReplicaState.AVAILABLE,
    )
    assert replica.verified_at is not None

    run_policy("line-count-results")
    endpoints = sorted(r.endpoint for r in replicas_by_file(store, dataset)["total.txt"])
    assert endpoints == ["disk-a", "results"]
