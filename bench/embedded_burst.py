"""Benchmark: a burst of demo campaigns posted at once to the embedded default.

Not a test. In a fresh embedded Airflow (its own AIRFLOW_HOME, PostgreSQL data and port,
the default catalogue: one local site of the whole machine), it first runs one demo
campaign alone (the baseline), then posts N demo campaigns at once from 8 client threads,
half through Stratoflow's ``POST /stratoflow/deployments`` and half through Airflow's own
``POST /api/v2/dags/{dag_id}/dagRuns``, with plain HTTP clients that never retry (so every
5xx is seen), and waits for them all: with a deadline, and failing at once with the
supervisor's health report if an Airflow process is down for good.

    .venv/bin/python bench/embedded_burst.py [--submissions 50] [--clients 8] [--keep]
    .venv/bin/python bench/embedded_burst.py --production   # Celery, 2 workers

``--production`` runs the same on the production mode (CeleryExecutor and two workers, on
this machine's PostgreSQL and Redis, in databases of its own that it drops at the end).

Last line: ``submissions=50 http_5xx=.. completed=.. process_exits=.. accept_p50_ms=..
accept_p99_ms=.. makespan_s=.. single_s=.. ratio_vs_serial=..``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import time

from burst import post_burst  # bench/ is on sys.path when run as a script
from fresh_home import production_mode_for_bench, use_fresh_embedded_home

DEMO = "dimuon_campaign.yaml"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submissions", type=int, default=50)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the Airflow home")
    ap.add_argument("--production", action="store_true", help="on the production mode")
    args = ap.parse_args()
    # Run in the background, SIGINT is ignored: make SIGTERM stop the embedded Airflow too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home = use_fresh_embedded_home("sf-burst-")

    from stratoflow import embedded
    from stratoflow.embedded import production as production_mode
    from stratoflow.registration import catalogue_dir, register, register_catalogue
    from stratoflow.store import Store
    from stratoflow.submit import check_progress_possible, client, submit

    # Databases and a Redis database of its own: it drops and empties them at the end.
    mode = production_mode_for_bench("sf_burst") if args.production else None
    started = time.monotonic()
    embedded.start_database()
    register_catalogue()
    topology, plan = register(str(catalogue_dir() / DEMO), [], run=True)
    embedded.start(wait_s=300)
    up_s = time.monotonic() - started
    store = Store.open()
    dag_id = plan["dag_id"]
    conf = dict(topology.bound_inputs)
    exits_at_start = 0

    def restarts() -> int:
        report = embedded.health_report()
        assert report is not None
        return sum(c.restarts + (c.state == "failed") for c in report.components)

    def wait_all(ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pending = [
                i
                for i in ids
                if (d := store.get_deployment(i)) is None or d.status.value == "CREATE_IN_PROGRESS"
            ]
            if not pending:
                return
            check_progress_possible(deadline, f"{len(pending)} of {len(ids)} deployments")
            time.sleep(2)

    try:
        with client() as api:
            api.wait_for_dag(dag_id)
        t0 = time.monotonic()
        single, _ = submit(plan, conf, owner="bench")
        wait_all([single], timeout=600)
        single_s = time.monotonic() - t0
        assert store.get_deployment(single).status.value == "CREATE_COMPLETE"
        exits_at_start = restarts()

        burst_start = time.monotonic()
        posts = post_burst(args.submissions, args.clients, DEMO, {}, dag_id, conf)
        accepted = [(p.seconds, p.status, p.route) for p in posts]
        ids = [p.deployment_id for p in posts if p.deployment_id]
        window_s = time.monotonic() - burst_start
        for route in ("stratoflow", "airflow"):  # before the long wait, to read it early
            ms = [s * 1000 for s, _, r in accepted if r == route]
            print(
                f"accept latency via {route} (n={len(ms)}): p50 {percentile(ms, 50):.0f} ms,"
                f" p99 {percentile(ms, 99):.0f} ms",
                flush=True,
            )
        wait_all(ids, timeout=120 + 90 * args.submissions)
        makespan = time.monotonic() - burst_start
        completed = sum(store.get_deployment(i).status.value == "CREATE_COMPLETE" for i in ids)
        # Each submission is in the store once: no deployment twice, none missing.
        listed = [d.id for d in store.list_deployments(limit=10 * args.submissions)]
        store_once = sorted(listed) == sorted([single, *ids]) and len(ids) == args.submissions
        exits = restarts() - exits_at_start
    finally:
        embedded.stop()
        if mode is not None and not args.keep:
            production_mode.drop_databases(mode)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    latencies = [s * 1000 for s, _, _ in accepted]
    http_5xx = sum(1 for _, code, _ in accepted if code >= 500)
    other = sorted({code for _, code, _ in accepted if not 200 <= code < 300 and code < 500})
    print(f"up (database, migrations, supervisor, healthy): {up_s:.1f} s")
    print(f"one campaign alone: {single_s:.1f} s (the baseline)")
    print(
        f"{args.submissions} posted by {args.clients} clients in {window_s:.1f} s; "
        f"all ended after {makespan:.1f} s"
    )
    print(f"accept latency ms: p50 {statistics.median(latencies):.0f}, max {max(latencies):.0f}")
    if other:
        print(f"refused with: {other}")
    print(
        f"mode={'production' if mode else 'embedded'}"
        f" submissions={args.submissions} http_5xx={http_5xx} completed={completed}"
        f" process_exits={exits} accept_p50_ms={percentile(latencies, 50):.0f}"
        f" accept_p99_ms={percentile(latencies, 99):.0f} makespan_s={makespan:.1f}"
        f" submit_window_s={window_s:.1f} single_s={single_s:.1f}"
        f" ratio_vs_serial={makespan / (args.submissions * single_s):.2f} up_s={up_s:.1f}"
        f" store_once={str(store_once).lower()}"
    )
    ok = completed == args.submissions and http_5xx == 0 and exits == 0 and not other
    ok = ok and store_once
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
