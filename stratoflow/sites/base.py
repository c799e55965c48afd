"""The two interfaces every site backend implements: Compute and Storage.

Operators talk only to these. Values that cross task boundaries (Allocation, JobHandle,
StagedFile) are plain JSON-serialisable dataclasses so they can travel through XCom.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stratoflow.sites.waits import WaitSpec
    from stratoflow.store.models import ResourceRecord

log = logging.getLogger(__name__)


class ResourceLedger(Protocol):
    """Write-ahead record of cloud resources and capacity reservations, implemented by
    ``stratoflow.store.Store``. Every method a backend calls is declared here.

    ``intend_resource`` is called *before* the create call; the returned record's key
    travels with the resource (tag, label or name) so a retried task adopts instead of
    creating twice.
    """

    def intend_resource(
        self,
        deployment_id: str,
        site: str,
        kind: str,
        node: str,
        index: int,
        idempotency_key: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> ResourceRecord: ...
    def mark_resource_created(
        self, key: str, external_id: str, data: dict[str, Any] | None = None
    ) -> ResourceRecord: ...
    def mark_resource_deleting(self, key: str) -> ResourceRecord: ...
    def mark_resource_deleted(self, key: str) -> ResourceRecord: ...
    def mark_resource_failed(self, key: str, reason: str) -> ResourceRecord: ...
    def resources(
        self, deployment_id: str, include_deleted: bool = False
    ) -> list[ResourceRecord]: ...
    def reserve(
        self,
        site: str,
        deployment_id: str,
        cores: float,
        mem_bytes: int,
        capacity_cores: float,
        capacity_mem_bytes: int,
    ) -> bool: ...
    def release(self, site: str, deployment_id: str) -> None: ...


@dataclass(frozen=True)
class Capacity:
    """What a compute site offers the broker. ``None`` means the site gives no figure;
    ``quota_decides`` means the cloud's own quota answers at provision time instead."""

    cores: int | None
    mem_bytes: int | None
    quota_decides: bool = False


