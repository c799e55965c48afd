"""Airflow hooks: credentials from Airflow Connections, clients for the site backends."""
