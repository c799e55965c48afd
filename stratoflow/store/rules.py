"""Rules, locks, replica states and the copies rules ask for: the writes of a policy run.

Each call is one transaction and converges when repeated, so a run cut short at any point
and run again reaches the same catalogue (tests/test_lifecycle_planner.py checks it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, exc, insert, select, update

from stratoflow.lifecycle.model import Replica, Rule, RuleState
from stratoflow.lifecycle.planner import DatasetState, Transfer
from stratoflow.store.base import RACE_RETRIES, StoreBase
from stratoflow.store.catalogue import _dataset, _file, _replica, chunks
from stratoflow.store.models import NotFound, StoreError
from stratoflow.store.schema import (
    datasets,
    files,
    replica_locks,
    replica_transfers,
    replicas,
    rules,
    utcnow,
)


def _rule(row: Row[Any]) -> Rule:
    m = row._mapping
    return Rule(
        id=m["id"],
        policy=m["policy"],
        dataset_id=m["dataset_id"],
        copies=m["copies"],
        expression=m["expression"],
        lifetime_s=m["lifetime_s"],
        locked=bool(m["locked"]),
        state=RuleState(m["state"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        stuck_at=m["stuck_at"],
        state_reason=m["state_reason"],
    )


def _transfer(row: Row[Any]) -> Transfer:
    m = row._mapping
    return Transfer(
        m["id"],
        m["rule_id"],
        m["file_id"],
        m["source_replica_id"],
        m["dest_replica_id"],
        m["state"],
        m["attempts"],
        m["reason"],
    )


class RuleOps(StoreBase):
    # -- reads -------------------------------------------------------------------------------

    def dataset_state(self, policy: str, dataset_id: int) -> DatasetState:
        """Everything the planner reads of one dataset, in one consistent read."""
        with self._read() as conn, conn.begin():
            row = conn.execute(select(datasets).where(datasets.c.id == dataset_id)).first()
            if row is None:
                raise NotFound(f"no dataset with id {dataset_id}")
            file_rows = [
                _file(r)
                for r in conn.execute(
                    select(files).where(files.c.dataset_id == dataset_id).order_by(files.c.id)
                )
            ]
            ids = [f.id for f in file_rows]
            reps: list[Replica] = []
            moves: list[Transfer] = []
            for part in chunks(ids):
                reps += [
                    _replica(r)
                    for r in conn.execute(
                        select(replicas).where(replicas.c.file_id.in_(part)).order_by(replicas.c.id)
                    )
                ]
                moves += [
                    _transfer(r)
                    for r in conn.execute(
                        select(replica_transfers)
                        .where(replica_transfers.c.file_id.in_(part))
                        .order_by(replica_transfers.c.id)
                    )
                ]
            locks: dict[int, set[int]] = {}
            for part in chunks([r.id for r in reps]):
                for lock in conn.execute(
                    select(replica_locks).where(replica_locks.c.replica_id.in_(part))
                ):
                    locks.setdefault(lock.replica_id, set()).add(lock.rule_id)
            rule = conn.execute(
                select(rules).where(rules.c.policy == policy, rules.c.dataset_id == dataset_id)
            ).first()
        return DatasetState(
            _dataset(row),
            file_rows,
            reps,
            {k: frozenset(v) for k, v in locks.items()},
            _rule(rule) if rule else None,
            moves,
        )

    def rules(self, policy: str | None = None) -> list[Rule]:
        q = select(rules).order_by(rules.c.id)
        if policy is not None:
            q = q.where(rules.c.policy == policy)
        with self._read() as conn:
            return [_rule(r) for r in conn.execute(q)]

    def rule(self, rule_id: int) -> Rule:
        with self._read() as conn:
            row = conn.execute(select(rules).where(rules.c.id == rule_id)).first()
        if row is None:
            raise NotFound(f"no rule with id {rule_id}")
        return _rule(row)

    def replica(self, replica_id: int) -> Replica | None:
        with self._read() as conn:
            row = conn.execute(select(replicas).where(replicas.c.id == replica_id)).first()
        return _replica(row) if row else None

    # -- rules -------------------------------------------------------------------------------

    def ensure_rule(
        self,
        policy: str,
        dataset_id: int,
        *,
        copies: int,
        expression: str,
        lifetime_s: int | None,
        expires_at: datetime | None,
    ) -> Rule:
        """The policy's rule for the dataset, made if absent (never made twice)."""
        for _ in range(RACE_RETRIES):
            with self._read() as conn:
                row = conn.execute(
                    select(rules).where(rules.c.policy == policy, rules.c.dataset_id == dataset_id)
                ).first()
            if row is not None:
                return _rule(row)
            now = utcnow()
            try:
                with self._write() as conn:
                    conn.execute(
                        insert(rules).values(
                            policy=policy,
                            dataset_id=dataset_id,
                            copies=copies,
                            expression=expression,
                            lifetime_s=lifetime_s,
                            locked=False,
                            state=RuleState.OK.value,
                            created_at=now,
                            updated_at=now,
                            expires_at=expires_at,
                        )
                    )
            except exc.IntegrityError:
                continue
        raise StoreError(f"could not make the rule of policy {policy} for dataset {dataset_id}")

    def set_rule_state(
        self, rule_id: int, state: RuleState, reason: str | None, stuck_at: datetime | None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                update(rules)
                .where(rules.c.id == rule_id)
                .values(
                    state=state.value, state_reason=reason, stuck_at=stuck_at, updated_at=utcnow()
                )
            )

    def set_rule_locked(self, rule_id: int, locked: bool) -> Rule:
        with self._write() as conn:
            done = conn.execute(
                update(rules)
                .where(rules.c.id == rule_id)
                .values(locked=locked, updated_at=utcnow())
            )
        if done.rowcount == 0:
            raise NotFound(f"no rule with id {rule_id}")
        return self.rule(rule_id)

    # -- locks and tombstones ----------------------------------------------------------------

    def lock_replica(self, rule_id: int, replica_id: int) -> None:
        with self._write() as conn:
            if (
                conn.execute(
                    select(replica_locks).where(
                        replica_locks.c.rule_id == rule_id, replica_locks.c.replica_id == replica_id
                    )
                ).first()
                is None
            ):
                conn.execute(
                    insert(replica_locks).values(
                        rule_id=rule_id, replica_id=replica_id, created_at=utcnow()
                    )
                )
            conn.execute(update(replicas).where(replicas.c.id == replica_id).values(tombstone=None))

    def unlock_replica(self, rule_id: int, replica_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                delete(replica_locks).where(
                    replica_locks.c.rule_id == rule_id, replica_locks.c.replica_id == replica_id
                )
            )

    def set_tombstone(self, replica_id: int, when: datetime | None) -> None:
        """Give (or take back) a replica's tombstone; a locked replica never gets one."""
        with self._write() as conn:
            if (
                when is not None
                and conn.execute(
                    select(replica_locks.c.rule_id).where(replica_locks.c.replica_id == replica_id)
                ).first()
            ):
                return
            conn.execute(
                update(replicas)
                .where(replicas.c.id == replica_id)
                .values(tombstone=when, updated_at=utcnow())
            )
