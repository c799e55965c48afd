"""compile_plan and build_dag on the demo campaign, and how an operator records failures.

The DAG is built by the real DAG factory (no scheduler needed to inspect it); the operator
runs its failure path with a real store.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from stratoflow.config import include_dir
from stratoflow.plan import model as m
from stratoflow.registration import compile_template

DEMO = include_dir() / "templates" / "dimuon_campaign.yaml"


@pytest.fixture(scope="module")
def plan() -> m.Plan:
    return compile_template(str(DEMO))[1]


def test_the_campaign_compiles_to_its_steps_in_order(plan):
    kinds = [(s["id"], s["kind"]) for s in plan["steps"]]
    assert kinds[:3] == [("broker", "broker"), ("provision", "provision"), ("stage_in", "stage_in")]
    assert kinds[-3:] == [
        ("stage_out", "stage_out"),
        ("teardown", "teardown"),
        ("report", "report"),
    ]
    jobs = [s for s in plan["steps"] if s["kind"] == "job"]
    mapped = [j for j in jobs if j.get("map_over") == "stage_in"]
    assert len(mapped) == 1 and mapped[0]["upstream"] == ["stage_in"]
    teardown = m.step(plan, "teardown")
    assert teardown["setup"] == "provision" and teardown["upstream"] == ["stage_out"]
    assert m.step(plan, "report")["upstream"]  # the report waits for the work's leaves
    # Every step's upstream names a step that exists.
    ids = {s["id"] for s in plan["steps"]}
    assert all(set(s["upstream"]) <= ids for s in plan["steps"])


def test_the_plan_is_sealed_and_stable(plan):
    again = compile_template(str(DEMO))[1]
    assert again == plan and plan["hash"] == m.plan_hash(plan)
    assert plan["dag_id"] == m.dag_id_for(plan["name"], plan["hash"])
    changed = {**plan, "description": plan["description"] + "!"}
    assert m.plan_hash(changed) != plan["hash"]


def test_build_dag_wires_setup_teardown_mapping_and_the_report(plan):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from stratoflow.dag_factory import build_dag

    dag = build_dag(plan)
    assert dag.dag_id == plan["dag_id"]
    assert {t.task_id for t in dag.tasks} == {s["id"] for s in plan["steps"]}
    provision, teardown = dag.get_task("provision"), dag.get_task("teardown")
    assert provision.is_setup and teardown.is_teardown
    assert dag.get_task("report").trigger_rule == "all_done"
    assert dag.get_task("report").retries == 0
    (mapped,) = [s for s in plan["steps"] if s.get("map_over")]
    job = dag.get_task(mapped["id"])
    assert isinstance(job, MappedOperator)
    assert set(dag.params) == set(plan["inputs"])


def test_the_first_retry_delay_is_the_operators_to_set(plan, monkeypatch):
    from datetime import timedelta

    from stratoflow.dag_factory import build_dag
    from stratoflow.errors import ConfigError

    monkeypatch.delenv("STRATOFLOW_RETRY_DELAY_S", raising=False)
    assert build_dag(plan).get_task("provision").retry_delay == timedelta(seconds=5)
    monkeypatch.setenv("STRATOFLOW_RETRY_DELAY_S", "1.5")
    assert build_dag(plan).get_task("provision").retry_delay == timedelta(seconds=1.5)
    for bad in ("0", "soon", "1e9"):
        monkeypatch.setenv("STRATOFLOW_RETRY_DELAY_S", bad)
        with pytest.raises(ConfigError, match="STRATOFLOW_RETRY_DELAY_S=.*0.1 to 3600"):
            build_dag(plan)


class _Failing:
    """Builds a real StratoflowOperator whose step raises ``exc``."""

    def __init__(self, plan: m.Plan, exc: BaseException, retries: int = 2):
        from stratoflow.operators.base import StratoflowOperator

        class Boom(StratoflowOperator):
            def run(self, context):
                raise exc

        self.op = Boom(task_id="count", plan=plan, step=m.step(plan, "report"), retries=retries)

    def execute(self, try_number: int):
        ti = SimpleNamespace(try_number=try_number, map_index=-1, xcom_pull=lambda **_: None)
        context = {"ti": ti, "dag": SimpleNamespace(dag_id="demo"), "run_id": "r1"}
        return self.op.execute(context)


def test_an_operator_records_retries_then_the_final_failure(plan, isolated_stratoflow_home):
    from stratoflow.errors import SiteError
    from stratoflow.store import Store, deployment_id_for

    failing = _Failing(plan, SiteError("site alpha: quota exceeded"))
    for try_number in (1, 2, 3):
        with pytest.raises(SiteError):
            failing.execute(try_number)
    events = Store.open().step_events(deployment_id_for("demo", "r1"))
    assert [(e["kind"], e["try_number"]) for e in events] == [
        ("retry", 1),
        ("retry", 2),
        ("failed", 3),
    ]
    assert events[-1]["message"] == "SiteError: site alpha: quota exceeded"


def test_bad_input_fails_at_once_without_retries(plan, isolated_stratoflow_home):
    from airflow.sdk.exceptions import AirflowFailException

    from stratoflow.errors import TemplateError
    from stratoflow.store import Store, deployment_id_for

    with pytest.raises(AirflowFailException, match="inputs.chunk_size: must be >= 1"):
        _Failing(plan, TemplateError("inputs.chunk_size: must be >= 1")).execute(1)
    (event,) = Store.open().step_events(deployment_id_for("demo", "r1"))
    assert (event["kind"], event["message"]) == ("failed", "inputs.chunk_size: must be >= 1")
