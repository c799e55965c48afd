"""The admission queue in the store, on SQLite and PostgreSQL: one consistent listing that
counts those about to be admitted, deadlines that retries keep, a rejoin at the back, the
reaper giving back capacity held for nothing, and store URLs it cannot lock refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stratoflow.admission import Admitted, SiteRoom
from stratoflow.maintenance.reaper import release_stale_reservations
from stratoflow.store import Store, StoreError
from stratoflow.store.admission import AdmissionOps

ONE_CORE = {"s": SiteRoom("s", 1.0, 1 << 40)}


def join(store: Store, deployment_id: str, owner: str = "alice", timeout_s: float = 600):
    return store.enqueue(
        deployment_id,
        owner=owner,
        priority=0,
        candidates=["s"],
        cores=1,
        mem_bytes=1,
        timeout_s=timeout_s,
    )


def test_a_listing_is_one_read_even_when_someone_is_admitted_meanwhile(
    store, store_url, monkeypatch
):
    join(store, "a")
    assert isinstance(store.try_admit("a", ONE_CORE), Admitted)
    join(store, "b")
    join(store, "c")
    other = Store.open(store_url)
    real_plan = AdmissionOps._plan
    interleaved = []

    def plan_then_admit_b(self, conn, *args, **kwargs):
        decided = real_plan(self, conn, *args, **kwargs)
        if self is store and not interleaved:
            interleaved.append(True)  # another worker: a finishes, b takes its room
            other.release("s", "a")
            other.leave_queue("a", "done")
            assert isinstance(other.try_admit("b", ONE_CORE), Admitted)
        return decided

    monkeypatch.setattr(AdmissionOps, "_plan", plan_then_admit_b)
    try:
        # On PostgreSQL (READ COMMITTED) a second read of the waiting rows missed b
        # (KeyError); the listing is what the one read saw.
        line = store.queue_listing(ONE_CORE)
    finally:
        other.close()
    assert interleaved
    assert [(e["deployment_id"], e["position"], e["length"]) for e in line] == [
        ("b", 1, 2),
        ("c", 2, 2),
    ]


def test_the_listing_counts_those_about_to_be_admitted(store):
    for name in ("a", "b", "c"):
        join(store, name)
    two_cores = {"s": SiteRoom("s", 2.0, 1 << 40)}
    line = store.queue_listing(two_cores)
    assert [(e["deployment_id"], e["position"], e["length"], e["ready"]) for e in line] == [
        ("a", 1, 3, True),
        ("b", 2, 3, True),
        ("c", 3, 3, False),
    ]
    assert line[0]["reason"].startswith("ready at s: admitted at its next check")
    assert "position 3 of 3" in line[2]["reason"]
    # What c itself is told agrees with the listing.
    assert store.queue_place("c", two_cores).position == 3


def test_a_retry_keeps_the_deadline_and_a_rejoin_goes_to_the_back(store):
    first = join(store, "a", timeout_s=60)
    assert join(store, "a", timeout_s=60) == first  # a retry: the clock is not restarted
    assert store.admission_record("a")["deadline_at"] == first.isoformat()
    joined = store.admission_record("a")["enqueued_at"]

    store.leave_queue("a", "stopped while waiting")
    join(store, "b")
    again = join(store, "a", timeout_s=60)
    assert again > first  # a new wait, a new deadline
    assert store.admission_record("a")["enqueued_at"] > joined
    line = store.queue_listing({"s": SiteRoom("s", 0.5, 1 << 40)})  # nobody fits: all wait
    assert [e["deployment_id"] for e in line] == ["b", "a"]  # b waited meanwhile


def deployment(store: Store, run: str):
    store.save_plan("f" * 64, "t", "dag", {"steps": []}, "t")
    return store.get_or_create_deployment("dag", run, "f" * 64, {})


def stale(store: Store, run_exists=None):
    found = release_stale_reservations(
        "s", store, run_id="t", grace=timedelta(0), run_exists=run_exists
    )
    return {r.deployment_id: r.reason for r in found}


def test_the_reaper_gives_back_capacity_held_for_nothing(store):
    ended = deployment(store, "ended")
    running = deployment(store, "running")
    holding = deployment(store, "holding")
    for d in (ended, running, holding):
        assert store.reserve("s", d.id, 1, 1, 8, 1 << 40)
    assert store.reserve("s", "unknown-deployment", 1, 1, 8, 1 << 40)
    store.set_status(ended.id, "CREATE_FAILED", reason="teardown never ran")
    store.set_status(holding.id, "CREATE_FAILED", reason="its VM is still there")
    store.intend_resource(holding.id, "s", "server", "vm", 0)

    # A young reservation is left alone: its provision may be writing its first record.
    assert release_stale_reservations("s", store, run_id="t") == []
    assert stale(store, run_exists=lambda dag_id, run_id: True) == {
        ended.id: f"deployment {ended.id} ended CREATE_FAILED and holds nothing",
        "unknown-deployment": "no deployment has this id",
    }
    assert store.reserved("s")["deployments"] == 2  # running and holding
    # The run of an in-progress deployment was deleted from Airflow: nothing will tear down.
    assert stale(store, run_exists=lambda dag_id, run_id: run_id != "running") == {
        running.id: "the DAG run dag/running no longer exists"
    }
    assert stale(store, run_exists=lambda dag_id, run_id: False) == {}  # holding holds a VM
    assert store.reserved("s")["deployments"] == 1
    assert [a["kind"] for a in store.reaper_actions(site="s", run_id="t")] == ["reservation"] * 3


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://root@localhost/stratoflow", "runs on SQLite or PostgreSQL, got a 'mysql' URL"),
        ("mssql+pyodbc://u:hunter2@h/db", "u:***@h/db"),
        ("not a url", "not a database URL"),
    ],
)
def test_a_store_url_it_cannot_lock_is_refused(url, words):
    with pytest.raises(StoreError) as err:
        Store.open(url)
    assert str(err.value).startswith("STRATOFLOW_STORE_URL: ")
    assert words in str(err.value) and "hunter2" not in str(err.value)
