"""Stratoflow's REST API: a FastAPI app that the Airflow plugin mounts at ``/stratoflow``.

Airflow does not authenticate plugin apps, so every route but ``/health`` checks the
caller's Airflow JWT itself (see :mod:`stratoflow.api.auth`). Importing this package is
cheap: the app is built in :mod:`stratoflow.api.app`, which imports the heavy layers
(store, TOSCA, Airflow's auth manager) only inside request handlers.
"""
