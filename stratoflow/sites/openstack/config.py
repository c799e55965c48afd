"""Configuration of an OpenStack site, its catalogue validator, flavor choice and user data.

Kept free of openstacksdk imports so the catalogue can be validated (and flavors chosen in
tests) without loading the client library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stratoflow.errors import Issue, SiteError
from stratoflow.sites import fields
from stratoflow.sites.agent.bootstrap import AGENT_FIELDS, validate_agent_fields
from stratoflow.sites.base import HostRequest

MIB = 1 << 20
GIB = 1 << 30

FIELDS = {
    "name": "site name",
    "kind": "openstack",
    "conn_id": "Airflow connection id holding the Keystone credentials (required)",
    "image": "VM image name or id (required)",
    "images": "map of TOSCA os.distribution -> image name or id (optional)",
    "network": "tenant network name or id for the servers (default: Nova's 'auto')",
    "public_network": "external network for floating IPs (needed for public endpoints)",
    "flavors": "allow-list of flavor names or ids (default: any public flavor)",
    "cores": "site quota hint: cores Stratoflow may use",
    "memory": "site quota hint: memory in bytes Stratoflow may use",
    "boot_timeout_s": "seconds to wait for ACTIVE (default 600)",
    "delete_timeout_s": "seconds to wait for servers to vanish at teardown (default 300)",
    "poll_interval_s": "seconds between status polls (default 2)",
    "retry_attempts": "attempts per API call on 5xx or lost replies (default 6)",
    "retry_backoff_s": "first back-off between attempts, doubled each time (default 1)",
    **AGENT_FIELDS,
}


@dataclass(frozen=True)
class OpenStackConfig:
    name: str
    conn_id: str
    image: str
    images: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    public_network: str | None = None
    flavors: tuple[str, ...] = ()
    cores: int | None = None
    memory: int | None = None
    boot_timeout_s: float = 600.0
    delete_timeout_s: float = 300.0
    poll_interval_s: float = 2.0
    retry_attempts: int = 6
    retry_backoff_s: float = 1.0
    workdir: str = "/srv/stratoflow"
    agent_port: int = 8765

    @classmethod
    def from_dict(cls, name: str, c: dict[str, Any]) -> OpenStackConfig:
        issues = validate(f"site {name!r}", c)
        if issues:
            raise SiteError("openstack: " + "; ".join(str(i) for i in issues))
        return cls(
            name=name,
            conn_id=c["conn_id"],
            image=c["image"],
            images=dict(c.get("images") or {}),
            network=c.get("network"),
            public_network=c.get("public_network"),
            flavors=tuple(c.get("flavors") or ()),
            cores=c.get("cores"),
            memory=c.get("memory"),
            **{
                k: float(c[k])
                for k in (
                    "boot_timeout_s",
                    "delete_timeout_s",
                    "poll_interval_s",
                    "retry_backoff_s",
                )
                if k in c
            },
            retry_attempts=int(c.get("retry_attempts", cls.retry_attempts)),
            workdir=c.get("workdir", "/srv/stratoflow"),
            agent_port=int(c.get("agent_port", 8765)),
        )


def validate(path: str, entry: dict[str, Any]) -> list[Issue]:
    """Catalogue validator: one Issue per faulty field, named ``sites[i].<field>``."""
    issues: list[Issue] = []
    issues += fields.unknown_fields(path, entry, FIELDS)
    for key in ("conn_id", "image"):
        value = entry.get(key)
        if value is None:
            issues.append(Issue(f"{path}.{key}", f"required: {FIELDS[key]}"))
        elif not isinstance(value, str) or not value.strip():
            issues.append(Issue(f"{path}.{key}", f"expected a non-empty string, got {value!r}"))
    for key in ("network", "public_network"):
        if key in entry and not (isinstance(entry[key], str) and entry[key]):
            issues.append(Issue(f"{path}.{key}", f"expected a non-empty string: {FIELDS[key]}"))
    issues += validate_agent_fields(path, entry)
    flavors = entry.get("flavors")
    if flavors is not None and (
        not isinstance(flavors, list) or not flavors or not all(isinstance(f, str) for f in flavors)
    ):
        issues.append(Issue(f"{path}.flavors", "expected a non-empty list of flavor names or ids"))
    images = entry.get("images")
    if images is not None and (
        not isinstance(images, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in images.items())
    ):
        issues.append(Issue(f"{path}.images", "expected a mapping of distribution -> image"))
    for key in ("cores", "memory"):
        v = entry.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            issues.append(Issue(f"{path}.{key}", f"expected a positive integer, got {v!r}"))
    issues += fields.timeouts(path, entry, ("boot_timeout_s", "delete_timeout_s"))
    issues += fields.intervals(path, entry, ("poll_interval_s", "retry_backoff_s"))
    issues += fields.counts(path, entry, ("retry_attempts",))
    return issues


def validate_entry(path: str, entry: dict[str, Any]) -> list[Issue]:
    """The ``register_compute`` validator (signature ``(path, entry) -> issues``)."""
    return validate(path, entry)


def flavor_gpus(extra_specs: dict[str, Any] | None) -> int:
    """GPUs a flavor grants, from the extra_specs operators use for them: placement
    resources (``resources:VGPU``, ``resources:PGPU``) or PCI passthrough aliases
    (``pci_passthrough:alias = "a100:2,t4:1"``)."""
    total = 0
    for key, value in (extra_specs or {}).items():
        if key in ("resources:VGPU", "resources:PGPU"):
            total += int(value) if str(value).isdigit() else 0
        elif key == "pci_passthrough:alias":
            for part in str(value).split(","):
                _, _, count = part.partition(":")
                total += int(count) if count.strip().isdigit() else 1
    return total


def choose_flavor(site: str, flavors: list[dict[str, Any]], h: HostRequest) -> dict[str, Any]:
    """The smallest flavor that fits ``h``; flavors are dicts with id, name, vcpus, ram
    (MiB), disk (GB), extra_specs, disabled. GPU flavors are only chosen for GPU requests,
    because they are scarce and expensive."""
    fits = []
    for f in flavors:
        gpus = flavor_gpus(f.get("extra_specs"))
        if f.get("disabled") or f["vcpus"] < h.num_cpus or f["ram"] * MIB < h.mem_bytes:
            continue
        if h.disk_bytes and (f.get("disk") or 0) * GIB < h.disk_bytes:
            continue
        if gpus < h.gpus or (h.gpus == 0 and gpus > 0):
            continue
        fits.append(((gpus, f["vcpus"], f["ram"], f.get("disk") or 0, f["name"]), f))
    if not fits:
        disk = f", {h.disk_bytes // GIB} GB disk" if h.disk_bytes else ""
        gpu_text = f", {h.gpus} GPUs" if h.gpus else ""
        offered = (
            ", ".join(f"{f['name']} ({f['vcpus']} vCPU, {f['ram']} MiB)" for f in flavors) or "none"
        )
        raise SiteError(
            f"openstack: site {site!r} has no flavor for node {h.node!r} needing"
            f" {h.num_cpus} cores, {h.mem_bytes // MIB} MiB{disk}{gpu_text}; offered: {offered}"
        )
    return min(fits, key=lambda t: t[0])[1]
