"""One Airflow DAG per compiled Stratoflow plan.

Plans are written into the plans directory by `stratoflow register`, `submit`, `up` and
`demo`; this file never
reads TOSCA. A worker that runs one task builds only that task's DAG.
"""

from airflow.sdk import get_parsing_context

from stratoflow.dag_factory import build_dag
from stratoflow.plan.registry import read_plans

for _plan in read_plans(only_dag_id=get_parsing_context().dag_id):
    globals()[_plan["dag_id"]] = build_dag(_plan)
