"""The admission queue: deployments wait here for capacity, in the store, so the queue
survives a restart of every Airflow process and concurrent workers admit one at a time.

The order itself is :mod:`stratoflow.admission`'s. A waiting deployment proves it is still
wanted by its heartbeat (its trigger beats while it waits); one whose run was stopped stops
beating and drops out of the line after the lease, leaving nothing provisioned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, text, update

from stratoflow.admission import Admitted, Queued, SiteRoom, Waiting, plan
from stratoflow.admission import Plan as AdmissionPlan
from stratoflow.store.base import StoreBase
from stratoflow.store.schema import admission_queue, reservations, utcnow

#: A waiting deployment whose heartbeat is older than this has left the line.
LEASE_S = 20.0

_Q = admission_queue


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _waiting(row: Row[Any]) -> Waiting:
    m = row._mapping
    return Waiting(
        deployment_id=m["deployment_id"],
        owner=m["owner"],
        priority=int(m["priority"]),
        enqueued_at=m["enqueued_at"],
        candidates=tuple(m["candidates"] or ()),
        cores=float(m["cores"]),
        mem_bytes=int(m["mem_bytes"]),
    )


class AdmissionOps(StoreBase):
    def enqueue(
        self,
        deployment_id: str,
        *,
        owner: str,
        priority: int,
        candidates: list[str],
        cores: float,
        mem_bytes: int,
        timeout_s: float,
    ) -> datetime:
        """Join the queue, or rejoin it on a retry: the place (time of first joining) and
        the deadline are kept; what was held for an earlier try is given back. One that
        had left the queue (stopped, failed, timed out) joins at the back with a new
        deadline. Returns the deadline."""
        now = utcnow()
        deadline: datetime = now + timedelta(seconds=timeout_s)
        values: dict[str, Any] = {
            "owner": owner,
            "priority": int(priority),
            "candidates": list(candidates),
            "cores": float(cores),
            "mem_bytes": int(mem_bytes),
            "state": "waiting",
            "site": None,
            "reason": None,
            "heartbeat_at": now,
            "deadline_at": deadline,
            "admitted_at": None,
            "released_at": None,
            "left_at": None,
        }
        with self._write() as conn:
            row = conn.execute(select(_Q).where(_Q.c.deployment_id == deployment_id)).first()
            if row is None:
                conn.execute(
                    insert(_Q).values(deployment_id=deployment_id, enqueued_at=now, **values)
                )
                return deadline
            m = row._mapping
            if m["state"] == "left":
                values["enqueued_at"] = now  # behind those who waited meanwhile
            else:
                deadline = values["deadline_at"] = m["deadline_at"]  # a retry keeps its clock
            held = m["site"] if m["state"] == "admitted" else None
            if held in candidates and self._holds(conn, deployment_id, held):
                return deadline  # a retry of an admitted try: it keeps its room
            conn.execute(reservations.delete().where(reservations.c.deployment_id == deployment_id))
            conn.execute(update(_Q).where(_Q.c.deployment_id == deployment_id).values(**values))
            return deadline

    def try_admit(
        self, deployment_id: str, rooms: Mapping[str, SiteRoom], lease_s: float = LEASE_S
    ) -> Admitted | Queued | None:
        """Admit the deployment if it is its turn and a candidate has room: its capacity is
        reserved in the same transaction. Otherwise its place in line. None if it is not
        in the queue (it left, or never joined)."""
        with self._write() as conn:
            self._lock_sites(conn, rooms)
            own = conn.execute(select(_Q).where(_Q.c.deployment_id == deployment_id)).first()
            if own is None or own._mapping["state"] == "left":
                return None
            if own._mapping["state"] == "admitted":
                return Admitted(own._mapping["site"], own._mapping["reason"] or "")
            decision = self._plan(conn, rooms, lease_s, deployment_id)
            verdict = decision.admitted.get(deployment_id)
            if verdict is None:
                return decision.queued.get(deployment_id)
            w = _waiting(own)
            conn.execute(
                insert(reservations).values(
                    site=verdict.site,
                    deployment_id=deployment_id,
                    cores=w.cores,
                    mem_bytes=w.mem_bytes,
                    created_at=utcnow(),
                )
            )
            conn.execute(
                update(_Q)
                .where(_Q.c.deployment_id == deployment_id)
                .values(
                    state="admitted",
                    site=verdict.site,
                    reason=verdict.why,
                    admitted_at=utcnow(),
                    released_at=None,
                )
            )
            return verdict

    def queue_place(
        self,
        deployment_id: str,
        rooms: Mapping[str, SiteRoom],
        lease_s: float = LEASE_S,
        hold_if_ready_s: float = 0.0,
    ) -> Admitted | Queued | None:
        """Beat the deployment's heartbeat and say whether it would be admitted now.
        Reserves nothing. If it would be, its heartbeat is set ``hold_if_ready_s`` ahead:
        it keeps its place that long without beating, while a worker resumes it."""
        with self._write() as conn:
            beat = conn.execute(
                update(_Q)
                .where(_Q.c.deployment_id == deployment_id, _Q.c.state == "waiting")
                .values(heartbeat_at=utcnow())
            )
            if beat.rowcount == 0:
                row = conn.execute(
                    select(_Q.c.state, _Q.c.site, _Q.c.reason).where(
                        _Q.c.deployment_id == deployment_id
                    )
                ).first()
                if row is not None and row.state == "admitted":
                    return Admitted(row.site, row.reason or "")
                return None
            decision = self._plan(conn, rooms, lease_s, deployment_id)
            ready = decision.admitted.get(deployment_id)
            if ready is not None and hold_if_ready_s:
                conn.execute(
                    update(_Q)
                    .where(_Q.c.deployment_id == deployment_id)
                    .values(heartbeat_at=utcnow() + timedelta(seconds=hold_if_ready_s))
                )
        return ready or decision.queued.get(deployment_id)

    def leave_queue(self, deployment_id: str, reason: str) -> None:
        """The deployment is done with the queue (finished, failed, timed out, stopped).
        Its reservation, if any, is given back by its site's teardown or cleanup."""
        with self._write() as conn:
            conn.execute(
                update(_Q)
                .where(_Q.c.deployment_id == deployment_id, _Q.c.state != "left")
                .values(state="left", reason=reason[:4096], left_at=utcnow())
            )

    def queue_listing(
        self, rooms: Mapping[str, SiteRoom], lease_s: float = LEASE_S
    ) -> list[dict[str, Any]]:
        """Every live waiting deployment with its place, for ``stratoflow queue``: those
        admitted at their next check first (``ready``), then those still waiting."""
        with self._read() as conn:
            # One read of the waiting rows for both the plan and the listing: on
            # PostgreSQL a second read could miss one admitted in between.
            rows = self._waiting_rows(conn)
            decision = self._plan(conn, rooms, lease_s, None, rows)
        by_id = {r._mapping["deployment_id"]: r._mapping for r in rows}
        out = []
        places = [(i, p, True) for i, p in decision.ready.items()]
        places += [(i, p, False) for i, p in decision.queued.items()]
        for deployment_id, place, ready in places:
            m = by_id[deployment_id]
            out.append(
                {
                    "deployment_id": deployment_id,
                    "site": place.site,
                    "position": place.position,
                    "length": place.length,
                    "ready": ready,
                    "owner": m["owner"],
                    "priority": m["priority"],
                    "cores": m["cores"],
                    "mem_bytes": m["mem_bytes"],
                    "enqueued_at": m["enqueued_at"].isoformat(),
                    "reason": place.reason,
                }
            )
        return sorted(out, key=lambda e: (e["site"], e["position"]))

    def admission_record(self, deployment_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(select(_Q).where(_Q.c.deployment_id == deployment_id)).first()
        if row is None:
            return None
        return {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row._mapping.items()
        }

    # -- internals ---------------------------------------------------------------------------

    def _lock_sites(self, conn: Connection, rooms: Mapping[str, SiteRoom]) -> None:
        # SQLite: BEGIN IMMEDIATE already serialises writers. PostgreSQL: one lock for the
        # queue, then the sites' reservation locks (as ResourceOps.reserve takes them) in a
        # fixed order, so the sums read here cannot change before the insert.
        if self.dialect != "postgresql":
            return
        keys = ["stratoflow.admission"] + [f"stratoflow.reserve:{s}" for s in sorted(rooms)]
        for key in keys:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(key)})

    def _holds(self, conn: Connection, deployment_id: str, site: str | None) -> bool:
        return (
            conn.execute(
                select(reservations.c.site).where(
                    reservations.c.deployment_id == deployment_id, reservations.c.site == site
                )
            ).first()
            is not None
        )

    @staticmethod
    def _waiting_rows(conn: Connection) -> Sequence[Row[Any]]:
        return conn.execute(select(_Q).where(_Q.c.state == "waiting")).all()

    def _plan(
        self,
        conn: Connection,
        rooms: Mapping[str, SiteRoom],
        lease_s: float,
        caller: str | None,
        rows: Sequence[Row[Any]] | None = None,
    ) -> AdmissionPlan:
        fresh = utcnow() - timedelta(seconds=lease_s)
        rows = self._waiting_rows(conn) if rows is None else rows
        waiting = [
            _waiting(r)
            for r in rows
            if r._mapping["heartbeat_at"] >= fresh or r._mapping["deployment_id"] == caller
        ]
        used = {
            site: (float(cores), int(mem))
            for site, cores, mem in conn.execute(
                select(
                    reservations.c.site,
                    func.sum(reservations.c.cores),
                    func.sum(reservations.c.mem_bytes),
                ).group_by(reservations.c.site)
            )
        }
        held_by_owner: dict[str, int] = {
            str(owner): int(n)
            for owner, n in conn.execute(
                select(_Q.c.owner, func.count())
                .select_from(
                    _Q.join(reservations, reservations.c.deployment_id == _Q.c.deployment_id)
                )
                .where(_Q.c.state == "admitted")
                .group_by(_Q.c.owner)
            )
        }
        now_rooms = {
            name: replace(
                room, used_cores=used.get(name, (0.0, 0))[0], used_mem=used.get(name, (0.0, 0))[1]
            )
            for name, room in rooms.items()
        }
        return plan(waiting, held_by_owner, now_rooms)
