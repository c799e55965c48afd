"""Compile a validated Topology into a Plan (plain data; see ``model.py``).

The compiler decides the shape of the workflow: which steps exist, what each one needs and
what it waits for. Values that depend on inputs stay as ``{"get_input": ...}`` markers and
are bound per run, so one plan (and one DAG) serves every run of a template.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stratoflow.errors import Issue, TemplateError
from stratoflow.plan import model as m
from stratoflow.plan.outputs import static_output
from stratoflow.tosca.model import NodeTemplate, Topology
from stratoflow.tosca.scalars import parse_duration

COMPUTE = "tosca.nodes.Compute"
JOB = "stratoflow.nodes.Job"
DATASET = "stratoflow.nodes.Dataset"
CAMPAIGN = "stratoflow.nodes.Campaign"
TRANSFER = "stratoflow.nodes.DataTransfer"
PLACEMENT = "tosca.policies.Placement"
BLOCK_STORAGE = "tosca.nodes.BlockStorage"

_TEMPLATE_PATH = "topology_template.node_templates"


def compile_plan(topology: Topology, base_dir: str | Path) -> m.Plan:
    """Return the sealed plan for ``topology``; ``base_dir`` anchors relative data URLs."""
    base = Path(base_dir).resolve()
    campaigns = topology.nodes_of(CAMPAIGN)
    transfers = topology.nodes_of(TRANSFER)
    jobs = topology.nodes_of(JOB)
    if len(campaigns) > 1:
        names = ", ".join(c.name for c in campaigns)
        raise TemplateError(
            Issue(_TEMPLATE_PATH, f"one campaign per template is supported, got {names}")
        )
    computes = topology.nodes_of(COMPUTE)
    long_lived = not (campaigns or transfers or jobs)
    if long_lived and not computes:
        raise TemplateError(
            Issue(
                _TEMPLATE_PATH,
                "nothing to deploy or run: the template has no tosca.nodes.Compute, "
                "stratoflow.nodes.Job, Campaign or DataTransfer",
            )
        )

    unattached = _unattached_storage(topology)
    if unattached:
        raise TemplateError(unattached)

    reserved = {m.BROKER, m.PROVISION, m.STAGE_IN, m.STAGE_OUT, m.TEARDOWN, m.REPORT}
    clashes = [n for n in (*jobs, *transfers) if n.name in reserved]
    if clashes:
        raise TemplateError(
            [
                Issue(
                    f"{_TEMPLATE_PATH}.{n.name}",
                    f"'{n.name}' is the name of a built-in step; rename the node template",
                )
                for n in clashes
            ]
        )
    steps: list[m.Step] = [{"id": m.BROKER, "kind": m.BROKER, "upstream": []}]
    if long_lived:
        # Infrastructure only: provisioned, then reported; it stays up until deleted (the
        # delete DAG reads its resource records, not this plan).
        steps.append({"id": m.PROVISION, "kind": m.PROVISION, "upstream": [m.BROKER]})
    if campaigns or jobs:
        steps += _compute_steps(topology, campaigns[0] if campaigns else None, base)
    for node in transfers:
        steps.append(_transfer_step(topology, node, base))
    work_leaves = _leaves(steps)
    steps.append({"id": m.REPORT, "kind": m.REPORT, "upstream": work_leaves})

    plan: m.Plan = {
        "schema": m.PLAN_SCHEMA,
        "name": topology.name,
        "description": topology.description,
        "tosca_version": topology.tosca_version,
        "inputs": {name: _input_def(d) for name, d in topology.inputs.items()},
        "placement": _placement(topology),
        "hosts": [_host(n, topology) for n in computes],
        "policy": dict(m.DEFAULT_POLICY),
        "steps": steps,
        "outputs": {k: static_output(topology, v) for k, v in topology.outputs.items()},
    }
    if long_lived:  # only then, so that the plans of campaigns keep their hashes
        plan["long_lived"] = True
        plan["nodes"] = _node_graph(topology)
    return m.seal(plan)


def _compute_steps(topology: Topology, campaign: NodeTemplate | None, base: Path) -> list[m.Step]:
    steps: list[m.Step] = [{"id": m.PROVISION, "kind": m.PROVISION, "upstream": [m.BROKER]}]
    campaign_jobs: set[str] = set()
    stage_from: list[str] = []
    if campaign is not None:
        dataset = topology.nodes[_required(campaign, "dataset")]
        job = topology.nodes[_required(campaign, "job")]
        merge_name = campaign.requirement("merge")
        steps.append(
            {
                "id": m.STAGE_IN,
                "kind": m.STAGE_IN,
                "upstream": [m.PROVISION],
                "dataset": dataset.name,
                "files": [_file_ref(f, base) for f in dataset.properties.get("files") or []],
                "chunk_size": campaign.properties.get("chunk_size", 1),
            }
        )
        steps.append(_job_step(topology, job, [m.STAGE_IN], map_over=m.STAGE_IN))
        campaign_jobs.add(job.name)
        stage_from = [job.name]
        if merge_name:
            steps.append(
                _job_step(topology, topology.nodes[merge_name], [job.name], inputs_from=job.name)
            )
            campaign_jobs.add(merge_name)
            stage_from = [merge_name]
        location = campaign.properties.get("output_location", "results")
        patterns = list(campaign.properties.get("outputs") or [])
    else:
        location, patterns = "results", []
    for job in topology.nodes_of(JOB):
        if job.name in campaign_jobs:
            continue
        deps = [
            r.node
            for r in job.requirements
            if r.name == "dependency" and topology.nodes[r.node].is_a(JOB)
        ]
        steps.append(_job_step(topology, job, deps or [m.PROVISION]))
        stage_from.append(job.name)
    stage_from = [s for s in stage_from if s in _leaves(steps)] or stage_from
    steps.append(
        {
            "id": m.STAGE_OUT,
            "kind": m.STAGE_OUT,
            "upstream": stage_from,
            "from": stage_from,
            "location": location,
            "patterns": patterns,
        }
    )
    steps.append(
        {"id": m.TEARDOWN, "kind": m.TEARDOWN, "upstream": [m.STAGE_OUT], "setup": m.PROVISION}
    )
    return steps


def _job_step(
    topology: Topology,
    job: NodeTemplate,
    upstream: list[str],
    *,
    map_over: str | None = None,
    inputs_from: str | None = None,
) -> m.Step:
    props = job.properties
    retries = props.get("retries", m.DEFAULT_POLICY["retries"])
    if not isinstance(retries, int):
        # Airflow fixes a task's retries when it parses the DAG, before any input exists.
        raise TemplateError(
            Issue(
                f"{_TEMPLATE_PATH}.{job.name}.properties.retries",
                "must be a literal integer, not an input",
            )
        )
    host = job.requirement("host")
    host_node = topology.nodes.get(host) if host else None
    return {
        "id": job.name,
        "kind": m.JOB,
        "upstream": list(upstream),
        "map_over": map_over,
        "inputs_from": inputs_from,
        "host": host,
        "max_parallel": _slots(host_node, props.get("num_cpus", 1)) if map_over else None,
        "retries": retries,
        "timeout_s": _literal_seconds(props.get("timeout", "1 h")),
        "job": {
            "command": props.get("command"),
            "image": props.get("image"),
            "num_cpus": props.get("num_cpus", 1),
            "mem_size": props.get("mem_size", "1 GB"),
            "timeout": props.get("timeout", "1 h"),
            "environment": dict(props.get("environment") or {}),
            "artifacts": {
                a.name: {"file": a.file, "content_b64": base64.b64encode(a.content).decode()}
                for a in job.artifacts.values()
            },
        },
    }


def _slots(host: NodeTemplate | None, job_cpus: Any) -> int | None:
    """How many copies of a job fit on its hosts at once, when the hosts' size is known at
    compile time. A job whose cores come from an input counts as one core (the minimum),
    so the bound is never tighter than the truth."""
    if host is None:
        return None
    cpus = host.capabilities.get("host", {}).get("num_cpus", 1)
    count = host.properties.get("count", 1)
    if not (isinstance(cpus, int) and isinstance(count, int)):
        return None
    per_job = job_cpus if isinstance(job_cpus, int) and job_cpus > 0 else 1
    return max(1, (cpus * count) // per_job)


def _literal_seconds(value: Any) -> float | None:
    """A job's timeout when known at compile time (None when it comes from an input)."""
    if isinstance(value, int | float):
        return float(value)
    return parse_duration(value) if isinstance(value, str) else None


