"""The CLI's commands on an existing deployment: delete, resources, outputs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def cmd_delete(args: argparse.Namespace) -> int:
    from stratoflow.deletion import DELETE_DAG_ID, request_delete
    from stratoflow.store import DeleteConflict, NotFound
    from stratoflow.submit import client, follow

    try:
        with client() as api:
            _before, run_id = request_delete(args.id, api, requested_by=args.by)
    except NotFound:
        print(f"deployment {args.id}: not found", file=sys.stderr)
        return EXIT_INVALID
    except DeleteConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"deployment {args.id}: DELETE_IN_PROGRESS (run {DELETE_DAG_ID}/{run_id})")
    if args.wait:
        return follow(
            DELETE_DAG_ID, run_id, args.id, timeout_s=args.timeout, success="DELETE_COMPLETE"
        )
    return EXIT_OK


def open_deployment(deployment_id: str):
    """(store, the deployment or None); a None has been reported on stderr already."""
    from stratoflow.store import Store

    store = Store.open()
    deployment = store.get_deployment(deployment_id)
    if deployment is None:
        print(f"deployment {deployment_id}: not found", file=sys.stderr)
    return store, deployment


def cmd_resources(args: argparse.Namespace) -> int:
    store, deployment = open_deployment(args.id)
    if deployment is None:
        return EXIT_INVALID
    from stratoflow.resource_view import resource_views

    records = resource_views(store, deployment, include_deleted=args.all)
    if args.json:
        print(json.dumps(records, indent=2, sort_keys=True, default=str))
        return EXIT_OK
    print(f"{deployment.id}  {deployment.status}  {len(records)} resource(s)")
    for r in records:
        where = f"{r['site']}:{r['external_id'] or '-'}"
        kind = f"{r['kind']} ({r['node_type']})" if r["node_type"] else r["kind"]
        print(f"  {r['node']}[{r['idx']}]  {kind:<12} {r['node_state']:<9} {where}")
    return EXIT_OK


def cmd_outputs(args: argparse.Namespace) -> int:
    _store, deployment = open_deployment(args.id)
    if deployment is None:
        return EXIT_INVALID
    print(json.dumps(deployment.outputs, indent=2, sort_keys=True, default=str))
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    sp = sub.add_parser(
        "delete",
        help="Delete a deployment: stop its run, remove its resources.",
        description="Delete a deployment: stop its create run if it still runs, take it out "
        "of the admission queue, and remove every resource the store records for it, at "
        "every site, through a run of the stratoflow_delete DAG. Deleting a DELETE_FAILED "
        "deployment tries again. Exit codes: 0 started (with --wait: DELETE_COMPLETE), "
        "1 the delete failed, 2 unknown id or a delete already running or done.",
    )
    sp.add_argument("id", help="deployment id (from submit or list)")
    sp.add_argument("--wait", action="store_true", help="follow the delete run until it ends")
    sp.add_argument(
        "--timeout", type=float, default=3600.0, help="with --wait: give up after S seconds"
    )
    sp.add_argument("--by", default="cli", help="who asks (recorded in the status reason)")
    sp.set_defaults(fn=cmd_delete)
    sp = sub.add_parser(
        "resources",
        help="List a deployment's resource records: node, kind, state, site, physical id.",
        description="List the resources the store records for a deployment (servers, "
        "floating IPs, sandboxes, namespaces...): node and index, kind, state, site and "
        "physical id. Exit 2 for an unknown id.",
    )
    sp.add_argument("id", help="deployment id")
    sp.add_argument("--all", action="store_true", help="include deleted ones")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(fn=cmd_resources)
    sp = sub.add_parser(
        "outputs",
        help="Print a deployment's outputs as JSON.",
        description="Print a deployment's outputs (the template's outputs, addresses, "
        "staged-out results, usage) as JSON. Exit 2 for an unknown id.",
    )
    sp.add_argument("id", help="deployment id")
    sp.set_defaults(fn=cmd_outputs)
