"""The Plan: a compiled template as plain, JSON-serialisable data.

A Plan is what the DAG factory reads (it never parses TOSCA). It is content-hashed, so an
identical template always yields the same hash, and so the same DAG.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NotRequired, Required, TypedDict

PLAN_SCHEMA = 1


# The compiler-to-operator contract. Plans are JSON, so these are TypedDicts: the type
# checker sees every key an operator reads, and a plan file loads without conversion.
# Values that depend on inputs may be {"get_input": name} markers; those fields are Any.


class JobDef(TypedDict):
    command: Any  # list[str] | str, with markers
    image: Any
    num_cpus: Any
    mem_size: Any
    timeout: Any
    environment: dict[str, Any]
    artifacts: dict[str, dict[str, str]]  # name -> {"file", "content_b64"}


class QosDef(TypedDict):
    expression: Any
    replicas: Any


# One shape for every step kind; each kind uses its own keys (see compile.py). Functional
# syntax because stage-out's "from" is a Python keyword.
Step = TypedDict(
    "Step",
    {
        "id": Required[str],
        "kind": Required[str],
        "upstream": Required[list[str]],
        # stage_in
        "dataset": str,
        "files": list[Any],
        "chunk_size": Any,
        # job
        "map_over": str | None,
        "inputs_from": str | None,
        "host": str | None,
        "max_parallel": int | None,
        "retries": int,
        "timeout_s": float | None,
        "job": JobDef,
        # stage_out
        "from": list[str],
        "location": Any,
        "patterns": list[Any],
        # teardown
        "setup": str,
        # transfer
        "destination": Any,
        "verify_checksum": Any,
        "overwrite": Any,
        "qos": QosDef,
    },
    total=False,
)


class VolumeDef(TypedDict):
    """A tosca.nodes.BlockStorage attached to a host (one volume per instance)."""

    node: str
    size: Any  # "10 GB", or an input marker
    device: Any  # None: the cloud picks
    location: Any  # where the template wants it mounted (recorded, not mounted by us yet)


class HostDef(TypedDict):
    node: str
    count: Any
    num_cpus: Any
    mem_size: Any
    disk_size: Any
    num_gpus: Any
    public_endpoint: Any
    os: dict[str, Any]
    volumes: NotRequired[list[VolumeDef]]  # only present when some, so plans keep hashes


class NodeInfo(TypedDict):
    type: str
    required_by: list[str]


class Plan(TypedDict):
    schema: int
    name: str
    description: str
    tosca_version: str
    inputs: dict[str, dict[str, Any]]
    placement: dict[str, Any]
    hosts: list[HostDef]
    policy: dict[str, Any]
    steps: list[Step]
    outputs: dict[str, dict[str, Any]]
    #: Infrastructure that stays up after its create run, until deleted (absent: False).
    long_lived: NotRequired[bool]
    #: A long-lived plan's node templates: type and dependents, for its resource records.
    nodes: NotRequired[dict[str, NodeInfo]]
    hash: NotRequired[str]  # both set by seal()
    dag_id: NotRequired[str]


# Step kinds, in the order a campaign runs them.
BROKER, PROVISION, STAGE_IN, JOB, STAGE_OUT, TRANSFER, TEARDOWN, REPORT = (
    "broker",
    "provision",
    "stage_in",
    "job",
    "stage_out",
    "transfer",
    "teardown",
    "report",
)

DEFAULT_POLICY: dict[str, Any] = {
    "retries": 2,
    "retry_delay_s": 5.0,
    "retry_backoff": 2.0,  # multiplier: Airflow 3's retry_exponential_backoff is a float
    "max_retry_delay_s": 300.0,
    "timeout_s": 3600.0,
}


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def plan_hash(plan: Plan) -> str:
    """sha256 of the plan's content, excluding the fields derived from the hash itself."""
    body = {k: v for k, v in plan.items() if k not in ("hash", "dag_id")}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def dag_id_for(name: str, digest: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "template"
    return f"{slug[:60]}_{digest[:10]}"


def seal(plan: Plan) -> Plan:
    """Stamp the plan with its hash and DAG id (both derived, so sealing is idempotent)."""
    digest = plan_hash(plan)
    return {**plan, "hash": digest, "dag_id": dag_id_for(plan["name"], digest)}


def is_long_lived(plan: Plan) -> bool:
    return bool(plan.get("long_lived"))


def step(plan: Plan, step_id: str) -> Step:
    for s in plan["steps"]:
        if s["id"] == step_id:
            return s
    raise KeyError(step_id)


def resolve(value: Any, inputs: dict[str, Any]) -> Any:
    """Replace ``{"get_input": name}`` markers with the run's bound input values."""
    if isinstance(value, dict):
        if len(value) == 1 and "get_input" in value:
            name = value["get_input"]
            if isinstance(name, list):  # TOSCA 1.3 allows [name, index...]
                out = inputs[name[0]]
                for key in name[1:]:
                    out = out[key]
                return out
            return inputs[name]
        return {k: resolve(v, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, inputs) for v in value]
    return value
