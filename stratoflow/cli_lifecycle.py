"""The CLI's commands on an existing deployment's lifecycle: delete (more to come)."""

from __future__ import annotations

import argparse
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
