"""Benchmark: create then delete N single-VM deployments on the OpenStack fake.

Not a test. In a fresh embedded Airflow (its own AIRFLOW_HOME, PostgreSQL data and port;
a catalogue of the local site and ``cloud``, an OpenStack site served by the fake, whose
VMs boot the Stratoflow agent), it submits N deployments of a one-VM template (no public
endpoint), at most P in flight, each timed from submit to CREATE_COMPLETE; then it deletes
them all the same way, each timed from the delete request to DELETE_COMPLETE. Before and
after, it times a hand-written Airflow DAG (bench/handwritten_vm_dag.py: ``airflow.sdk``
tasks and the same OpenStackHook) that creates one server, waits until ACTIVE, deletes it
and waits until it is gone, from trigger to success; the baseline is the mean of the two.
Both poll the cloud every 0.5 s. Leaked = what the fake still holds at the end plus the
store's live resource records. A failed run keeps its home (logs, the VMs' agent logs).

    .venv/bin/python bench/deployment_lifecycle.py [--deployments 50] [--parallel 10]
        [--boot-polls 2] [--keep]

Last line: ``deployments=50 create_p50_s=.. delete_p50_s=.. ratio_vs_handwritten=..
leaked=..`` with ratio_vs_handwritten = (create_p50_s + delete_p50_s) / handwritten_s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

from fresh_home import use_fresh_embedded_home  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
CONN_ID = "bench_openstack"
PASSWORD = "bench-os-password-5d1e"
POLL_S = 0.5
HAND_DAG = "bench_handwritten_vm"
SITES = f"""sites:
  - {{name: local, kind: local, cores: auto, memory: auto, allowed_roots: ["{{include}}"]}}
  - {{name: cloud, kind: openstack, conn_id: {CONN_ID}, image: ubuntu-22.04, network: private,
     poll_interval_s: {POLL_S}, boot_timeout_s: 300}}
"""
TEMPLATE = """tosca_definitions_version: tosca_simple_yaml_1_3
metadata: {template_name: bench_one_vm}
description: One virtual machine, no public endpoint (bench/deployment_lifecycle.py).
imports: [stratoflow-types]
topology_template:
  node_templates:
    server:
      type: tosca.nodes.Compute
      capabilities: {host: {properties: {num_cpus: 1, mem_size: 1 GB}}}
  policies:
    - placement: {type: stratoflow.policies.Placement, targets: [server], properties: {site: cloud}}
  outputs:
    private_ip: {value: {get_attribute: [server, private_address, 0]}}
