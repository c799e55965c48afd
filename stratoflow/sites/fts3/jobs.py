"""Pure helpers of the FTS3 backend: configuration, batching, idempotency keys, states.

No network and no client import here, so this is fast to test and safe to import anywhere.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, Strict

from stratoflow.errors import StagingRefused
from stratoflow.sites.checksums import normalise
from stratoflow.sites.fields import Flag, Interval, NonEmptyText, Timeout, expect
from stratoflow.sites.schema import SiteSchema

SCHEMES = ("davs", "root", "gsiftp", "srm", "https")
JOB_ACTIVE = frozenset({"STAGING", "SUBMITTED", "READY", "ACTIVE", "DELETE", "ARCHIVING"})
JOB_TERMINAL = frozenset({"FINISHED", "FINISHEDDIRTY", "FAILED", "CANCELED"})
FILE_FAILED = frozenset({"FAILED", "CANCELED"})
ALL_JOB_STATES = ",".join(sorted(JOB_ACTIVE | JOB_TERMINAL))
# FTS's own limits as Rucio uses them: 200 files per job, 100 job ids per bulk status query.
MAX_FILES_PER_JOB = 1000  # FTS's config suggests bulks of 100-1000
MAX_IDS_PER_REQUEST = 200  # keeps GET /jobs/{ids} URLs under ~8 KiB


# "source" and "none" never compare the destination's checksum, so FTS would report a
# corrupted copy as FINISHED: Stratoflow never reports an unverified copy.
ChecksumMode = Annotated[
    Literal["both", "target"], expect("'both' or 'target': only these verify the copy")
]
Url = Annotated[str, Strict(), Field(pattern="://"), expect("a URL like https://fts.example:8446")]


class FTS3Config(SiteSchema):
    conn_id: NonEmptyText = Field(description="the Airflow Connection of the endpoint")
    endpoint: Url | None = Field(
        None, description="informational cross-check; the Connection's host is used"
    )
    max_files_per_job: Annotated[
        int, Strict(), Field(ge=1, le=MAX_FILES_PER_JOB), expect(f"1..{MAX_FILES_PER_JOB}")
    ] = Field(200, description="files per FTS job")
    poll_ids_per_request: Annotated[
        int, Strict(), Field(ge=1, le=MAX_IDS_PER_REQUEST), expect(f"1..{MAX_IDS_PER_REQUEST}")
    ] = Field(100, description="job ids per bulk status query")
    verify_checksum: ChecksumMode = Field("both", description="how FTS verifies each copy")
    overwrite: Flag = Field(False, description="let FTS overwrite existing destinations")
    bring_online: Annotated[int, Strict(), expect("an integer (seconds; -1: no tape recall)")] = (
        Field(-1, description="seconds FTS may wait for a tape recall; -1: none")
    )
    retry: Annotated[int, Strict(), Field(ge=0), expect("an integer >= 0")] = Field(
        0, description="FTS's own retries of a failed file"
    )
    priority: Annotated[int, Strict(), Field(ge=1, le=5), expect("1..5")] | None = Field(
        None, description="FTS job priority"
    )
    poll_interval_s: Interval = Field(10.0, description="seconds between status polls")
    copy_timeout_s: Timeout = Field(24 * 3600.0, description="how long a transfer may take")
    retry_attempts: Annotated[int, Strict(), Field(ge=1, le=20), expect("1..20")] = Field(
        5, description="attempts per API call on 5xx or lost replies"
    )
    retry_backoff_s: Interval = Field(1.0, description="first back-off, doubled each time")

    @classmethod
    def from_dict(cls, name: str, config: dict[str, Any] | None) -> FTS3Config:
        return cls.parse(name, config)


@dataclass(frozen=True)
class FileSpec:
    source: str
    destination: str
    adler32: str | None = None  # 8 lowercase hex digits
    size: int | None = None

    @property
    def pair(self) -> tuple[str, str]:
        return (self.source, self.destination)

    def as_json(self) -> list:
        return [self.source, self.destination, self.adler32, self.size]


def file_spec(f: Any) -> FileSpec:
    """Normalise one ``{source, destination, adler32?, size?}`` mapping (or a FileSpec)."""
    if isinstance(f, FileSpec):
        return f
    if not isinstance(f, dict) or not f.get("source") or not f.get("destination"):
        raise StagingRefused(f"fts3: each file needs 'source' and 'destination', got {f!r}")
    for url in (f["source"], f["destination"]):
        u = urlparse(url)
        if u.scheme not in SCHEMES or not u.hostname or u.path in ("", "/"):
            raise StagingRefused(
                f"fts3: {url!r} is not a transferable URL; expected scheme://host/path with"
                f" scheme in {', '.join(SCHEMES)}"
            )
    if f.get("sha256") and not f.get("adler32"):
        # FTS verifies ADLER32 end to end; a declared sha256 alone would go unchecked.
        raise StagingRefused(
            f"fts3: {f['source']}: only sha256 is declared; FTS3 verifies ADLER32, so declare"
            " adler32 for files staged through FTS3"
        )
    size = f.get("size")
    return FileSpec(
        f["source"],
        f["destination"],
        normalise(f.get("adler32"), "adler32"),
        int(size) if size is not None else None,
    )


def batches(items: Sequence[FileSpec], size: int) -> Iterator[list[FileSpec]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def batch_sid(key: str, attempt: int, index: int, batch: Sequence[FileSpec]) -> str:
    """The submission id of one batch: the same request always gets the same sid, so FTS
    (``id_generator=deterministic``) gives it the same job id and refuses a duplicate.
    The content is part of it: a changed file list is a different job, never adopted."""
    blob = json.dumps([key, attempt, index, [f.as_json() for f in batch]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def predicted_job_id(vo_id: str, sid: str) -> str:
    """FTS's deterministic job id: uuid5(uuid5(BASE_ID, vo), sid); whoami gives vos_id."""
    return str(uuid.uuid5(uuid.UUID(vo_id), sid))


def is_checksum_failure(reason: str | None) -> bool:
    return "CHECKSUM MISMATCH" in (reason or "").upper()


def is_retriable_failure(reason: str | None) -> bool:
    """Worth resubmitting: corrupted or interrupted copies. Not: a missing source, an
    existing destination without overwrite, a cancellation, a refused size."""
    r = (reason or "").upper()
    if is_checksum_failure(r):
        return True
    permanent = (
        "NO SUCH FILE",
        "FAILED TO STAT",
        "OVERWRITE",
        "CANCELED",
        "PERMISSION",
        "SIZE MISMATCH",
        "[2]",
        "[13]",
        "[17]",
    )
    return not any(p in r for p in permanent)
