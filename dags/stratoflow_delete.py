"""The Airflow DAG that deletes deployments: one run per delete (see
stratoflow.dag_factory.build_delete_dag). Airflow's safe-mode discovery parses only files
that name both "airflow" and "dag", as this docstring does."""

from stratoflow.dag_factory import build_delete_dag

dag = build_delete_dag()
