"""The ``stratoflow`` command line.

Exit codes: 0 success, 2 invalid input (one ``path: message`` line per fault), 1 a failed
run or an operational error. ``validate`` and ``compile`` never import airflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from stratoflow.cli_data import add_parsers as add_data_parsers
from stratoflow.cli_lifecycle import EXIT_FAILED, EXIT_INVALID, EXIT_OK, open_deployment
from stratoflow.cli_lifecycle import add_parsers as add_lifecycle_parsers
from stratoflow.cli_policy import add_parsers as add_policy_parsers
from stratoflow.errors import StratoflowError, TemplateError

if TYPE_CHECKING:
    from stratoflow.plan.model import Plan

# register/register_catalogue live in registration.py (shared with the REST API); they are
# re-exported here because callers and tests import them from the CLI module.
from stratoflow.registration import (  # noqa: F401
    catalogue_dir,
    compile_template,
    load,
    register,
    register_catalogue,
)

DEMO_TEMPLATE = "dimuon_campaign.yaml"


def _load(path: str, pairs: list[str] | None, run: bool = True):
    """``run``: the inputs are a run's, so required inputs must be given."""
    from stratoflow.tosca import parse_cli_inputs

    inputs = parse_cli_inputs(pairs or [])
    return load(path, inputs if (run or inputs) else None)


def _compile(path: str, pairs: list[str] | None, run: bool = False) -> tuple[Any, Plan]:
    from stratoflow.tosca import parse_cli_inputs

    inputs = parse_cli_inputs(pairs or [])
    return compile_template(path, inputs if (run or inputs) else None)


