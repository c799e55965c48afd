"""Starting deployments' DAG runs in the background of the API server, so that the INDIGO
API answers a POST once the deployment is recorded (as INDIGO does) rather than after
Airflow's trigger, which under load costs it hundreds of milliseconds.

A recorded deployment says ``STARTING`` in its reason until its run is triggered, as the
caller (their token, kept in memory only). A DAG Airflow knows is triggered at once by one
of a few starter threads. A never-seen template's DAG is not parsed yet: one thread per
such DAG asks the dag-processor to parse the plans file next, waits for the DAG, then
hands every start waiting on it back to the starters (or fails them all if it never
comes). Any failure to start makes the deployment CREATE_FAILED with the reason. A
deployment left STARTING by an API server that stopped is failed with a reason that says
so, the next time a server starts its starters.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from stratoflow.api.airflow import AirflowAPIError, airflow_client_as
from stratoflow.plan.model import Plan
from stratoflow.store.models import Deployment

log = logging.getLogger(__name__)

THREADS = 4  # triggers in flight at once; each is one HTTP call to Airflow
# Where every plan's DAG is defined (dags/), and the tag all of them carry.
PLANS_FILE, PLANS_TAG = "stratoflow_plans.py", "stratoflow"
# A start still pending after this long was lost with the server that held it: a start
# waits at most DAG_APPEAR_TIMEOUT_S (120 s) for a new DAG.
LOST_AFTER_S = 600.0
LOST = (
    "the API server stopped before this deployment's run was started; nothing was "
    "provisioned: submit it again"
)


@dataclass(frozen=True)
class Start:
    dag_id: str
    run_id: str
    deployment_id: str
    inputs: dict[str, Any]
    token: str = field(repr=False)


class RunStarter:
    def __init__(self, threads: int = THREADS) -> None:
        self._threads = threads
        self._queue: queue.Queue[Start] = queue.Queue()
        self._lock = threading.Lock()
        self._running = False
        self._parsing: dict[str, list[Start]] = {}  # DAG id -> the starts waiting on it

    def submit(
        self,
        plan: Plan,
        inputs: dict[str, Any],
        owner: str,
        token: str,
        options: dict[str, Any] | None = None,
    ) -> Deployment:
        """Record the deployment (STARTING) and queue its start; it as recorded."""
        from stratoflow.store import STARTING
        from stratoflow.submit import record

        self.ensure_running()
        deployment = record(plan, inputs, owner, options, reason=STARTING)
        self._queue.put(Start(plan["dag_id"], deployment.run_id, deployment.id, inputs, token))
        log.info(
            "deployment %s (%s/%s) recorded for %s",
            deployment.id,
            plan["dag_id"],
            deployment.run_id,
            owner,
        )
        return deployment

    def ensure_running(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
        for i in range(self._threads):
            threading.Thread(target=self._work, name=f"run-starter-{i}", daemon=True).start()
        threading.Thread(target=warm_up, name="api-warm-up", daemon=True).start()
        try:
            _fail_lost_starts()
        except Exception:  # the store is away: the request that brought us here goes on
            log.exception("could not look for deployments whose start was lost")

    def _work(self) -> None:
        while True:
            request = self._queue.get()
            try:
                self._start(request)
            except Exception:
                log.exception("deployment %s: starting its run failed", request.deployment_id)

    def _start(self, request: Start) -> None:
        from stratoflow.store import DeploymentStatus, Store

        with Store.open() as store:
            deployment = store.get_deployment(request.deployment_id)
        if deployment is None or deployment.status != DeploymentStatus.CREATE_IN_PROGRESS:
            return  # deleted before its run started: nothing to start
        api = airflow_client_as(request.token)
        try:
            ready = api.ready_now(request.dag_id)
        except AirflowAPIError:
            ready = True  # let the trigger meet the same fault and record it
        if ready:
            _trigger(request, api)
            return
        api.close()
        # Not parsed yet: one thread per new DAG waits for it (not in a starter's time),
        # then hands every start that waits on it back to the starters.
        with self._lock:
            waiting = self._parsing.setdefault(request.dag_id, [])
            waiting.append(request)
            first = len(waiting) == 1
        if first:
            threading.Thread(
                target=self._when_parsed,
                args=(request.dag_id, request.token),
                name=f"parse-{request.dag_id}",
                daemon=True,
            ).start()

    def _when_parsed(self, dag_id: str, token: str) -> None:
        from stratoflow.store import Store

        failure = None
        with airflow_client_as(token) as api:
            api.request_parse(PLANS_FILE, PLANS_TAG)
            try:
                api.wait_for_dag(dag_id)
            except AirflowAPIError as exc:
                failure = exc
        with self._lock:
            waiting = self._parsing.pop(dag_id, [])
        if failure is None:
            for request in waiting:
                self._queue.put(request)
            return
        with Store.open() as store:
            for request in waiting:
                store.set_status(
                    request.deployment_id,
                    "CREATE_FAILED",
                    reason=f"could not start the run: {failure}",
                )
        log.warning("DAG %s never appeared: %d deployments failed", dag_id, len(waiting))


def _fail_lost_starts() -> None:
    from stratoflow.store import Store

    with Store.open() as store:
        lost = store.fail_unstarted(LOST_AFTER_S, LOST)
    if lost:
        log.warning("%d deployments were never started: failed (%s)", len(lost), ", ".join(lost))


def _trigger(request: Start, api: Any) -> None:
    from stratoflow.store import Store
    from stratoflow.submit import start

    try:
        start(request.dag_id, request.run_id, request.deployment_id, request.inputs, api)
    except AirflowAPIError as exc:  # start() made it CREATE_FAILED with the reason
        log.warning("deployment %s did not start: %s", request.deployment_id, exc)
        return
    with Store.open() as store:
        store.run_started(request.deployment_id)


#: The API server's one starter (per process).
starter = RunStarter()


def warm_up() -> None:
    """Import what a create needs and read one catalogue template, once per process, so
    that the first client after a (re)start does not wait on it (about 0.6 s of CPU on 2
    cores: the TOSCA parser, the plan compiler, the store). The supervisor's first call
    starts it, before any client calls."""
    try:
        from stratoflow.api.indigo import writes  # noqa: F401
        from stratoflow.registration import catalogue_dir
        from stratoflow.submit import record  # noqa: F401
        from stratoflow.tosca import load_topology

        template = next(iter(sorted(catalogue_dir().glob("*.yaml"))), None)
        if template is not None:
            load_topology(str(template), {})
    except Exception:  # a catalogue template that does not load is its POST's business
        log.debug("warming up the API did not finish", exc_info=True)
