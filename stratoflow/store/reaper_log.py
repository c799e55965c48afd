"""The orphan reaper's record: one row per resource it deleted, failed to delete, or (in a
dry run) would have deleted, so an operator can always answer "who removed my VM?"."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from stratoflow.store.base import StoreBase
from stratoflow.store.schema import reaper_actions, utcnow

_MAX_REASON = 4000


class ReaperLog(StoreBase):
    def record_reaper_action(
        self,
        *,
        run_id: str,
        site: str,
        kind: str,
        external_id: str,
        key: str,
        deployment_id: str | None,
        action: str,
        reason: str,
    ) -> None:
        with self._write() as conn:
            conn.execute(
                insert(reaper_actions).values(
                    run_id=run_id,
                    site=site,
                    kind=kind,
                    external_id=external_id,
                    idempotency_key=key,
                    deployment_id=deployment_id,
                    action=action,
                    reason=reason[:_MAX_REASON],
                    created_at=utcnow(),
                )
            )

    def reaper_actions(
        self, site: str | None = None, run_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The newest reaper actions first."""
        q = select(reaper_actions)
        if site is not None:
            q = q.where(reaper_actions.c.site == site)
        if run_id is not None:
            q = q.where(reaper_actions.c.run_id == run_id)
        q = q.order_by(reaper_actions.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
