"""Site entries of kind ``s3``: validation and parsed config. An object store runs no
jobs: the kind declares no Compute, so the broker never places a deployment there."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratoflow.config import expand
from stratoflow.errors import Issue, SiteError
from stratoflow.sites.files import validate_roots

MIB = 1 << 20
S3_MIN_PART = 5 * MIB  # S3 refuses multipart parts below 5 MiB (except the last)

FIELDS = {
    "name": "site name",
    "kind": "s3",
    "conn_id": "Airflow connection id holding the access key (login) and secret (password)",
    "endpoint_url": "S3 endpoint URL (omit for AWS itself)",
    "region": "region name",
    "multipart_threshold": "bytes above which transfers are multipart (>= 5 MiB)",
    "multipart_chunksize": "part size in bytes (>= 5 MiB)",
    "max_concurrency": "parallel part transfers",
    "max_attempts": "botocore attempts per request (retries of transient errors)",
    "allowed_roots": "local directories uploads may read from",
    "writable_roots": "local directories downloads may write to",
}


@dataclass(frozen=True)
class S3Config:
    conn_id: str
    endpoint_url: str | None
    region: str | None
    multipart_threshold: int
    multipart_chunksize: int
    max_concurrency: int
    max_attempts: int | None
    allowed_roots: tuple[Path, ...]
    writable_roots: tuple[Path, ...]

    @classmethod
    def from_dict(cls, name: str, config: dict[str, Any]) -> S3Config:
        issues = validate_entry(f"site {name}", {"name": name, "kind": "s3", **config})
        if issues:
            raise SiteError("; ".join(str(i) for i in issues))

        def roots(key: str) -> tuple[Path, ...]:
            values = config.get(key)
            if values is None:
                values = ["{home}"]  # as the local site: STRATOFLOW_HOME, nothing else
            return tuple(Path(expand(str(v))).expanduser().resolve() for v in values)

        return cls(
            conn_id=config["conn_id"],
            endpoint_url=config.get("endpoint_url"),
            region=config.get("region"),
            multipart_threshold=int(config.get("multipart_threshold", 64 * MIB)),
            multipart_chunksize=int(config.get("multipart_chunksize", 64 * MIB)),
            max_concurrency=int(config.get("max_concurrency", 4)),
            max_attempts=config.get("max_attempts"),
            allowed_roots=roots("allowed_roots"),
            writable_roots=roots("writable_roots"),
        )


def _int_at_least(path: str, value: Any, low: int) -> list[Issue]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= low:
        return []
    return [Issue(path, f"expected an integer >= {low}, got {value!r}")]


def validate_entry(path: str, entry: dict[str, Any]) -> list[Issue]:
    """Every fault of an ``s3`` site entry, each at its field's path."""
    issues = [
        Issue(f"{path}.{k}", f"unknown field; expected one of {', '.join(sorted(FIELDS))}")
        for k in entry
        if k not in FIELDS
    ]
    if not isinstance(entry.get("conn_id"), str) or not entry["conn_id"]:
        issues.append(Issue(f"{path}.conn_id", f"required: {FIELDS['conn_id']}"))
    url = entry.get("endpoint_url")
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://", url)):
        issues.append(Issue(f"{path}.endpoint_url", f"expected an http(s) URL, got {url!r}"))
    if "region" in entry and not isinstance(entry["region"], str):
        issues.append(Issue(f"{path}.region", "expected a region name string"))
    for key in ("multipart_threshold", "multipart_chunksize"):
        if key in entry:
            issues += _int_at_least(f"{path}.{key}", entry[key], S3_MIN_PART)
    for key in ("max_concurrency", "max_attempts"):
        if key in entry:
            issues += _int_at_least(f"{path}.{key}", entry[key], 1)
    issues += validate_roots(path, entry)
    return issues
