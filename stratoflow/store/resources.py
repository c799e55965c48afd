"""Write-ahead resource records, capacity reservations and usage accounting."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, exc, func, insert, select, text, update

from stratoflow.store.base import RACE_RETRIES, StoreBase
from stratoflow.store.models import (
    LIVE_STATES,
    NotFound,
    ResourceRecord,
    ResourceState,
    StoreError,
    resource_key,
)
from stratoflow.store.schema import (
    admission_queue,
    deployments,
    reservations,
    resources,
    usage,
    utcnow,
)

# Tolerance for float core counts (0.1 + 0.2 cores must fit in 0.3).
_EPS = 1e-9


def _record(row: Row[Any]) -> ResourceRecord:
    m = row._mapping
    return ResourceRecord(
        id=m["id"],
        idempotency_key=m["idempotency_key"],
        deployment_id=m["deployment_id"],
        site=m["site"],
        kind=m["kind"],
        node=m["node"],
        idx=m["idx"],
        external_id=m["external_id"],
        state=ResourceState(m["state"]),
        data=dict(m["data"] or {}),
        reason=m["reason"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _site_lock_key(site: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"stratoflow.reserve:{site}".encode()).digest()[:8], "big", signed=True
    )


class ResourceOps(StoreBase):
    # -- write-ahead resource records -------------------------------------------------------

    def intend_resource(
        self,
        deployment_id: str,
        site: str,
        kind: str,
        node: str,
        index: int,
        idempotency_key: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> ResourceRecord:
        """Record the intent to create a resource, before any cloud call.

        If the key is already recorded the existing record is returned unchanged, so a
        retried task adopts what its earlier try created (check ``.state``, ``.site`` and
        ``.external_id``). A record in state ``deleted`` is re-armed as ``intended`` (with
        the new site, kind and data): the old resource is gone and the name may be reused,
        e.g. by failover to another site.
        """
        key = idempotency_key or resource_key(deployment_id, node, index)
        q = select(resources).where(resources.c.idempotency_key == key)
        for _ in range(RACE_RETRIES):
            now = utcnow()
            try:
                with self._write() as conn:
                    self._refuse_if_deleting(conn, deployment_id, key)
                    row = conn.execute(q).first()
                    if row is None:
                        conn.execute(
                            insert(resources).values(
                                idempotency_key=key,
                                deployment_id=deployment_id,
                                site=site,
                                kind=kind,
                                node=node,
                                idx=int(index),
                                external_id=None,
                                state=ResourceState.INTENDED.value,
                                data=dict(data or {}),
                                reason=None,
                                created_at=now,
                                updated_at=now,
                            )
                        )
                        return _record(conn.execute(q).one())
                    if row.deployment_id != deployment_id:
                        raise StoreError(
                            f"idempotency key {key!r} belongs to deployment {row.deployment_id}"
                        )
                    if row.state != ResourceState.DELETED.value:
                        return _record(row)
                    conn.execute(
                        update(resources)
                        .where(resources.c.id == row.id)
                        .values(
                            site=site,
                            kind=kind,
                            external_id=None,
                            state=ResourceState.INTENDED.value,
                            data=dict(data or {}),
                            reason=None,
                            updated_at=now,
                        )
                    )
                    return _record(conn.execute(q).one())
            except exc.IntegrityError:
                continue  # another process inserted the key first; adopt its row
        raise StoreError(f"could not record resource {key!r}: unique key contention")

    @staticmethod
    def _refuse_if_deleting(conn: Connection, deployment_id: str, key: str) -> None:
        """Nothing new is created for a deployment being deleted: a create run stopped by
        the delete may still be in its last seconds."""
        status = conn.execute(
            select(deployments.c.status).where(deployments.c.id == deployment_id)
        ).scalar()
        if isinstance(status, str) and status.startswith("DELETE_"):
            raise StoreError(f"deployment {deployment_id} is {status}: {key} is not created")

    def _transition(
        self,
        key: str,
        state: ResourceState,
        set_values: dict[str, Any] | None = None,
        merge: dict[str, Any] | None = None,
    ) -> ResourceRecord:
        q = select(resources).where(resources.c.idempotency_key == key)
        with self._write() as conn:
            row = conn.execute(q).first()
            if row is None:
                raise NotFound(f"no resource with idempotency key {key!r}")
            values: dict[str, Any] = {"state": state.value, "updated_at": utcnow()}
            values.update(set_values or {})
            if merge:
                values["data"] = {**(row.data or {}), **merge}
            conn.execute(update(resources).where(resources.c.id == row.id).values(**values))
            return _record(conn.execute(q).one())

    def mark_resource_created(
        self, key: str, external_id: str, data: dict[str, Any] | None = None
    ) -> ResourceRecord:
        """The site created it. ``data`` is merged into the record's data (never secrets)."""
        return self._transition(
            key, ResourceState.CREATED, {"external_id": str(external_id), "reason": None}, data
        )

    def mark_resource_deleting(self, key: str) -> ResourceRecord:
        return self._transition(key, ResourceState.DELETING)

    def mark_resource_deleted(self, key: str) -> ResourceRecord:
        return self._transition(key, ResourceState.DELETED)

    def mark_resource_failed(self, key: str, reason: str) -> ResourceRecord:
        """Creation or deletion failed; the resource may still exist at the site."""
        return self._transition(key, ResourceState.FAILED, {"reason": str(reason)})

    def resource(self, key: str) -> ResourceRecord | None:
        with self._read() as conn:
            row = conn.execute(select(resources).where(resources.c.idempotency_key == key)).first()
        return _record(row) if row is not None else None

    def resources(self, deployment_id: str, include_deleted: bool = False) -> list[ResourceRecord]:
        q = select(resources).where(resources.c.deployment_id == deployment_id)
        if not include_deleted:
            q = q.where(resources.c.state != ResourceState.DELETED.value)
        with self._read() as conn:
            return [_record(r) for r in conn.execute(q.order_by(resources.c.id))]

    def live_resources(self, site: str | None = None) -> list[ResourceRecord]:
        """Records that may still exist at a site (intended, created, deleting)."""
        q = select(resources).where(resources.c.state.in_([s.value for s in LIVE_STATES]))
        if site is not None:
            q = q.where(resources.c.site == site)
        with self._read() as conn:
            return [_record(r) for r in conn.execute(q.order_by(resources.c.id))]

    # -- capacity reservations --------------------------------------------------------------

    def _lock_site(self, conn: Connection, site: str) -> None:
        # SQLite writers are already serialised by BEGIN IMMEDIATE. PostgreSQL needs a lock
        # per site, held to the end of the transaction, so sum-then-insert is atomic.
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _site_lock_key(site)})

    def reserve(
        self,
        site: str,
        deployment_id: str,
        cores: float,
        mem_bytes: int,
        capacity_cores: float,
        capacity_mem_bytes: int,
    ) -> bool:
        """Atomically reserve capacity at ``site`` for a deployment.

        True if granted now or already held by this deployment (the held amounts stay as
        they were); False if it would exceed the site's capacity.
        """
        if cores < 0 or mem_bytes < 0:
            raise ValueError("cores and mem_bytes must be >= 0")
        with self._write() as conn:
            self._lock_site(conn, site)
            held = conn.execute(
                select(reservations.c.site).where(
                    reservations.c.site == site, reservations.c.deployment_id == deployment_id
                )
            ).first()
            if held is not None:
                return True
            used_cores, used_mem = conn.execute(
                select(
                    func.coalesce(func.sum(reservations.c.cores), 0.0),
                    func.coalesce(func.sum(reservations.c.mem_bytes), 0),
                ).where(reservations.c.site == site)
            ).one()
            if float(used_cores) + cores > capacity_cores + _EPS:
                return False
            if int(used_mem) + int(mem_bytes) > capacity_mem_bytes:
                return False
            conn.execute(
                insert(reservations).values(
                    site=site,
                    deployment_id=deployment_id,
                    cores=float(cores),
                    mem_bytes=int(mem_bytes),
                    created_at=utcnow(),
                )
            )
            return True

    def release(self, site: str, deployment_id: str) -> None:
        """Give back a reservation; releasing one that is not held is not an error."""
        with self._write() as conn:
            gone = conn.execute(
                reservations.delete().where(
                    reservations.c.site == site, reservations.c.deployment_id == deployment_id
                )
            )
            if gone.rowcount:
                self._stamp_released(conn, deployment_id)

    def release_all(self, deployment_id: str) -> None:
        """Give back whatever the deployment holds at any site."""
        with self._write() as conn:
            gone = conn.execute(
                reservations.delete().where(reservations.c.deployment_id == deployment_id)
            )
            if gone.rowcount:
                self._stamp_released(conn, deployment_id)

    def _stamp_released(self, conn: Connection, deployment_id: str) -> None:
        # The admission record keeps when the room was held, for the history (and audits).
        conn.execute(
            update(admission_queue)
            .where(
                admission_queue.c.deployment_id == deployment_id,
                admission_queue.c.admitted_at.is_not(None),
                admission_queue.c.released_at.is_(None),
            )
            .values(released_at=utcnow())
        )

    def reservations_at(self, site: str) -> list[tuple[str, datetime]]:
        """``(deployment id, reserved at)`` of each reservation held at ``site``."""
        with self._read() as conn:
            rows = conn.execute(
                select(reservations.c.deployment_id, reservations.c.created_at)
                .where(reservations.c.site == site)
                .order_by(reservations.c.created_at)
            ).all()
        return [(str(d), created) for d, created in rows]

    def reserved(self, site: str) -> dict[str, float | int]:
        """What is currently reserved at a site: ``{cores, mem_bytes, deployments}``."""
        with self._read() as conn:
            cores, mem, n = conn.execute(
                select(
                    func.coalesce(func.sum(reservations.c.cores), 0.0),
                    func.coalesce(func.sum(reservations.c.mem_bytes), 0),
                    func.count(),
                ).where(reservations.c.site == site)
            ).one()
        return {"cores": float(cores), "mem_bytes": int(mem), "deployments": int(n)}

    # -- usage accounting -------------------------------------------------------------------

    def add_usage(
        self,
        deployment_id: str,
        site: str,
        step: str,
        core_seconds: float = 0.0,
        bytes_moved: int = 0,
    ) -> None:
        with self._write() as conn:
            conn.execute(
                insert(usage).values(
                    deployment_id=deployment_id,
                    site=site,
                    step=step,
                    core_seconds=float(core_seconds),
                    bytes_moved=int(bytes_moved),
                    created_at=utcnow(),
                )
            )

    def usage_totals(self, deployment_id: str) -> dict[str, float | int]:
        """``{core_seconds: float, bytes_moved: int}`` summed over a deployment's steps."""
        with self._read() as conn:
            cs, bm = conn.execute(
                select(
                    func.coalesce(func.sum(usage.c.core_seconds), 0.0),
                    func.coalesce(func.sum(usage.c.bytes_moved), 0),
                ).where(usage.c.deployment_id == deployment_id)
            ).one()
        return {"core_seconds": float(cs), "bytes_moved": int(bm)}
