"""Rules, locks, replica states and the copies rules ask for: the writes of a policy run.

Each call is one transaction and converges when repeated, so a run cut short at any point
and run again reaches the same catalogue (tests/test_lifecycle_planner.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Text, cast, delete, exc, insert, select, update

from stratoflow.lifecycle.model import FileRecord, Replica, ReplicaState, Rule, RuleState
from stratoflow.lifecycle.planner import DatasetState, Transfer
from stratoflow.store.base import RACE_RETRIES, StoreBase
from stratoflow.store.catalogue import _dataset, _replica
from stratoflow.store.models import NotFound, StoreError
from stratoflow.store.schema import (
    datasets,
    files,
    replica_locks,
    replica_transfers,
    replicas,
    rules,
    utc_raw,
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


# A read takes as many datasets as should hold about this many replicas, judged by the
# read before: memory stays bounded whatever the datasets' sizes, and a catalogue of
# one-file datasets is still not a query per dataset.
# Each read is five queries, each some milliseconds on PostgreSQL: reads of about 100,000
# replicas keep the 1M-replica bench to about a hundred of them.
REPLICAS_PER_READ = 100_000
FIRST_READ, MAX_READ = 200, 5000  # datasets


_STATES = {s.value: s for s in ReplicaState}
_REPLICA_COLUMNS = (
    replicas.c.id,
    replicas.c.file_id,
    replicas.c.endpoint,
    replicas.c.url,
    replicas.c.state,
    # As text on both backends (parsed once per distinct value, see _states): a datetime
    # from the driver hashes through its tzinfo, slower than parsing.
    cast(replicas.c.verified_at, Text),
    cast(replicas.c.tombstone, Text),
    replicas.c.reason,
)


def _states(conn: Connection, policy: str, ids: Sequence[int]) -> dict[int, DatasetState]:
    # Explicit columns, positional rows fetched all at once, timestamps without their type's
    # per-value call: a million replicas are read in seconds (bench/lifecycle_eval.py).
    in_part = files.c.dataset_id.in_(ids)
    by_dataset: dict[int, list[FileRecord]] = {i: [] for i in ids}
    dataset_of: dict[int, int] = {}
    for frow in conn.execute(
        select(
            files.c.id,
            files.c.dataset_id,
            files.c.name,
            files.c.size,
            files.c.adler32,
            files.c.sha256,
        )
        .where(in_part)
        .order_by(files.c.id)
    ).all():
        by_dataset[frow[1]].append(FileRecord(*frow))
        dataset_of[frow[0]] = frow[1]
    reps: dict[int, list[Replica]] = {i: [] for i in ids}
    # A registration or a verification run stamps many replicas with one time: each
    # distinct stamp is parsed once.
    stamps: dict[Any, datetime | None] = {None: None}

    def stamp(value: Any) -> datetime | None:
        if value not in stamps:
            stamps[value] = utc_raw(value)
        return stamps[value]

    for rep in conn.execute(
        select(*_REPLICA_COLUMNS)
        .join(files, files.c.id == replicas.c.file_id)
        .where(in_part)
        .order_by(replicas.c.id)
    ).all():
        reps[dataset_of[rep[1]]].append(
            Replica(
                rep[0],
                rep[1],
                rep[2],
                rep[3],
                _STATES[rep[4]],
                stamp(rep[5]),
                stamp(rep[6]),
                rep[7],
            )
        )
    moves: dict[int, list[Transfer]] = {i: [] for i in ids}
    for move in conn.execute(
        select(replica_transfers)
        .join(files, files.c.id == replica_transfers.c.file_id)
        .where(in_part)
        .order_by(replica_transfers.c.id)
    ):
        t = _transfer(move)
        moves[dataset_of[t.file_id]].append(t)
    locks: dict[int, dict[int, set[int]]] = {i: {} for i in ids}
    for replica_id, rule_id, file_id in conn.execute(
        select(replica_locks.c.replica_id, replica_locks.c.rule_id, replicas.c.file_id)
        .join(replicas, replicas.c.id == replica_locks.c.replica_id)
        .join(files, files.c.id == replicas.c.file_id)
        .where(in_part)
    ).all():
        locks[dataset_of[file_id]].setdefault(replica_id, set()).add(rule_id)
    own = {
        r.dataset_id: _rule(r)
        for r in conn.execute(
            select(rules).where(rules.c.policy == policy, rules.c.dataset_id.in_(ids))
        )
    }
    return {
        row.id: DatasetState(
            _dataset(row),
            by_dataset[row.id],
            reps[row.id],
            {k: frozenset(v) for k, v in locks[row.id].items()},
            own.get(row.id),
            moves[row.id],
        )
        for row in conn.execute(select(datasets).where(datasets.c.id.in_(ids)))
    }


class RuleOps(StoreBase):
    # -- reads -------------------------------------------------------------------------------

    def dataset_state(self, policy: str, dataset_id: int) -> DatasetState:
        """Everything the planner reads of one dataset, in one consistent read."""
        found = list(self.dataset_states(policy, [dataset_id]))
        if not found:
            raise NotFound(f"no dataset with id {dataset_id}")
        return found[0]

    def dataset_states(self, policy: str, dataset_ids: Sequence[int]) -> Iterator[DatasetState]:
        """The states of many datasets (those that exist, in the order given), read a
        chunk of datasets at a time: a policy over 200,000 files is a few dozen queries,
        not five per dataset (bench/lifecycle_eval.py)."""
        ids = list(dataset_ids)
        start, size = 0, FIRST_READ
        while start < len(ids):
            part = ids[start : start + size]
            found = self._read_states(policy, part)
            yield from (found[i] for i in part if i in found)
            replicas_read = sum(len(st.replicas) for st in found.values())
            start += size
            size = max(1, min(MAX_READ, size * REPLICAS_PER_READ // max(replicas_read, 1)))

    def _read_states(self, policy: str, ids: Sequence[int]) -> dict[int, DatasetState]:
        with self._read() as conn, conn.begin():
            return _states(conn, policy, ids)

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
