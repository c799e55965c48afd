"""Configuration of a kubernetes site, its catalogue validator, and Kubernetes naming rules."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratoflow.config import expand, stratoflow_home
from stratoflow.errors import Issue, SiteError
from stratoflow.sites import fields
from stratoflow.sites.files import validate_roots

GIB = 1 << 30
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
PREFIX = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")

# Label keys: the reaper lists namespaces by these, so they are part of the site's contract.
L_MANAGED = "app.kubernetes.io/managed-by"
L_DEPLOYMENT = "stratoflow.io/deployment"
L_KEY = "stratoflow.io/key"
L_SITE = "stratoflow.io/site"
L_STEP = "stratoflow.io/step"
L_INDEX = "stratoflow.io/index"
L_ATTEMPT = "stratoflow.io/attempt"

FIELDS = {
    "name": "the site name",
    "kind": "kubernetes",
    "conn_id": "Airflow connection id: host = API URL, password = bearer token (required)",
    "cores": "cores the site offers Stratoflow (integer)",
    "memory": "memory the site offers Stratoflow, bytes (integer)",
    "workdir": "a directory every pod can mount via hostPath (shared filesystem)",
    "allowed_roots": "directories stage-in may read from besides the workdir ({include}, ...)",
    "writable_roots": "directories stage-out may write to (default: the Stratoflow home)",
    "namespace_prefix": "prefix of namespace names (overrides the connection's extra)",
    "image": "container image for jobs that name none",
    "retry_attempts": "attempts per API call on 5xx and lost replies (default 6)",
    "retry_backoff_s": "first retry delay in seconds, doubled per retry (default 0.2)",
    "request_timeout_s": "timeout of one API request in seconds (default 30)",
    "teardown_wait_s": "how long teardown waits for a namespace to vanish (default 60)",
    "kill_grace_s": "grace period of a cancelled pod in seconds (default 5)",
}


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


@dataclass(frozen=True)
class KubernetesConfig:
    name: str
    conn_id: str
    cores: int
    memory: int
    workdir: Path
    namespace_prefix: str | None
    image: str = "python:3.11-slim"
    retry_attempts: int = 6
    retry_backoff_s: float = 0.2
    request_timeout_s: float = 30.0
    teardown_wait_s: float = 60.0
    kill_grace_s: float = 5.0

    @classmethod
    def from_dict(cls, name: str, config: dict[str, Any] | None) -> KubernetesConfig:
        c = dict(config or {})
        if not c.get("conn_id"):
            raise SiteError(f"kubernetes site {name!r}: conn_id is required")
        workdir = c.get("workdir") or str(stratoflow_home() / "sites" / name)
        return cls(
            name=name,
            conn_id=str(c["conn_id"]),
            cores=int(c.get("cores") or 64),
            memory=int(c.get("memory") or 256 * GIB),
            workdir=Path(expand(str(workdir))).expanduser().resolve(),
            namespace_prefix=c.get("namespace_prefix"),
            image=str(c.get("image") or cls.image),
            retry_attempts=max(1, int(c.get("retry_attempts", cls.retry_attempts))),
            retry_backoff_s=float(c.get("retry_backoff_s", cls.retry_backoff_s)),
            request_timeout_s=float(c.get("request_timeout_s", cls.request_timeout_s)),
            teardown_wait_s=float(c.get("teardown_wait_s", cls.teardown_wait_s)),
            kill_grace_s=float(c.get("kill_grace_s", cls.kill_grace_s)),
        )


def validate_site(path: str, entry: dict[str, Any]) -> list[Issue]:
    """Catalogue validator: every fault, each at its ``sites[i].field`` path."""
    issues: list[Issue] = []
    issues += fields.unknown_fields(path, entry, FIELDS)
    conn_id = entry.get("conn_id")
    if conn_id is None:
        issues.append(Issue(f"{path}.conn_id", "required: " + FIELDS["conn_id"]))
    elif not isinstance(conn_id, str) or not conn_id:
        issues.append(Issue(f"{path}.conn_id", "expected a non-empty connection id"))
    for key in ("cores", "memory"):
        v = entry.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            issues.append(Issue(f"{path}.{key}", f"expected a positive integer, got {v!r}"))
    issues += fields.timeouts(path, entry, ("request_timeout_s", "teardown_wait_s"))
    issues += fields.intervals(path, entry, ("retry_backoff_s", "kill_grace_s"))
    issues += fields.counts(path, entry, ("retry_attempts",))
    for key in ("workdir", "image"):
        if key in entry and not isinstance(entry[key], str):
            issues.append(Issue(f"{path}.{key}", "expected a string"))
    issues += validate_roots(path, entry)
    prefix = entry.get("namespace_prefix")
    if prefix is not None and (not isinstance(prefix, str) or not PREFIX.match(prefix)):
        issues.append(
            Issue(
                f"{path}.namespace_prefix",
                f"expected up to 20 of a-z, 0-9, '-' (a DNS label start), got {prefix!r}",
            )
        )
    return issues
