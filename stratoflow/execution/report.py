"""Decide a deployment's final status and outputs from what its steps returned."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stratoflow.plan import model as m
from stratoflow.plan.outputs import evaluate, instances_by_node


@dataclass
class Outcome:
    status: str
    reason: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


def deployment_outcome(
    plan: m.Plan,
    results: dict[str, Any],
    events: list[dict],
    inputs: dict[str, Any],
    usage: dict[str, Any],
) -> Outcome:
    """``results`` maps step id -> the step's return value (None if it did not succeed);
    ``events`` are the deployment's step events, oldest first."""
    kinds = {s["id"]: s["kind"] for s in plan["steps"]}
    failures = [e for e in events if e.get("kind") == "failed"]
    # Each provision try is one candidate site: its errors are the failover history.
    site_errors = [
        e.get("message") or ""
        for e in events
        if e.get("step") == m.PROVISION and e.get("kind") in ("retry", "failed")
    ]
    problems = []
    for failure in failures:
        if failure.get("step") == m.PROVISION and len(site_errors) > 1:
            problems.append("provision failed at every candidate site: " + "; ".join(site_errors))
        else:
            problems.append(_describe(failure))
    provisioned = results.get(m.PROVISION) is not None
    for step_id, kind in kinds.items():
        if kind in (m.STAGE_OUT, m.TRANSFER) and results.get(step_id) is None and not problems:
            problems.append(f"{step_id}: did not complete (an upstream step failed)")
        if kind == m.TEARDOWN and provisioned and results.get(step_id) is None:
            problems.append(f"{step_id}: did not complete; resources may remain at the site")
    outputs: dict[str, Any] = {"usage": usage}
    for step_id, kind in kinds.items():
        if kind in (m.STAGE_OUT, m.TRANSFER) and results.get(step_id):
            outputs[step_id] = results[step_id]
    provisioned_hosts = (results.get(m.PROVISION) or {}).get("hosts") or []
    instances = instances_by_node(provisioned_hosts)
    for name, out in plan.get("outputs", {}).items():
        outputs[name] = evaluate(out.get("value"), inputs, instances)
    if site_errors and results.get(m.PROVISION):
        outputs["failover"] = site_errors
    admissions = [
        e.get("message") or ""
        for e in events
        if e.get("step") == m.PROVISION and e.get("kind") == "admitted"
    ]
    if admissions and results.get(m.PROVISION):
        outputs["placement"] = admissions[-1]  # why it went where it went
    problems += [e.get("message") or "" for e in events if e.get("kind") == "kept"]
    if problems:
        return Outcome("CREATE_FAILED", "; ".join(dict.fromkeys(problems)), outputs)
    if site_errors and results.get(m.PROVISION):
        site = results[m.PROVISION].get("site")
        return Outcome(
            "CREATE_COMPLETE",
            f"completed at {site} after failover: " + "; ".join(site_errors),
            outputs,
        )
    return Outcome("CREATE_COMPLETE", "", outputs)


def _describe(event: dict) -> str:
    message = event.get("message") or "failed"
    step = event.get("step", "?")
    return message if message.startswith(step) else f"{step}: {message}"
