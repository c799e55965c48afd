"""Site entries of kind ``ec2``: validation, parsed config, instance type choice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stratoflow.errors import Issue, SiteError
from stratoflow.sites import fields
from stratoflow.sites.agent.bootstrap import (
    AGENT_FIELDS,
    DEFAULT_PORT,
    DEFAULT_WORKDIR,
    validate_agent_fields,
)
from stratoflow.sites.base import HostRequest

MIB = 1 << 20

FIELDS = {
    "name": "site name",
    "kind": "ec2",
    "conn_id": "Airflow connection id (login = access key id, password = secret key)",
    "region": "AWS region, e.g. eu-west-1 (default: the connection's region_name)",
    "endpoint_url": "EC2 endpoint URL (omit for AWS itself)",
    "image_id": "AMI id the hosts boot, e.g. ami-0abcdef1234567890",
    "instance_types": "list of {name, cpus, mem[, gpus]} ordered smallest to largest",
    "spot": "true: request spot instances",
    "max_price": "highest spot price per hour in USD (default: the on-demand price)",
    "subnet_id": "subnet to launch into",
    "security_group_ids": "list of security group ids",
    "key_name": "EC2 key pair name for administrator SSH access",
    "boot_timeout_s": "how long provision waits for 'running' (seconds)",
    "terminate_timeout_s": "how long teardown waits for 'terminated' (seconds)",
    "poll_interval_s": "seconds between state polls",
    "retry_attempts": "tries of each call (idempotent) before the site is given up",
    "retry_backoff_s": "first pause between those tries; doubles each time",
    "max_attempts": "botocore attempts per API request",
    **AGENT_FIELDS,
}


@dataclass(frozen=True)
class InstanceType:
    name: str
    cpus: int
    mem: int  # bytes
    gpus: int = 0


@dataclass(frozen=True)
class EC2Config:
    conn_id: str
    region: str | None
    endpoint_url: str | None
    image_id: str
    instance_types: tuple[InstanceType, ...]
    spot: bool = False
    max_price: str | None = None
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    boot_timeout_s: float = 600.0
    terminate_timeout_s: float = 300.0
    poll_interval_s: float = 5.0
    retry_attempts: int = 4
    retry_backoff_s: float = 1.0
    max_attempts: int | None = None
    workdir: str = DEFAULT_WORKDIR
    agent_port: int = DEFAULT_PORT

    @classmethod
    def from_dict(cls, name: str, c: dict[str, Any]) -> EC2Config:
        issues = validate_entry(f"site {name}", {"name": name, "kind": "ec2", **c})
        if issues:
            raise SiteError("; ".join(str(i) for i in issues))
        return cls(
            conn_id=c["conn_id"],
            region=c.get("region"),
            endpoint_url=c.get("endpoint_url"),
            image_id=c["image_id"],
            instance_types=tuple(_instance_type(t) for t in c["instance_types"]),
            spot=bool(c.get("spot", False)),
            max_price=str(c["max_price"]) if c.get("max_price") is not None else None,
            subnet_id=c.get("subnet_id"),
            security_group_ids=tuple(c.get("security_group_ids") or ()),
            key_name=c.get("key_name"),
            boot_timeout_s=float(c.get("boot_timeout_s", 600)),
            terminate_timeout_s=float(c.get("terminate_timeout_s", 300)),
            poll_interval_s=float(c.get("poll_interval_s", 5)),
            workdir=c.get("workdir", DEFAULT_WORKDIR),
            agent_port=int(c.get("agent_port", DEFAULT_PORT)),
            retry_attempts=int(c.get("retry_attempts", 4)),
            retry_backoff_s=float(c.get("retry_backoff_s", 1.0)),
            max_attempts=c.get("max_attempts"),
        )

    def pick(self, site: str, host: HostRequest) -> InstanceType:
        """The smallest listed type that satisfies the host's cpus, memory and GPUs."""
        for t in self.instance_types:
            if t.cpus >= host.num_cpus and t.mem >= host.mem_bytes and t.gpus >= host.gpus:
                return t
        biggest = self.instance_types[-1]
        raise SiteError(
            f"ec2: no instance type at site {site!r} fits node {host.node!r}"
            f" ({host.num_cpus} cpus, {host.mem_bytes // MIB} MiB, {host.gpus} gpus); the"
            f" largest listed is {biggest.name} ({biggest.cpus} cpus,"
            f" {biggest.mem // MIB} MiB, {biggest.gpus} gpus)"
        )


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    from stratoflow.tosca.scalars import parse_size

    return parse_size(value)


def _instance_type(t: dict[str, Any]) -> InstanceType:
    return InstanceType(str(t["name"]), int(t["cpus"]), _size(t["mem"]), int(t.get("gpus", 0)))


def _check_types(path: str, types: Any) -> list[Issue]:
    if not isinstance(types, list) or not types:
        return [Issue(path, "required: a non-empty list of {name, cpus, mem[, gpus]}")]
    issues: list[Issue] = []
    for i, t in enumerate(types):
        p = f"{path}[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            issues.append(Issue(p, "expected a mapping with name, cpus and mem"))
            continue
        for key in ("cpus", "gpus"):
            v = t.get(key, 0 if key == "gpus" else None)
            if not isinstance(v, int) or isinstance(v, bool) or v < (key == "cpus"):
                issues.append(Issue(f"{p}.{key}", f"expected a positive integer, got {v!r}"))
        try:
            if _size(t.get("mem")) <= 0:
                raise ValueError
        except Exception:
            issues.append(
                Issue(f"{p}.mem", f"expected bytes or a size like '4 GiB', got {t.get('mem')!r}")
            )
        extra = set(t) - {"name", "cpus", "mem", "gpus"}
        if extra:
            issues.append(
                Issue(p, f"unknown fields {sorted(extra)}; expected name, cpus, mem, gpus")
            )
    return issues


def validate_entry(path: str, entry: dict[str, Any]) -> list[Issue]:
    """Every fault of an ``ec2`` site entry, each at its field's path."""
    issues = fields.unknown_fields(path, entry, FIELDS)
    for key in ("conn_id", "image_id"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            issues.append(Issue(f"{path}.{key}", f"required: {FIELDS[key]}"))
    issues += _check_types(f"{path}.instance_types", entry.get("instance_types"))
    issues += validate_agent_fields(path, entry)
    for key in ("region", "endpoint_url", "subnet_id", "key_name"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            issues.append(Issue(f"{path}.{key}", f"expected a string: {FIELDS[key]}"))
    if "spot" in entry and not isinstance(entry["spot"], bool):
        issues.append(Issue(f"{path}.spot", "expected true or false"))
    if entry.get("max_price") is not None:
        try:
            if float(entry["max_price"]) <= 0:
                raise ValueError
        except (TypeError, ValueError):
            issues.append(Issue(f"{path}.max_price", "expected a positive price in USD/hour"))
    sgs = entry.get("security_group_ids")
    if sgs is not None and not (isinstance(sgs, list) and all(isinstance(s, str) for s in sgs)):
        issues.append(Issue(f"{path}.security_group_ids", "expected a list of strings"))
    issues += fields.timeouts(path, entry, ("boot_timeout_s", "terminate_timeout_s"))
    issues += fields.intervals(path, entry, ("poll_interval_s", "retry_backoff_s"))
    issues += fields.counts(path, entry, ("retry_attempts", "max_attempts"))
    return issues
