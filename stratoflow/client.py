"""A small client for Airflow's REST API v2: the calls Stratoflow's CLI needs."""

from __future__ import annotations

import time
from typing import Any

import httpx

from stratoflow.errors import StratoflowError


class AirflowAPIError(StratoflowError):
    pass


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self._auth = {"username": username, "password": password}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            r = self._http.post("/auth/token", json=self._auth)
            if r.status_code >= 300:
                raise AirflowAPIError(f"Airflow login failed ({r.status_code}): {r.text[:200]}")
            self._token = r.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        r = self._http.request(method, path, headers=self._headers(), **kwargs)
        if r.status_code == 401:  # token expired: log in again once
            self._token = None
            r = self._http.request(method, path, headers=self._headers(), **kwargs)
        return r

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self._call(method, path, **kwargs)
        if r.status_code >= 300:
            raise AirflowAPIError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json()

    def get_dag(self, dag_id: str) -> dict | None:
        r = self._call("GET", f"/api/v2/dags/{dag_id}")
        if r.status_code == 404:
            return None
        if r.status_code >= 300:
            raise AirflowAPIError(f"GET dag {dag_id}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict:
        """New plans appear after the dag-processor's next pass over dags/."""
        deadline = time.monotonic() + timeout
        while True:
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            if time.monotonic() > deadline:
                raise AirflowAPIError(
                    f"DAG {dag_id} did not appear in Airflow within {timeout:.0f} s"
                )
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> None:
        self._json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict) -> dict:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        return self._json("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return self._json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        data = self._json(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}
        )
        return data.get("task_instances", [])
