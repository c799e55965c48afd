"""Configuration of an OpenStack site, its catalogue validator, flavor choice and user data.

Kept free of openstacksdk imports so the catalogue can be validated (and flavors chosen in
tests) without loading the client library.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from stratoflow.errors import SiteError
from stratoflow.sites.agent.bootstrap import AgentFields
from stratoflow.sites.base import HostRequest
from stratoflow.sites.fields import (
    Count,
    Interval,
    NonEmptyText,
    PositiveInt,
    Text,
    Timeout,
    check,
    expect,
)

MIB = 1 << 20
GIB = 1 << 30
Flavors = Annotated[
    tuple[Text, ...],
    check(bool, "a non-empty list"),
    expect("a non-empty list of flavor names or ids"),
]


class OpenStackConfig(AgentFields):
    conn_id: NonEmptyText = Field(
        description="Airflow connection id holding the Keystone credentials"
    )
    image: NonEmptyText = Field(description="VM image name or id")
    images: dict[Text, Text] = Field(
        default_factory=dict, description="map of TOSCA os.distribution -> image name or id"
    )
    network: NonEmptyText | None = Field(
        None, description="tenant network name or id for the servers (default: Nova's 'auto')"
    )
    public_network: NonEmptyText | None = Field(
        None, description="external network for floating IPs (needed for public endpoints)"
    )
    flavors: Flavors = Field((), description="allow-list of flavor names or ids (default: any)")
    cores: PositiveInt | None = Field(None, description="site quota hint: cores Stratoflow may use")
    memory: PositiveInt | None = Field(None, description="site quota hint: memory in bytes")
    boot_timeout_s: Timeout = Field(600.0, description="seconds to wait for ACTIVE")
    delete_timeout_s: Timeout = Field(300.0, description="seconds to wait for servers to vanish")
    poll_interval_s: Interval = Field(2.0, description="seconds between status polls")
    retry_attempts: Count = Field(6, description="attempts per API call on 5xx or lost replies")
    retry_backoff_s: Interval = Field(1.0, description="first back-off, doubled each time")

    @classmethod
    def from_dict(cls, name: str, c: dict[str, Any]) -> OpenStackConfig:
        return cls.parse(name, c)


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
