"""Store API behaviour, on SQLite and PostgreSQL (the ``store`` fixture is parametrized)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import exc

from stratoflow.config import embedded_pg_socket_dir
from stratoflow.store import (
    Deployment,
    DeploymentStatus,
    NotFound,
    ResourceRecord,
    ResourceState,
    Store,
    StoreError,
    default_store_url,
    resource_key,
    stratoflow_home,
)

PLAN = {"version": 1, "steps": [{"id": "provision", "after": []}], "nested": {"a": [1, 2.5]}}


# -- config -----------------------------------------------------------------------------


def test_home_and_url_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("STRATOFLOW_HOME", raising=False)
    monkeypatch.delenv("STRATOFLOW_STORE_URL", raising=False)
    monkeypatch.delenv("STRATOFLOW_EMBEDDED_DB", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "af"))
    assert stratoflow_home() == tmp_path / "af" / "stratoflow"
    # The embedded PostgreSQL, over its socket: beside its data in the home when the path
    # fits in a socket address, else in /tmp under a name derived from the home.
    sock = embedded_pg_socket_dir()
    assert sock in (tmp_path / "af" / "stratoflow" / "postgres-run", Path("/tmp") / sock.name)
    assert len(str(sock / ".s.PGSQL.5432")) <= 107
    assert default_store_url() == f"postgresql+psycopg2://postgres@/stratoflow?host={sock}"
    monkeypatch.setenv("STRATOFLOW_EMBEDDED_DB", "sqlite")
    assert default_store_url() == f"sqlite:///{tmp_path / 'af' / 'stratoflow' / 'store.db'}"
    monkeypatch.setenv("STRATOFLOW_EMBEDDED_DB", "mysql")
    with pytest.raises(ValueError, match="STRATOFLOW_EMBEDDED_DB='mysql'"):
        default_store_url()
    monkeypatch.setenv("STRATOFLOW_EMBEDDED_DB", "sqlite")
    monkeypatch.delenv("AIRFLOW_HOME")
    assert stratoflow_home() == stratoflow_home().home() / "airflow" / "stratoflow"
    monkeypatch.setenv("STRATOFLOW_HOME", str(tmp_path / "sf"))
    assert stratoflow_home() == tmp_path / "sf"
    monkeypatch.setenv("STRATOFLOW_STORE_URL", "postgresql+psycopg2://u@h/db")
    assert default_store_url() == "postgresql+psycopg2://u@h/db"


def test_a_long_home_puts_the_socket_in_tmp(monkeypatch):
    monkeypatch.setenv("STRATOFLOW_HOME", "/srv/" + "deep/" * 30 + "home")
    long_home = embedded_pg_socket_dir()
    monkeypatch.setenv("STRATOFLOW_HOME", "/srv/" + "deep/" * 30 + "other")
    assert long_home.parent == Path("/tmp") and long_home.name.startswith("stratoflow-pg-")
    assert embedded_pg_socket_dir() != long_home  # one server per home
    monkeypatch.setenv("STRATOFLOW_HOME", "/srv/sf")
    assert embedded_pg_socket_dir() == Path("/srv/sf/postgres-run")


def test_open_default_creates_home(isolated_stratoflow_home):
    with Store.open() as s:
        assert s.dialect == "sqlite"
        assert (isolated_stratoflow_home / "store.db").exists()
        assert s.list_plans() == []


# -- plans ------------------------------------------------------------------------------


def test_plans(store: Store):
    h = "a" * 64
    assert store.get_plan(h) is None and store.list_plans() == []
    store.save_plan(h, "cluster", "sf_cluster_aaaa", PLAN, "tosca_definitions_version: x\n")
    store.save_plan(h, "cluster", "sf_cluster_aaaa", PLAN, "tosca_definitions_version: x\n")
    assert store.get_plan(h) == PLAN
    assert store.get_plan_by_dag("sf_cluster_aaaa") == PLAN
    assert store.get_plan_by_dag("nope") is None
    rec = store.get_plan_record(h)
    assert rec["template_text"].startswith("tosca_definitions_version")
    assert rec["created_at"].tzinfo is not None
    store.save_plan("b" * 64, "transfer", "sf_transfer_bbbb", {"steps": []}, "")
    listed = store.list_plans()
    assert [p["plan_hash"] for p in listed] == ["b" * 64, h]
    assert set(listed[0]) == {"plan_hash", "name", "dag_id", "created_at"}
    with pytest.raises(StoreError, match="already bound"):
        store.save_plan("c" * 64, "other", "sf_cluster_aaaa", {}, "")


# -- deployments ------------------------------------------------------------------------


def test_create_and_get_deployment(store: Store):
    d = store.create_deployment("dag1", "run1", "h1", {"n": 2}, owner="alice")
    assert isinstance(d, Deployment)
    assert d.status is DeploymentStatus.CREATE_IN_PROGRESS
    assert d.created_at.tzinfo is not None and d.created_at.utcoffset().total_seconds() == 0
    got = store.get_deployment(d.id)
    assert got == d
    assert store.find_deployment("dag1", "run1") == d
    assert store.find_deployment("dag1", "run2") is None
    assert store.get_deployment(str(uuid.uuid4())) is None
    with pytest.raises(exc.IntegrityError):
        store.create_deployment("dag1", "run1", "h1", {})
    with pytest.raises(AttributeError):
        d.status = DeploymentStatus.CREATE_FAILED  # frozen


def test_get_or_create_is_deterministic(store: Store):
    a = store.get_or_create_deployment("dag", "manual__1", "h", {"x": 1}, owner="bob")
    b = store.get_or_create_deployment("dag", "manual__1", "h", {"x": 2})
    assert a == b and b.inputs == {"x": 1} and b.owner == "bob"
    assert a.id == str(uuid.uuid5(uuid.NAMESPACE_URL, "stratoflow:dag:manual__1"))


def test_to_dict_is_json(store: Store):
    d = store.create_deployment("dag", "r", "h", {"files": ["a", "b"]})
    out = d.to_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["status"] == "CREATE_IN_PROGRESS" and type(out["status"]) is str
    assert out["created_at"].endswith("+00:00")
    out["inputs"]["files"].append("c")
    assert d.inputs == {"files": ["a", "b"]}  # to_dict hands out a copy


def test_list_deployments_newest_first(store: Store):
    ids = []
    for i in range(5):
        ids.append(
            store.create_deployment("dag", f"r{i}", "h", {}, owner="alice" if i % 2 else "bob").id
        )
        time.sleep(0.002)
    assert [d.id for d in store.list_deployments()] == ids[::-1]
    assert [d.id for d in store.list_deployments(owner="alice")] == [ids[3], ids[1]]
    assert [d.id for d in store.list_deployments(limit=2)] == [ids[4], ids[3]]
    assert store.list_deployments(owner="nobody") == []


def test_set_status(store: Store):
    d = store.create_deployment("dag", "r", "h", {})
    store.set_status(d.id, "CREATE_FAILED", reason="provision: quota exceeded", site="local")
    got = store.get_deployment(d.id)
    assert got.status == DeploymentStatus.CREATE_FAILED and got.status.failed
    assert got.status_reason == "provision: quota exceeded" and got.site == "local"
    assert got.updated_at >= d.updated_at
    # None leaves fields alone; enum members and lower case are accepted
    store.set_status(d.id, DeploymentStatus.CREATE_COMPLETE, outputs={"endpoint": "http://x"})
    got = store.get_deployment(d.id)
    assert got.status == "CREATE_COMPLETE" and got.status_reason == "provision: quota exceeded"
    assert got.outputs == {"endpoint": "http://x"} and got.site == "local"
    store.set_status(d.id, "delete_in_progress", reason="")
    got = store.get_deployment(d.id)
    assert got.status is DeploymentStatus.DELETE_IN_PROGRESS and got.status.in_progress
    assert got.status_reason is None


def test_a_start_pending_is_cleared_once_started_and_failed_once_lost(store: Store):
    from stratoflow.store import STARTING

    started = store.create_deployment("dag", "r1", "h", {}, reason=STARTING)
    lost = store.create_deployment("dag", "r2", "h", {}, reason=STARTING)
    moved_on = store.create_deployment("dag", "r3", "h", {}, reason=STARTING)
    store.set_status(moved_on.id, "CREATE_IN_PROGRESS", reason="waiting for capacity")
    store.run_started(started.id)
    store.run_started(moved_on.id)  # a task's reason is kept
    assert store.get_deployment(started.id).status_reason is None
    assert store.get_deployment(moved_on.id).status_reason == "waiting for capacity"

    assert store.fail_unstarted(3600, "lost") == []  # too recent to be lost
    assert store.fail_unstarted(0, "lost") == [lost.id]
    got = store.get_deployment(lost.id)
    assert got.status == "CREATE_FAILED" and got.status_reason == "lost"
    assert store.get_deployment(started.id).status == "CREATE_IN_PROGRESS"


def test_a_final_state_queues_one_callback_that_one_sender_claims(store: Store):
    hooked = store.create_deployment("dag", "c1", "h", {}, options={"callback": "http://x/cb"})
    quiet = store.create_deployment("dag", "c2", "h", {})
    for d in (hooked, quiet):
        store.set_status(d.id, "CREATE_COMPLETE")
        store.set_status(d.id, "CREATE_COMPLETE", reason="again: not a new final state")
    assert store.callbacks_of(quiet.id) == []
    (queued,) = store.callbacks_of(hooked.id)
    assert queued["status"] == "CREATE_COMPLETE" and queued["state"] == "pending"

    (claimed,) = store.claim_callbacks()
    assert claimed["url"] == "http://x/cb"
    assert store.claim_callbacks() == []  # leased to the first sender
    store.callback_failed(claimed["id"], "HTTP 500", retry_in_s=0)
    (again,) = store.claim_callbacks()
    store.callback_delivered(again["id"])
    (done,) = store.callbacks_of(hooked.id)
    assert done["state"] == "delivered" and done["attempts"] == 2
    assert store.claim_callbacks(lease_s=0) == []

    store.begin_delete(hooked.id, "test")
    store.reset_stuck_delete(hooked.id, "test")  # DELETE_FAILED: a final state too
    assert [c["status"] for c in store.callbacks_of(hooked.id)] == [
        "CREATE_COMPLETE",
        "DELETE_FAILED",
    ]

    # In order: a deployment's later callback waits for its earlier one.
    ordered = store.create_deployment("dag", "c3", "h", {}, options={"callback": "http://y"})
    store.set_status(ordered.id, "CREATE_COMPLETE")
    (first,) = [c for c in store.claim_callbacks(lease_s=0) if c["deployment_id"] == ordered.id]
    store.begin_delete(ordered.id, "test")
    store.set_status(ordered.id, "DELETE_COMPLETE")
    mine = [c for c in store.claim_callbacks(lease_s=0) if c["deployment_id"] == ordered.id]
    assert [c["status"] for c in mine] == ["CREATE_COMPLETE"]
    store.callback_delivered(first["id"])
    mine = [c for c in store.claim_callbacks(lease_s=0) if c["deployment_id"] == ordered.id]
    assert [c["status"] for c in mine] == ["DELETE_COMPLETE"]


@pytest.mark.parametrize("bad", ["CREATED", "", "CREATE-COMPLETE", "running"])
def test_set_status_rejects_unknown(store: Store, bad):
    d = store.create_deployment("dag", "r", "h", {})
    with pytest.raises(ValueError, match="unknown deployment status"):
        store.set_status(d.id, bad)
    assert store.get_deployment(d.id).status is DeploymentStatus.CREATE_IN_PROGRESS


def test_set_status_unknown_deployment(store: Store):
    with pytest.raises(NotFound):
        store.set_status("nope", "CREATE_COMPLETE")


# -- step events ------------------------------------------------------------------------


def test_step_events_order_and_filter(store: Store):
    d = store.create_deployment("dag", "r", "h", {})
    store.record_step_event(d.id, "provision", "retry", "site A: no capacity", try_number=1)
    store.record_step_event(d.id, "provision", "FAILED", "site B: timeout", try_number=2)
    store.record_step_event(d.id, "run", "failed", "exit 3", map_index=4)
    store.record_step_event(d.id, "stage_out", "succeeded")
    store.record_step_event("other", "run", "failed", "not mine")
    events = store.step_events(d.id)
    assert [(e["step"], e["kind"], e["try_number"]) for e in events] == [
        ("provision", "retry", 1),
        ("provision", "failed", 2),
        ("run", "failed", 1),
        ("stage_out", "succeeded", 1),
    ]
    failed = store.step_events(d.id, kind="failed")
    assert [e["message"] for e in failed] == ["site B: timeout", "exit 3"]
    assert failed[1]["map_index"] == 4 and events[0]["map_index"] == -1
    assert events[3]["message"] == "" and events[0]["created_at"].tzinfo is not None


# -- resources --------------------------------------------------------------------------


def test_resource_key_is_a_dns_label():
    dep = str(uuid.uuid4())
    assert resource_key(dep, "server", 0) == f"sf-{dep}-server-0"
    for node in ["My_Server", "a.b", "x" * 200, "ünïcode"]:
        key = resource_key(dep, node, 3)
        assert len(key) <= 63 and key == key.lower()
        assert all(c.isalnum() or c == "-" for c in key) and key.isascii()
        assert key == resource_key(dep, node, 3)  # deterministic across retries
    assert resource_key(dep, "a_b", 0) != resource_key(dep, "a.b", 0)


def test_resource_lifecycle(store: Store):
    dep = store.create_deployment("dag", "r", "h", {}).id
    r = store.intend_resource(dep, "local", "sandbox", "worker", 0, data={"image": "x"})
    assert isinstance(r, ResourceRecord)
    assert r.state is ResourceState.INTENDED and r.external_id is None and r.live
    assert r.key == r.idempotency_key == resource_key(dep, "worker", 0) and r.index == 0
    assert store.resource(r.key) == r
    c = store.mark_resource_created(r.key, "pid-123", data={"address": "10.0.0.5"})
    assert c.state is ResourceState.CREATED and c.external_id == "pid-123"
    assert c.data == {"image": "x", "address": "10.0.0.5"}
    assert store.mark_resource_deleting(r.key).state is ResourceState.DELETING
    assert store.live_resources() == [store.resource(r.key)]
    assert store.mark_resource_deleted(r.key).state is ResourceState.DELETED
    assert store.resources(dep) == [] and store.live_resources() == []
    assert [x.state for x in store.resources(dep, include_deleted=True)] == ["deleted"]
    assert json.loads(json.dumps(c.to_dict()))["state"] == "created"


def test_intend_resource_adopts_existing(store: Store):
    dep = store.create_deployment("dag", "r", "h", {}).id
    r1 = store.intend_resource(dep, "siteA", "server", "vm", 1)
    store.mark_resource_created(r1.key, "nova-1")
    r2 = store.intend_resource(dep, "siteA", "server", "vm", 1, data={"ignored": True})
    assert r2.id == r1.id and r2.state is ResourceState.CREATED and r2.external_id == "nova-1"
    assert r2.data == {}
    # an explicit key is honoured
    r3 = store.intend_resource(dep, "siteA", "namespace", "ns", 0, idempotency_key="my-key")
    assert r3.key == "my-key" and store.resource("my-key").kind == "namespace"
    with pytest.raises(StoreError, match="belongs to deployment"):
        store.intend_resource("another-deployment", "siteA", "server", "vm", 0, "my-key")


def test_intend_resource_rearms_deleted(store: Store):
    dep = store.create_deployment("dag", "r", "h", {}).id
    r = store.intend_resource(dep, "siteA", "server", "vm", 0)
    store.mark_resource_created(r.key, "a-1")
    store.mark_resource_deleting(r.key)
    store.mark_resource_deleted(r.key)
    again = store.intend_resource(dep, "siteB", "server", "vm", 0, data={"flavor": "m1"})
    assert again.id == r.id and again.state is ResourceState.INTENDED
    assert again.site == "siteB" and again.external_id is None and again.data == {"flavor": "m1"}


def test_failed_and_live_filters(store: Store):
    dep = store.create_deployment("dag", "r", "h", {}).id
    a = store.intend_resource(dep, "siteA", "server", "vm", 0)
    b = store.intend_resource(dep, "siteB", "server", "vm", 1)
    c = store.intend_resource(dep, "siteB", "server", "vm", 2)
    store.mark_resource_failed(a.key, "quota exceeded")
    failed = store.resource(a.key)
    assert failed.state is ResourceState.FAILED and failed.reason == "quota exceeded"
    assert not failed.live
    assert {r.key for r in store.live_resources()} == {b.key, c.key}
    assert [r.key for r in store.live_resources(site="siteB")] == [b.key, c.key]
    assert store.live_resources(site="siteA") == []
    assert [r.key for r in store.resources(dep)] == [a.key, b.key, c.key]
    assert store.resource("missing") is None
    with pytest.raises(NotFound):
        store.mark_resource_created("missing", "x")


# -- reservations and usage -------------------------------------------------------------

GiB = 1 << 30


def test_reserve_and_release(store: Store):
    assert store.reserve("local", "d1", 2, 4 * GiB, 4, 8 * GiB)
    assert store.reserve("local", "d1", 2, 4 * GiB, 4, 8 * GiB)  # already held: no double count
    assert store.reserved("local") == {"cores": 2.0, "mem_bytes": 4 * GiB, "deployments": 1}
    assert not store.reserve("local", "d2", 3, 1 * GiB, 4, 8 * GiB)  # cores
    assert not store.reserve("local", "d2", 1, 5 * GiB, 4, 8 * GiB)  # memory
    assert store.reserve("local", "d2", 2, 4 * GiB, 4, 8 * GiB)  # exactly full
    assert store.reserve("other", "d3", 4, 8 * GiB, 4, 8 * GiB)  # sites are independent
    store.release("local", "d1")
    store.release("local", "d1")  # idempotent
    assert store.reserve("local", "d4", 0.5, GiB, 4, 8 * GiB)
    assert store.reserve("local", "d5", 1.5, GiB, 4, 8 * GiB)
    assert store.reserved("local")["cores"] == pytest.approx(4.0)
    with pytest.raises(ValueError):
        store.reserve("local", "d6", -1, 0, 4, 8 * GiB)


def test_usage_totals(store: Store):
    assert store.usage_totals("d") == {"core_seconds": 0.0, "bytes_moved": 0}
    store.add_usage("d", "local", "run", core_seconds=12.5)
    store.add_usage("d", "local", "stage_in", bytes_moved=5 * GiB)
    store.add_usage("d", "s3", "stage_out", core_seconds=0.25, bytes_moved=3)
    store.add_usage("other", "local", "run", core_seconds=99)
    totals = store.usage_totals("d")
    assert totals == {"core_seconds": 12.75, "bytes_moved": 5 * GiB + 3}
    assert type(totals["bytes_moved"]) is int and type(totals["core_seconds"]) is float


def test_timestamps_are_utc(store: Store):
    d = store.create_deployment("dag", "r", "h", {})
    r = store.intend_resource(d.id, "local", "sandbox", "n", 0)
    for ts in (store.get_deployment(d.id).created_at, store.resource(r.key).updated_at):
        assert ts.tzinfo is not None and ts.utcoffset().total_seconds() == 0
        assert ts.astimezone(UTC) == ts


# -- processes --------------------------------------------------------------------------


def test_store_survives_fork(store: Store):
    """A task process forked from a parent that already used the store gets its own
    connections, and the parent keeps working afterwards."""
    import gc
    import os

    dep = store.create_deployment("dag", "r", "h", {})
    store.record_step_event(dep.id, "parent", "succeeded")  # leaves a pooled connection
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            store.record_step_event(dep.id, "child", "succeeded")
            gc.collect()  # drop whatever the child refused of the parent's pool
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.record_step_event(dep.id, "parent-again", "succeeded")
    assert [e["step"] for e in store.step_events(dep.id)] == ["parent", "child", "parent-again"]


def test_a_delete_is_never_hidden_by_a_late_create(store: Store):
    from stratoflow.store import DeleteConflict

    d = store.create_deployment("dag_del", "r1", "h", {}, owner="ann")
    store.intend_resource(d.id, "local", "sandbox", "host", 0)
    store.set_task(d.id, "DEPLOYER")
    before = store.begin_delete(d.id, "delete requested by ann")
    assert before.status == "CREATE_IN_PROGRESS" and before.task == "DEPLOYER"
    now = store.get_deployment(d.id)
    assert now.status == "DELETE_IN_PROGRESS" and now.task == "DEPLOYER"
    # A create run stopped by the delete, in its last seconds: nothing new, no CREATE_*.
    with pytest.raises(StoreError, match="is DELETE_IN_PROGRESS: .* is not created"):
        store.intend_resource(d.id, "local", "sandbox", "host", 1)
    assert store.set_status(d.id, "CREATE_COMPLETE") is False
    assert store.get_deployment(d.id).status == "DELETE_IN_PROGRESS"
    with pytest.raises(DeleteConflict, match="a delete is running"):
        store.begin_delete(d.id, "again")
    store.set_status(d.id, "DELETE_FAILED", reason="site down", task="")
    assert store.begin_delete(d.id, "retry").status == "DELETE_FAILED"  # deleting again retries
    store.set_status(d.id, "DELETE_COMPLETE", task="")
    store.set_task(d.id, "DMS")  # a final state has no task
    assert store.get_deployment(d.id).task is None
    with pytest.raises(DeleteConflict, match="is DELETE_COMPLETE"):
        store.begin_delete(d.id, "once more")
    with pytest.raises(NotFound):
        store.begin_delete(str(uuid.uuid4()), "nobody")


def test_resource_records_carry_their_node_state(store: Store):
    d = store.create_deployment("dag_ns", "r1", "h", {})
    rec = store.intend_resource(d.id, "cloud", "server", "vm", 0)
    assert rec.to_dict()["node_state"] == "CREATING"
    assert store.mark_resource_created(rec.key, "srv-1").node_state == "CREATED"
    assert store.mark_resource_failed(rec.key, "boom").node_state == "ERROR"
    assert store.mark_resource_deleted(rec.key).to_dict()["node_state"] == "DELETED"
