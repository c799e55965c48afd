"""Stratoflow's overhead over Airflow: a generated 200-job campaign against a hand-written
Airflow DAG of the same shape, on the same executor, in one run.

Not a test. In a fresh embedded Airflow (its own home, database and port), or with
``--celery`` in the production mode (CeleryExecutor, two workers, on this machine's
PostgreSQL and Redis), it times from trigger to success:

- the campaign: a template whose Job maps over a Dataset of N files (one file per job),
  each job ``sleep 0.5`` on the local site, with the campaign's provision, stage-in and
  teardown around it;
- the hand-written DAG (bench/handwritten_jobs_dag.py): a setup task, N mapped
  ``airflow.sdk`` tasks that each run ``sleep 0.5`` as a subprocess, a teardown task.

Each is run ``--runs`` times, alternating; the medians count. ratio = campaign / DAG.

    .venv/bin/python bench/overhead.py [--jobs 200] [--runs 2] [--seconds 0.5] [--celery]

Last line: ``executor=.. jobs=.. campaign_s=.. handwritten_s=.. ratio_local=..`` (or
``ratio_celery=.. tasks_per_s_celery=..`` with --celery; tasks_per_s counts the campaign's
jobs per second of its wall time).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

from fresh_home import use_fresh_embedded_home  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
HAND_DAG = "bench_handwritten_jobs"
SITES = """sites:
  - {name: local, kind: local, cores: 2, memory: auto, allowed_roots: ["{include}", "%s"]}
