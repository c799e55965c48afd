"""Lifecycle policy files: the shipped examples load, and every fault is named by its path.

Plus example-based planner cases that read as the issue's scenarios (the random ones are
in test_lifecycle_planner.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stratoflow.config import include_dir
from stratoflow.errors import TemplateError
from stratoflow.lifecycle.expression import Endpoint
from stratoflow.lifecycle.model import Dataset, FileRecord, Replica, ReplicaState
from stratoflow.lifecycle.planner import DatasetState, plan_dataset
from stratoflow.lifecycle.policy import load_policies, parse_policies

ENDPOINTS = {
    "disk-a": Endpoint("disk-a", {"type": "DISK", "cost": 1}),
    "disk-b": Endpoint("disk-b", {"type": "DISK", "cost": 2}),
    "tape": Endpoint("tape", {"type": "TAPE"}),
}


def policies(body: dict) -> dict:
    return parse_policies({"policies": body}, "test.yaml", ENDPOINTS)


def test_the_shipped_examples_load_against_the_shipped_endpoints(monkeypatch):
    from stratoflow.sites.endpoints import load_endpoints

    monkeypatch.delenv("STRATOFLOW_SITES", raising=False)

    shipped = {n: Endpoint(n, e.attributes) for n, e in load_endpoints().items()}
    found = load_policies(include_dir() / "policies" / "lifecycle", shipped)
    assert {"dimuon-results", "raw-to-tape"} <= set(found)
    raw = found["raw-to-tape"]
    assert raw.archive_after_s == 30 * 86400 and raw.copies_after_archive == 0
    assert raw.dag_id == "stratoflow_policy_raw-to-tape"


def test_defaults():
    (p,) = policies(
        {"keep": {"datasets": {"name": "*"}, "copies": 2, "storage": "type=DISK"}}
    ).values()
    assert (p.grace_s, p.schedule, p.lifetime_s, p.verify_every_s) == (86400, "@daily", None, None)
    assert p.datasets.matches("anything", {})


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"copies": 2, "storage": "type=DISK"}, "policies.p.datasets", "required"),
        ({"datasets": {}, "storage": "type=DISK"}, "policies.p.copies", "required"),
        (
            {"datasets": {}, "copies": 0, "storage": "type=DISK"},
            "policies.p.copies",
            "from 1 to 100",
        ),
        ({"datasets": {}, "copies": True, "storage": "type=DISK"}, "policies.p.copies", "integer"),
        (
            {"datasets": {}, "copies": 1, "storage": "(tier=1"},
            "policies.p.storage",
            "expected ')' at position 8",
        ),
        (
            {"datasets": {}, "copies": 1, "storage": "type=SSD"},
            "policies.p.storage",
            "matches no endpoint",
        ),
        (
            {"datasets": {}, "copies": 1, "storage": "type=DISK", "lifetime": "soon"},
            "policies.p.lifetime",
            "duration",
        ),
        (
            {"datasets": {}, "copies": 1, "storage": "type=DISK", "lifetime": "0d"},
            "policies.p.lifetime",
            "> 0",
        ),
        (
            {"datasets": {}, "copies": 1, "storage": "type=DISK", "grace": -1},
            "policies.p.grace",
            ">= 0",
        ),
        (
            {"datasets": {}, "copies": 1, "storage": "type=DISK", "schedule": "daily"},
            "policies.p.schedule",
            "cron",
        ),
        (
            {"datasets": {}, "copies": 1, "storage": "type=DISK", "archive_storage": "tape"},
            "policies.p.archive_after",
            "required with",
        ),
        (
            {"datasets": {}, "copies": 1, "storage": "type=DISK", "copies_after_archive": 2},
            "policies.p.copies_after_archive",
            "at most copies",
        ),
        (
            {"datasets": {"nme": "x"}, "copies": 1, "storage": "type=DISK"},
            "policies.p.datasets.nme",
            "unknown field",
        ),
        (
            {"datasets": {"meta": ["x"]}, "copies": 1, "storage": "type=DISK"},
            "policies.p.datasets.meta",
            "mapping",
        ),
        (
            {"datasets": {}, "copies": 1, "storage": "type=DISK", "copies_": 1},
            "policies.p.copies_",
            "unknown field",
        ),
        ("keep everything", "policies.p", "mapping"),
    ],
)
def test_faults_are_named_by_their_path(body, path, words):
    with pytest.raises(TemplateError) as err:
        policies({"p": body})
    assert any(i.path == path and words in i.message for i in err.value.issues), err.value


def test_a_bad_name_and_a_name_defined_twice_are_refused(tmp_path: Path):
    good = {"datasets": {}, "copies": 1, "storage": "type=DISK"}
    with pytest.raises(TemplateError, match="lowercase"):
        policies({"Keep Two": good})
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"policies": {"keep": good}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"policies": {"keep": good}}))
    with pytest.raises(TemplateError, match="also defined in a.yaml"):
        load_policies(tmp_path, ENDPOINTS)
    (tmp_path / "b.yaml").write_text("policies: [")
    with pytest.raises(TemplateError, match="b.yaml"):
        load_policies(tmp_path, ENDPOINTS)


# -- the planner on the issue's scenarios ----------------------------------------------------

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FILE = FileRecord(1, 1, "f", 10, "0000000a", None)


def state(*replicas: Replica, locks=None, created_days_ago: int = 1) -> DatasetState:
    ds = Dataset(1, "ds", {}, "t", NOW - timedelta(days=created_days_ago))
    return DatasetState(ds, [FILE], list(replicas), locks or {}, None)


def replica(rid: int, endpoint: str, **kw) -> Replica:
    kw.setdefault("state", ReplicaState.AVAILABLE)
    kw.setdefault("verified_at", NOW - timedelta(hours=1))
    return Replica(rid, 1, endpoint, f"file:///{endpoint}/ds/f", **kw)


def kinds(actions) -> list[tuple[str, str | None]]:
    return [(a.kind, a.endpoint) for a in actions]


def test_two_disk_copies_of_a_dataset_that_has_one_plans_one_copy_to_the_cheapest_disk():
    (p,) = policies({"p": {"datasets": {}, "copies": 2, "storage": "type=DISK"}}).values()
    actions = plan_dataset(p, ENDPOINTS, state(replica(1, "tape")), NOW)
    assert ("create_rule", None) in kinds(actions)
    copies = [a for a in actions if a.kind == "copy"]
    assert [(a.endpoint, a.detail["source_replica_id"]) for a in copies] == [
        ("disk-a", 1),
        ("disk-b", 1),
    ]
    assert all("2 storage copies wanted on type=DISK, 0 held" in a.reason for a in copies)


def test_an_extra_copy_gets_a_tombstone_then_is_deleted_after_the_grace_never_the_last():
    (p,) = policies(
        {"p": {"datasets": {}, "copies": 1, "storage": "type=DISK", "grace": "1h"}}
    ).values()
    tomb = NOW + timedelta(hours=1)
    first = plan_dataset(p, ENDPOINTS, state(replica(1, "disk-a"), replica(2, "disk-b")), NOW)
    assert ("tombstone", "disk-b") in kinds(first) and not [a for a in first if a.kind == "delete"]
    later = state(
        replica(1, "disk-a"), replica(2, "disk-b", tombstone=tomb), locks={1: frozenset({7})}
    )
    assert not [a for a in plan_dataset(p, ENDPOINTS, later, NOW) if a.kind == "delete"]
    after = plan_dataset(p, ENDPOINTS, later, tomb + timedelta(seconds=1))
    deletes = [a for a in after if a.kind == "delete"]
    assert [(a.endpoint, a.detail["witness"]) for a in deletes] == [("disk-b", 1)]
    assert kinds(after).index(("verify", "disk-a")) < kinds(after).index(("delete", "disk-b"))
    # The last replica keeps its tombstone for ever but is never deleted.
    alone = state(replica(2, "disk-b", tombstone=tomb))
    expired = {"p": {"datasets": {}, "copies": 1, "storage": "disk-a", "grace": "1h"}}
    (q,) = policies(expired).values()
    assert not [
        a for a in plan_dataset(q, ENDPOINTS, alone, tomb + timedelta(days=9)) if a.kind == "delete"
    ]


def test_the_source_of_an_unfinished_transfer_is_never_deleted():
    from stratoflow.lifecycle.planner import Transfer

    (p,) = policies({"p": {"datasets": {}, "copies": 1, "storage": "disk-b", "grace": 0}}).values()
    tomb = NOW - timedelta(hours=1)
    s = state(
        replica(1, "disk-a", tombstone=tomb),
        replica(2, "disk-b", state=ReplicaState.COPYING),
        replica(3, "tape"),
    )
    s = DatasetState(
        s.dataset, s.files, s.replicas, {}, None, [Transfer(1, 9, 1, 1, 2, "SUBMITTED")]
    )
    assert ("delete", "disk-a") not in kinds(plan_dataset(p, ENDPOINTS, s, NOW))


def test_archive_after_copies_to_tape_then_releases_the_disk_copy():
    body = {"datasets": {}, "copies": 1, "storage": "type=DISK", "archive_after": "30d", "grace": 0}
    (p,) = policies({"p": body}).values()
    young = plan_dataset(p, ENDPOINTS, state(replica(1, "disk-a"), created_days_ago=1), NOW)
    assert not [a for a in young if a.kind == "copy"]
    old = plan_dataset(p, ENDPOINTS, state(replica(1, "disk-a"), created_days_ago=31), NOW)
    assert [a.endpoint for a in old if a.kind == "copy"] == ["tape"]
    assert not [a for a in old if a.kind == "delete"]  # the tape copy does not exist yet
    archived = state(replica(1, "disk-a"), replica(2, "tape"), created_days_ago=31)
    done = plan_dataset(p, ENDPOINTS, archived, NOW)
    assert [(a.endpoint, a.detail["witness"]) for a in done if a.kind == "delete"] == [
        ("disk-a", 2)
    ]
