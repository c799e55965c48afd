"""The Store: plans, deployments and step events (resources etc. in resources.py)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, Row, exc, func, insert, select, update

from stratoflow.store.admission import AdmissionOps
from stratoflow.store.base import RACE_RETRIES
from stratoflow.store.catalogue import CatalogueOps
from stratoflow.store.config import default_store_url
from stratoflow.store.engine import shared_engine
from stratoflow.store.migrate import ensure_migrated
from stratoflow.store.models import (
    DeleteConflict,
    Deployment,
    DeploymentStatus,
    NotFound,
    StoreError,
    Task,
)
from stratoflow.store.reaper_log import ReaperLog
from stratoflow.store.replica_ops import ReplicaOps
from stratoflow.store.resources import ResourceOps
from stratoflow.store.rules import RuleOps
from stratoflow.store.schema import deployments, plans, step_events, utcnow
from stratoflow.store.starts import StartOps

log = logging.getLogger(__name__)

# A traceback is useful; a multi-megabyte log pasted into an error message is not.
_MAX_MESSAGE = 64 * 1024


DELETE_STATES = (
    DeploymentStatus.DELETE_IN_PROGRESS,
    DeploymentStatus.DELETE_COMPLETE,
    DeploymentStatus.DELETE_FAILED,
)


def deployment_id_for(dag_id: str, run_id: str) -> str:
    """The deterministic id of the deployment behind a DAG run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"stratoflow:{dag_id}:{run_id}"))


