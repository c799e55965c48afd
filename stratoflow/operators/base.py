"""Behaviour shared by every Stratoflow operator: the deployment it works for, the
store, the run's bound inputs, and recording failures so the deployment's status says why.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from stratoflow.errors import Refused, TemplateError
from stratoflow.hooks.credentials import use_airflow_connections
from stratoflow.plan.model import BROKER, Plan, Step
from stratoflow.store.store import deployment_id_for

# Tasks run sites; sites get their credentials from Airflow Connections.
use_airflow_connections()


class DeploymentOperator(BaseOperator):
    """Works for one deployment; subclasses implement ``run(context)`` and say which
    deployment (``deployment_id``)."""

    #: What the deployment's ``task`` says while this step works (a ``Task``); None: unset.
    works_as: str | None = None

    @cached_property
    def store(self):
        from stratoflow.store import Store

        return Store.open()

    def deployment_id(self, context: Any) -> str:
        raise NotImplementedError

    def execute(self, context: Any) -> Any:
        if self.works_as is not None:
            self.store.set_task(self.deployment_id(context), self.works_as)
        return self.guarded(context, self.run, context)

    def run(self, context: Any) -> Any:
        raise NotImplementedError

    def guarded(self, context: Any, fn, *args: Any) -> Any:
        try:
            return fn(*args)
        except TaskDeferred:
            raise
        except (TemplateError, Refused) as exc:
            # Bad input or a policy refusal never improves on retry: fail at once.
            final = AirflowFailException(str(exc))
            self.record_failure(context, final)
            raise final from exc
        except Exception as exc:
            self.record_failure(context, exc)
            raise

    def on_final_failure(self, context: Any, exc: BaseException) -> None:
        """Called once the step has failed for good (no retry left, or not retryable)."""

    def record_failure(self, context: Any, exc: BaseException) -> None:
        ti = context["ti"]
        final = isinstance(exc, AirflowFailException) or ti.try_number > self.retries
        if final:
            try:
                self.on_final_failure(context, exc)
            except Exception:  # the original error matters more than the bookkeeping
                self.log.exception("could not clean up after the failure")
        plain = isinstance(exc, AirflowFailException) or str(exc).startswith(self.task_id)
        message = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        try:
            self.store.record_step_event(
                self.deployment_id(context),
                self.task_id,
                "failed" if final else "retry",
                message=message,
                map_index=ti.map_index,
                try_number=ti.try_number,
            )
        except Exception:  # the original error matters more than the bookkeeping
            self.log.exception("could not record the failure in the Stratoflow store")


class StratoflowOperator(DeploymentOperator):
    """Runs one step of a compiled plan, for the deployment behind its DAG run."""

    ui_color = "#e8f0fe"
    #: False for the steps that must run whatever the time: teardown, the report.
    bounded_by_deadline = True

    def __init__(self, *, plan: Plan, step: Step, **kwargs: Any):
        super().__init__(**kwargs)
        self.plan = plan
        self.step = step

    def deployment_id(self, context: Any) -> str:
        return deployment_id_for(context["dag"].dag_id, context["run_id"])

    def execute(self, context: Any) -> Any:
        if self.bounded_by_deadline:
            self.guarded(context, self.check_deadline, self.bound(context).get("deadline"))
        return super().execute(context)

    def check_deadline(self, deadline: float | None) -> None:
        """The submitter's ``timeoutMins`` (the broker's ``deadline``, epoch seconds): no
        step of the create starts after it."""
        if deadline is not None and time.time() > deadline:
            when = datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            raise AirflowFailException(
                f"the deployment's timeoutMins ran out at {when}: {self.task_id} not started"
            )

    def bound(self, context: Any) -> dict:
        """The broker's decision for this run: inputs, candidate sites. Read once per run
        (each read is a call to Airflow's API; a step reads it several times)."""
        run_id = context["run_id"]
        cached = getattr(self, "_bound", None)
        if cached is None or cached[0] != run_id:
            cached = self._bound = (run_id, context["ti"].xcom_pull(task_ids=BROKER) or {})
        return cached[1]
