"""Data-lifecycle policies: a replica catalogue and Rucio-like rules over it.

Plain Python, like the plans and the broker: no Airflow. The first piece is the storage
expression grammar (``expression.py``); the catalogue, policies and their DAGs follow.
"""
