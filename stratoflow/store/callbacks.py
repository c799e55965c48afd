"""The callbacks to send (INDIGO's ``callback``): an outbox, written in the same transaction
as the final state it announces, so that no final state is missed, and drained by a sender
(stratoflow.api.callbacks) that claims each row before it POSTs, so that no two senders
POST the same one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, exists, insert, select, update
from sqlalchemy.orm import aliased

from stratoflow.store.base import StoreBase
from stratoflow.store.models import DeploymentStatus
from stratoflow.store.schema import callbacks, deployments, utcnow

FINAL_STATES = frozenset(
    s.value for s in DeploymentStatus if s.value.endswith(("_COMPLETE", "_FAILED"))
)
_MAX_ERROR = 2000


class CallbackOps(StoreBase):
    def _queue_callback(self, conn: Connection, id: str, before: str | None, after: str) -> None:
        """In the caller's transaction: a callback row when ``id`` has just reached the
        final state ``after`` and has a callback URL."""
        if after not in FINAL_STATES or after == before:
            return
        row = conn.execute(select(deployments.c.options).where(deployments.c.id == id)).first()
        url = ((row.options or {}) if row is not None else {}).get("callback")
        if not url:
            return
        now = utcnow()
        conn.execute(
            insert(callbacks).values(
                deployment_id=id,
                status=after,
                url=url,
                state="pending",
                attempts=0,
                next_at=now,
                created_at=now,
            )
        )

    def claim_callbacks(self, limit: int = 20, lease_s: float = 60.0) -> list[dict[str, Any]]:
        """Pending callbacks that are due, each pushed ``lease_s`` ahead as it is claimed, so
        that another sender does not take it while this one POSTs. Only the oldest pending
        one of each deployment."""
        now = utcnow()
        due = (callbacks.c.state == "pending") & (callbacks.c.next_at <= now)
        # A deployment's callbacks go in the order of its states: a later one waits while
        # an earlier one is still to be delivered (DELETE_COMPLETE must not come first).
        earlier = aliased(callbacks)
        first_pending = ~exists().where(
            (earlier.c.deployment_id == callbacks.c.deployment_id)
            & (earlier.c.state == "pending")
            & (earlier.c.id < callbacks.c.id)
        )
        # Most polls find nothing: look first, so that they take no write lock (on SQLite,
        # the whole store's).
        with self._read() as conn:
            if conn.execute(select(callbacks.c.id).where(due).limit(1)).first() is None:
                return []
        claimed = []
        with self._write() as conn:
            rows = conn.execute(
                select(callbacks)
                .where(due & first_pending)
                .order_by(callbacks.c.next_at)
                .limit(limit)
            ).all()
            for r in rows:
                taken = conn.execute(
                    update(callbacks)
                    .where(due & (callbacks.c.id == r.id) & (callbacks.c.next_at == r.next_at))
                    .values(next_at=now + timedelta(seconds=lease_s))
                ).rowcount
                if taken:
                    claimed.append(dict(r._mapping))
        return claimed

    def callback_delivered(self, callback_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                update(callbacks)
                .where(callbacks.c.id == callback_id)
                .values(
                    state="delivered",
                    attempts=callbacks.c.attempts + 1,
                    done_at=utcnow(),
                    last_error=None,
                )
            )

    def callback_failed(self, callback_id: int, error: str, retry_in_s: float | None) -> None:
        """One more failed attempt: tried again in ``retry_in_s``, or given up (None)."""
        now = utcnow()
        values: dict[str, Any] = {
            "attempts": callbacks.c.attempts + 1,
            "last_error": error[:_MAX_ERROR],
        }
        if retry_in_s is None:
            values |= {"state": "failed", "done_at": now}
        else:
            values["next_at"] = now + timedelta(seconds=retry_in_s)
        with self._write() as conn:
            conn.execute(update(callbacks).where(callbacks.c.id == callback_id).values(**values))

    def callbacks_of(self, deployment_id: str) -> list[dict[str, Any]]:
        """A deployment's callbacks, oldest first."""
        q = select(callbacks).where(callbacks.c.deployment_id == deployment_id)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(callbacks.c.id))]
