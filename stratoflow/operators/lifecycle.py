"""A lifecycle policy's run as Airflow operators: evaluate -> plan -> execute -> verify ->
report, each one step of ``stratoflow.execution.lifecycle_run``."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseOperator

from stratoflow.errors import StratoflowError
from stratoflow.hooks.credentials import use_airflow_connections

use_airflow_connections()  # the storage backends behind endpoints use Airflow Connections


def policy_asset(policy: str) -> Asset:
    """The Asset a policy's DAG is scheduled on: an event on it (a dataset the policy
    selects was registered) starts a run. One definition, shared by producer and consumer,
    so that name and URI always agree."""
    return Asset(name=f"stratoflow-policy-{policy}", uri=f"x-stratoflow://policy/{policy}")


#: What a campaign's stage-out or a transfer declares among its outlets: through it, the
#: task announces at run time the Assets of the policies that select what it registered.
REGISTERED_DATASETS = AssetAlias("stratoflow-registered-datasets")


def register_and_announce(
    operator: BaseOperator, context: Any, store: Any, dataset: str, files: list[dict], meta: dict
) -> str | None:
    """Register a step's verified copies in the replica catalogue and start the policies
    that select them. A catalogue fault never fails the step (its copies are made and
    verified): it is logged, and None is returned."""
    from stratoflow.execution.datasets import register_staged

    try:
        policies = register_staged(
            store, dataset, files, source=f"campaign:{meta['deployment']}", meta=meta
        )
    except StratoflowError as e:
        operator.log.warning("not registered in the replica catalogue: %s", e)
        return None
    if policies is None:
        operator.log.info("no storage endpoint holds %s: not registered", files[0]["url"])
        return None
    for name in policies:
        context["outlet_events"][REGISTERED_DATASETS].add(
            policy_asset(name), extra={"dataset": dataset}
        )
    operator.log.info("registered dataset %s; policies started: %s", dataset, policies or "none")
    return dataset


class PolicyStepOperator(BaseOperator):
    """One step of a run of policy ``policy``."""

    template_fields = ("policy",)
    ui_color = "#d9ead3"

    def __init__(self, *, policy: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.policy = policy

    @cached_property
    def store(self) -> Any:
        from stratoflow.store import Store

        return Store.open()

    def pulled(self, context: Any, task_id: str) -> Any:
        return context["ti"].xcom_pull(task_ids=task_id)

    def is_dry_run(self, context: Any) -> bool:
        return bool(context["params"].get("dry_run"))


class EvaluatePolicyOperator(PolicyStepOperator):
    def execute(self, context: Any) -> list[int]:
        from stratoflow.execution.lifecycle_run import evaluate

        ids = evaluate(self.store, self.policy)
        self.log.info("policy %s selects %d dataset(s)", self.policy, len(ids))
        return ids


class PlanPolicyOperator(PolicyStepOperator):
    def execute(self, context: Any) -> list[dict[str, Any]]:
        from stratoflow.execution.lifecycle_run import plan

        plans = plan(self.store, self.policy, self.pulled(context, "evaluate") or [])
        for p in plans:
            self.log.info("dataset %s: %d action(s)", p["dataset"], len(p["actions"]))
            for a in p["actions"]:
                self.log.info("  %s %s@%s: %s", a["kind"], a["file"], a["endpoint"], a["reason"])
        return plans


class ExecutePolicyOperator(PolicyStepOperator):
    """The plan's actions; copies into endpoints whose service moves files in bulk (FTS3)
    are then submitted a batch per service, and the task defers until each batch ends."""

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from stratoflow.execution.lifecycle_bulk import queued_batches
        from stratoflow.execution.lifecycle_run import execute

        if self.is_dry_run(context):
            self.log.info("dry run: nothing executed")
            return []
        outcomes = execute(self.store, self.policy, self.pulled(context, "plan") or [])
        return self._next_batch(context, outcomes, queued_batches(outcomes), 0)

    def _next_batch(
        self, context: Any, outcomes: list[dict], batches: list[list[dict]], index: int
    ) -> list[dict[str, Any]]:
        from stratoflow.execution.lifecycle_bulk import submit_batch
        from stratoflow.triggers.wait import SiteWaitTrigger

        if index >= len(batches):
            return outcomes
        spec = submit_batch(
            batches[index],
            key=f"lifecycle:{self.policy}:{context['run_id']}:{index}",
            attempt=context["ti"].try_number - 1,
        )
        self.log.info("%d copies submitted in bulk; waiting", len(batches[index]))
        # The run's state rides in the event (echo), not in defer's kwargs: `airflow dags
        # test` resumes with the event alone (Airflow 3.3, dag.py's inline trigger).
        echo = {"outcomes": outcomes, "batches": batches, "index": index}
        self.defer(trigger=SiteWaitTrigger.from_spec(spec, echo=echo), method_name="batch_done")
        raise AssertionError("unreachable: defer raises")

    def batch_done(self, context: Any, event: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from stratoflow.execution.lifecycle_bulk import finish_batch

        if not event or "echo" not in event:
            return self.execute(context)  # resumed without an event: run (and adopt) again
        outcomes, batches, index = (event["echo"][k] for k in ("outcomes", "batches", "index"))
        done = finish_batch(self.store, batches[index], event)
        for o in done:
            self.log.info("%s %s: %s", o["kind"], "done" if o["ok"] else "not done", o["note"])
        # The queued entries are replaced by what became of them.
        finished = {o["queued"]["transfer_id"] for o in batches[index]}
        kept = [o for o in outcomes if (o.get("queued") or {}).get("transfer_id") not in finished]
        return self._next_batch(context, kept + done, batches, index + 1)


class VerifyPolicyOperator(PolicyStepOperator):
    def execute(self, context: Any) -> list[dict[str, Any]]:
        from stratoflow.execution.lifecycle_run import verify

        if self.is_dry_run(context):
            return []
        return verify(self.store, self.policy, self.pulled(context, "plan") or [])


class ReportPolicyOperator(PolicyStepOperator):
    def execute(self, context: Any) -> dict[str, Any]:
        from stratoflow.config import stratoflow_home
        from stratoflow.execution.lifecycle_run import report

        run = re.sub(r"[^A-Za-z0-9._-]", "_", str(context["run_id"]))
        outcomes = (self.pulled(context, "execute") or []) + (self.pulled(context, "verify") or [])
        summary = report(
            self.store,
            self.policy,
            self.pulled(context, "plan") or [],
            outcomes,
            stratoflow_home() / "lifecycle" / self.policy / run,
        )
        self.log.info("policy %s: %s", self.policy, summary)
        return summary
