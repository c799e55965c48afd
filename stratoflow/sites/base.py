"""The two interfaces every site backend implements: Compute and Storage.

Operators talk only to these. Values that cross task boundaries (Allocation, JobHandle,
StagedFile) are plain JSON-serialisable dataclasses so they can travel through XCom.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


class ResourceLedger(Protocol):
    """Write-ahead record of cloud resources, implemented by ``stratoflow.store.Store``.

    ``intend`` is called *before* the create call; the returned key travels with the
    resource (tag, label or name) so a retried task adopts instead of creating twice.
    """

    def intend_resource(
        self, deployment_id: str, site: str, kind: str, node: str, index: int
    ) -> Any: ...  # returns a record with .key
    def mark_resource_created(
        self, key: str, external_id: str, data: dict | None = None
    ) -> None: ...
    def mark_resource_deleted(self, key: str) -> None: ...
    def resources(self, deployment_id: str, include_deleted: bool = False) -> list[Any]: ...


@dataclass(frozen=True)
class HostRequest:
    node: str
    count: int = 1
    num_cpus: int = 1
    mem_bytes: int = 1 << 30
    disk_bytes: int | None = None
    gpus: int = 0
    image: str | None = None
    public_endpoint: bool = False


@dataclass
class Allocation:
    """What provisioning produced at one site, for one deployment."""

    site: str
    kind: str
    deployment_id: str
    workdir: str  # where the deployment's data and job outputs live at the site
    cores: int  # cores reserved for the deployment: bounds its concurrency
    hosts: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # backend-specific, never secrets

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Allocation:
        return cls(**d)


@dataclass(frozen=True)
class JobSpec:
    step: str  # plan step id, e.g. "analyse"
    index: int  # map index (-1 when not mapped)
    command: list[str] | str  # argv, or a shell string; placeholders already substituted
    inputs: list[str] = field(default_factory=list)  # absolute paths at the site
    env: dict[str, str] = field(default_factory=dict)
    num_cpus: int = 1
    mem_bytes: int = 1 << 30
    timeout_s: float = 3600.0
    image: str | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> content


@dataclass
class JobStatus:
    handle: str
    state: str  # "running" | "succeeded" | "failed"
    exit_code: int | None = None
    reason: str = ""  # human-readable cause when failed (last stderr lines, signal, timeout)
    outdir: str | None = None  # the job's committed output directory once succeeded
    core_seconds: float = 0.0

    @property
    def done(self) -> bool:
        return self.state != "running"


@dataclass(frozen=True)
class TaggedResource:
    """A resource found at a site carrying Stratoflow's tags, as the orphan reaper sees it."""

    kind: str  # the resource record's kind: "server", "floating_ip", "instance", "namespace"
    external_id: str
    key: str  # the idempotency key it carries ("" when the tag is missing)
    created_at: datetime | None  # timezone-aware; None when the site does not say


def parse_time(value: Any) -> datetime | None:
    """A cloud API's timestamp (ISO 8601 string or datetime) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Compute(ABC):
    """Provision hosts at a site, run jobs on them, tear them down."""

    kind: str

    def __init__(self, name: str, config: dict[str, Any]):
        self.name = name
        self.config = config

    @abstractmethod
    def provision(
        self, deployment_id: str, hosts: list[HostRequest], ledger: ResourceLedger
    ) -> Allocation:
        """Create (or adopt, when records show a prior attempt) the deployment's resources.

        On failure it removes what this attempt created before raising ``SiteError``.
        """

    @abstractmethod
    def start_job(self, alloc: Allocation, job: JobSpec) -> str:
        """Start a job without waiting; return a handle. Starting the same
        (step, index) again while it runs adopts the running job."""

    @abstractmethod
    def job_status(self, alloc: Allocation, handle: str) -> JobStatus: ...

    @abstractmethod
    def job_log(self, alloc: Allocation, handle: str) -> Iterator[str]:
        """The job's stdout and stderr lines, for the Airflow task log."""

    @abstractmethod
    def cancel_job(self, alloc: Allocation, handle: str) -> None: ...

    @abstractmethod
    def teardown(
        self, deployment_id: str, ledger: ResourceLedger, alloc: Allocation | None = None
    ) -> None:
        """Delete every resource the ledger holds for the deployment at this site.
        Idempotent; keeps staged-out results (they live outside the allocation)."""

    def boot_wait(self, alloc: Allocation) -> tuple[str, dict[str, Any]] | None:
        """For sites whose hosts take minutes to boot: ``(trigger class path, kwargs)`` the
        provision task defers on after ``provision_start``, then ``provision_finish``.
        None (the default) means ``provision`` does it all in one call."""
        return None

    def list_outputs(self, alloc: Allocation, outdir: str) -> list[str]:
        """Every file under a finished job's ``outdir``, as the site names them (paths on a
        filesystem the workers share; sites without one return URLs their storage serves)."""
        import os

        return sorted(
            os.path.join(root, name) for root, _dirs, names in os.walk(outdir) for name in names
        )

    def list_tagged(self) -> list[TaggedResource]:
        """Every resource at this site that carries Stratoflow's tags (for the reaper).
        Sites that create nothing outside their sandbox directory have none."""
        return []

    def delete_tagged(self, resource: TaggedResource) -> None:
        """Delete one resource ``list_tagged`` returned; gone already is not an error."""
        raise NotImplementedError(f"{self.kind} sites list no tagged resources")


@dataclass
class StagedFile:
    url: str  # where the verified copy now is
    size: int
    adler32: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Storage(ABC):
    """Copy files between endpoints, verifying checksums."""

    schemes: tuple[str, ...] = ()

    @abstractmethod
    def copy(
        self,
        source_url: str,
        dest_url: str,
        *,
        adler32: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        overwrite: bool = False,
    ) -> StagedFile:
        """Copy one file. The copy is written under a temporary name, verified against
        the declared checksums (and size), then renamed into place; a mismatch raises
        ``ChecksumMismatch`` and leaves nothing at ``dest_url``."""
