"""Provision (an Airflow setup task) and teardown (its teardown task)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from stratoflow.admission import Queued, SiteRoom
from stratoflow.errors import SiteError
from stratoflow.execution.deadlines import attempt_deadline, attempt_wait
from stratoflow.execution.placement import compute_for_site, demand, host_requests, site_rooms
from stratoflow.execution.teardown import tear_down
from stratoflow.operators.base import StratoflowOperator
from stratoflow.plan.model import PROVISION
from stratoflow.sites.base import Allocation, Compute
from stratoflow.sites.queue_policy import DAY_S
from stratoflow.store.models import Task
from stratoflow.triggers.admission import AdmissionTrigger
from stratoflow.triggers.wait import SiteWaitTrigger

# How often a queued deployment checks for its turn. Teardowns free room at once; this is
# how soon the next in line notices.
QUEUE_POLL_S = 1.0


def _first_candidate(context: Any, candidates: list[str]) -> int:
    """Try n starts at candidate n (the last one is reused): the retries are the failover,
    and the candidates before it are the ones that failed."""
    return min(context["ti"].try_number - 1, len(candidates) - 1)


class ProvisionOperator(StratoflowOperator):
    """Wait for room in the admission queue, then create the deployment's resources.

    Try n starts at candidate n (the last one is reused), so Airflow's retries are the
    failover for real faults. Lack of capacity is never a fault: the deployment waits in
    the queue (in the triggerer, holding no worker slot) and spends no retry. The site
    backend removes a failed attempt's resources before raising: Airflow never runs a
    teardown whose setup failed.
    """

    ui_color = "#d9ead3"
    works_as = Task.DEPLOYER

    def run(self, context: Any) -> dict:
        bound = self.bound(context)
        deployment_id = bound["deployment_id"]
        candidates = bound["candidates"]
        tried = candidates[_first_candidate(context, candidates) :]
        rooms = site_rooms()
        cores, mem = demand(bound["hosts"])
        deployment = self.store.get_deployment(deployment_id)
        timeout = rooms[tried[0]].queue_timeout_s if tried[0] in rooms else DAY_S
        if bound.get("deadline"):  # the submitter's timeoutMins bounds the wait too
            timeout = min(timeout, max(bound["deadline"] - time.time(), 0.0))
        deadline = self.store.enqueue(
            deployment_id,
            owner=deployment.owner if deployment else "anonymous",
            priority=int(bound.get("priority") or 0),
            candidates=tried,
            cores=cores,
            mem_bytes=mem,
            timeout_s=timeout,
        )
        # The deadline of the first joining: a retry (failover) does not restart the wait.
        return self._admit(context, rooms, deadline.timestamp())

    def admitted(self, context: Any, event: dict | None = None, deadline: float = 0.0) -> dict:
        """Back from the queue: take the room (or wait again if another took it first)."""
        if not event:
            return self.execute(context)  # a retry resumed without an event: join again
        # The store's deadline, not only the kwarg: `airflow dags test` resumes a deferred
        # task without its defer kwargs (docs/lifecycle.md).
        record = self.store.admission_record(self.deployment_id(context)) or {}
        if record.get("deadline_at"):
            deadline = datetime.fromisoformat(record["deadline_at"]).timestamp()

        def take() -> dict:
            status = (event or {}).get("status")
            if status == "timeout":
                raise AirflowFailException(
                    "gave up waiting for capacity (the site's queue_timeout_s, or the"
                    " deployment's timeoutMins, passed): "
                    + ((event or {}).get("reason") or "no candidate site had room")
                )
            if status != "ready":
                raise SiteError(f"the deployment left the admission queue: {event}")
            return self._admit(context, site_rooms(), deadline)

        return self.guarded(context, take)

    def _admit(self, context: Any, rooms: dict[str, SiteRoom], deadline: float) -> dict:
        bound = self.bound(context)
        deployment_id = bound["deployment_id"]
        verdict = self.store.try_admit(deployment_id, rooms)
        if verdict is None:
            raise SiteError(f"deployment {deployment_id} is not in the admission queue")
        if isinstance(verdict, Queued):
            self.store.set_status(
                deployment_id, "CREATE_IN_PROGRESS", reason=verdict.reason, task=Task.BROKERING
            )
            self.log.info("%s: %s", deployment_id, verdict.reason)
            self.defer(
                trigger=AdmissionTrigger.waiting(deployment_id, rooms, deadline, QUEUE_POLL_S),
                method_name="admitted",
                kwargs={"deadline": deadline},
                timeout=timedelta(seconds=max(deadline - time.time(), 0) + 300),
            )
        self.store.set_status(
            deployment_id,
            "CREATE_IN_PROGRESS",
            reason="",
            task=Task.DEPLOYER,
            site=verdict.site,
        )
        why = verdict.why
        failed = bound["candidates"][: _first_candidate(context, bound["candidates"])]
        if failed:
            why += f", after {', '.join(failed)} failed"
        self.log.info("%s admitted at %s", deployment_id, why)
        self.store.record_step_event(
            deployment_id,
            self.task_id,
            "admitted",
            message=why,
            try_number=context["ti"].try_number,
        )
        return self._provision(context, deployment_id, verdict.site, bound["hosts"])

    def _compute(self, context: Any, site: str, must_be_up: float | None) -> Compute:
        compute = compute_for_site(site)
        compute.keep_failed_attempt = self._keeps_failed_attempt(context)
        compute.attempt_deadline = must_be_up
        return compute

    def _keeps_failed_attempt(self, context: Any) -> bool:
        """The submitter asked to keep a failed last attempt, and this try is the last."""
        keep = bool(self.bound(context).get("keep_last_attempt"))
        return keep and context["ti"].try_number > self.retries

    def _provision(self, context: Any, deployment_id: str, site: str, hosts: list) -> dict:
        started = time.time()
        bound = self.bound(context)
        provider_s = bound.get("provider_timeout_s")
        must_be_up = attempt_deadline(started, provider_s, bound.get("deadline"))
        compute = self._compute(context, site, must_be_up)
        try:
            alloc = compute.provision_start(deployment_id, host_requests(hosts), self.store)
            wait = compute.boot_wait(alloc)
        except SiteError as exc:
            if not compute.keep_failed_attempt:
                self.store.release(site, deployment_id)  # the attempt is gone; so is its room
            raise SiteError(f"site {site}: {exc}") from exc
        if wait is not None:
            # VMs take minutes to boot: wait in the triggerer, not in a worker slot.
            wait = attempt_wait(wait, started, provider_s, bound.get("deadline"))
            state = {"site": site, "alloc": alloc.to_dict(), "attempt_deadline": must_be_up}
            self.log.info(
                "%s: %d host(s) booting at %s; waiting on %s in the triggerer",
                deployment_id,
                len(alloc.hosts),
                site,
                wait.waiter,
            )
            self.defer(
                trigger=SiteWaitTrigger.from_spec(wait, echo=state),
                method_name="resume",
                kwargs=state,
                timeout=timedelta(seconds=(wait.timeout_s or 3600) + 300),
            )
        return self._provisioned(deployment_id, site, alloc)

    def resume(
        self,
        context: Any,
        event: dict | None = None,
        site: str = "",
        alloc: dict | None = None,
        attempt_deadline: float | None = None,
    ) -> dict:
        """Back from the boot trigger: finish (addresses, agent) or clean up and fail."""
        if not event:
            # A retry can resume here without an event (see JobOperator): start again;
            # provision_start adopts the servers this deployment already has.
            return self.execute(context)

        state: dict[str, Any] = (
            {"site": site, "alloc": alloc, "attempt_deadline": attempt_deadline}
            if site
            else event.get("echo") or {}
        )

        def finish() -> dict:
            compute = self._compute(context, state["site"], state.get("attempt_deadline"))
            started = Allocation.from_dict(state["alloc"])
            status = (event or {}).get("status")
            if status != "active":
                why = (event or {}).get("message") or f"{status}: {event}"
                if status == "timeout":
                    why = (
                        "not up in time (the site's boot_timeout_s, or the deployment's"
                        " providerTimeoutMins or timeoutMins)"
                    )
                exc = SiteError(f"site {state['site']}: hosts did not boot: {why}")
                note = compute.cleanup_attempt(started.deployment_id, self.store, exc)
                if not compute.keep_failed_attempt:
                    self.store.release(state["site"], started.deployment_id)
                raise SiteError(f"{exc}{note}")
            try:
                done = compute.provision_finish(started, self.store)
            except SiteError as exc:
                raise SiteError(f"site {state['site']}: {exc}") from exc
            return self._provisioned(started.deployment_id, state["site"], done)

        return self.guarded(context, finish)

    def on_final_failure(self, context: Any, exc: BaseException) -> None:
        # Out of tries (or waited too long): leave the line, so nobody waits behind it.
        deployment_id = self.deployment_id(context)
        self.store.leave_queue(deployment_id, f"provision failed: {exc}")
        kept = [r for r in self.store.resources(deployment_id) if r.live]
        if kept and self._keeps_failed_attempt(context):
            # They hold their capacity until the deployment is deleted.
            where = ", ".join(sorted({f"{r.kind} {r.external_id or r.key}" for r in kept}))
            self.store.record_step_event(
                deployment_id,
                self.task_id,
                "kept",
                message=f"the last attempt's resources are kept for debugging (keepLastAttempt):"
                f" {where}; `stratoflow resources` lists them, deleting the deployment"
                " removes them",
                try_number=context["ti"].try_number,
            )
            return
        self.store.release_all(deployment_id)

    def _provisioned(self, deployment_id: str, site: str, alloc: Allocation) -> dict:
        self.store.set_status(deployment_id, "CREATE_IN_PROGRESS", site=site)
        self.log.info(
            "provisioned %s at %s: %d cores, workdir %s",
            deployment_id,
            site,
            alloc.cores,
            alloc.workdir,
        )
        return alloc.to_dict()


class TeardownOperator(StratoflowOperator):
    """Remove everything the deployment holds at its site. Idempotent; keeps results."""

    ui_color = "#f4cccc"
    works_as = Task.DEPLOYER
    bounded_by_deadline = False

    def run(self, context: Any) -> dict:
        deployment_id = self.deployment_id(context)
        data = context["ti"].xcom_pull(task_ids=PROVISION)
        alloc = Allocation.from_dict(data) if data else None
        sites = tear_down(deployment_id, self.store, alloc)
        self.log.info("deployment %s torn down at %s", deployment_id, sites or "no site")
        return {"sites": sites}