def _transfer_step(topology: Topology, node: NodeTemplate, base: Path) -> m.Step:
    source = topology.nodes[_required(node, "source")]
    step: m.Step = {
        "id": node.name,
        "kind": m.TRANSFER,
        "upstream": [m.BROKER],
        "files": [_file_ref(f, base) for f in source.properties.get("files") or []],
        "destination": node.properties.get("destination"),
        "verify_checksum": node.properties.get("verify_checksum", "both"),
        "overwrite": node.properties.get("overwrite", False),
    }
    qos = node.properties.get("qos_expression")
    if qos is not None:  # only present when asked for, so existing plans keep their hashes
        step["qos"] = {"expression": qos, "replicas": node.properties.get("replicas") or 1}
    return step


def _file_ref(entry: Any, base: Path) -> Any:
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        return entry  # an input marker: resolved and checked at run time
    url = entry["url"]
    if not urlsplit(url).scheme:
        url = (base / url).resolve().as_uri()
    return {**entry, "url": url}


def _volumes(node: NodeTemplate, topology: Topology) -> list[m.VolumeDef]:
    volumes: list[m.VolumeDef] = []
    for req in node.requirements:
        target = topology.nodes.get(req.node)
        if target is None or not target.is_a(BLOCK_STORAGE):
            continue
        volumes.append(
            {
                "node": target.name,
                "size": target.properties.get("size"),
                "device": req.properties.get("device"),
                "location": req.properties.get("location"),
            }
        )
    return volumes