def cmd_validate(args: argparse.Namespace) -> int:
    topology = _load(args.file, args.input)
    print(
        f"valid: {args.file} ({topology.name}: {len(topology.nodes)} node templates, "
        f"{len(topology.inputs)} inputs)"
    )
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    _topology, plan = _compile(args.file, args.input)
    json.dump(plan, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return EXIT_OK


def cmd_register(args: argparse.Namespace) -> int:
    _topology, plan = register(args.file)
    print(plan["dag_id"])
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from stratoflow.submit import submit

    topology, plan = register(args.file, args.input, run=True)
    options = {"keep_last_attempt": True} if args.keep_last_attempt else None
    deployment_id, run_id = submit(plan, topology.bound_inputs, owner=args.owner, options=options)
    print(deployment_id)
    if args.wait:
        from stratoflow.submit import follow

        return follow(plan["dag_id"], run_id, deployment_id, timeout_s=args.timeout)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from stratoflow.resource_view import resource_views

    store, deployment = open_deployment(args.id)
    if deployment is None:
        return EXIT_INVALID
    info = deployment.to_dict()

    info["resources"] = resource_views(store, deployment)
    info["usage"] = store.usage_totals(args.id)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
    else:
        print(f"{deployment.id}  {deployment.status}")
        print(f"  dag/run : {deployment.dag_id} / {deployment.run_id}")
        if deployment.task:
            print(f"  task    : {deployment.task}")
        if deployment.status_reason:
            print(f"  reason  : {deployment.status_reason}")
        print(f"  outputs : {json.dumps(deployment.outputs, default=str)}")
        for r in info["resources"]:
            print(f"  resource: {r['kind']} {r['idempotency_key']} at {r['site']} [{r['state']}]")
        print(f"  usage   : {info['usage']}")
    return EXIT_FAILED if deployment.status.failed else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from stratoflow.store import Store

    rows = Store.open().list_deployments(limit=args.limit)
    print(f"{'ID':36}  {'STATUS':20}  {'TASK':9}  {'DAG':40}  CREATED")
    for d in rows:
        print(f"{d.id:36}  {d.status:20}  {d.task or '-':9}  {d.dag_id:40}  {d.created_at}")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    from stratoflow import embedded
    from stratoflow.config import production
    from stratoflow.embedded import production as production_mode

    if args.production or args.embedded:
        if embedded.supervisor_pid() is not None:
            print("Airflow runs in this home: stop it first (stratoflow down)", file=sys.stderr)
            return EXIT_INVALID
        if args.production:
            production_mode.configure(workers=args.workers, isolate_workers=args.isolate_workers)
        else:
            production_mode.forget()
    mode = production()
    if mode is not None:
        print(production_mode.describe(mode))
    embedded.start_database()
    dag_ids = register_catalogue()
    embedded.start()
    print(
        f"Airflow is up at {embedded.api_url()} (user admin, password "
        f"{embedded.admin_password()}); catalogue DAGs: {', '.join(dag_ids)}"
    )
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    from stratoflow import embedded

    print("stopped" if embedded.stop() else "not running")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from stratoflow import embedded
    from stratoflow.submit import follow, submit

    embedded.start_database()
    register_catalogue()
    topology, plan = register(str(catalogue_dir() / DEMO_TEMPLATE), args.input, run=True)
    embedded.start()
    deployment_id, run_id = submit(plan, topology.bound_inputs, owner="demo")
    print(f"deployment {deployment_id} submitted as run {run_id} of DAG {plan['dag_id']}")
    code = follow(plan["dag_id"], run_id, deployment_id, timeout_s=args.timeout)
    print(
        f"Airflow keeps running for the UI (user admin, password "
        f"{embedded.admin_password()}); stop it with `stratoflow down` (or `make down`)."
    )
    return code


def cmd_health(args: argparse.Namespace) -> int:
    from stratoflow import embedded
    from stratoflow.embedded import health

    report = embedded.health_report()
    if args.json:
        print(json.dumps(report.to_json() if report else None, indent=2))
    else:
        print(health.render(report))
    why = health.problem(report)
    if why is None and report and any(c.state != health.RUNNING for c in report.components):
        why = "a component is restarting"
    if why is not None and not args.json:
        print(f"not healthy: {why}", file=sys.stderr)
    return EXIT_OK if why is None else EXIT_FAILED


def cmd_sites(args: argparse.Namespace) -> int:
    from stratoflow.sites.catalogue import default_catalogue_path, load_catalogue

    sites = load_catalogue(args.catalogue)  # invalid: TemplateError, one line per fault
    print(f"{args.catalogue or default_catalogue_path()}: {len(sites)} sites")
    for site in sites.values():
        conn = site.config.get("conn_id")
        print(f"  {site.name:24} {site.kind:12} {'connection ' + conn if conn else ''}")
    return EXIT_OK


def cmd_queue(args: argparse.Namespace) -> int:
    from stratoflow.execution.placement import site_rooms
    from stratoflow.store import Store

    rooms = site_rooms()
    if args.site and args.site not in rooms:
        print(f"no compute site {args.site!r}; known: {', '.join(rooms)}", file=sys.stderr)
        return EXIT_INVALID
    entries = Store.open().queue_listing(rooms)
    if args.site:
        entries = [e for e in entries if e["site"] == args.site]
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    for name in [args.site] if args.site else sorted(rooms):
        line = [e for e in entries if e["site"] == name]
        print(f"{name}: {len(line)} waiting")
        for e in line:
            print(f"  {e['position']:>3}. {e['deployment_id']}  {e['owner']:16} {e['reason']}")
    return EXIT_OK


def cmd_reap(args: argparse.Namespace) -> int:
    import logging
    import uuid
    from datetime import timedelta

    from stratoflow.execution.placement import compute_for_site
    from stratoflow.maintenance.reaper import reap
    from stratoflow.sites.catalogue import compute_sites
    from stratoflow.store import Store

    logging.basicConfig(level=logging.WARNING)
    names = args.site or compute_sites()
    errors: list[str] = []
    results = reap(
        {name: compute_for_site(name) for name in names},
        Store.open(),
        run_id=f"cli/{uuid.uuid4()}",
        grace=timedelta(seconds=args.grace_s),
        dry_run=args.dry_run,
        on_site_error=lambda name, e: errors.append(f"site {name}: {e}"),
    )
    for r in results:
        print(f"{r.action:12} {r.site}: {r.kind} {r.external_id} ({r.reason})")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"{len(results)} orphan(s) across {len(names)} site(s)")
    failed = errors or any(r.action == "failed" for r in results)
    return EXIT_FAILED if failed else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stratoflow",
        description="Compile TOSCA templates into Airflow DAGs that provision, stage, run and "
        "tear down. Exit codes: 0 success, 2 invalid input, 1 failed run.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def template_cmd(name: str, help_: str, fn) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("file", help="the TOSCA template (YAML)")
        sp.add_argument(
            "-i",
            "--input",
            action="append",
            metavar="NAME=VALUE",
            help="a template input; repeat for several",
        )
        sp.set_defaults(fn=fn)
        return sp

    template_cmd(
        "validate", "Check a template and its inputs; print one fault per line.", cmd_validate
    )
    template_cmd("compile", "Print the compiled plan as JSON.", cmd_compile)
    sp = sub.add_parser(
        "register",
        help="Compile a template and publish its DAG.",
        description="Compile a template and publish its DAG; print the DAG id.",
    )
    sp.add_argument("file", help="the TOSCA template (YAML)")
    sp.set_defaults(fn=cmd_register)
    sp = template_cmd(
        "submit", "Register the template, trigger a run, print the deployment id.", cmd_submit
    )
    sp.add_argument("--wait", action="store_true", help="follow the run until it ends")
    sp.add_argument("--owner", default="cli", help="who the deployment belongs to")
    sp.add_argument(
        "--keep-last-attempt",
        action="store_true",
        help="if provisioning fails everywhere, keep the last attempt's resources to debug",
    )
    sp.add_argument(
        "--timeout", type=float, default=3600.0, help="with --wait: give up after S seconds"
    )
    sp = sub.add_parser(
        "status",
        help="Show a deployment's status, reason, outputs, resources.",
        description="Show a deployment's status, reason, outputs and resources.",
    )
    sp.add_argument("id", help="deployment id (from submit or list)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(fn=cmd_status)
    add_lifecycle_parsers(sub)
    add_data_parsers(sub)
    add_policy_parsers(sub)
    sp = sub.add_parser(
        "list",
        help="List deployments, newest first.",
        description="List deployments, newest first.",
    )
    sp.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    sp.set_defaults(fn=cmd_list)
    sp = sub.add_parser(
        "up",
        help="Start the embedded Airflow in the background.",
        description="Register the template catalogue and start the embedded "
        "Airflow (PostgreSQL from a wheel, LocalExecutor, supervised processes) in the "
        "background; with --production, Airflow's CeleryExecutor with separate workers, "
        "its database and the store on the PostgreSQL server at $STRATOFLOW_PG_SERVER "
        "(default 127.0.0.1:5432) and Redis at $STRATOFLOW_CELERY_BROKER_URL (default "
        "127.0.0.1:6379/0). The Airflow home remembers the mode until --embedded.",
    )
    mode = sp.add_mutually_exclusive_group()
    mode.add_argument(
        "--production", action="store_true", help="the production mode (docs/operations.md)"
    )
    mode.add_argument(
        "--embedded", action="store_true", help="back to the embedded default in this home"
    )
    sp.add_argument(
        "--workers", type=int, default=2, help="Celery workers in the production mode (2)"
    )
    sp.add_argument(
        "--isolate-workers",
        action="store_true",
        help="run each worker in a PID namespace of its own (root only), as containers",
    )
    sp.set_defaults(fn=cmd_up)
    sp = sub.add_parser(
        "down",
        help="Stop the embedded Airflow.",
        description="Stop the embedded Airflow started by `up` or `demo`, and its database.",
    )
    sp.set_defaults(fn=cmd_down)
    sp = sub.add_parser(
        "health",
        help="Show the embedded Airflow's processes: up since when, restarts, last exit.",
        description="Show the supervisor's health report of the embedded Airflow: each "
        "process (database, scheduler, dag-processor, triggerer, API server), its state, "
        "since when, how often it was restarted and why it last exited. Exit 1 unless all "
        "are running.",
    )
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(fn=cmd_health)
    sp = sub.add_parser(
        "demo",
        help="Run the demo dimuon campaign end to end.",
        description="Start the embedded Airflow, run the demo dimuon campaign "
        "and print where its results are.",
    )
    sp.add_argument(
        "-i", "--input", action="append", metavar="NAME=VALUE", help="override a demo input"
    )
    sp.add_argument("--timeout", type=float, default=1800.0, help="give up after S seconds")
    sp.set_defaults(fn=cmd_demo)
    sp = sub.add_parser(
        "sites",
        help="Validate the site catalogue and list its sites.",
        description="Validate the site catalogue (default: $STRATOFLOW_SITES or "
        "include/sites.yaml) and list its sites; exit 2 with one line per fault.",
    )
    sp.add_argument("--catalogue", metavar="FILE", help="another catalogue file")
    sp.set_defaults(fn=cmd_sites)
    sp = sub.add_parser(
        "queue",
        help="List the deployments waiting for capacity, per site.",
        description="List each compute site's admission queue: who waits, in which place "
        "and for what (the order in which they will be admitted).",
    )
    sp.add_argument("--site", metavar="NAME", help="only this site")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(fn=cmd_queue)
    sp = sub.add_parser(
        "reap",
        help="Delete cloud resources no live deployment accounts for.",
        description="Run the orphan reaper now (the stratoflow_reaper DAG does it hourly); "
        "print what it deleted. Every action is recorded in the store.",
    )
    sp.add_argument("--site", action="append", metavar="NAME", help="only this site; repeat")
    sp.add_argument(
        "--grace-s", type=float, default=3600.0, help="minimum age in seconds (default 3600)"
    )
    sp.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    sp.set_defaults(fn=cmd_reap)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from stratoflow.hooks.credentials import use_airflow_connections

    use_airflow_connections()  # commands that reach sites use Airflow Connections
    try:
        return args.fn(args)
    except TemplateError as exc:
        where = getattr(args, "file", None)
        for issue in exc.issues:
            # A fault of the whole file (size, syntax, not a mapping) is named by the file.
            line = str(issue) if issue.path or not where else f"{where}: {issue.message}"
            print(line, file=sys.stderr)
        return EXIT_INVALID
    except StratoflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    except BrokenPipeError:  # `stratoflow ... | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
