"""Benchmark: the INDIGO-compatible API's latency, against Airflow's own trigger.

Not a test. In a fresh embedded Airflow (its own home, database and port) with one extra
site, ``bench``: a local site that declares far more capacity than it has (each
deployment only makes a sandbox directory, so none waits for room). From ``--clients``
threads, each client alternates two calls until ``--deployments`` of each are done:

* ``POST /orchestrator/deployments`` of the catalogue's ``local_cluster.yaml`` (one host,
  at ``bench``): one single-VM deployment (the figure under test);
* Airflow's ``POST /api/v2/dags/{dag_id}/dagRuns`` of the same DAG (the baseline: the
  least any deployment API on Airflow can cost).

Both run under the same load: the runs already triggered keep the scheduler busy. Then
every deployment is read back with ``GET /orchestrator/deployments/{id}``. One round of
``--clients`` calls of each kind goes first, untimed: the first calls import the API's
modules, and every client's first call would wait on those imports. Last, a
never-seen template (the cluster under a new name, so a new DAG) is posted ``--new`` times,
and each is timed from its POST until its DAG run is running.

    .venv/bin/python bench/api_latency.py [--deployments 200] [--clients 20] [--new 3]
    .venv/bin/python bench/api_latency.py --production   # Celery, 2 workers

Last line: ``post_p50_ms=.. post_p99_ms=.. get_p99_ms=.. ratio_vs_airflow_trigger=..
new_template_to_running_s=..`` (the ratio is of the p50s; the new template's figure is
the median).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from clients import drain
from embedded_burst import percentile  # bench/ is on sys.path when run as a script
from fresh_home import production_mode_for_bench, use_fresh_embedded_home

CLUSTER = "local_cluster.yaml"
PARAMETERS = {"site": "bench", "hosts": 1}


def bench_sites(home: Path) -> Path:
    """The default catalogue plus ``bench``."""
    from stratoflow.config import include_dir

    text = (include_dir() / "sites.yaml").read_text()
    bench = (
        "  - name: bench\n    kind: local\n    cores: 4096\n    memory: 4398046511104\n"
        "    allowed_roots: ['{include}']\n"
    )
    path = home / "sites.yaml"
    path.write_text(text.replace("sites:\n", "sites:\n" + bench, 1))
    return path


def timed_calls(n: int, clients: int, token: str, dag_id: str, conf: dict) -> dict:
    """``n`` INDIGO POSTs and ``n`` Airflow triggers, alternated by each client thread;
    returns the latencies (s) of each kind, the created ids and the non-2xx statuses."""
    found: dict = {"post": [], "trigger": [], "ids": [], "refused": []}
    lock = threading.Lock()

    def call(http: Any, i: int) -> None:
        t = time.monotonic()
        if i % 2 == 0:
            body = {"template": CLUSTER, "parameters": PARAMETERS}
            r = http.post("/orchestrator/deployments", json=body)
            kind = "post"
        else:
            run = {"dag_run_id": f"bench__{uuid.uuid4().hex}", "logical_date": None}
            r = http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={**run, "conf": conf})
            kind = "trigger"
        took = time.monotonic() - t
        with lock:
            found[kind].append(took)
            if not r.is_success:
                found["refused"].append((kind, r.status_code, r.text[:200]))
            elif kind == "post":
                found["ids"].append(r.json()["uuid"])

    drain(range(2 * n), clients, call, headers={"Authorization": f"Bearer {token}"})
    return found


def timed_gets(ids: list[str], clients: int, token: str) -> list[float]:
    took: list[float] = []

    def call(http: Any, deployment_id: str) -> None:
        t = time.monotonic()
        r = http.get(f"/orchestrator/deployments/{deployment_id}")
        took.append(time.monotonic() - t)
        assert r.status_code == 200, r.text

    drain(ids, clients, call, headers={"Authorization": f"Bearer {token}"})
    return took


def new_template_to_running(token: str, text: str) -> float:
    """Seconds from the POST of a never-seen template until its DAG run is running."""
    import httpx

    from stratoflow import embedded
    from stratoflow.store import Store
    from stratoflow.submit import check_progress_possible

    headers = {"Authorization": f"Bearer {token}"}
    name = f"bench_new_{uuid.uuid4().hex[:8]}"
    body = {
        "template": text.replace("template_name: local_cluster", f"template_name: {name}"),
        "parameters": PARAMETERS,
    }
    with httpx.Client(base_url=embedded.api_url(), timeout=120, headers=headers) as http:
        t = time.monotonic()
        r = http.post("/orchestrator/deployments", json=body)
        assert r.status_code == 201, r.text
        with Store.open() as store:
            deployment = store.get_deployment(r.json()["uuid"])
        run = f"/api/v2/dags/{deployment.dag_id}/dagRuns/{deployment.run_id}"
        deadline = time.monotonic() + 300
        while True:
            found = http.get(run)
            if found.is_success and found.json()["state"] in ("running", "success"):
                return time.monotonic() - t
            with Store.open() as store:
                now = store.get_deployment(deployment.id)
            assert now.status.value != "CREATE_FAILED", now.status_reason
            check_progress_possible(deadline, f"the new template's run {deployment.run_id}")
            time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployments", type=int, default=200)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--new", type=int, default=3, help="never-seen templates to time")
    ap.add_argument("--keep", action="store_true", help="keep the Airflow home")
    ap.add_argument("--production", action="store_true", help="on the production mode")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home = use_fresh_embedded_home("sf-api-latency-")
    os.environ["STRATOFLOW_SITES"] = str(bench_sites(home))
    mode = production_mode_for_bench("sf_api") if args.production else None

    import httpx

    from stratoflow import embedded
    from stratoflow.registration import catalogue_dir, register, register_catalogue
    from stratoflow.submit import client

    embedded.start_database()
    register_catalogue()
    topology, plan = register(
        str(catalogue_dir() / CLUSTER), [f"{k}={v}" for k, v in PARAMETERS.items()], run=True
    )
    embedded.start(wait_s=300)
    try:
        with client() as api:
            api.wait_for_dag(plan["dag_id"])
            api.unpause(plan["dag_id"])
        login = {"username": embedded.ADMIN, "password": embedded.admin_password()}
        with httpx.Client(base_url=embedded.api_url(), timeout=60) as http:
            token = http.post("/auth/token", json=login).json()["access_token"]
        conf = dict(topology.bound_inputs)
        # Warm-up, not timed: the first calls import the API's modules (TOSCA, the
        # INDIGO app), and every client's first call waits on those imports.
        warm = timed_calls(args.clients, args.clients, token, plan["dag_id"], conf)
        timed_gets(warm["ids"], args.clients, token)
        calls = timed_calls(args.deployments, args.clients, token, plan["dag_id"], conf)
        gets = timed_gets(calls["ids"], args.clients, token)
        text = (catalogue_dir() / CLUSTER).read_text()
        new_s = [new_template_to_running(token, text) for _ in range(args.new)]
    finally:
        embedded.stop()
        if mode is not None and not args.keep:
            from stratoflow.embedded.production import drop_databases

            drop_databases(mode)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)

    post = [s * 1000 for s in calls["post"]]
    trigger = [s * 1000 for s in calls["trigger"]]
    get = [s * 1000 for s in gets]
    for what, ms in (("INDIGO POST", post), ("Airflow trigger", trigger), ("INDIGO GET", get)):
        print(
            f"{what} (n={len(ms)}): p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f}"
            f" ms, max {max(ms):.1f} ms"
        )
    print(f"never-seen template to running: {', '.join(f'{s:.1f}' for s in new_s)} s")
    if calls["refused"]:
        print(f"refused: {calls['refused'][:5]}")
    print(
        f"mode={'production' if mode else 'embedded'}"
        f" deployments={args.deployments} clients={args.clients}"
        f" post_p50_ms={percentile(post, 50):.1f} post_p99_ms={percentile(post, 99):.1f}"
        f" get_p50_ms={percentile(get, 50):.1f} get_p99_ms={percentile(get, 99):.1f}"
        f" trigger_p50_ms={percentile(trigger, 50):.1f}"
        f" trigger_p99_ms={percentile(trigger, 99):.1f}"
        f" ratio_vs_airflow_trigger={percentile(post, 50) / percentile(trigger, 50):.2f}"
        f" new_template_to_running_s={statistics.median(new_s):.1f}"
        f" refused={len(calls['refused'])}"
    )
    return 0 if not calls["refused"] else 1


if __name__ == "__main__":
    sys.exit(main())
