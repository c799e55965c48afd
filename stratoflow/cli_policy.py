"""The CLI's lifecycle-policy commands: policy list, policy plan (the dry run)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

EXIT_OK = 0


def _summary(policy: Any) -> str:
    what = f"{policy.copies} x {policy.storage.text}"
    if policy.archive_after_s:
        what += f", archive after {policy.archive_after_s // 86400}d"
    return what


def cmd_policy_list(args: argparse.Namespace) -> int:
    from stratoflow.execution.policies import load_policy_set

    found = load_policy_set().policies
    if args.json:
        rows = [
            {
                "name": p.name,
                "dag_id": p.dag_id,
                "schedule": p.schedule,
                "datasets": {"name": p.datasets.name, "meta": dict(p.datasets.meta)},
                "copies": p.copies,
                "storage": p.storage.text,
                "source": p.source,
            }
            for p in found.values()
        ]
        print(json.dumps(rows, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"{'POLICY':<24} {'SCHEDULE':<12} {'DATASETS':<28} WANTS")
    for p in sorted(found.values(), key=lambda p: p.name):
        selector = p.datasets.name + "".join(f" {k}={v}" for k, v in p.datasets.meta.items())
        print(f"{p.name:<24} {p.schedule or '-':<12} {selector:<28} {_summary(p)}")
    return EXIT_OK


def cmd_policy_plan(args: argparse.Namespace) -> int:
    from stratoflow.execution.datasets import synced_endpoints
    from stratoflow.execution.policies import load_policy_set
    from stratoflow.lifecycle.evaluate import plan_policy
    from stratoflow.store import Store

    policies = load_policy_set()
    policy = policies.get(args.name)
    now = datetime.now(UTC)
    with Store.open() as store:
        synced_endpoints(store)
        plans = plan_policy(store, policy, policies.selectable, now)
    if args.json:
        doc = {
            "policy": policy.name,
            "at": now.isoformat(),
            "datasets": [
                {"name": p.name, "actions": [a.to_dict() for a in p.actions]} for p in plans
            ],
        }
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))
        return EXIT_OK
    total = sum(len(p.actions) for p in plans)
    print(f"policy {policy.name}: {len(plans)} dataset(s), {total} action(s) (dry run)")
    for p in plans:
        print(f"  dataset {p.name}: {len(p.actions) or 'nothing to do'}")
        for a in p.actions:
            where = f"{a.file}@{a.endpoint}" if a.file and a.endpoint else "-"
            print(f"    {a.kind:<12} {where:<30} {a.reason}")
    return EXIT_OK


def cmd_policy_run(args: argparse.Namespace) -> int:
    import time
    import uuid

    from stratoflow.execution.policies import load_policy_set
    from stratoflow.submit import TERMINAL, check_progress_possible, client, run_url

    policy = load_policy_set().get(args.name)
    run_id = f"manual__{'dry_run' if args.dry_run else 'run'}__{uuid.uuid4().hex[:12]}"
    with client() as api:
        api.start_run(
            policy.dag_id, run_id, {"dry_run": args.dry_run}, note=f"policy {policy.name}"
        )
        print(f"policy {policy.name}: run {run_id} started ({run_url(policy.dag_id, run_id)})")
        if not args.wait:
            return EXIT_OK
        deadline = time.monotonic() + args.timeout
        while (state := api.get_run(policy.dag_id, run_id)["state"]) not in TERMINAL:
            check_progress_possible(deadline, f"policy {policy.name} (run {run_id})")
            time.sleep(1.0)
    print(
        f"policy {policy.name}: run {run_id} {state}; `stratoflow rule list --policy {policy.name}`"
    )
    return EXIT_OK if state == "success" else 1


def _rule_dict(rule: Any, dataset: str) -> dict[str, Any]:
    return {
        "id": rule.id,
        "policy": rule.policy,
        "dataset": dataset,
        "copies": rule.copies,
        "expression": rule.expression,
        "state": rule.state.value,
        "reason": rule.state_reason,
        "locked": rule.locked,
        "created_at": rule.created_at.isoformat(),
        "expires_at": rule.expires_at.isoformat() if rule.expires_at else None,
    }


def _dataset_names(store: Any) -> dict[int, str]:
    return {row["id"]: row["name"] for row in store.datasets(limit=1_000_000)}


def cmd_rule_list(args: argparse.Namespace) -> int:
    from stratoflow.store import Store

    with Store.open() as store:
        names = _dataset_names(store)
        rules = [_rule_dict(r, names.get(r.dataset_id, "?")) for r in store.rules(args.policy)]
    if args.json:
        print(json.dumps(rules, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"{'ID':>5} {'POLICY':<20} {'STATE':<12} {'LOCKED':<7} {'EXPIRES':<20} DATASET")
    for r in rules:
        expires = (r["expires_at"] or "never")[:19]
        lock = "yes" if r["locked"] else "no"
        print(
            f"{r['id']:>5} {r['policy']:<20} {r['state']:<12} {lock:<7} {expires:<20}"
            f" {r['dataset']}"
        )
    return EXIT_OK


def _one_rule(store: Any, rule_id: int) -> Any:
    from stratoflow.errors import Issue, TemplateError
    from stratoflow.store import NotFound

    try:
        return store.rule(rule_id)
    except NotFound as e:
        raise TemplateError(Issue("id", str(e))) from e


def cmd_rule_show(args: argparse.Namespace) -> int:
    from stratoflow.store import Store

    with Store.open() as store:
        rule = _one_rule(store, args.id)
        state = store.dataset_state(rule.policy, rule.dataset_id)
    doc = _rule_dict(rule, state.dataset.name)
    names = {f.id: f.name for f in state.files}
    doc["replicas"] = [
        {
            "file": names[r.file_id],
            "endpoint": r.endpoint,
            "state": r.state.value,
            "locked_by_this_rule": rule.id in state.locks.get(r.id, ()),
            "tombstone": r.tombstone.isoformat() if r.tombstone else None,
        }
        for r in state.replicas
    ]
    doc["failed_transfers"] = [
        {"file": names[t.file_id], "attempts": t.attempts, "reason": t.reason}
        for t in state.transfers
        if t.rule_id == rule.id and t.state == "FAILED"
    ]
    print(json.dumps(doc, indent=2, sort_keys=True))
    return EXIT_OK


def cmd_rule_lock(args: argparse.Namespace) -> int:
    from stratoflow.store import Store

    with Store.open() as store:
        _one_rule(store, args.id)
        rule = store.set_rule_locked(args.id, args.verb == "lock")
    what = "locked: it neither expires nor releases its replicas" if rule.locked else "unlocked"
    print(f"rule {rule.id} ({rule.policy}): {what}")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    _add_rule_parsers(sub)
    sp = sub.add_parser(
        "policy",
        help="List lifecycle policies; show what one would do now (dry run).",
        description="Lifecycle policies (include/policies/lifecycle/*.yaml, or the "
        "directory $STRATOFLOW_POLICIES names). Exit 2 for an invalid policy file, naming "
        "each fault.",
    )
    verbs = sp.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("list", help="List the policies.", description="List the policies.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(fn=cmd_policy_list)
    plan = verbs.add_parser(
        "plan",
        help="Show what a run of the policy would do now, with each action's reason.",
        description="The dry run: each dataset the policy selects, and each action a run "
        "would take on it now (copy, verify, lock, tombstone, delete...) with its reason. "
        "Nothing is changed. A real run does exactly this plan on the same catalogue.",
    )
    plan.add_argument("name", help="the policy's name")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(fn=cmd_policy_plan)
    run = verbs.add_parser(
        "run",
        help="Run the policy now (a run of its DAG on the embedded Airflow).",
        description="Trigger a run of the policy's DAG now. With --wait, follow it until "
        "it ends: exit 0 when it succeeded, 1 when it failed.",
    )
    run.add_argument("name", help="the policy's name")
    run.add_argument("--wait", action="store_true", help="follow the run until it ends")
    run.add_argument("--dry-run", action="store_true", help="plan only, change nothing")
    run.add_argument("--timeout", type=float, default=3600.0, help="with --wait: give up after S s")
    run.set_defaults(fn=cmd_policy_run)


def _add_rule_parsers(sub: Any) -> None:
    sp = sub.add_parser(
        "rule",
        help="List, show, lock and unlock the rules policies made.",
        description="A rule is what a policy asks of one dataset it selects: copies on the "
        "endpoints its expression selects, until it expires. A locked rule is an "
        "operator's pin: it neither expires nor releases its replicas. Exit 2 for an "
        "unknown id.",
    )
    verbs = sp.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("list", help="List the rules.", description="List the rules.")
    ls.add_argument("--policy", metavar="NAME", help="only this policy's")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(fn=cmd_rule_list)
    show = verbs.add_parser(
        "show",
        help="Show a rule, its replicas and its failed transfers (JSON).",
        description="Show a rule with its dataset's replicas (which it locks, which have "
        "tombstones) and its failed transfers with their reasons, as JSON.",
    )
    show.add_argument("id", type=int)
    show.set_defaults(fn=cmd_rule_show)
    for verb, help_ in (
        ("lock", "Pin a rule: it neither expires nor releases its replicas."),
        ("unlock", "Unpin a rule: it expires again with its lifetime."),
    ):
        v = verbs.add_parser(verb, help=help_, description=help_)
        v.add_argument("id", type=int)
        v.set_defaults(fn=cmd_rule_lock)
