"""Lifecycle policy files (``include/policies/lifecycle/*.yaml``): parsed and validated,
every fault at once, each named by its path (``policies.keep_two.copies``).

A file holds ``policies:``, a mapping of policy name to its fields; names are unique across
files. Durations are written ``30d``, ``12h``, ``15m``, ``90s`` or as seconds.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stratoflow.errors import Issue, TemplateError
from stratoflow.lifecycle.expression import Endpoint, Expression, parse

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DURATION = re.compile(r"^(\d+)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_POLICY_FILE_BYTES = 1 << 20
# Airflow's presets; anything else must look like a five-field cron expression.
PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly")
_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?LW#]+$")


@dataclass(frozen=True)
class DatasetSelector:
    name: str = "*"  # a shell pattern on the dataset name
    meta: Mapping[str, str] = field(default_factory=dict)  # each must equal

    def matches(self, name: str, meta: Mapping[str, Any]) -> bool:
        return fnmatch.fnmatchcase(name, self.name) and all(
            str(meta.get(k)) == v for k, v in self.meta.items()
        )


@dataclass(frozen=True)
class Policy:
    name: str
    datasets: DatasetSelector
    copies: int
    storage: Expression
    lifetime_s: int | None = None
    archive_after_s: int | None = None
    archive_storage: Expression | None = None
    copies_after_archive: int = 0
    verify_every_s: int | None = None
    grace_s: int = 86400
    stuck_after_attempts: int = 3
    suspend_after_s: int = 2 * 86400
    schedule: str | None = "@daily"
    description: str = ""
    source: str = ""  # the file it came from

    @property
    def dag_id(self) -> str:
        return f"stratoflow_policy_{self.name}"


# field -> (required, what it is, for messages)
FIELDS: dict[str, str] = {
    "description": "free text",
    "datasets": "the datasets it applies to: name (a shell pattern) and meta (key: value)",
    "copies": "how many replicas each file keeps on the storage expression's endpoints",
    "storage": "a storage expression (tier=1&type=DISK, |, \\, parentheses)",
    "lifetime": "how long the rule lasts (30d); absent: for ever",
    "archive_after": "after this age a copy goes to archive_storage",
    "archive_storage": "a storage expression of TAPE endpoints (default type=TAPE)",
    "copies_after_archive": "copies kept on storage once the archive copy exists (default 0)",
    "verify_every": "how often each replica's checksum is checked again",
    "grace": "how long a released replica waits before deletion (default 1d)",
    "stuck_after": "failed attempts of a file before the rule is STUCK (default 3)",
    "suspend_after": "how long a rule may stay STUCK before SUSPENDED (default 2d)",
    "schedule": "a cron expression or preset (@daily); null: only when data arrives",
}
REQUIRED = ("datasets", "copies", "storage")


def duration(value: Any, path: str, issues: list[Issue], *, zero: bool = False) -> int | None:
    """Seconds from ``30d``/``12h``/``15m``/``90s`` or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.match(value.strip())):
        seconds = int(m[1]) * _UNITS[m[2]]
    else:
        issues.append(Issue(path, f"expected a duration (30d, 12h, 15m, 90s), got {value!r}"))
        return None
    if seconds < 0 or (seconds == 0 and not zero) or seconds > 100 * 365 * 86400:
        low = ">= 0" if zero else "> 0"
        issues.append(
            Issue(path, f"expected a duration {low} and at most 100 years, got {value!r}")
        )
        return None
    return seconds


def _count(value: Any, path: str, issues: list[Issue], low: int, high: int = 100) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        issues.append(Issue(path, f"expected an integer from {low} to {high}, got {value!r}"))
        return low
    return value


def _expression(
    value: Any, path: str, issues: list[Issue], endpoints: Mapping[str, Endpoint] | None
) -> Expression | None:
    try:
        expression = parse(value, path)
    except TemplateError as e:
        issues.extend(e.issues)
        return None
    if endpoints is not None and not expression.select(endpoints):
        known = ", ".join(sorted(endpoints)) or "none"
        issues.append(
            Issue(path, f"storage expression {value!r} matches no endpoint (endpoints: {known})")
        )
    return expression


def _selector(value: Any, path: str, issues: list[Issue]) -> DatasetSelector:
    if not isinstance(value, dict):
        issues.append(Issue(path, "expected a mapping: name (a shell pattern) and/or meta"))
        return DatasetSelector()
    issues += [
        Issue(f"{path}.{k}", "unknown field; expected name or meta")
        for k in value
        if k not in ("name", "meta")
    ]
    name = value.get("name", "*")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        issues.append(
            Issue(f"{path}.name", f"expected a shell pattern of dataset names, got {name!r}")
        )
        name = "*"
    meta = value.get("meta", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in meta.items()
    ):
        issues.append(Issue(f"{path}.meta", f"expected a mapping of key: value, got {meta!r}"))
        meta = {}
    return DatasetSelector(name, {k: str(v) for k, v in meta.items()})


