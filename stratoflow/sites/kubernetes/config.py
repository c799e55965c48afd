"""Configuration of a kubernetes site, its catalogue validator, and Kubernetes naming rules."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from stratoflow.sites.fields import (
    Count,
    Interval,
    LocalDir,
    NonEmptyText,
    PositiveInt,
    Text,
    Timeout,
    expect,
)
from stratoflow.sites.files import StagingArea
from stratoflow.sites.queue_policy import QueueFields

GIB = 1 << 30
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
NamespacePrefix = Annotated[
    str,
    Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$"),
    expect("up to 20 of a-z, 0-9, '-' (a DNS label start)"),
]

# Label keys: the reaper lists namespaces by these, so they are part of the site's contract.
L_MANAGED = "app.kubernetes.io/managed-by"
L_DEPLOYMENT = "stratoflow.io/deployment"
L_KEY = "stratoflow.io/key"
L_SITE = "stratoflow.io/site"
L_STEP = "stratoflow.io/step"
L_INDEX = "stratoflow.io/index"
L_ATTEMPT = "stratoflow.io/attempt"


def dns_label(raw: str, max_len: int = 63) -> str:
    """``raw`` as an RFC 1123 label. Lossy reductions get a hash of the exact input appended,
    so two different inputs never share a name and retries always compute the same one."""
    label = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-") or "x"
    if label == raw and len(label) <= max_len:
        return label
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{label[: max_len - len(digest) - 1].rstrip('-')}-{digest}"


def label_value(raw: str) -> str:
    """A label value (<= 63 chars of [A-Za-z0-9_.-]); the exact value goes in an annotation."""
    if LABEL_VALUE.match(raw):
        return raw
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-_.")
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{safe[:52].rstrip('-_.')}-{digest}".lstrip("-_.")


class KubernetesConfig(StagingArea, QueueFields):
    model_config = ConfigDict(extra="forbid")  # the kind's own entry: every field is known

    conn_id: NonEmptyText = Field(
        description="Airflow connection id: host = API URL, password = bearer token"
    )
    cores: PositiveInt = Field(64, description="cores the site offers Stratoflow")
    memory: PositiveInt = Field(256 * GIB, description="memory in bytes the site offers")
    workdir: LocalDir = Field(
        description="a directory every pod can mount via hostPath (shared filesystem)"
    )
    namespace_prefix: NamespacePrefix | None = Field(
        None, description="prefix of namespace names (overrides the connection's extra)"
    )
    image: Text = Field("python:3.11-slim", description="container image for jobs that name none")
    retry_attempts: Count = Field(6, description="attempts per API call on 5xx and lost replies")
    retry_backoff_s: Interval = Field(0.2, description="first retry delay, doubled per retry")
    request_timeout_s: Timeout = Field(30.0, description="timeout of one API request")
    teardown_wait_s: Timeout = Field(60.0, description="how long teardown waits for a namespace")
    kill_grace_s: Interval = Field(5.0, description="grace period of a cancelled pod")

    @classmethod
    def from_dict(cls, name: str, config: dict[str, Any] | None) -> KubernetesConfig:
        return cls.parse(name, config)
