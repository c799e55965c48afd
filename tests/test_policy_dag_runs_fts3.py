"""Lifecycle policies whose copies go through FTS3 (the real `fts3` client against the fake
FTS3 server), in real policy DAG runs (`airflow dags test`): a run's copies go in one bulk
job, the execute task defers to the triggerer until it ends, and each copy is recorded
verified. Copies that fail every time leave the rule STUCK with each file's reason and the
source untouched; once STUCK for longer than `suspend_after`, the next run makes it
SUSPENDED, and a SUSPENDED rule moves nothing."""

from __future__ import annotations

import zlib

import pytest

from stratoflow.lifecycle.model import NewFile, ReplicaState, RuleState
from tests.lifecycle_runs import policy_catalogue, replicas_by_file, run_policy
from tests.requires import client_library

client_library("fts3")

from tests.fakes.fts3_server import FakeFTS3  # noqa: E402

pytestmark = pytest.mark.airflow

TOKEN = "fts3-lifecycle-oidc-token-9c2d51"
CONN_ID = "stratoflow_fts3_lifecycle"
POLICIES = {
    "policies": {
        "grid-two": {
            "datasets": {"name": "grid/*"},
            "copies": 2,
            "storage": "type=DISK",
            "stuck_after": 1,
            "suspend_after": "1s",
            "schedule": None,
        }
    }
}


@pytest.fixture(scope="module")
def grid(airflow_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    fake = FakeFTS3(root / "se", tokens={TOKEN: "stratoflow"}, seed=5).start()
    sites = {
        "sites": [
            {"name": "local", "kind": "local", "cores": 2, "memory": "auto"},
            {
                "name": "grid",
                "kind": "fts3",
                "conn_id": CONN_ID,
                "poll_interval_s": 0.2,
                "retry_backoff_s": 0.05,
            },
        ],
        "endpoints": [
            {
                "name": "se-a",
                "site": "grid",
                "url": "davs://fake-se-a.test/data",
                "attributes": {"type": "DISK", "cost": 1},
            },
            {
                "name": "se-b",
                "site": "grid",
                "url": "root://fake-se-b.test/data",
                "attributes": {"type": "DISK", "cost": 2},
            },
        ],
    }
    conn = {"conn_type": "fts3", "host": fake.url, "password": TOKEN, "extra": {"verify": False}}
    try:
        with policy_catalogue(root, sites, POLICIES, {CONN_ID: conn}):
            yield fake
    finally:
        fake.stop()


def put_dataset(grid: FakeFTS3, store, dataset: str, names: list[str]) -> dict[str, bytes]:
    from stratoflow.execution.datasets import register_files

    originals = {}
    files = []
    for name in names:
        data = f"{dataset} {name}\n".encode() * 50
        url = f"davs://fake-se-a.test/data/{dataset}/{name}"
        grid.put(url, data)
        originals[url] = data
        files.append(NewFile(name, url, len(data), format(zlib.adler32(data), "08x")))
    register_files(store, dataset, files, source="test")
    return originals


def test_a_runs_copies_go_in_one_bulk_job_and_are_recorded_verified(grid):
    from stratoflow.store import Store

    store = Store.open()
    originals = put_dataset(grid, store, "grid/run1", [f"f{i}.root" for i in range(5)])
    jobs = len(grid.jobs)

    log = run_policy("grid-two", timeout=90)
    assert "5 copies submitted in bulk; waiting" in log
    assert len(grid.jobs) == jobs + 1  # one FTS3 job for the five files
    for name, reps in replicas_by_file(store, "grid/run1").items():
        by_endpoint = {r.endpoint: r for r in reps}
        assert sorted(by_endpoint) == ["se-a", "se-b"], name
        copy = by_endpoint["se-b"]
        assert copy.state == ReplicaState.AVAILABLE and copy.verified_at is not None
        source = by_endpoint["se-a"].url
        assert grid.path_of(copy.url).read_bytes() == originals[source]
    (rule,) = store.rules("grid-two")
    assert rule.state == RuleState.OK, rule.state_reason


def test_a_copy_that_always_fails_makes_the_rule_stuck_then_suspended(grid):
    from stratoflow.store import Store

    store = Store.open()
    originals = put_dataset(grid, store, "grid/run3", ["h1.root", "h2.root"])
    grid.corrupt_copies = set(range(1, 1000))  # FTS's checksum check fails every copy

    log = run_policy("grid-two")
    assert "ChecksumMismatch" in log or "checksum" in log.lower()
    (rule,) = [r for r in store.rules("grid-two") if r.dataset_id == store.dataset("grid/run3").id]
    assert rule.state == RuleState.STUCK, (rule.state, rule.state_reason)
    assert "h1.root" in rule.state_reason and "h2.root" in rule.state_reason
    for name, reps in replicas_by_file(store, "grid/run3").items():
        source = next(r for r in reps if r.endpoint == "se-a")
        assert source.state == ReplicaState.AVAILABLE, name  # untouched: not even UNAVAILABLE
        assert grid.path_of(source.url).read_bytes() == originals[source.url]
        assert [r.state for r in reps if r.endpoint == "se-b"] in ([], [ReplicaState.BAD])

    run_policy("grid-two")  # still failing, and STUCK for longer than suspend_after (1 s)
    rule = store.rule(rule.id)
    assert rule.state == RuleState.SUSPENDED, (rule.state, rule.state_reason)
    assert "stuck since" in rule.state_reason

    copies = grid.copies
    run_policy("grid-two")  # an operator must look: nothing moves meanwhile
    assert grid.copies == copies
    assert store.rule(rule.id).state == RuleState.SUSPENDED
    for url, data in originals.items():
        assert grid.path_of(url).read_bytes() == data
