"""Submitting a registered plan as an Airflow DAG run, and following it to the end."""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any, TextIO

from stratoflow import embedded
from stratoflow.client import AirflowAPIError, AirflowClient
from stratoflow.errors import StratoflowError
from stratoflow.plan.model import Plan
from stratoflow.store import Deployment, Store, deployment_id_for

TERMINAL = {"success", "failed"}
DONE_TASK_STATES = {"success", "failed", "skipped", "upstream_failed", "removed"}


def client() -> AirflowClient:
    import os

    user = os.environ.get("STRATOFLOW_AIRFLOW_USER") or embedded.ADMIN
    password = os.environ.get("STRATOFLOW_AIRFLOW_PASSWORD") or embedded.admin_password()
    return AirflowClient(embedded.api_url(), user, password)


def submit(
    plan: Plan,
    inputs: dict[str, Any],
    owner: str = "cli",
    api: AirflowClient | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Record the deployment, then trigger its run. Returns (deployment id, run id).

    ``api`` defaults to the admin client; the deployments API passes one holding the
    caller's token. ``options`` are the submission's besides the inputs
    (``keep_last_attempt``).
    """
    deployment = record(plan, inputs, owner, options)
    start(plan["dag_id"], deployment.run_id, deployment.id, inputs, api)
    return deployment.id, deployment.run_id


def record(
    plan: Plan,
    inputs: dict[str, Any],
    owner: str,
    options: dict[str, Any] | None = None,
    reason: str | None = None,
) -> Deployment:
    """The deployment's record, CREATE_IN_PROGRESS, before its run exists: a failure to
    trigger is then visible as CREATE_FAILED with the reason, never as a run nobody knows
    about. Returns it as recorded."""
    dag_id = plan["dag_id"]
    run_id = f"stratoflow__{uuid.uuid4().hex[:16]}"
    deployment_id = deployment_id_for(dag_id, run_id)
    with Store.open() as store:
        return store.create_deployment(
            dag_id,
            run_id,
            plan["hash"],
            inputs,
            owner=owner,
            id=deployment_id,
            options=options,
            reason=reason,
        )


def start(
    dag_id: str,
    run_id: str,
    deployment_id: str,
    inputs: dict[str, Any],
    api: AirflowClient | None = None,
) -> None:
    """Trigger a recorded deployment's run, once its DAG is parsed. Any failure to start
    (HTTP, network, auth, the DAG never parsed) makes it CREATE_FAILED and is raised."""
    try:
        with api or client() as airflow:
            airflow.start_run(
                dag_id,
                run_id,
                inputs,
                embedded.one_trigger_at_a_time,
                note=f"deployment {deployment_id} (create)",
            )
    except Exception as exc:
        reason = f"could not start the run: {exc}"
        with Store.open() as store:
            store.set_status(deployment_id, "CREATE_FAILED", reason=reason)
        status = exc.status if isinstance(exc, AirflowAPIError) else 0
        raise AirflowAPIError(reason, status) from exc


def run_url(dag_id: str, run_id: str) -> str:
    return f"{embedded.api_url()}/dags/{dag_id}/runs/{run_id}"


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total} tasks"


class EngineStalled(StratoflowError):
    """The run cannot progress: the deadline passed, or an Airflow process is down."""


def check_progress_possible(deadline: float, what: str) -> None:
    """Raise at once when waiting on is pointless: past the deadline, or an embedded
    Airflow process has exited and the supervisor gave up on it."""
    why = embedded.engine_problem()
    if why is not None:
        raise EngineStalled(f"{what} cannot progress: {why}")
    if time.monotonic() > deadline:
        raise EngineStalled(f"{what}: still not finished at the deadline")


def follow(
    dag_id: str,
    run_id: str,
    deployment_id: str,
    poll: float = 1.0,
    out: TextIO | None = None,
    timeout_s: float = 3600.0,
    success: str = "CREATE_COMPLETE",
) -> int:
    """Show progress until the run ends; print the outcome. Exit code 0 when the
    deployment ends in ``success``, else 1.

    Gives up (EngineStalled) after ``timeout_s``, or at once when the embedded Airflow's
    health report says a process is down for good.
    """
    out = out or sys.stdout  # looked up per call: sys.stdout may be replaced after import
    api = client()
    tty = out.isatty()
    last = ""
    deadline = time.monotonic() + timeout_s
    while True:
        check_progress_possible(deadline, f"deployment {deployment_id} (run {run_id})")
        run = api.get_run(dag_id, run_id)
        tis = api.task_instances(dag_id, run_id)
        done = sum(1 for t in tis if t.get("state") in DONE_TASK_STATES)
        active = sorted(
            {
                t["task_id"]
                for t in tis
                if t.get("state") in ("running", "deferred", "queued", "up_for_retry")
            }
        )
        line = f"{_bar(done, len(tis))}  {run['state']}  {', '.join(active)}"
        if line != last:
            out.write(("\r" + line.ljust(100)) if tty else line + "\n")
            out.flush()
            last = line
        if run["state"] in TERMINAL:
            break
        time.sleep(poll)
    if tty:
        out.write("\n")
    deployment = Store.open().get_deployment(deployment_id)
    status = deployment.status if deployment else "UNKNOWN"
    out.write(f"deployment {deployment_id}: {status}\n")
    if deployment and deployment.status_reason:
        out.write(f"reason: {deployment.status_reason}\n")
    stage_out = (deployment.outputs or {}).get("stage_out") if deployment else None
    if stage_out:
        out.write(f"results: {stage_out['results_dir']}\n")
        for f in stage_out["files"]:
            out.write(f"  {f['url']}  ({f['size']} bytes, sha256 {f['sha256'][:16]}...)\n")
    out.write(f"run in the Airflow UI: {run_url(dag_id, run_id)}\n")
    return 0 if status == success else 1
