"""Site entries of kind ``ec2``: validation, parsed config, instance type choice."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from stratoflow.errors import SiteError
from stratoflow.sites.agent.bootstrap import AgentFields
from stratoflow.sites.base import HostRequest
from stratoflow.sites.fields import (
    Count,
    Flag,
    Interval,
    NonEmptyText,
    PositiveInt,
    Text,
    TextList,
    Timeout,
    check,
    expect,
)

MIB = 1 << 20


def _size(value: Any) -> Any:
    """Bytes, or a TOSCA size such as ``"4 GiB"``."""
    if isinstance(value, str):
        from stratoflow.tosca.scalars import parse_size

        return parse_size(value)
    return value


Bytes = Annotated[
    int, Strict(), Field(ge=1), BeforeValidator(_size), expect("bytes or a size like '4 GiB'")
]
Price = Annotated[
    str,
    BeforeValidator(
        lambda v: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
    ),
    check(lambda v: float(v) > 0, "a positive price in USD/hour"),
    expect("a positive price in USD/hour"),
]


class InstanceType(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: NonEmptyText = Field(description="the instance type, e.g. t3.large")
    cpus: PositiveInt = Field(description="its vCPUs")
    mem: Bytes = Field(description="its memory, in bytes or a size like '4 GiB'")
    gpus: Annotated[int, Strict(), Field(ge=0), expect("an integer >= 0")] = 0


class EC2Config(AgentFields):
    conn_id: NonEmptyText = Field(
        description="Airflow connection id (login = access key id, password = secret key)"
    )
    region: Text | None = Field(None, description="AWS region (default: the connection's)")
    endpoint_url: Text | None = Field(None, description="EC2 endpoint URL (omit for AWS itself)")
    image_id: NonEmptyText = Field(description="AMI id the hosts boot, e.g. ami-0abcdef1234567890")
    instance_types: Annotated[tuple[InstanceType, ...], check(bool, "a non-empty list")] = Field(
        description="list of {name, cpus, mem[, gpus]} ordered smallest to largest"
    )
    spot: Flag = Field(False, description="true: request spot instances")
    max_price: Price | None = Field(
        None, description="highest spot price per hour in USD (default: the on-demand price)"
    )
    subnet_id: Text | None = Field(None, description="subnet to launch into")
    security_group_ids: TextList = Field((), description="security group ids")
    key_name: Text | None = Field(None, description="EC2 key pair for administrator SSH")
    boot_timeout_s: Timeout = Field(600.0, description="how long provision waits for 'running'")
    terminate_timeout_s: Timeout = Field(300.0, description="how long teardown waits")
    poll_interval_s: Interval = Field(5.0, description="seconds between state polls")
    retry_attempts: Count = Field(4, description="tries of each (idempotent) call")
    retry_backoff_s: Interval = Field(1.0, description="first pause between tries; doubles")
    max_attempts: Count | None = Field(None, description="botocore attempts per API request")

    @classmethod
    def from_dict(cls, name: str, c: dict[str, Any]) -> EC2Config:
        return cls.parse(name, c)

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