def _deployment(row: Row[Any]) -> Deployment:
    m = row._mapping
    return Deployment(
        id=m["id"],
        owner=m["owner"],
        dag_id=m["dag_id"],
        run_id=m["run_id"],
        plan_hash=m["plan_hash"],
        inputs=dict(m["inputs"] or {}),
        status=DeploymentStatus(m["status"]),
        status_reason=m["status_reason"],
        outputs=dict(m["outputs"] or {}),
        site=m["site"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        task=m["task"],
        options=dict(m["options"] or {}),
    )


def _unreachable(engine: Engine, error: exc.OperationalError) -> str:
    where = engine.url.render_as_string(hide_password=True)
    hint = ""
    if engine.dialect.name == "postgresql":
        host = engine.url.query.get("host")
        if isinstance(host, str) and host.startswith("/"):
            hint = (
                "; this is the embedded PostgreSQL: `stratoflow up` starts it "
                "(or set STRATOFLOW_EMBEDDED_DB=sqlite for a SQLite store)"
            )
    return f"cannot reach the store at {where}: {str(error.orig).strip()}{hint}"


class Store(ResourceOps, AdmissionOps, ReaperLog, CatalogueOps, RuleOps, ReplicaOps, StartOps):
    """Stratoflow's own state. Safe to use from many processes at once.

    Every method is one short transaction; nothing returned holds a connection.
    """

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True) -> Store:
        """Open the store at ``url`` (default: :func:`default_store_url`), migrating it first.

        Cheap when the schema is current (one SELECT), so tasks can call it freely.
        """
        started = time.perf_counter()
        engine, shared = shared_engine(url or default_store_url())
        try:
            migrated = ensure_migrated(engine) if migrate else False
        except exc.OperationalError as e:
            engine.dispose()
            if engine.dialect.name == "sqlite":  # a lock or a bad file, not a server away
                raise
            raise StoreError(_unreachable(engine, e)) from e
        except Exception:
            engine.dispose()
            raise
        store = cls(engine, shared=shared)
        store.migrated = migrated
        log.debug("opened %r in %.1f ms", store, (time.perf_counter() - started) * 1000)
        return store

    # -- plans ------------------------------------------------------------------------------

    def save_plan(
        self, plan_hash: str, name: str, dag_id: str, plan: Mapping[str, Any], template_text: str
    ) -> None:
        """Store a compiled plan. Saving the same plan again is a no-op."""
        try:
            with self._write() as conn:
                exists = conn.execute(
                    select(plans.c.plan_hash).where(plans.c.plan_hash == plan_hash)
                ).first()
                if exists is None:
                    conn.execute(
                        insert(plans).values(
                            plan_hash=plan_hash,
                            name=name,
                            dag_id=dag_id,
                            plan=plan,
                            template_text=template_text,
                            created_at=utcnow(),
                        )
                    )
        except exc.IntegrityError as e:
            if self.get_plan(plan_hash) is not None:
                return  # a concurrent save of the same plan won
            raise StoreError(f"dag_id {dag_id!r} is already bound to another plan") from e

    def get_plan(self, plan_hash: str) -> dict[str, Any] | None:
        """The plan itself (the dict given to :meth:`save_plan`), or None."""
        rec = self.get_plan_record(plan_hash)
        return rec["plan"] if rec else None

    def get_plan_by_dag(self, dag_id: str) -> dict[str, Any] | None:
        """The plan compiled into DAG ``dag_id``, or None."""
        with self._read() as conn:
            row = conn.execute(select(plans.c.plan).where(plans.c.dag_id == dag_id)).first()
        return row.plan if row else None

    def get_plan_record(self, plan_hash: str) -> dict[str, Any] | None:
        """The whole row: plan_hash, name, dag_id, plan, template_text, created_at."""
        with self._read() as conn:
            row = conn.execute(select(plans).where(plans.c.plan_hash == plan_hash)).first()
        return dict(row._mapping) if row else None

    def list_plans(self) -> list[dict[str, Any]]:
        """plan_hash, name, dag_id, created_at of every plan, newest first."""
        q = select(plans.c.plan_hash, plans.c.name, plans.c.dag_id, plans.c.created_at)
        with self._read() as conn:
            rows = conn.execute(q.order_by(plans.c.created_at.desc(), plans.c.plan_hash))
            return [dict(r._mapping) for r in rows]

    # -- deployments ------------------------------------------------------------------------

    def create_deployment(
        self,
        dag_id: str,
        run_id: str,
        plan_hash: str,
        inputs: dict[str, Any],
        owner: str = "anonymous",
        id: str | None = None,
        options: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> Deployment:
        """Insert a new deployment in CREATE_IN_PROGRESS (with ``reason``, if given).

        Raises ``sqlalchemy.exc.IntegrityError`` if (dag_id, run_id) or the id exists; use
        :meth:`get_or_create_deployment` when that may happen.
        """
        now = utcnow()
        values: dict[str, Any] = {
            "id": id or str(uuid.uuid4()),
            "owner": owner,
            "dag_id": dag_id,
            "run_id": run_id,
            "plan_hash": plan_hash,
            "inputs": dict(inputs or {}),
            "status": DeploymentStatus.CREATE_IN_PROGRESS.value,
            "status_reason": reason,
            "outputs": {},
            "site": None,
            "created_at": now,
            "updated_at": now,
            "options": dict(options or {}),
        }
        with self._write() as conn:
            conn.execute(insert(deployments).values(**values))
        return Deployment(**{**values, "status": DeploymentStatus.CREATE_IN_PROGRESS})

    def get_or_create_deployment(
        self,
        dag_id: str,
        run_id: str,
        plan_hash: str,
        inputs: dict[str, Any],
        owner: str = "anonymous",
    ) -> Deployment:
        """The deployment of DAG run (dag_id, run_id), created if absent. Race-safe."""
        for _ in range(RACE_RETRIES):
            found = self.find_deployment(dag_id, run_id)
            if found is not None:
                return found
            try:
                return self.create_deployment(
                    dag_id, run_id, plan_hash, inputs, owner, id=deployment_id_for(dag_id, run_id)
                )
            except exc.IntegrityError:
                continue  # another process created it between our read and our insert
        raise StoreError(f"could not get or create the deployment of {dag_id}/{run_id}")

    def get_deployment(self, id: str) -> Deployment | None:
        with self._read() as conn:
            row = conn.execute(select(deployments).where(deployments.c.id == id)).first()
        return _deployment(row) if row else None

    def find_deployment(self, dag_id: str, run_id: str) -> Deployment | None:
        q = select(deployments).where(
            deployments.c.dag_id == dag_id, deployments.c.run_id == run_id
        )
        with self._read() as conn:
            row = conn.execute(q).first()
        return _deployment(row) if row else None

    def list_deployments(
        self, owner: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Deployment]:
        """Newest first; ``offset`` skips that many (a page's start)."""
        q = select(deployments)
        if owner is not None:
            q = q.where(deployments.c.owner == owner)
        q = q.order_by(deployments.c.created_at.desc(), deployments.c.id.desc())
        with self._read() as conn:
            return [_deployment(r) for r in conn.execute(q.limit(limit).offset(offset))]

    def count_deployments(self, owner: str | None = None) -> int:
        q = select(func.count()).select_from(deployments)
        if owner is not None:
            q = q.where(deployments.c.owner == owner)
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def set_status(
        self,
        id: str,
        status: str,
        reason: str | None = None,
        outputs: dict[str, Any] | None = None,
        site: str | None = None,
        task: str | None = None,
    ) -> bool:
        """Set a deployment's status. ``None`` arguments leave that field as it was
        (pass ``reason=""`` or ``task=""`` to clear one). Raises ValueError for an unknown
        status and NotFound for an unknown deployment. A CREATE_* status is not set over a
        DELETE_* one (returns False)."""
        values: dict[str, Any] = {
            "status": DeploymentStatus.parse(status).value,
            "updated_at": utcnow(),
        }
        if reason is not None:
            values["status_reason"] = reason[:_MAX_MESSAGE] or None
        if outputs is not None:
            values["outputs"] = dict(outputs)
        if site is not None:
            values["site"] = site
        if task is not None:
            values["task"] = task or None
        q = update(deployments).where(deployments.c.id == id)
        if values["status"].startswith("CREATE_"):
            # A create run that finishes after a delete began must not hide the delete.
            q = q.where(deployments.c.status.notin_([s.value for s in DELETE_STATES]))
        with self._write() as conn:
            before = conn.execute(
                select(deployments.c.status).where(deployments.c.id == id)
            ).scalar()
            if conn.execute(q.values(**values)).rowcount == 0:
                if before is not None:
                    log.info("deployment %s is being deleted: status %s not set", id, status)
                    return False
                raise NotFound(f"no deployment {id!r}")
            self._queue_callback(conn, id, before, values["status"])
        return True

    def set_task(self, id: str, task: str) -> None:
        """Say what works on a deployment now; only while it is in progress (a late step
        of a finished or deleted deployment leaves it alone). Unknown ids are ignored."""
        with self._write() as conn:
            conn.execute(
                update(deployments)
                .where(
                    deployments.c.id == id,
                    deployments.c.status.in_([s.value for s in DeploymentStatus if s.in_progress]),
                )
                .values(task=Task(task).value, updated_at=utcnow())
            )

    def begin_delete(self, id: str, reason: str) -> Deployment:
        """Move a deployment to DELETE_IN_PROGRESS; return it as it was before.

        Raises NotFound, or ``DeleteConflict`` when a delete is already running or done."""
        with self._write() as conn:
            row = conn.execute(
                select(deployments).where(deployments.c.id == id).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"no deployment {id!r}")
            before = _deployment(row)
            if before.status in (
                DeploymentStatus.DELETE_IN_PROGRESS,
                DeploymentStatus.DELETE_COMPLETE,
            ):
                raise DeleteConflict(
                    f"deployment {id} is {before.status.value}"
                    + (": a delete is running; wait for it" if before.status.in_progress else "")
                )
            conn.execute(
                update(deployments)
                .where(deployments.c.id == id)
                .values(
                    status=DeploymentStatus.DELETE_IN_PROGRESS.value,
                    status_reason=reason[:_MAX_MESSAGE] or None,
                    task=Task.DEPLOYER.value,
                    updated_at=utcnow(),
                )
            )
        return before

    def reset_stuck_delete(self, id: str, reason: str) -> None:
        """DELETE_IN_PROGRESS -> DELETE_FAILED, so that a delete whose run died can be asked
        again (INDIGO's ``PATCH {status: DELETE_FAILED}``). Raises NotFound, or
        ``DeleteConflict`` in any other state."""
        with self._write() as conn:
            done = conn.execute(
                update(deployments)
                .where(deployments.c.id == id)
                .where(deployments.c.status == DeploymentStatus.DELETE_IN_PROGRESS.value)
                .values(
                    status=DeploymentStatus.DELETE_FAILED.value,
                    status_reason=reason[:_MAX_MESSAGE] or None,
                    task=None,
                    updated_at=utcnow(),
                )
            ).rowcount
            if done:
                self._queue_callback(conn, id, "DELETE_IN_PROGRESS", "DELETE_FAILED")
                return
            row = conn.execute(select(deployments.c.status).where(deployments.c.id == id)).first()
        if row is None:
            raise NotFound(f"no deployment {id!r}")
        raise DeleteConflict(
            f"deployment {id} is {row.status}: only a DELETE_IN_PROGRESS deployment can be"
            " reset to DELETE_FAILED"
        )

    # -- step events ------------------------------------------------------------------------

    def record_step_event(
        self,
        deployment_id: str,
        step: str,
        kind: str,
        message: str = "",
        map_index: int = -1,
        try_number: int = 1,
    ) -> None:
        """Record what happened to one try of one step ('failed', 'retry', 'succeeded', ...)."""
        with self._write() as conn:
            conn.execute(
                insert(step_events).values(
                    deployment_id=deployment_id,
                    step=step,
                    map_index=int(map_index),
                    try_number=int(try_number),
                    kind=str(kind).lower(),
                    message=str(message or "")[:_MAX_MESSAGE],
                    created_at=utcnow(),
                )
            )

    def step_events(self, deployment_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """A deployment's step events in the order they were recorded."""
        q = select(step_events).where(step_events.c.deployment_id == deployment_id)
        if kind is not None:
            q = q.where(step_events.c.kind == kind.lower())
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(step_events.c.id))]
