"""The replica catalogue's records, as the planner and the store share them.

Rucio's model, reduced to what a policy needs: a dataset holds files; a file has replicas
on storage endpoints; a rule (made by a policy for one dataset) asks for copies on the
endpoints an expression selects and locks the replicas that satisfy it; a replica no rule
locks gets a tombstone, the time from which it may be deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from stratoflow.errors import Issue, TemplateError


class ReplicaState(StrEnum):
    AVAILABLE = "AVAILABLE"
    COPYING = "COPYING"  # a transfer is filling it
    UNAVAILABLE = "UNAVAILABLE"  # its endpoint cannot serve it now
    BAD = "BAD"  # its checksum or size did not verify
    BEING_DELETED = "BEING_DELETED"


class RuleState(StrEnum):
    OK = "OK"
    REPLICATING = "REPLICATING"
    STUCK = "STUCK"  # its transfers keep failing: nothing is deleted for it
    SUSPENDED = "SUSPENDED"  # stuck too long: an operator must look


@dataclass(frozen=True, slots=True)
class Dataset:
    id: int
    name: str
    meta: dict[str, Any]
    source: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: int
    dataset_id: int
    name: str
    size: int
    adler32: str | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class Replica:
    id: int
    file_id: int
    endpoint: str
    url: str
    state: ReplicaState
    verified_at: datetime | None = None
    tombstone: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    policy: str
    dataset_id: int
    copies: int
    expression: str
    lifetime_s: int | None
    locked: bool
    state: RuleState
    created_at: datetime
    expires_at: datetime | None = None
    stuck_at: datetime | None = None
    state_reason: str | None = None


@dataclass(frozen=True)
class NewFile:
    """A file being registered, with the URL of its first replica."""

    name: str
    url: str
    size: int
    adler32: str | None = None
    sha256: str | None = None


@dataclass
class Registration:
    """What registering a dataset changed: nothing when it was all known already."""

    dataset: Dataset
    files_added: int = 0
    replicas_added: int = 0
    created: bool = False


# A dataset's name is a path under each endpoint's base URL: no '..', no empty segment.
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*(/[A-Za-z0-9][A-Za-z0-9._:-]*)*$")
FILE_NAME = DATASET_NAME
_HEX = re.compile(r"^[0-9a-f]+$")


def check_dataset_name(name: Any, path: str = "name") -> str:
    if not isinstance(name, str) or len(name) > 255 or not DATASET_NAME.match(name):
        raise TemplateError(
            Issue(
                path,
                "expected a dataset name of letters, digits, '.', '_', ':', '-' in '/'-separated"
                f" parts (at most 255 characters), got {name!r}",
            )
        )
    return name


def check_new_file(f: NewFile, path: str) -> list[Issue]:
    """The faults of one file to register: its name, size and checksums."""
    issues: list[Issue] = []
    if len(f.name) > 1024 or not FILE_NAME.match(f.name):
        issues.append(
            Issue(f"{path}.name", f"not a file name without '..' or empty parts: {f.name!r}")
        )
    if isinstance(f.size, bool) or not isinstance(f.size, int) or f.size < 0:
        issues.append(Issue(f"{path}.size", f"expected a size in bytes >= 0, got {f.size!r}"))
    for algo, length in (("adler32", 8), ("sha256", 64)):
        value = getattr(f, algo)
        if value is not None and (len(value) != length or not _HEX.match(value)):
            issues.append(
                Issue(f"{path}.{algo}", f"expected {length} lowercase hex digits, got {value!r}")
            )
    if f.adler32 is None and f.sha256 is None:
        issues.append(Issue(path, "a registered file needs a checksum: adler32, sha256 or both"))
    return issues