def _schedule(value: Any, path: str, issues: list[Issue]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and (value in PRESETS or _is_cron(value)):
        return value
    issues.append(
        Issue(
            path,
            f"expected a cron expression (5 fields) or one of {', '.join(PRESETS)},"
            f" or null; got {value!r}",
        )
    )
    return None


def _is_cron(value: str) -> bool:
    parts = value.split()
    return len(parts) == 5 and all(_CRON_FIELD.match(p) for p in parts)


def parse_policy(
    name: Any, doc: Any, path: str, endpoints: Mapping[str, Endpoint] | None = None
) -> tuple[Policy | None, list[Issue]]:
    """One policy; ``endpoints`` given: its expressions must each select one."""
    issues: list[Issue] = []
    if not isinstance(name, str) or not NAME.match(name):
        issues.append(
            Issue(
                path,
                f"a policy name is lowercase letters, digits, '-', '_' (at most 63), got {name!r}",
            )
        )
    if not isinstance(doc, dict):
        return None, [*issues, Issue(path, "expected a mapping of the policy's fields")]
    issues += [
        Issue(f"{path}.{k}", f"unknown field; expected one of {', '.join(FIELDS)}")
        for k in doc
        if k not in FIELDS
    ]
    issues += [
        Issue(f"{path}.{k}", f"required: {FIELDS[k]}") for k in REQUIRED if doc.get(k) is None
    ]
    at = {k: f"{path}.{k}" for k in FIELDS}
    copies = _count(doc.get("copies", 1), at["copies"], issues, 1)
    storage = (
        _expression(doc.get("storage"), at["storage"], issues, endpoints)
        if "storage" in doc
        else None
    )
    optional = {k: doc.get(k) for k in ("lifetime", "archive_after", "verify_every")}
    seconds = {
        k: duration(v, at[k], issues) if v is not None else None for k, v in optional.items()
    }
    archive = None
    if seconds["archive_after"] is not None or "archive_storage" in doc:
        archive = _expression(
            doc.get("archive_storage", "type=TAPE"), at["archive_storage"], issues, endpoints
        )
        if seconds["archive_after"] is None:
            issues.append(
                Issue(at["archive_after"], "required with archive_storage: when to archive")
            )
    after_archive = _count(
        doc.get("copies_after_archive", 0), at["copies_after_archive"], issues, 0
    )
    if after_archive > copies:
        issues.append(
            Issue(at["copies_after_archive"], f"at most copies ({copies}), got {after_archive}")
        )
    grace = duration(doc.get("grace", "1d"), at["grace"], issues, zero=True)
    suspend = duration(doc.get("suspend_after", "2d"), at["suspend_after"], issues, zero=True)
    stuck = _count(doc.get("stuck_after", 3), at["stuck_after"], issues, 1)
    description = doc.get("description", "")
    if not isinstance(description, str):
        issues.append(Issue(at["description"], "expected text"))
    policy = Policy(
        name=str(name),
        datasets=_selector(doc.get("datasets"), at["datasets"], issues),
        copies=copies,
        storage=storage,  # type: ignore[arg-type]  # None only with an issue
        lifetime_s=seconds["lifetime"],
        archive_after_s=seconds["archive_after"],
        archive_storage=archive,
        copies_after_archive=after_archive,
        verify_every_s=seconds["verify_every"],
        grace_s=grace or 0,
        stuck_after_attempts=stuck,
        suspend_after_s=suspend or 0,
        schedule=_schedule(doc.get("schedule", "@daily"), at["schedule"], issues),
        description=str(description),
    )
    return (None if issues else policy), issues


def parse_policies(
    doc: Any, source: str, endpoints: Mapping[str, Endpoint] | None = None
) -> dict[str, Policy]:
    if not isinstance(doc, dict) or not isinstance(doc.get("policies"), dict):
        raise TemplateError(
            Issue("policies", f"{source}: expected a mapping with a 'policies' mapping")
        )
    issues = [
        Issue(k, f"{source}: unknown top-level field; expected policies")
        for k in doc
        if k != "policies"
    ]
    found: dict[str, Policy] = {}
    for name, body in doc["policies"].items():
        policy, faults = parse_policy(name, body, f"policies.{name}", endpoints)
        issues += faults
        if policy is not None:
            found[policy.name] = Policy(**{**policy.__dict__, "source": source})
    if issues:
        raise TemplateError(issues)
    return found


def load_policies(
    directory: str | os.PathLike[str], endpoints: Mapping[str, Endpoint] | None = None
) -> dict[str, Policy]:
    """Every policy of ``directory``/*.yaml; a name defined twice is an error."""
    policies: dict[str, Policy] = {}
    issues: list[Issue] = []
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            text = path.read_bytes()
            if len(text) > MAX_POLICY_FILE_BYTES:
                raise TemplateError(Issue("", f"{path}: larger than 1 MiB"))
            doc = yaml.safe_load(text)
            found = parse_policies(doc, str(path), endpoints)
        except (OSError, yaml.YAMLError) as e:
            issues.append(Issue("", f"{path}: {e}"))
            continue
        except TemplateError as e:
            issues += [
                Issue(
                    f"{path.name}: {i.path}" if i.path else path.name,
                    i.message.replace(f"{path}: ", ""),
                )
                for i in e.issues
            ]
            continue
        for name, policy in found.items():
            if name in policies:
                issues.append(
                    Issue(
                        f"{path.name}: policies.{name}",
                        f"also defined in {Path(policies[name].source).name}",
                    )
                )
            policies[name] = policy
    if issues:
        raise TemplateError(issues)
    return policies
