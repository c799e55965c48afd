"""The planner: what one run of a policy does to one dataset, from the catalogue's state.

Pure: the same state and time give the same plan, so a dry run shows exactly what a real
run would do. Each action says why. The safety rules hold by construction here and are
property-tested (tests/test_lifecycle_planner.py):

- the last AVAILABLE replica of a file is never deleted;
- a replica any rule locks is never deleted;
- a replica that is the source of an unfinished transfer is never deleted (Rucio #6513);
- a replica is deleted only once its tombstone (release time + grace) has passed;
- a STUCK or SUSPENDED rule keeps its locks: trouble never frees data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stratoflow.lifecycle.expression import Endpoint
from stratoflow.lifecycle.model import Dataset, FileRecord, Replica, ReplicaState, Rule, RuleState
from stratoflow.lifecycle.policy import Policy
from stratoflow.lifecycle.release import FileRelease, ago, preference

UNFINISHED = ("QUEUED", "SUBMITTED")
_TIMES = ("expires_at", "tombstone", "stuck_at")


@dataclass(frozen=True, slots=True)
class Transfer:
    id: int
    rule_id: int
    file_id: int
    source_replica_id: int
    dest_replica_id: int
    state: str  # QUEUED | SUBMITTED | DONE | FAILED
    attempts: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class DatasetState:
    """What the planner reads of one dataset: its files, every replica of them, every
    rule's locks on those replicas, this policy's rule (None: not made yet) and the copies
    asked for (by any rule)."""

    dataset: Dataset
    files: Sequence[FileRecord]
    replicas: Sequence[Replica]
    locks: Mapping[int, frozenset[int]]  # replica id -> ids of the rules that lock it
    rule: Rule | None
    transfers: Sequence[Transfer] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a plan. ``kind``: create_rule, rule_state, lock, unlock, copy, verify,
    tombstone, untombstone, restore, delete."""

    kind: str
    dataset: str
    reason: str
    file: str | None = None
    endpoint: str | None = None
    replica_id: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Action:
        """The inverse of ``to_dict`` after a JSON round trip (XCom): times come back."""
        detail = {
            k: datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str) else v
            for k, v in dict(d.get("detail") or {}).items()
        }
        return cls(
            d["kind"],
            d["dataset"],
            d["reason"],
            d.get("file"),
            d.get("endpoint"),
            d.get("replica_id"),
            detail,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601)."""
        detail = {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.detail.items()
        }
        return {
            "kind": self.kind,
            "dataset": self.dataset,
            "file": self.file,
            "endpoint": self.endpoint,
            "replica_id": self.replica_id,
            "reason": self.reason,
            "detail": detail,
        }


class DatasetPlanner:
    def __init__(
        self, policy: Policy, endpoints: Mapping[str, Endpoint], state: DatasetState, now: datetime
    ):
        self.policy, self.endpoints, self.state, self.now = policy, endpoints, state, now
        self.actions: list[Action] = []
        self.rule_id = state.rule.id if state.rule else None
        self.by_file: dict[int, list[Replica]] = defaultdict(list)
        for r in state.replicas:
            self.by_file[r.file_id].append(r)
        self.active = [t for t in state.transfers if t.state in UNFINISHED]
        self.filling = {t.dest_replica_id for t in self.active}
        self.sources = {t.source_replica_id for t in self.active}
        self.mine = {rid for rid, rules in state.locks.items() if self.rule_id in rules}
        self.wanted: set[int] = set()  # replica ids this rule should lock after the run
        self.file_names = {f.id: f.name for f in state.files}
        self.failed: dict[int, list[Transfer]] = defaultdict(list)
        for t in state.transfers:
            if t.state == "FAILED":
                self.failed[t.file_id].append(t)
        # Selections depend only on the policy and the endpoints: once per dataset, not per file.
        self.disk = policy.storage.select(endpoints)
        self.rank = {name: preference(endpoints, name) for name in endpoints}
        self.tape = policy.archive_storage.select(endpoints) if policy.archive_storage else set()

    def ranked(self, endpoint: str) -> tuple[float, str]:
        """Cheapest first, then by name (an endpoint gone from the catalogue costs 0)."""
        return self.rank.get(endpoint) or (0.0, endpoint)

    def add(self, kind: str, reason: str, **kw: Any) -> None:
        self.actions.append(Action(kind, self.state.dataset.name, reason, **kw))

    def plan(self) -> list[Action]:
        rule, p = self.state.rule, self.policy
        if rule is None:
            expires = self.now + timedelta(seconds=p.lifetime_s) if p.lifetime_s else None
            self.add(
                "create_rule",
                f"policy {p.name} selects the dataset",
                detail={"copies": p.copies, "expression": p.storage.text, "expires_at": expires},
            )
        expired = (
            rule is not None
            and not rule.locked
            and rule.expires_at is not None
            and rule.expires_at <= self.now
        )
        if expired:
            self.wanted = set()
        elif rule is not None and rule.state == RuleState.SUSPENDED:
            self.wanted = set(self.mine)  # an operator must look; nothing moves meanwhile
        else:
            self.plan_resumed_copies()
            failures: dict[str, str] = {}
            for f in self.state.files:
                self.plan_file(f, failures)
            self.plan_rule_state(failures)
        self.plan_locks(expired)
        self.plan_verification()
        self.plan_release_and_deletion()
        return self.actions

    # -- copies and locks --------------------------------------------------------------------

    def plan_resumed_copies(self) -> None:
        """Copies this rule recorded but a cut-short run never finished."""
        replicas = {r.id: r for r in self.state.replicas}
        for t in self.active:
            if t.rule_id != self.rule_id or t.state != "QUEUED":
                continue
            source, dest = replicas.get(t.source_replica_id), replicas.get(t.dest_replica_id)
            if source is None or dest is None:
                continue
            self.add(
                "resume_copy",
                "a copy recorded by a run that was cut short",
                file=self._name(dest),
                endpoint=dest.endpoint,
                replica_id=dest.id,
                detail={"transfer_id": t.id, "source_replica_id": source.id, "dest_url": dest.url},
            )

    def targets(self, f: FileRecord) -> list[tuple[str, set[str], int]]:
        """(label, endpoints, copies wanted) the rule asks of ``f``."""
        p, disk, tape = self.policy, self.disk, self.tape
        if p.archive_after_s is None or p.archive_storage is None:
            return [("storage", disk, p.copies)]
        age = (self.now - self.state.dataset.created_at).total_seconds()
        if age < p.archive_after_s:
            return [("storage", disk, p.copies)]
        archived = any(
            r.endpoint in tape and r.state == ReplicaState.AVAILABLE and r.verified_at
            for r in self.by_file[f.id]
        )
        keep = p.copies_after_archive if archived else p.copies
        return [("archive", tape, 1), ("storage", disk - tape, keep)]

    def plan_file(self, f: FileRecord, failures: dict[str, str]) -> None:
        replicas = self.by_file[f.id]
        at = {r.endpoint: r for r in replicas}
        sources = [r for r in replicas if r.state == ReplicaState.AVAILABLE]
        if len(sources) > 1:
            sources.sort(key=self._source_rank)
        failed = self.failed[f.id]
        if sum(t.attempts for t in failed) >= self.policy.stuck_after_attempts:
            failures[f.name] = failed[-1].reason or "transfer failed"
        for label, endpoints, want in self.targets(f):
            held = [
                r
                for r in replicas
                if r.endpoint in endpoints
                and (
                    r.state == ReplicaState.AVAILABLE
                    or (r.state == ReplicaState.COPYING and r.id in self.filling)
                )
            ]
            if len(held) > 1:
                held.sort(key=self._keep_rank)
            self.wanted.update(r.id for r in held[:want])
            missing = want - min(want, len(held))
            if not missing:
                continue
            free = sorted(
                (
                    e
                    for e in endpoints
                    if e not in at
                    or at[e].state in (ReplicaState.BAD, ReplicaState.COPYING)
                    and at[e].id not in self.filling
                ),
                key=self.ranked,
            )
            if not sources:
                self.add("rule_note", f"{f.name}: no AVAILABLE replica to copy from", file=f.name)
                continue
            for endpoint in free[:missing]:
                again = at.get(endpoint)
                self.add(
                    "copy",
                    f"{want} {label} cop{'y' if want == 1 else 'ies'} wanted on"
                    f" {self._expr(label)}, {len(held)} held",
                    file=f.name,
                    endpoint=endpoint,
                    replica_id=again.id if again else None,
                    detail={
                        "source_replica_id": sources[0].id,
                        "source_url": sources[0].url,
                        "file_id": f.id,
                    },
                )
            if len(free) < missing:
                self.add(
                    "rule_note",
                    f"{f.name}: only {len(free)} more endpoint(s) of {self._expr(label)}"
                    " can take a copy",
                    file=f.name,
                )

    def _source_rank(self, r: Replica) -> tuple[Any, ...]:
        """Copy from a verified replica, not one already feeding a transfer, cheapest."""
        return (r.verified_at is None, r.id in self.sources) + self.ranked(r.endpoint)

    def _keep_rank(self, r: Replica) -> tuple[Any, ...]:
        """Keep what the rule holds already, AVAILABLE and verified, cheapest."""
        return (
            r.id not in self.mine,
            r.state != ReplicaState.AVAILABLE,
            r.verified_at is None,
        ) + self.ranked(r.endpoint)

    def _expr(self, label: str) -> str:
        p = self.policy
        return (
            p.archive_storage.text if label == "archive" and p.archive_storage else p.storage.text
        )

    def plan_rule_state(self, failures: dict[str, str]) -> None:
        rule = self.state.rule
        copying = any(a.kind == "copy" for a in self.actions) or bool(self.active)
        if failures:
            reasons = "; ".join(f"{name}: {why}" for name, why in sorted(failures.items()))
            stuck_at = (
                rule.stuck_at
                if rule and rule.state == RuleState.STUCK and rule.stuck_at
                else self.now
            )
            if (
                (self.now - stuck_at).total_seconds() >= self.policy.suspend_after_s
                and rule
                and rule.state == RuleState.STUCK
            ):
                state, why = RuleState.SUSPENDED, f"stuck since {stuck_at.isoformat()}: {reasons}"
            else:
                state, why = RuleState.STUCK, reasons
        else:
            state, why, stuck_at = (RuleState.REPLICATING if copying else RuleState.OK), None, None
        current = rule.state if rule else RuleState.OK
        if state != current or (rule and why != rule.state_reason):
            self.add(
                "rule_state",
                f"{current.value} -> {state.value}" + (f": {why}" if why else ""),
                detail={"state": state.value, "reason": why, "stuck_at": stuck_at},
            )

    def plan_locks(self, expired: bool) -> None:
        why = "the rule expired" if expired else "no longer needed by the rule"
        for r in self.state.replicas:
            if r.id in self.wanted and r.id not in self.mine:
                self.add(
                    "lock",
                    "the rule counts it as one of its copies",
                    file=self._name(r),
                    endpoint=r.endpoint,
                    replica_id=r.id,
                )
            elif r.id in self.mine and r.id not in self.wanted:
                self.add("unlock", why, file=self._name(r), endpoint=r.endpoint, replica_id=r.id)

    def _name(self, r: Replica) -> str:
        return self.file_names[r.file_id]

    # -- verification ------------------------------------------------------------------------

    def plan_verification(self) -> None:
        every = self.policy.verify_every_s
        due = None if every is None else self.now - timedelta(seconds=every)
        for r in self.state.replicas:
            if r.state == ReplicaState.UNAVAILABLE:
                why = "its endpoint could not serve it: try again"
            elif r.state != ReplicaState.AVAILABLE:
                continue
            elif r.verified_at is None:
                why = "never verified"
            elif due is not None and r.verified_at <= due:
                why = f"last verified {ago(self.now, r.verified_at)} (verify_every {every}s)"
            else:
                continue
            self.add("verify", why, file=self._name(r), endpoint=r.endpoint, replica_id=r.id)

    # -- release and deletion ----------------------------------------------------------------

    def locked_after(self, r: Replica) -> bool:
        if r.id in self.wanted:
            return True
        holders = self.state.locks.get(r.id, frozenset())
        if not holders:
            return False
        return len(holders) > 1 or self.rule_id not in holders

    def plan_release_and_deletion(self) -> None:
        refilled = {a.replica_id for a in self.actions if a.kind == "copy" and a.replica_id}
        for f in self.state.files:
            if any(self.needs_release_check(r) for r in self.by_file[f.id]):
                FileRelease(self, f, refilled).plan()

    def needs_release_check(self, r: Replica) -> bool:
        """False for a replica that stays locked, with no tombstone to lift and no
        deletion to finish: most replicas, most runs."""
        return (
            r.state == ReplicaState.BEING_DELETED
            or r.tombstone is not None
            or not self.locked_after(r)
        )


def phases(actions: Sequence[Action]) -> tuple[list[Action], list[Action]]:
    """(execute, verify): a policy run's execute task does the first list in order (a
    deletion's witness is verified there, before it); its verify task then does the
    periodic verifications."""
    execute: list[Action] = []
    periodic: list[Action] = []
    for a in actions:
        (periodic if a.kind == "verify" and not a.detail.get("witness") else execute).append(a)
    return execute, periodic


def plan_dataset(
    policy: Policy, endpoints: Mapping[str, Endpoint], state: DatasetState, now: datetime
) -> list[Action]:
    """The actions one run of ``policy`` takes on one dataset at time ``now``."""
    return DatasetPlanner(policy, endpoints, state, now).plan()
