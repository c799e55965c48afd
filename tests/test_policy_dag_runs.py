"""Lifecycle policy DAGs run for real (`airflow dags test`) on the local site's storage:
two copies made from one and verified, then a second run with nothing to do; a corrupted
replica found by verify_every, marked BAD and replaced in the same run; a campaign's
staged-out results registered as a dataset, announcing the policy that selects them; an
expired rule's copies tombstoned, kept through the grace, then all but the last deleted;
an archive to a TAPE endpoint, then the disk copies released."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stratoflow.lifecycle.model import NewFile, ReplicaState
from stratoflow.sites.checksums import file_checksums
from tests.lifecycle_runs import policy_catalogue, replicas_by_file, run_policy

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
        "short-lived": {
            "datasets": {"name": "tmp/*"},
            "copies": 2,
            "storage": "type=DISK",
            "lifetime": "1s",
            "grace": "1h",
            "schedule": None,
        },
        "to-tape": {
            "datasets": {"name": "raw/*"},
            "copies": 1,
            "storage": "type=DISK",
            "archive_after": "1s",
            "archive_storage": "type=TAPE",
            "copies_after_archive": 0,
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
    with policy_catalogue(root, sites, POLICIES):
        yield root


def register(root: Path, store, dataset: str, names: list[str], endpoint: str = "disk-a") -> None:
    from stratoflow.execution.datasets import register_files

    files = []
    for name in names:
        path = root / endpoint / dataset / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"events of {name}\n" * 100)
        size, adler32, sha256 = file_checksums(path)
        files.append(NewFile(name, path.as_uri(), size, adler32, sha256))
    register_files(store, dataset, files, source="test")


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


def test_an_expired_rule_tombstones_its_copies_and_after_the_grace_keeps_the_last(
    lifecycle_env,
):
    from stratoflow.store import Store

    store = Store.open()
    register(lifecycle_env, store, "tmp/scratch", ["x.csv", "y.csv"])
    run_policy("short-lived")  # two copies; the rule's 1 s lifetime runs out meanwhile
    (rule,) = store.rules("short-lived")
    assert sorted(r.endpoint for r in replicas_by_file(store, "tmp/scratch")["x.csv"]) == [
        "disk-a",
        "disk-b",
    ]

    run_policy("short-lived")  # expired: unlocked and tombstoned, but in their grace
    reps = [r for rs in replicas_by_file(store, "tmp/scratch").values() for r in rs]
    assert len(reps) == 4 and all(r.state == ReplicaState.AVAILABLE for r in reps)
    assert all(r.tombstone is not None for r in reps)
    assert all((lifecycle_env / r.endpoint / "tmp" / "scratch").is_dir() for r in reps)

    # The grace passes (the tombstones are moved back: the clock cannot be).
    past = min(r.tombstone for r in reps) - timedelta(hours=2)
    for r in reps:
        store.set_tombstone(r.id, past)
    log = run_policy("short-lived")
    assert "is verified first" in log
    for name, kept in replicas_by_file(store, "tmp/scratch").items():
        assert [r.state for r in kept] == [ReplicaState.AVAILABLE], name  # never the last
        (last,) = kept
        assert (lifecycle_env / last.endpoint / "tmp" / "scratch" / name).exists()
        gone = {"disk-a", "disk-b"} - {last.endpoint}
        assert not (lifecycle_env / gone.pop() / "tmp" / "scratch" / name).exists()
    assert store.rule(rule.id).expires_at < datetime.now(UTC)


def test_an_archive_to_tape_then_releases_the_disk_copies_never_the_last(lifecycle_env):
    from stratoflow.store import Store

    store = Store.open()
    register(lifecycle_env, store, "raw/run7", ["e.dat"])
    register(lifecycle_env, store, "raw/run7", ["e.dat"], endpoint="disk-b")
    data = (lifecycle_env / "disk-a" / "raw" / "run7" / "e.dat").read_bytes()

    run_policy("to-tape")  # copied to tape; the disk copy beyond the policy's one released
    endpoints = {r.endpoint: r for r in replicas_by_file(store, "raw/run7")["e.dat"]}
    assert sorted(endpoints) == ["disk-a", "tape"]
    assert endpoints["tape"].state == ReplicaState.AVAILABLE and endpoints["tape"].verified_at
    assert (lifecycle_env / "tape" / "raw" / "run7" / "e.dat").read_bytes() == data
    assert not (lifecycle_env / "disk-b" / "raw" / "run7" / "e.dat").exists()

    run_policy("to-tape")  # archived and verified: no disk copy is kept
    (last,) = replicas_by_file(store, "raw/run7")["e.dat"]
    assert (last.endpoint, last.state) == ("tape", ReplicaState.AVAILABLE)
    assert not (lifecycle_env / "disk-a" / "raw" / "run7" / "e.dat").exists()
    assert (lifecycle_env / "tape" / "raw" / "run7" / "e.dat").read_bytes() == data