"""


def mapped_task_profile(tis: list[dict]) -> str:
    """Medians over a run's mapped task instances: how long each ran, and how long it
    waited from queued to started (where Stratoflow's per-job cost shows)."""
    from datetime import datetime

    def at(ti: dict, key: str) -> float:
        return datetime.fromisoformat(ti[key]).timestamp()

    mapped = [t for t in tis if t.get("map_index", -1) >= 0 and t.get("end_date")]
    if not mapped:
        return "no mapped task instances"
    ran = statistics.median(at(t, "end_date") - at(t, "start_date") for t in mapped)
    waited = statistics.median(at(t, "start_date") - at(t, "queued_when") for t in mapped)
    return f"{len(mapped)} mapped tasks, median ran {ran:.2f} s, queued to started {waited:.2f} s"


def template(data: Path, jobs: int, seconds: float) -> str:
    files = []
    for i in range(jobs):
        f = data / f"part-{i:04d}.txt"
        f.write_text(f"{i}\n")
        files.append(
            f"          - {{ url: {f}, size: {f.stat().st_size},"
            f" adler32: '{zlib.adler32(f.read_bytes()) & 0xFFFFFFFF:08x}' }}"
        )
    return f"""tosca_definitions_version: tosca_simple_yaml_1_3
metadata: {{template_name: bench_overhead}}
description: {jobs} jobs that each sleep {seconds:g} s (bench/overhead.py).
imports: [stratoflow-types]
topology_template:
  node_templates:
    host:
      type: stratoflow.nodes.Compute
      capabilities: {{host: {{properties: {{num_cpus: 2, mem_size: 512 MB}}}}}}
    data:
      type: stratoflow.nodes.Dataset
      properties:
        files:
{chr(10).join(files)}
    nap:
      type: stratoflow.nodes.Job
      properties: {{command: [sleep, "{seconds:g}"], timeout: 10 m, mem_size: 64 MB}}
      requirements: [{{host: host}}]
    campaign:
      type: stratoflow.nodes.Campaign
      properties: {{output_location: bench-results}}
      requirements: [{{dataset: data}}, {{job: nap}}]
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=0.5, help="each job's sleep")
    ap.add_argument("--celery", action="store_true", help="on the production mode")
    ap.add_argument("--keep", action="store_true", help="keep the Airflow home")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home = use_fresh_embedded_home("sf-overhead-")
    data = home / "data"
    data.mkdir()
    (home / "sites.yaml").write_text(SITES % data)
    (home / "overhead.yaml").write_text(template(data, args.jobs, args.seconds))
    dags = home / "dags"
    dags.mkdir()
    for f in (REPO / "dags").iterdir():
        if f.is_file():
            (dags / f.name).symlink_to(f)
    (dags / "bench_handwritten_jobs.py").symlink_to(
        Path(__file__).with_name("handwritten_jobs_dag.py")
    )
    os.environ.update(
        STRATOFLOW_SITES=str(home / "sites.yaml"),
        STRATOFLOW_POLICIES=str(home / "no-policies"),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
    )
    prefix = f"sf_overhead_{uuid.uuid4().hex[:6]}"
    cli = [sys.executable, "-m", "stratoflow.cli"]
    if args.celery:
        os.environ["STRATOFLOW_PRODUCTION_PREFIX"] = prefix
        # A Redis database of its own: it is emptied at the end.
        os.environ["STRATOFLOW_CELERY_BROKER_URL"] = (
            f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
        )
        subprocess.run([*cli, "up", "--production", "--workers", "2"], check=True)

    from stratoflow import embedded
    from stratoflow.config import production
    from stratoflow.embedded.production import drop_databases
    from stratoflow.registration import register
    from stratoflow.submit import check_progress_possible, client, submit

    executor = "celery" if args.celery else "local"
    timings: dict[str, list[float]] = {"campaign": [], "handwritten": []}
    try:
        embedded.start_database()
        topology, plan = register(str(home / "overhead.yaml"), [], run=True)
        embedded.start(wait_s=300)
        api = client()
        api.wait_for_dag(plan["dag_id"])
        api.wait_for_dag(HAND_DAG)
        api.unpause(HAND_DAG)

        def wait_run(dag_id: str, run_id: str, t: float) -> float:
            while (state := api.get_run(dag_id, run_id)["state"]) not in ("success", "failed"):
                check_progress_possible(t + 1800, f"run {dag_id}/{run_id}")
                time.sleep(0.5)
            if state != "success":
                raise RuntimeError(f"run {dag_id}/{run_id} ended {state}")
            return time.monotonic() - t

        for n in range(args.runs):
            t = time.monotonic()
            _deployment, run_id = submit(plan, dict(topology.bound_inputs), owner="bench")
            timings["campaign"].append(wait_run(plan["dag_id"], run_id, t))
            hand_run = f"bench__{uuid.uuid4().hex[:12]}"
            t = time.monotonic()
            api.start_run(HAND_DAG, hand_run, {"jobs": args.jobs, "seconds": args.seconds})
            timings["handwritten"].append(wait_run(HAND_DAG, hand_run, t))
            print(
                f"run {n + 1}: campaign {timings['campaign'][-1]:.1f} s,"
                f" hand-written {timings['handwritten'][-1]:.1f} s",
                flush=True,
            )
            for name, dag_id, rid in (
                ("campaign", plan["dag_id"], run_id),
                ("hand-written", HAND_DAG, hand_run),
            ):
                print(f"  {name}: {mapped_task_profile(api.task_instances(dag_id, rid))}")
    finally:
        mode = production()
        if mode is not None:
            subprocess.run([*cli, "down"], check=False)
            drop_databases(mode)
        else:
            embedded.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(home, ignore_errors=True)
    campaign = statistics.median(timings["campaign"])
    hand = statistics.median(timings["handwritten"])
    fields = {
        "executor": executor,
        "jobs": args.jobs,
        "job_s": f"{args.seconds:g}",
        "campaign_s": f"{campaign:.1f}",
        "handwritten_s": f"{hand:.1f}",
        f"ratio_{executor}": f"{campaign / hand:.2f}",
    }
    if args.celery:
        fields["tasks_per_s_celery"] = f"{args.jobs / campaign:.2f}"
    print(" ".join(f"{k}={v}" for k, v in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
