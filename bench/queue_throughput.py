"""Benchmark: a burst of demo campaigns on the embedded default, through the admission queue.

Not a test. In a fresh embedded Airflow (its own AIRFLOW_HOME, store and port, the default
site catalogue: one local site of the whole machine), it first runs one demo campaign
alone (the baseline), then submits N at once, each from its own client thread, and waits
for all of them. It reports how many completed, the makespan (first submission to last
end), the ideal makespan (the jobs' measured CPU time, summed, divided by the site's
cores), the efficiency (ideal / makespan), and the makespan against N baseline runs one
after another. Every HTTP answer the clients got is counted; a 5xx shows up in
``http_errors``.

    .venv/bin/python bench/queue_throughput.py [--campaigns 50] [--keep]

Last line: ``campaigns=50 completed=N makespan_s=.. ideal_s=.. efficiency=.. ...``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

from fresh_home import use_fresh_embedded_home  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=50)
    ap.add_argument("--keep", action="store_true", help="keep the Airflow home")
    args = ap.parse_args()
    home = use_fresh_embedded_home("stratoflow-queue-bench-")

    import httpx

    from stratoflow import embedded
    from stratoflow.execution.placement import site_rooms
    from stratoflow.registration import catalogue_dir, register, register_catalogue
    from stratoflow.store import Store
    from stratoflow.submit import check_progress_possible, client, submit

    statuses: list[int] = []
    real_send = httpx.Client.send

    def counting_send(self, request, **kwargs):
        response = real_send(self, request, **kwargs)
        statuses.append(response.status_code)
        return response

    httpx.Client.send = counting_send  # type: ignore[method-assign]

    embedded.start_database()
    register_catalogue()
    topology, plan = register(str(catalogue_dir() / "dimuon_campaign.yaml"), [], run=True)
    embedded.start(wait_s=300)
    store = Store.open()
    try:
        with client() as api:
            api.wait_for_dag(plan["dag_id"])

        def run_all(owners: list[str]) -> tuple[list[str], float, float]:
            ids: dict[int, str] = {}

            def one(i: int, owner: str) -> None:
                with client() as api:
                    ids[i], _ = submit(plan, dict(topology.bound_inputs), owner=owner, api=api)

            start = time.monotonic()
            threads = [threading.Thread(target=one, args=(i, o)) for i, o in enumerate(owners)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            submitted = time.monotonic() - start
            done = [ids[i] for i in sorted(ids)]
            # A deadline, and an Airflow process down for good fails the wait at once.
            deadline = time.monotonic() + 120 + 90 * len(owners)
            while any(store.get_deployment(i).status.value == "CREATE_IN_PROGRESS" for i in done):
                check_progress_possible(deadline, f"the burst of {len(owners)}")
                time.sleep(1)
            return done, time.monotonic() - start, submitted

        (single,), single_s, _ = run_all(["bench"])
        assert store.get_deployment(single).status.value == "CREATE_COMPLETE"
        owners = [f"user{i % 5}" for i in range(args.campaigns)]
        ids, makespan, submit_s = run_all(owners)
        completed = sum(store.get_deployment(i).status.value == "CREATE_COMPLETE" for i in ids)
        cpu_s = sum(float(store.usage_totals(i)["core_seconds"]) for i in ids)
        cores = sum(room.cores for room in site_rooms().values())
    finally:
        embedded.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    ideal = cpu_s / cores
    errors = sum(1 for s in statuses if s >= 500)
    print(f"one campaign alone: {single_s:.1f} s (the baseline)")
    print(
        f"{args.campaigns} at once: submitted in {submit_s:.1f} s; all ended after {makespan:.1f} s"
    )
    print(f"jobs' CPU time {cpu_s:.1f} s on {cores:g} cores: ideal makespan {ideal:.1f} s")
    print(f"HTTP answers: {len(statuses)}, 5xx: {errors}")
    print(
        f"campaigns={args.campaigns} completed={completed} makespan_s={makespan:.1f}"
        f" ideal_s={ideal:.1f} efficiency={ideal / makespan:.2f} single_s={single_s:.1f}"
        f" ratio_vs_serial={makespan / (args.campaigns * single_s):.2f} http_errors={errors}"
    )
    return 0 if completed == args.campaigns and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
