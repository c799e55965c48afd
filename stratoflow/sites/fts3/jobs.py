"""Pure helpers of the FTS3 backend: configuration, batching, idempotency keys, states.

No network and no client import here, so this is fast to test and safe to import anywhere.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from stratoflow.errors import Issue, StagingRefused, TemplateError
from stratoflow.sites.checksums import normalise

SCHEMES = ("davs", "root", "gsiftp", "srm", "https")
JOB_ACTIVE = frozenset({"STAGING", "SUBMITTED", "READY", "ACTIVE", "DELETE", "ARCHIVING"})
JOB_TERMINAL = frozenset({"FINISHED", "FINISHEDDIRTY", "FAILED", "CANCELED"})
FILE_FAILED = frozenset({"FAILED", "CANCELED"})
ALL_JOB_STATES = ",".join(sorted(JOB_ACTIVE | JOB_TERMINAL))
# FTS's own limits as Rucio uses them: 200 files per job, 100 job ids per bulk status query.
MAX_FILES_PER_JOB = 1000  # FTS's config suggests bulks of 100-1000
MAX_IDS_PER_REQUEST = 200  # keeps GET /jobs/{ids} URLs under ~8 KiB


@dataclass(frozen=True)
class FTS3Config:
    name: str
    conn_id: str = ""  # required: the Airflow Connection holding endpoint and credential
    endpoint: str | None = None  # informational / cross-check; the Connection's host is used
    max_files_per_job: int = 200
    poll_ids_per_request: int = 100
    verify_checksum: str = "both"
    overwrite: bool = False
    bring_online: int = -1
    retry: int = 0
    priority: int | None = None
    poll_interval_s: float = 10.0
    copy_timeout_s: float = 24 * 3600.0
    retry_attempts: int = 5
    retry_backoff_s: float = 1.0

    @classmethod
    def from_dict(cls, name: str, config: dict[str, Any] | None) -> FTS3Config:
        issues = validate_config(f"sites.{name}", dict(config or {}))
        if issues:
            raise TemplateError(issues)
        return cls(name=name, **{k: v for k, v in (config or {}).items() if k in _FIELDS})


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "conn_id": str,
    "endpoint": str,
    "max_files_per_job": int,
    "poll_ids_per_request": int,
    "verify_checksum": str,
    "overwrite": bool,
    "bring_online": int,
    "retry": int,
    "priority": int,
    "poll_interval_s": (int, float),
    "copy_timeout_s": (int, float),
    "retry_attempts": int,
    "retry_backoff_s": (int, float),
}
_RANGES = {
    "max_files_per_job": (1, MAX_FILES_PER_JOB),
    "poll_ids_per_request": (1, MAX_IDS_PER_REQUEST),
    "priority": (1, 5),
    "retry_attempts": (1, 20),
}


def _number(value: Any) -> float:
    return float(value)  # only called once isinstance has checked it is an int or float


def validate_config(path: str, entry: dict[str, Any]) -> list[Issue]:
    """Issues in an ``fts3`` site entry (or backend config); usable as a catalogue validator."""
    issues: list[Issue] = []
    for key, value in entry.items():
        if key in ("name", "kind"):
            continue
        want = _FIELDS.get(key)
        if want is None:
            issues.append(
                Issue(
                    f"{path}.{key}", f"unknown field; expected one of {', '.join(sorted(_FIELDS))}"
                )
            )
        elif isinstance(value, bool) and want is not bool or not isinstance(value, want):
            issues.append(Issue(f"{path}.{key}", f"expected {_type_name(want)}, got {value!r}"))
        elif key in _RANGES and not _RANGES[key][0] <= _number(value) <= _RANGES[key][1]:
            lo, hi = _RANGES[key]
            issues.append(Issue(f"{path}.{key}", f"expected {lo}..{hi}, got {value}"))
    if not entry.get("conn_id"):
        issues.append(Issue(f"{path}.conn_id", "required: the Airflow Connection of the endpoint"))
    mode = entry.get("verify_checksum", "both")
    if mode not in ("both", "target"):
        # "source" and "none" never compare the destination's checksum, so FTS would report
        # a corrupted copy as FINISHED: Stratoflow never reports an unverified copy.
        issues.append(
            Issue(
                f"{path}.verify_checksum",
                f"expected 'both' or 'target', got {mode!r}: only these verify the copy",
            )
        )
    if isinstance(entry.get("endpoint"), str) and "://" not in entry["endpoint"]:
        issues.append(Issue(f"{path}.endpoint", "expected a URL like https://fts.example:8446"))
    return issues


def _type_name(t: Any) -> str:
    return (
        "a number"
        if isinstance(t, tuple)
        else {str: "a string", int: "an integer", bool: "true or false"}[t]
    )


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
