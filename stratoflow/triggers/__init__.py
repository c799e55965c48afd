"""Triggers: waits in the triggerer, off the worker slots."""

from stratoflow.hooks.credentials import use_airflow_connections

# The triggerer runs sites' polls; sites get their credentials from Airflow Connections.
use_airflow_connections()
