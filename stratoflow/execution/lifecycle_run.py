"""One run of a lifecycle policy, step by step: what the policy DAG's tasks call.

evaluate (which datasets) -> plan (each one's actions, the dry run's plan) -> execute
(copies, locks, tombstones; deletions after their witness) -> verify (periodic checksum
reads; a replica found BAD is replaced at once) -> report. Values passed between steps
are JSON (they travel through XCom).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stratoflow.execution.datasets import synced_endpoints
from stratoflow.execution.lifecycle_transport import SiteTransport
from stratoflow.execution.policies import PolicySet, load_policy_set
from stratoflow.lifecycle.evaluate import plan_datasets, selected
from stratoflow.lifecycle.execute import Executor
from stratoflow.lifecycle.model import ReplicaState
from stratoflow.lifecycle.planner import Action, phases, plan_dataset

log = logging.getLogger(__name__)
REPAIRS = ("copy", "resume_copy", "lock")


def evaluate(store: Any, policy_name: str) -> list[int]:
    """The ids of the datasets the policy selects now."""
    policies = load_policy_set()
    policy = policies.get(policy_name)
    synced_endpoints(store)
    return [row["id"] for row in selected(store, policy)]


def plan(
    store: Any, policy_name: str, dataset_ids: list[int], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Each dataset's plan, JSON-ready: ``[{"dataset_id", "dataset", "actions"}]``."""
    policies = load_policy_set()
    at = now or datetime.now(UTC)
    return [
        {
            "dataset_id": p.state.dataset.id,
            "dataset": p.name,
            "actions": [a.to_dict() for a in p.actions],
        }
        for p in plan_datasets(
            store, policies.get(policy_name), policies.selectable, dataset_ids, at
        )
    ]


def _executor(store: Any, policies: PolicySet, policy_name: str) -> Executor:
    policy = policies.get(policy_name)
    return Executor(store, SiteTransport(policies.endpoints), policy, policies.bases)


def _run_phase(
    store: Any, executor: Executor, plans: list[dict[str, Any]], which: int
) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    for p in plans:
        actions = phases([Action.from_dict(a) for a in p["actions"]])[which]
        if not actions:
            continue
        state = store.dataset_state(executor.policy.name, p["dataset_id"])
        for outcome in executor.run(state, actions):
            log.info(
                "%s %s: %s",
                outcome.action.kind,
                "done" if outcome.ok else "not done",
                outcome.note or outcome.action.reason,
            )
            done.append({"dataset_id": p["dataset_id"], **outcome.to_dict()})
    return done


def execute(store: Any, policy_name: str, plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's copies, locks, tombstones and deletions, in order."""
    return _run_phase(store, _executor(store, load_policy_set(), policy_name), plans, 0)


def verify(store: Any, policy_name: str, plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's periodic verifications; a dataset where one found a BAD replica is
    planned again at once and its copies made (deletions wait for the next run)."""
    policies = load_policy_set()
    policy = policies.get(policy_name)
    executor = _executor(store, policies, policy_name)
    done = _run_phase(store, executor, plans, 1)
    broken = {d["dataset_id"] for d in done if d["kind"] == "verify" and not d["ok"]}
    for p in plans:
        # Replan: a dataset with a BAD replica gets its copies now; every dataset's rule
        # then says what the run achieved (REPLICATING -> OK once its copies exist).
        state = store.dataset_state(policy_name, p["dataset_id"])
        if state.rule is None:
            continue
        for wanted in (REPAIRS if p["dataset_id"] in broken else (), ("rule_state",)):
            if not wanted:
                continue
            again = plan_dataset(policy, policies.selectable, state, datetime.now(UTC))
            for outcome in executor.run(state, [a for a in again if a.kind in wanted]):
                done.append({"dataset_id": p["dataset_id"], "repair": True, **outcome.to_dict()})
            state = store.dataset_state(policy_name, p["dataset_id"])
    return done


def report(
    store: Any,
    policy_name: str,
    plans: list[dict[str, Any]],
    outcomes: list[dict[str, Any]],
    out_dir: Path,
) -> dict[str, Any]:
    """The run's summary, and a PNG of the selected datasets' AVAILABLE copies per endpoint."""
    planned = Counter(a["kind"] for p in plans for a in p["actions"])
    done = Counter(o["kind"] for o in outcomes if o["ok"])
    # A copy still queued (a repair into a bulk endpoint) is resumed by the next run.
    failed = [
        o for o in outcomes if not o["ok"] and o["kind"] != "rule_note" and not o.get("queued")
    ]
    per_endpoint: Counter[str] = Counter()
    for p in plans:
        for r in store.dataset_state(policy_name, p["dataset_id"]).replicas:
            if r.state == ReplicaState.AVAILABLE:
                per_endpoint[r.endpoint] += 1
    chart = _chart(policy_name, per_endpoint, out_dir) if per_endpoint else None
    summary = {
        "policy": policy_name,
        "datasets": len(plans),
        "planned": dict(planned),
        "done": dict(done),
        "not_done": [
            f"{o['kind']} {o.get('file')}@{o.get('endpoint')}: {o['note']}" for o in failed
        ][:50],
        "available_per_endpoint": dict(per_endpoint),
        "chart": str(chart) if chart else None,
    }
    rules = [
        r for r in store.rules(policy_name) if r.dataset_id in {p["dataset_id"] for p in plans}
    ]
    summary["rules"] = {r.state.value: sum(1 for x in rules if x.state == r.state) for r in rules}
    return summary


def _chart(policy_name: str, per_endpoint: Counter[str], out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{policy_name}-copies.png"
    names = sorted(per_endpoint)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(names, [per_endpoint[n] for n in names], color="#4c72b0")
    ax.set_ylabel("AVAILABLE replicas")
    ax.set_title(f"policy {policy_name}: copies per endpoint")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
