"""Deployments recorded before their DAG run is triggered (the INDIGO API answers first and
triggers in the background): while the trigger is pending, the deployment's reason says
so, and a deployment left that way by an API server that stopped is failed, not kept."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from stratoflow.store.callbacks import CallbackOps
from stratoflow.store.models import DeploymentStatus
from stratoflow.store.schema import deployments, utcnow

#: The status reason of a deployment whose run is still to be triggered.
STARTING = "recorded; its run is being started"


class StartOps(CallbackOps):
    def run_started(self, id: str) -> None:
        """Its run is triggered: drop the STARTING reason (unless a task already set
        another)."""
        with self._write() as conn:
            conn.execute(
                update(deployments)
                .where(deployments.c.id == id)
                .where(deployments.c.status_reason == STARTING)
                .values(status_reason=None, updated_at=utcnow())
            )

    def fail_unstarted(self, older_than_s: float, reason: str) -> list[str]:
        """Fail the deployments whose run was never triggered: still STARTING after
        ``older_than_s``. Returns their ids."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        stale = (
            (deployments.c.status == DeploymentStatus.CREATE_IN_PROGRESS.value)
            & (deployments.c.status_reason == STARTING)
            & (deployments.c.updated_at < cutoff)
        )
        with self._write() as conn:
            ids = [r.id for r in conn.execute(select(deployments.c.id).where(stale))]
            if ids:
                conn.execute(
                    update(deployments)
                    .where(stale & deployments.c.id.in_(ids))
                    .values(
                        status=DeploymentStatus.CREATE_FAILED.value,
                        status_reason=reason,
                        task=None,
                        updated_at=utcnow(),
                    )
                )
                for id in ids:
                    self._queue_callback(conn, id, "CREATE_IN_PROGRESS", "CREATE_FAILED")
        return ids
