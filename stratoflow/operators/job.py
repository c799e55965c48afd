"""Run one job (or one mapped chunk of a campaign) at the deployment's site."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from stratoflow.errors import StratoflowError
from stratoflow.execution.jobs import job_spec
from stratoflow.execution.placement import compute_for_site
from stratoflow.operators.base import StratoflowOperator
from stratoflow.plan.model import PROVISION
from stratoflow.sites.base import Allocation, JobStatus
from stratoflow.store.models import Task
from stratoflow.triggers.job import JobTrigger


class JobFailed(StratoflowError):
    pass


# A job that ends within this long is waited for in the task: deferring costs a second task
# process and a trigger round trip, 3.7 s more per job (bench/overhead.py, jobs of 5 s
# with this at 3 s: 1.64 times a plain Airflow task). Longer jobs free the worker slot
# and wait in the triggerer.
IN_TASK_WAIT_S = 10.0


class JobOperator(StratoflowOperator):
    """Start the job, defer to a trigger while it runs, then publish its outputs.

    ``chunk`` is this map index's input files; ``upstream_outputs`` is an earlier job's
    results (a merge reads every output of the mapped job before it).
    """

    template_fields = ("chunk", "upstream_outputs")
    ui_color = "#fff2cc"
    works_as = Task.DEPLOYER

    def __init__(
        self, *, chunk: list[str] | None = None, upstream_outputs: Any = None, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.chunk = chunk
        self.upstream_outputs = upstream_outputs

    def _alloc(self, context: Any) -> Allocation:
        return Allocation.from_dict(context["ti"].xcom_pull(task_ids=PROVISION))

    def _index(self, context: Any) -> int:
        index = context["ti"].map_index
        return -1 if index is None else index

    def run(self, context: Any) -> dict:
        alloc = self._alloc(context)
        files = list(self.chunk or []) or _files_of(self.upstream_outputs)
        spec = job_spec(self.step, self.bound(context)["inputs"], files, self._index(context))
        compute = compute_for_site(alloc.site)
        handle = compute.start_job(alloc, spec)
        self.log.info("job %s[%d] started at %s: %s", spec.step, spec.index, alloc.site, handle)
        status = compute.job_status(alloc, handle)
        deadline, pause = time.monotonic() + IN_TASK_WAIT_S, 0.05
        while not status.done and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
            status = compute.job_status(alloc, handle)
        if status.done:  # a short job, or an adopted one that had finished
            return self._finish(context, alloc, status)
        self.defer(
            trigger=JobTrigger(
                site=alloc.site,
                alloc=alloc.to_dict(),
                handle=handle,
                deadline=self.bound(context).get("deadline"),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=spec.timeout_s + 120),
        )

    def execute_complete(self, context: Any, event: dict | None = None) -> dict:
        if not event:
            # A retry can resume at this method without an event (the previous try failed
            # here); start or adopt the job again: start_job is idempotent.
            return self.execute(context)

        def complete() -> dict:
            if event.get("state") == "deadline":
                raise AirflowFailException(
                    f"the deployment's timeoutMins ran out while {self.task_id} ran"
                )
            alloc = self._alloc(context)
            status = compute_for_site(alloc.site).job_status(alloc, event["handle"])
            return self._finish(context, alloc, status)

        return self.guarded(context, complete)

    def _finish(self, context: Any, alloc: Allocation, status: JobStatus) -> dict:
        compute = compute_for_site(alloc.site)
        for line in compute.job_log(alloc, status.handle):
            self.log.info("| %s", line.rstrip("\n"))
        index = self._index(context)
        self.store.add_usage(
            self.bound(context)["deployment_id"],
            alloc.site,
            self.task_id,
            core_seconds=status.core_seconds,
        )
        if status.state != "succeeded":
            where = self.task_id if index < 0 else f"{self.task_id}[{index}]"
            raise JobFailed(f"{where}: {status.reason}")
        files = compute.list_outputs(alloc, status.outdir) if status.outdir else []
        return {"outdir": status.outdir, "files": files, "index": index}


def _files_of(results: Any) -> list[str]:
    if results is None:
        return []
    if isinstance(results, dict):
        results = [results]
    return [f for r in results if r for f in r.get("files", [])]
