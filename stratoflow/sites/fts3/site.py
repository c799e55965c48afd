"""The Compute face of an FTS3 site: it moves data between storage, it runs no jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.sites.base import Allocation, Compute, HostRequest, JobSpec, JobStatus


class FTS3Site(Compute):
    kind = "fts3"

    def _refuse(self) -> SiteError:
        return SiteError(
            f"fts3: site {self.name!r} is a transfer service (kind fts3); it cannot provision"
            " hosts or run jobs. Place the deployment on a compute site and stage through it."
        )

    def provision(self, deployment_id: str, hosts: list[HostRequest], ledger: Any) -> Allocation:
        raise self._refuse()

    def start_job(self, alloc: Allocation, job: JobSpec) -> str:
        raise self._refuse()

    def job_status(self, alloc: Allocation, handle: str) -> JobStatus:
        raise self._refuse()

    def job_log(self, alloc: Allocation, handle: str) -> Iterator[str]:
        raise self._refuse()

    def cancel_job(self, alloc: Allocation, handle: str) -> None:
        raise self._refuse()

    def teardown(self, deployment_id: str, ledger: Any, alloc: Allocation | None = None) -> None:
        return None  # transfers are cancelled by the staging step that submitted them