def _unattached_storage(topology: Topology) -> list[Issue]:
    attached = {r.node for n in topology.nodes_of(COMPUTE) for r in n.requirements}
    return [
        Issue(
            f"{_TEMPLATE_PATH}.{n.name}",
            "a BlockStorage must be attached to a Compute (its `local_storage` requirement,"
            " relationship tosca.relationships.AttachesTo)",
        )
        for n in topology.nodes_of(BLOCK_STORAGE)
        if n.name not in attached
    ]


def _host(node: NodeTemplate, topology: Topology) -> m.HostDef:
    host_cap = node.capabilities.get("host", {})
    scalable = node.capabilities.get("scalable", {})
    endpoint = node.capabilities.get("endpoint", {})
    public = node.properties.get("public_endpoint", False)
    if endpoint.get("network_name") == "PUBLIC":  # the normative way to ask for a public IP
        public = True
    host: m.HostDef = {
        "node": node.name,
        # The normative Compute sizes a group with the scalable capability; ours with count.
        "count": scalable.get("default_instances", node.properties.get("count", 1)),
        "num_cpus": host_cap.get("num_cpus", 1),
        "mem_size": host_cap.get("mem_size", "1 GB"),
        "disk_size": host_cap.get("disk_size"),
        "num_gpus": node.properties.get("num_gpus", 0),
        "public_endpoint": public,
        "os": dict(node.capabilities.get("os", {})),
    }
    volumes = _volumes(node, topology)
    if volumes:
        host["volumes"] = volumes
    return host


def _placement(topology: Topology) -> dict:
    placement: dict[str, Any] = {"site": None, "sites": [], "kinds": [], "priority": 0}
    for policy in topology.policies:
        if PLACEMENT in policy.type_chain:
            for key in placement:
                if policy.properties.get(key) is not None:
                    placement[key] = policy.properties[key]
    return placement


def _input_def(d: Any) -> dict:
    out = {
        "type": d.type,
        "description": d.description,
        "required": d.required,
        "constraints": [dict(c) for c in d.constraints],
        "entry_schema": d.entry_schema,
    }
    if d.has_default:
        out["default"] = d.default
    return out


def _required(node: NodeTemplate, name: str) -> str:
    target = node.requirement(name)
    if target is None:  # validation guarantees this; keep the message precise anyway
        raise TemplateError(
            Issue(f"{_TEMPLATE_PATH}.{node.name}.requirements", f"missing requirement '{name}'")
        )
    return target


def _node_graph(topology: Topology) -> dict[str, m.NodeInfo]:
    """Each node's type and the nodes that require it (INDIGO's resource ``requiredBy``)."""
    required_by: dict[str, list[str]] = {name: [] for name in topology.nodes}
    for node in topology.nodes.values():
        for req in node.requirements:
            if req.node in required_by and node.name not in required_by[req.node]:
                required_by[req.node].append(node.name)
    return {
        name: {"type": node.type, "required_by": sorted(required_by[name])}
        for name, node in topology.nodes.items()
    }


def _leaves(steps: list[m.Step]) -> list[str]:
    used = {u for s in steps for u in s["upstream"]}
    return [s["id"] for s in steps if s["id"] not in used]