@dataclass(frozen=True)
class VolumeRequest:
    """A block volume for each instance of a host (a TOSCA BlockStorage it attaches)."""

    node: str  # the BlockStorage node's name
    size_bytes: int
    device: str | None = None  # None: the cloud picks

    @property
    def size_gib(self) -> int:
        """Clouds size volumes in whole GiB: rounded up, at least 1."""
        return max(1, -(-self.size_bytes // (1 << 30)))


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
    #: Only on kinds whose registry entry says ``block_storage`` (the broker sees to it).
    volumes: tuple[VolumeRequest, ...] = ()


@dataclass
class Allocation:
    """What provisioning produced at one site, for one deployment."""

    site: str
    kind: str
    deployment_id: str
    workdir: str  # where the deployment's data and job outputs live at the site
    cores: int  # cores reserved for the deployment: bounds its concurrency
    #: One entry per instance: ``node``, ``index``, ``id`` (the physical id), ``address``
    #: and ``public_address`` (None when it has none), then the backend's own keys. The
    #: template's outputs read a Compute's attributes from these.
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

    def capacity(self) -> Capacity:
        """What the site offers the broker. The default reads integer ``cores`` and
        ``memory`` from the catalogue entry; kinds that resolve "auto" or defaults, or
        whose cloud quota decides, override it."""
        cores, memory = self.config.get("cores"), self.config.get("memory")
        return Capacity(
            cores if isinstance(cores, int) else None,
            memory if isinstance(memory, int) else None,
        )

    def provision_start(
        self, deployment_id: str, hosts: list[HostRequest], ledger: ResourceLedger
    ) -> Allocation:
        """The first half of provisioning, for sites whose hosts take minutes to boot:
        create (or adopt) and return without waiting. Followed by ``boot_wait`` and, once
        the hosts are up, ``provision_finish``. The default does it all in one call."""
        return self.provision(deployment_id, hosts, ledger)

    def boot_wait(self, alloc: Allocation) -> WaitSpec | None:
        """What the provision task waits for in the triggerer after ``provision_start``
        (see ``sites/waits.py``); the final event is handed to ``provision_finish`` only
        when its status is ``active``. None (the default): the allocation is ready."""
        return None

    def provision_finish(self, alloc: Allocation, ledger: ResourceLedger) -> Allocation:
        """After the boot wait: addresses, agents. Cleans up the attempt on failure."""
        return alloc

    #: Set by the provision step on a deployment's last try when its submitter asked to
    #: keep a failed attempt for debugging (keepLastAttempt): then nothing is removed.
    keep_failed_attempt: bool = False

    #: Set by the provision step: when this attempt must be up by (epoch seconds), from
    #: the submitter's providerTimeoutMins and timeoutMins. None: the site's bounds only.
    attempt_deadline: float | None = None

    def boot_seconds(self, site_timeout_s: float) -> float:
        """How long a boot wait in this thread (a VM to run, an agent to answer, a volume
        to attach) may last from now: the site's own bound, cut short by the attempt's.
        A wait in the triggerer is cut the same way (``execution/deadlines.py``)."""
        if self.attempt_deadline is None:
            return site_timeout_s
        return max(min(site_timeout_s, self.attempt_deadline - time.time()), 0.0)

    def cleanup_attempt(
        self, deployment_id: str, ledger: ResourceLedger, cause: BaseException
    ) -> str:
        """Delete what a failed provision attempt holds here. Airflow never runs the
        teardown of a setup that failed, so this is the only cleanup until the reaper.
        It never raises (it must not hide ``cause``); it returns a note for the error
        message: "" when everything is gone."""
        if self.keep_failed_attempt:
            log.info("%s: keeping the failed attempt of %s (%s)", self.name, deployment_id, cause)
            return " (its resources are kept for debugging: keepLastAttempt)"
        try:
            self.remove_attempt(deployment_id, ledger)
        except Exception as e:
            log.error("%s: cleanup after %r left resources: %s", self.name, cause, e)
            return f" (cleanup incomplete, left for the reaper: {e})"
        return ""

    def remove_attempt(self, deployment_id: str, ledger: ResourceLedger) -> None:
        """What ``cleanup_attempt`` removes. The default tears the deployment down here."""
        self.teardown(deployment_id, ledger)

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

    def checksums(self, url: str) -> StagedFile:
        """What is at ``url`` now, read back from the storage: its size and checksums (the
        lifecycle policies verify replicas with it). FileNotFoundError when nothing is
        there. Backends that cannot read a file back refuse."""
        from stratoflow.errors import ChecksumsUnsupported

        raise ChecksumsUnsupported(f"{url}: {type(self).__name__} cannot read a file's checksums")

    def delete(self, url: str) -> None:
        """Remove the file at ``url`` (a lifecycle policy's deletion); gone already is not
        an error. Backends that cannot delete refuse."""
        from stratoflow.errors import StagingRefused

        raise StagingRefused(f"{url}: {type(self).__name__} cannot delete files")

    def endpoint_fault(self, base_url: str) -> str | None:
        """Why this storage cannot keep lifecycle replicas under ``base_url`` (copy them in,
        read them back, delete them), or None. Asked when the catalogue is read, so that a
        misplaced endpoint is refused there and not at a policy's first copy."""
        return None

    def bulk_transfer(self) -> BulkTransfer | None:
        """The backend's bulk third-party transfer service (FTS3), or None when it copies
        file by file in the task."""
        return None

    def replication(self) -> Replication | None:
        """The backend's QoS replication (OneData), or None when it has none."""
        return None


class BulkTransfer(ABC):
    """A service that moves many files itself, like Rucio's ``Transfertool``: submit,
    wait in the triggerer, then read each file's outcome. Cancel on failure or kill."""

    #: The service's name as users know it, for logs and errors ("FTS3").
    service: str

    @abstractmethod
    def submit(
        self,
        files: Iterable[Any],
        *,
        key: str | None = None,
        attempt: int = 0,
        overwrite: bool | None = None,
    ) -> list[str]:
        """Submit every (source, destination) pair; return the job ids. The same
        ``key`` and ``attempt`` adopt the jobs a lost reply already created."""

    @abstractmethod
    def wait_for(self, job_ids: Sequence[str]) -> WaitSpec:
        """The wait (in the triggerer) until the jobs end; its event goes to ``outcome``."""

    @abstractmethod
    def outcome(self, files: Sequence[dict], event: dict[str, Any]) -> list[StagedFile]:
        """Each file's verified copy, from the trigger's final event; raises
        ``StagingError`` naming the files that failed."""

    @abstractmethod
    def file_outcomes(self, files: Sequence[dict], event: dict[str, Any]) -> dict[str, str | None]:
        """Each destination's outcome from the wait's final event: None for a verified
        copy, else why it failed (a lifecycle run records each file on its own)."""

    @abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Cancel jobs that have not ended; ended or unknown jobs are not an error."""


class Replication(ABC):
    """Replicas kept by the storage system itself, through QoS requirements."""

    #: The service's name as users know it, for logs and errors ("OneData").
    service: str

    @abstractmethod
    def require_replicas(self, urls: list[str], expression: str, replicas: int) -> list[str]:
        """Ask for ``replicas`` copies of each file on storage matching ``expression``;
        return the requirement ids to wait on."""

    @abstractmethod
    def replicas_wait(self, requirement_ids: list[str]) -> WaitSpec:
        """The wait (in the triggerer) until the requirements are met or impossible; its
        event has ``status`` ``success`` or ``failed`` and each requirement's ``qos``."""
