"""The Compute face of a storage-only site (s3, fts3, onedata).

The catalogue requires every site to have a compute kind; such a site refuses to
provision or run jobs, with a message saying what it is, and has nothing to tear down.
"""

from __future__ import annotations

from collections.abc import Iterator

from stratoflow.errors import SiteError
from stratoflow.sites.base import (
    Allocation,
    Compute,
    HostRequest,
    JobSpec,
    JobStatus,
    ResourceLedger,
)


class StorageOnlySite(Compute):
    kind = "storage"
    what = "a storage service"  # e.g. "an object store", "a transfer service"

    def _refuse(self) -> SiteError:
        return SiteError(
            f"{self.kind}: site {self.name!r} is {self.what} (kind {self.kind}); it cannot"
            " provision hosts or run jobs. Place the deployment on a compute site and stage"
            " data through it."
        )

    def provision(
        self, deployment_id: str, hosts: list[HostRequest], ledger: ResourceLedger
    ) -> Allocation:
        raise self._refuse()

    def start_job(self, alloc: Allocation, job: JobSpec) -> str:
        raise self._refuse()

    def job_status(self, alloc: Allocation, handle: str) -> JobStatus:
        raise self._refuse()

    def job_log(self, alloc: Allocation, handle: str) -> Iterator[str]:
        raise self._refuse()

    def cancel_job(self, alloc: Allocation, handle: str) -> None:
        raise self._refuse()

    def teardown(
        self, deployment_id: str, ledger: ResourceLedger, alloc: Allocation | None = None
    ) -> None:
        return None  # nothing is ever provisioned here
