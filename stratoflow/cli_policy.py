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


def add_parsers(sub: Any) -> None:
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