"""


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployments", type=int, default=50)
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the Airflow home")
    ap.add_argument(
        "--boot-polls",
        type=int,
        default=2,
        help="reads of a server before it is ACTIVE (the fake's 2: a ~1 s boot; a real"
        " cloud's 30-120 s boot is 60-240 at the 0.5 s poll both sides use)",
    )
    args = ap.parse_args()
    # Run in the background, SIGINT is ignored: make SIGTERM stop the embedded Airflow too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    home = use_fresh_embedded_home("sf-lifecycle-")
    sys.path.insert(0, str(REPO))  # for tests.fakes

    from tests.fakes.openstack_server import FakeOpenStack

    fake = FakeOpenStack(seed=3, build_polls=args.boot_polls).start()
    fake.users.add(("alice", PASSWORD))
    # Every deployment stays up until the delete phase: a project big enough for them all.
    n = args.deployments + 2
    fake.quota.update(instances=n, cores=n * 2, ram=n * 4096, floatingip=n)
    (home / "sites.yaml").write_text(SITES)
    (home / "one_vm.yaml").write_text(TEMPLATE)
    dags = home / "dags"  # the repository's DAG files and the hand-written one
    dags.mkdir()
    for f in (REPO / "dags").iterdir():
        if f.is_file():
            (dags / f.name).symlink_to(f)
    (dags / "bench_handwritten_vm.py").symlink_to(Path(__file__).with_name("handwritten_vm_dag.py"))
    extra = {"project_name": "demo", "user_domain_name": "Default", "region_name": "RegionOne"}
    conn = {"conn_type": "openstack", "host": fake.auth_url, "login": "alice"}
    conn |= {"password": PASSWORD, "extra": extra}
    os.environ.update(  # before Airflow starts: its processes inherit them
        STRATOFLOW_SITES=str(home / "sites.yaml"),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        **{f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(conn)},
    )

    from stratoflow import embedded
    from stratoflow.deletion import request_delete
    from stratoflow.registration import register
    from stratoflow.store import Store
    from stratoflow.submit import check_progress_possible, client, submit

    created: dict[str, float | None] = {}  # deployment id -> seconds (None: failed)
    deleted: dict[str, float | None] = {}
    hand: list[float] = []
    leftovers: dict[str, list[str]] = {}
    live: list = []
    finished = False
    try:
        embedded.start_database()
        topology, plan = register(str(home / "one_vm.yaml"), [], run=True)
        embedded.start(wait_s=300)
        up_s = time.monotonic() - started
        store = Store.open()
        api = client()

        def handwritten() -> float:
            run_id = f"bench__{uuid.uuid4().hex[:12]}"
            t = time.monotonic()
            api.start_run(HAND_DAG, run_id, {"conn_id": CONN_ID, "poll_s": POLL_S})
            while (state := api.get_run(HAND_DAG, run_id)["state"]) not in ("success", "failed"):
                check_progress_possible(t + 300, f"hand-written run {run_id}")
                time.sleep(POLL_S)
            if state != "success":
                logs = Path(os.environ["AIRFLOW_HOME"]) / "logs" / f"dag_id={HAND_DAG}"
                raise RuntimeError(f"hand-written run {run_id} {state}; its logs: {logs}")
            return time.monotonic() - t

        def phase(what, items, begin, ok, bad, took) -> float:
            """At most --parallel in flight: begin(item) -> id, timed until ok or bad."""
            todo, flight, t0 = list(items), {}, time.monotonic()
            deadline = t0 + 300 + 120 * math.ceil(len(todo) / args.parallel)
            while todo or flight:
                while todo and len(flight) < args.parallel:
                    t = time.monotonic()
                    flight[begin(todo.pop(0))] = t
                states = {}  # of those still in flight, for the message of a stall
                for dep_id, t in list(flight.items()):
                    d = store.get_deployment(dep_id)
                    status = d.status.value if d is not None else "not recorded"
                    if status in (ok, bad):
                        took[dep_id] = time.monotonic() - t if status == ok else None
                        del flight[dep_id]
                        if status == bad:
                            print(f"{what} {dep_id}: {bad}: {d.status_reason}", flush=True)
                    else:
                        states[dep_id] = f"{status} (task {getattr(d, 'task', None)})"
                check_progress_possible(deadline, f"{what}: {len(todo)} to go, in flight {states}")
                time.sleep(POLL_S)
            return time.monotonic() - t0

        def delete(deployment_id: str) -> str:
            request_delete(deployment_id, api, requested_by="bench")
            return deployment_id

        for dag_id in (HAND_DAG, plan["dag_id"], "stratoflow_delete"):
            api.wait_for_dag(dag_id)
        hand.append(handwritten())
        print(f"hand-written create+delete (before): {hand[0]:.1f} s", flush=True)
        create_s = phase(
            "create",
            range(args.deployments),
            lambda _: submit(plan, dict(topology.bound_inputs), owner="bench")[0],
            "CREATE_COMPLETE",
            "CREATE_FAILED",
            created,
        )
        print(f"{args.deployments} created (or failed) in {create_s:.1f} s", flush=True)
        delete_s = phase(
            "delete",
            list(created),
            delete,
            "DELETE_COMPLETE",
            "DELETE_FAILED",
            deleted,
        )
        print(f"{len(created)} deleted (or failed) in {delete_s:.1f} s", flush=True)
        hand.append(handwritten())
        print(f"hand-written create+delete (after): {hand[1]:.1f} s", flush=True)
        live = store.live_resources()
        api.close()
        store.close()
        finished = True
    finally:
        leftovers = fake.leftovers()
        if not finished:  # keep the VMs' agent logs with Airflow's, for the post-mortem
            with contextlib.suppress(OSError, shutil.Error):
                shutil.copytree(fake.vms.root, home / "fake-vms", ignore_dangling_symlinks=True)
        embedded.stop()
        fake.stop()
        if not finished:
            print(f"failed; home kept for its logs: {home}", file=sys.stderr)
    leaked = sum(len(v) for v in leftovers.values()) + len(live)
    creates = [s for s in created.values() if s is not None]
    deletes = [s for s in deleted.values() if s is not None]
    hand_s = sum(hand) / len(hand)
    c50, d50 = percentile(creates, 50), percentile(deletes, 50)
    print(f"up (database, migrations, supervisor, healthy): {up_s:.1f} s")
    for name, xs in (("create", creates), ("delete", deletes)):
        print(
            f"{name}: {len(xs)} of {args.deployments} completed; p50 {percentile(xs, 50):.1f} s,"
            f" p90 {percentile(xs, 90):.1f} s, max {max(xs, default=math.nan):.1f} s"
        )
    print(f"hand-written create+delete: {hand[0]:.1f} s before, {hand[1]:.1f} s after")
    print(
        f"wall time: {time.monotonic() - started:.1f} s (creates {create_s:.1f} s, deletes"
        f" {delete_s:.1f} s, {args.parallel} at a time)"
    )
    if leaked:
        print(f"leaked: at the fake {leftovers}; live records {[r.key for r in live]}")
    print(
        f"deployments={args.deployments} create_p50_s={c50:.1f} delete_p50_s={d50:.1f}"
        f" ratio_vs_handwritten={(c50 + d50) / hand_s:.2f} leaked={leaked}"
    )
    ok = len(creates) == len(deletes) == args.deployments and leaked == 0
    if args.keep or not ok:
        print(f"home kept: {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
