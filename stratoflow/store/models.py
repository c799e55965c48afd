"""Plain values the store hands out: no ORM objects, no open sessions behind them."""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from stratoflow.errors import StratoflowError


class StoreError(StratoflowError):
    """The store refused an operation (unknown record, conflicting data)."""


class NotFound(StoreError, LookupError):
    """No record with that id or key."""


class DeleteConflict(StoreError):
    """The deployment's state forbids a delete now (one runs already, or it is done)."""


class DeploymentStatus(StrEnum):
    """Deployment states, named as in the INDIGO PaaS orchestrator."""

    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    CREATE_COMPLETE = "CREATE_COMPLETE"
    CREATE_FAILED = "CREATE_FAILED"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
    DELETE_COMPLETE = "DELETE_COMPLETE"
    DELETE_FAILED = "DELETE_FAILED"
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
    UPDATE_COMPLETE = "UPDATE_COMPLETE"
    UPDATE_FAILED = "UPDATE_FAILED"

    @classmethod
    def parse(cls, value: str) -> DeploymentStatus:
        try:
            return cls(str(value).upper())
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise ValueError(
                f"unknown deployment status {value!r}; expected one of {allowed}"
            ) from None

    @property
    def in_progress(self) -> bool:
        return self.value.endswith("_IN_PROGRESS")

    @property
    def failed(self) -> bool:
        return self.value.endswith("_FAILED")


class Task(StrEnum):
    """What works on a deployment now, named as in the INDIGO PaaS orchestrator. A
    deployment in a final state has none (``task`` is None: INDIGO's NONE)."""

    BROKERING = "BROKERING"  # choosing sites, or waiting in the admission queue
    DEPLOYER = "DEPLOYER"  # provisioning, running jobs, tearing down or deleting
    DMS = "DMS"  # moving data: stage-in, stage-out, transfers


class ResourceState(StrEnum):
    INTENDED = "intended"
    CREATED = "created"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


# The record's state as a TOSCA node state (INITIAL, CONFIGURING... are not distinguished).
_NODE_STATES = {
    ResourceState.INTENDED: "CREATING",
    ResourceState.CREATED: "CREATED",
    ResourceState.DELETING: "DELETING",
    ResourceState.DELETED: "DELETED",
    ResourceState.FAILED: "ERROR",
}

# States in which something may exist at a site: the reaper's working set.
LIVE_STATES = (ResourceState.INTENDED, ResourceState.CREATED, ResourceState.DELETING)

_KEY_MAX = 63  # a DNS label: the strictest name rule among the sites (Kubernetes objects)


def resource_key(deployment_id: str, node: str, index: int) -> str:
    """The default idempotency key ``sf-{deployment_id}-{node}-{index}``.

    It is used as a cloud resource name or tag, so it is reduced to a DNS label
    (lowercase alphanumerics and '-', at most 63 characters). When it has to be shortened a
    hash of the full form keeps it unique and deterministic across retries.
    """
    raw = f"sf-{deployment_id}-{node}-{index}"
    key = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if key == raw and len(key) <= _KEY_MAX:
        return key
    # Lossy (case, '_', '.', length): two names could collapse into one key, so a hash of
    # the exact form is appended.
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{key[: _KEY_MAX - len(digest) - 1].rstrip('-')}-{digest}"


def _json_friendly(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, datetime):
            out[k] = v.isoformat()
        elif isinstance(v, StrEnum):
            out[k] = v.value
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass(frozen=True)
class Deployment:
    id: str
    owner: str
    dag_id: str
    run_id: str
    plan_hash: str
    inputs: dict[str, Any]
    status: DeploymentStatus
    status_reason: str | None
    outputs: dict[str, Any]
    site: str | None
    created_at: datetime
    updated_at: datetime
    #: What works on it now (a :class:`Task` value); None once it is in a final state.
    task: str | None = None
    #: Submission options besides the inputs, e.g. ``{"keep_last_attempt": True}``.
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _json_friendly(asdict(self))


@dataclass(frozen=True)
class ResourceRecord:
    id: int
    idempotency_key: str
    deployment_id: str
    site: str
    kind: str
    node: str
    idx: int
    external_id: str | None
    state: ResourceState
    data: dict[str, Any]
    reason: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> str:
        return self.idempotency_key

    @property
    def index(self) -> int:
        return self.idx

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def node_state(self) -> str:
        """The TOSCA node state INDIGO reports for the resource."""
        return _NODE_STATES[self.state]

    def to_dict(self) -> dict[str, Any]:
        return {**_json_friendly(asdict(self)), "node_state": self.node_state}
