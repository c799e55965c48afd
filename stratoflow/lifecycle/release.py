"""Tombstones and deletions: the part of a plan that removes data, kept apart so that
its rules can be read in one place (the planner calls it once per file)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from stratoflow.lifecycle.expression import Endpoint
from stratoflow.lifecycle.model import FileRecord, ReplicaState

if TYPE_CHECKING:
    from stratoflow.lifecycle.planner import DatasetPlanner


def ago(now: datetime, then: datetime) -> str:
    seconds = int((now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def preference(endpoints: Mapping[str, Endpoint], name: str) -> tuple[float, str]:
    cost = endpoints[name].attributes.get("cost", 0) if name in endpoints else 0
    try:
        return float(cost), name
    except (TypeError, ValueError):
        return 0.0, name


class FileRelease:
    """Tombstones and deletions of one file's replicas.

    A replica that holds data (AVAILABLE, or a deletion cut short) is deleted only with a
    witness: another AVAILABLE replica of the file that this same run verifies first. If
    the witness turns out BAD, the store refuses the deletion (silent corruption of the
    copy we would keep cannot turn a clean-up into a loss).
    """

    def __init__(self, planner: DatasetPlanner, f: FileRecord, refilled: set[int]):
        self.p, self.f, self.refilled = planner, f, refilled
        self.replicas = planner.by_file[f.id]
        self.available = {r.id for r in self.replicas if r.state == ReplicaState.AVAILABLE}
        self.witness: int | None = None

    def vouch(self, excluding: int) -> int | None:
        if self.witness is not None and self.witness != excluding:
            return self.witness
        ranked = sorted(
            (r for r in self.replicas if r.id in self.available and r.id != excluding),
            key=lambda r: (r.verified_at is None, *self.p.ranked(r.endpoint)),
        )
        if not ranked:
            return None
        self.witness = ranked[0].id
        self.p.add(
            "verify",
            "vouches for the file before a deletion",
            file=self.f.name,
            endpoint=ranked[0].endpoint,
            replica_id=self.witness,
            detail={"witness": True},
        )
        return self.witness

    def plan(self) -> None:
        p, f = self.p, self.f
        order = sorted(
            self.replicas,
            key=lambda r: (r.state == ReplicaState.AVAILABLE, r.verified_at is not None, r.id),
        )
        for r in order:
            if not p.needs_release_check(r):
                continue
            at = {"file": f.name, "endpoint": r.endpoint, "replica_id": r.id}
            locked = p.locked_after(r)
            if r.state == ReplicaState.BEING_DELETED:
                witness = None if locked or r.id in p.sources else self.vouch(r.id)
                if witness is None:
                    p.add(
                        "restore",
                        "a deletion was cut short and it may hold the only data: verify it",
                        **at,
                    )
                else:
                    p.add(
                        "delete",
                        "finishing a deletion cut short",
                        detail={"witness": witness},
                        **at,
                    )
                continue
            # A COPYING replica no transfer fills is a copy that failed: debris, like BAD.
            debris = r.state == ReplicaState.BAD or (
                r.state == ReplicaState.COPYING and r.id not in p.filling
            )
            if not (debris or r.state == ReplicaState.AVAILABLE) or r.id in self.refilled:
                continue
            if locked:
                if r.tombstone is not None:
                    p.add("untombstone", "a rule locks it again", **at)
                continue
            tombstone = r.tombstone
            if tombstone is None:
                tombstone = p.now + timedelta(seconds=p.policy.grace_s)
                p.add(
                    "tombstone",
                    f"no rule locks it; deletable after the grace ({p.policy.grace_s}s)",
                    detail={"tombstone": tombstone},
                    **at,
                )
            if tombstone > p.now or r.id in p.sources or r.id == self.witness:
                # In its grace, the source of an unfinished transfer (#6513), or the witness.
                continue
            if debris:
                p.add(
                    "delete",
                    f"{r.state.value} ({r.reason or 'no copy fills it'}), tombstone passed",
                    **at,
                )
                continue
            witness = self.vouch(r.id)
            if witness is None:
                continue  # the last AVAILABLE replica of the file
            self.available.discard(r.id)
            p.add(
                "delete",
                f"tombstone passed {ago(p.now, tombstone)}; replica {witness} is verified first",
                detail={"witness": witness},
                **at,
            )
