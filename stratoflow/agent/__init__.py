"""The Stratoflow agent that VMs run (see ``server.py``). No Airflow import."""
