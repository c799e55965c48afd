"""The Airflow DAGs of the lifecycle policies: one DAG per policy in
include/policies/lifecycle/*.yaml (see stratoflow.policy_dags). Airflow's safe-mode
discovery parses only files that name both "airflow" and "dag", as this docstring does."""

from stratoflow.policy_dags import build_policy_dags

globals().update(build_policy_dags())
