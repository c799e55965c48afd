"""The hand-written Airflow DAG that bench/overhead.py compares a Stratoflow campaign with.

The same shape as the campaign: a setup task (a scratch directory), N mapped tasks that
each run ``sleep <seconds>`` (0.5) as a subprocess, and a teardown task that removes the directory.
No store, no staging, no job supervisor. The bench symlinks this file into its Airflow's
dags folder and passes N in the run's conf.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="bench_handwritten_jobs",
    schedule=None,
    catchup=False,
    params={"jobs": 200, "seconds": 0.5},
)
def bench_handwritten_jobs():
    @task
    def setup() -> str:
        return tempfile.mkdtemp(prefix="bench-hand-")

    @task
    def items(workdir: str) -> list[int]:
        return list(range(int(get_current_context()["params"]["jobs"])))

    @task(max_active_tis_per_dagrun=2)  # the campaign's host has 2 cores
    def nap(i: int) -> None:
        seconds = get_current_context()["params"]["seconds"]
        subprocess.run(["sleep", f"{float(seconds):g}"], check=True)

    @task(trigger_rule="all_done")
    def teardown(workdir: str) -> None:
        shutil.rmtree(workdir, ignore_errors=True)

    workdir = setup()
    naps = nap.expand(i=items(workdir))
    naps >> teardown(workdir)


bench_handwritten_jobs()
