"""Broker: bind the run's inputs and choose the ordered candidate sites."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from stratoflow.errors import TemplateError
from stratoflow.execution.placement import block_storage_nodes, demand, site_offers
from stratoflow.operators.base import StratoflowOperator
from stratoflow.plan.inputs import bind_inputs
from stratoflow.plan.model import resolve
from stratoflow.store.models import Task


class BrokerOperator(StratoflowOperator):
    ui_color = "#fde9d9"
    bounded_by_deadline = False  # it sets the deadline, and checks it itself

    def run(self, context: Any) -> dict:
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        conf = dict(context["params"])
        dag_run = context.get("dag_run")
        owner = (dag_run.triggering_user_name if dag_run else None) or "anonymous"
        deployment = self.store.get_or_create_deployment(
            dag_id, run_id, self.plan["hash"], conf, owner=owner
        )
        try:
            inputs = bind_inputs(self.plan["inputs"], conf)
            hosts = resolve(self.plan["hosts"], inputs)
            cores, mem = demand(hosts)
            placement = resolve(self.plan["placement"], inputs)
            from stratoflow.broker import placement_priority, rank_sites

            volumes = block_storage_nodes(hosts)
            candidates = rank_sites(placement, cores, mem, site_offers(), volumes)
            # INDIGO's maxProvidersRetry: fail over to this many sites at most.
            candidates = candidates[: deployment.options.get("max_providers_retry") or None]
            priority = placement_priority(placement)
            deadline = _deadline(deployment)
            self.check_deadline(deadline)
        except (TemplateError, AirflowFailException) as exc:
            # Bad input never improves on retry, nor does lost time: fail now, say why.
            self.store.set_status(deployment.id, "CREATE_FAILED", reason=str(exc), task="")
            raise AirflowFailException(str(exc)) from exc
        self.store.set_status(
            deployment.id, "CREATE_IN_PROGRESS", site=candidates[0], task=Task.BROKERING
        )
        self.log.info("deployment %s: candidate sites %s", deployment.id, candidates)
        provider_mins = deployment.options.get("provider_timeout_mins")
        return {
            "deployment_id": deployment.id,
            "inputs": inputs,
            "candidates": candidates,
            "hosts": hosts,
            "priority": priority,
            # Keep a failed last attempt's resources for debugging (a submission option).
            "keep_last_attempt": bool(deployment.options.get("keep_last_attempt")),
            "deadline": deadline,
            # INDIGO's providerTimeoutMins: each site's attempt, from its start.
            "provider_timeout_s": 60.0 * provider_mins if provider_mins else None,
        }


def _deadline(deployment: Any) -> float | None:
    """INDIGO's ``timeoutMins``, counted from the deployment's creation (epoch seconds)."""
    minutes = deployment.options.get("timeout_mins")
    if not minutes:
        return None
    return (deployment.created_at + timedelta(minutes=minutes)).timestamp()
