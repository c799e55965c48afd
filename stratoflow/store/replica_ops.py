"""The replica side of a policy run: copies recorded before bytes move, verification
results, and deletions that re-check, in their own transaction, what the plan assumed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update

from stratoflow.lifecycle.model import ReplicaState
from stratoflow.lifecycle.planner import UNFINISHED
from stratoflow.store.base import StoreBase
from stratoflow.store.models import StoreError
from stratoflow.store.schema import replica_locks, replica_transfers, replicas, utcnow

_DEBRIS = (ReplicaState.BAD.value, ReplicaState.COPYING.value)


class ReplicaOps(StoreBase):
    # -- copies ------------------------------------------------------------------------------

    def begin_copy(
        self, rule_id: int, file_id: int, source_replica_id: int, endpoint: str, url: str
    ) -> tuple[int, int]:
        """(dest replica id, transfer id): the destination recorded COPYING, locked by
        the rule, and the transfer QUEUED; or the unfinished ones a cut-short run left."""
        now = utcnow()
        with self._write() as conn:
            dest = conn.execute(
                select(replicas).where(
                    replicas.c.file_id == file_id, replicas.c.endpoint == endpoint
                )
            ).first()
            if dest is None:
                conn.execute(
                    insert(replicas).values(
                        file_id=file_id,
                        endpoint=endpoint,
                        url=url,
                        state=ReplicaState.COPYING.value,
                        created_at=now,
                        updated_at=now,
                    )
                )
                dest = conn.execute(
                    select(replicas).where(
                        replicas.c.file_id == file_id, replicas.c.endpoint == endpoint
                    )
                ).one()
            elif dest.state in (ReplicaState.BAD.value, ReplicaState.COPYING.value):
                conn.execute(
                    update(replicas)
                    .where(replicas.c.id == dest.id)
                    .values(
                        state=ReplicaState.COPYING.value,
                        url=url,
                        tombstone=None,
                        verified_at=None,
                        updated_at=now,
                    )
                )
            else:
                raise StoreError(
                    f"replica {dest.id} at {endpoint} is {dest.state}: not a copy destination"
                )
            move = conn.execute(
                select(replica_transfers)
                .where(replica_transfers.c.dest_replica_id == dest.id)
                .order_by(replica_transfers.c.id.desc())
            ).first()
            if move is None or move.state == "DONE":
                conn.execute(
                    insert(replica_transfers).values(
                        rule_id=rule_id,
                        file_id=file_id,
                        source_replica_id=source_replica_id,
                        dest_replica_id=dest.id,
                        state="QUEUED",
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
                move = conn.execute(
                    select(replica_transfers)
                    .where(replica_transfers.c.dest_replica_id == dest.id)
                    .order_by(replica_transfers.c.id.desc())
                    .limit(1)
                ).one()
            elif move.state not in UNFINISHED:
                conn.execute(
                    update(replica_transfers)
                    .where(replica_transfers.c.id == move.id)
                    .values(
                        state="QUEUED",
                        source_replica_id=source_replica_id,
                        updated_at=now,
                    )
                )
            # The rule counts the copy it asked for from the start: locked, it is never
            # released or tombstoned while it fills.
            lock = (replica_locks.c.rule_id == rule_id) & (replica_locks.c.replica_id == dest.id)
            if conn.execute(select(replica_locks.c.rule_id).where(lock)).first() is None:
                conn.execute(
                    insert(replica_locks).values(
                        rule_id=rule_id, replica_id=dest.id, created_at=now
                    )
                )
            return dest.id, move.id

    def finish_transfer(self, transfer_id: int, *, ok: bool, reason: str | None = None) -> None:
        """A transfer ended: its destination is AVAILABLE and verified (the copy checked
        the checksums), or BAD (what a failed copy left) until a run refills or deletes it."""
        now = utcnow()
        with self._write() as conn:
            move = conn.execute(
                select(replica_transfers).where(replica_transfers.c.id == transfer_id)
            ).first()
            if move is None or move.state not in UNFINISHED:
                return
            # A failed copy leaves debris at its destination, BAD until refilled or deleted.
            conn.execute(
                update(replicas)
                .where(replicas.c.id == move.dest_replica_id)
                .values(
                    state=(ReplicaState.AVAILABLE if ok else ReplicaState.BAD).value,
                    verified_at=now if ok else None,
                    reason=None if ok else f"copy failed: {reason or 'failed'}"[:4000],
                    updated_at=now,
                )
            )
            conn.execute(
                update(replica_transfers)
                .where(replica_transfers.c.id == transfer_id)
                .values(
                    state="DONE" if ok else "FAILED",
                    attempts=move.attempts + (0 if ok else 1),
                    reason=None if ok else (reason or "failed")[:4000],
                    updated_at=now,
                )
            )

    # -- verification and deletion -----------------------------------------------------------

    def mark_verified(self, replica_id: int) -> None:
        """Its checksums matched just now (an UNAVAILABLE replica is AVAILABLE again)."""
        readable = (ReplicaState.AVAILABLE.value, ReplicaState.UNAVAILABLE.value)
        with self._write() as conn:
            conn.execute(
                update(replicas)
                .where(replicas.c.id == replica_id, replicas.c.state.in_(readable))
                .values(
                    state=ReplicaState.AVAILABLE.value,
                    verified_at=utcnow(),
                    reason=None,
                    updated_at=utcnow(),
                )
            )

    def mark_unavailable(self, replica_id: int, reason: str) -> None:
        with self._write() as conn:
            conn.execute(
                update(replicas)
                .where(replicas.c.id == replica_id)
                .values(
                    state=ReplicaState.UNAVAILABLE.value, reason=reason[:4000], updated_at=utcnow()
                )
            )

    def mark_bad(self, replica_id: int, reason: str) -> None:
        with self._write() as conn:
            conn.execute(
                update(replicas)
                .where(replicas.c.id == replica_id)
                .values(state=ReplicaState.BAD.value, reason=reason[:4000], updated_at=utcnow())
            )

    def begin_replica_delete(
        self, replica_id: int, witness: int | None, fresh_since: datetime
    ) -> bool:
        """BEING_DELETED, unless since the plan a lock or an unfinished transfer from it
        appeared, or (for a replica that may hold data) its ``witness`` is not an AVAILABLE
        replica of the same file verified since ``fresh_since``. Then False: it is kept.
        The file's replicas are locked for the check, so two runs cannot each delete one
        of the last two copies."""
        with self._write() as conn:
            target = conn.execute(select(replicas).where(replicas.c.id == replica_id)).first()
            if target is None:
                return False
            siblings = {
                r.id: r
                for r in conn.execute(
                    select(replicas).where(replicas.c.file_id == target.file_id).with_for_update()
                )
            }
            filling = conn.execute(
                select(replica_transfers.c.id).where(
                    replica_transfers.c.dest_replica_id == replica_id,
                    replica_transfers.c.state.in_(UNFINISHED),
                )
            ).first()
            if filling:
                return False
            if target.state not in _DEBRIS:
                w = siblings.get(witness) if witness is not None and witness != replica_id else None
                if (
                    w is None
                    or w.state != ReplicaState.AVAILABLE.value
                    or w.verified_at is None
                    or w.verified_at < fresh_since
                ):
                    return False
            locked = conn.execute(
                select(replica_locks.c.rule_id).where(replica_locks.c.replica_id == replica_id)
            ).first()
            source = conn.execute(
                select(replica_transfers.c.id).where(
                    replica_transfers.c.source_replica_id == replica_id,
                    replica_transfers.c.state.in_(UNFINISHED),
                )
            ).first()
            if locked or source:
                return False
            # Debris (BAD, or COPYING with no transfer) keeps its state: a deletion cut
            # short is simply planned again, never restored as if it held the file.
            if target.state not in _DEBRIS:
                conn.execute(
                    update(replicas)
                    .where(replicas.c.id == replica_id)
                    .values(state=ReplicaState.BEING_DELETED.value, updated_at=utcnow())
                )
            return True

    def finish_replica_delete(self, replica_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                delete(replica_transfers).where(
                    replica_transfers.c.dest_replica_id == replica_id,
                    replica_transfers.c.state.not_in(UNFINISHED),
                )
            )
            conn.execute(
                delete(replicas).where(
                    replicas.c.id == replica_id,
                    replicas.c.state.in_((ReplicaState.BEING_DELETED.value, *_DEBRIS)),
                )
            )

    def restore_replica(self, replica_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                update(replicas)
                .where(replicas.c.id == replica_id)
                .values(
                    state=ReplicaState.AVAILABLE.value,
                    verified_at=None,
                    tombstone=None,
                    updated_at=utcnow(),
                )
            )
