"""The one client for Airflow's REST API v2: the calls the CLI and the deployments API need.

It authenticates either with a user name and password (the CLI: a JWT from
``/auth/token``) or with a caller's own bearer token (the deployments API, so that Airflow
applies its permissions to the real user and its audit log names them).

Every call is retried on transport errors and 5xx. The embedded PostgreSQL made the
"database is locked" 500s of SQLite rare, but the retries stay: an API server that the
supervisor is restarting refuses connections for a few seconds, SQLite remains possible
by configuration, and a production Airflow can fail over. None of that may fail a
submission. All the calls are safe to repeat: a trigger carries its own ``dag_run_id``,
so a retry of a trigger that did land gets 409 and the existing run is returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import httpx

from stratoflow.errors import StratoflowError
from stratoflow.retry import call_with_retries
from stratoflow.tls import tls_context

DAG_APPEAR_TIMEOUT_S = 120.0
ATTEMPTS = 5
BACKOFF_S = 0.5
# A DAG seen parsed and unpaused this recently is triggered without asking again: under a
# burst, the look-up was a third of every submission's calls to a busy API server.
READY_FOR_S = 60.0
_ready_since: dict[tuple[str, str], float] = {}
# (Airflow URL, DAG file) -> the file token Airflow's parseDagFile route takes: stable
# for as long as the API server's secret key is.
_file_tokens: dict[tuple[str, str], str] = {}


class AirflowAPIError(StratoflowError):
    """Airflow refused or failed a call; ``status`` is its HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class AirflowClient:
    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        attempts: int = ATTEMPTS,
        backoff_s: float = BACKOFF_S,
    ):
        if token is None and (username is None or password is None):
            raise ValueError("AirflowClient needs a token, or a username and a password")
        self.base_url = base_url.rstrip("/")
        self._login = None if token is not None else {"username": username, "password": password}
        self._token = token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=tls_context())
        self._attempts = attempts
        self._backoff_s = backoff_s

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _retrying(self, what: str, send: Any, ok: tuple[int, ...]) -> httpx.Response:
        return call_with_retries(
            what,
            send,
            ok,
            attempts=self._attempts,
            backoff_s=self._backoff_s,
            detail=lambda r: r.text[:300],
            refuse=lambda r, detail: AirflowAPIError(
                f"{what}: HTTP {r.status_code}: {detail}", r.status_code
            ),
            give_up=lambda last, status: AirflowAPIError(
                f"{what}: no answer after {self._attempts} attempts: {last}", status
            ),
        )

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            r = self._retrying(
                "Airflow login",
                lambda: self._http.post("/auth/token", json=self._login),
                (200, 201),
            )
            self._token = r.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        r = self._http.request(method, path, headers=self._headers(), **kwargs)
        if r.status_code == 401 and self._login is not None:  # token expired: log in again
            self._token = None
            r = self._http.request(method, path, headers=self._headers(), **kwargs)
        return r

    def _call(
        self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kwargs: Any
    ) -> httpx.Response:
        return self._retrying(f"{method} {path}", lambda: self._send(method, path, **kwargs), ok)

    def get_dag(self, dag_id: str) -> dict | None:
        r = self._call("GET", f"/api/v2/dags/{dag_id}", ok=(200, 404))
        return None if r.status_code == 404 else r.json()

    def ready_now(self, dag_id: str) -> bool:
        """True when the DAG is parsed (and unpaused here if it was paused), so a trigger
        can go at once; False when the dag-processor has not parsed it yet. Never waits."""
        known = (self.base_url, dag_id)
        seen = _ready_since.get(known)
        if seen is not None and time.monotonic() - seen < READY_FOR_S:
            return True
        dag = self.get_dag(dag_id)
        if dag is None:
            return False
        if dag.get("is_paused"):
            self.unpause(dag_id)
        _ready_since[known] = time.monotonic()
        return True

    def request_parse(self, relative_fileloc: str, tag: str) -> bool:
        """Ask the dag-processor to parse the DAG file ``relative_fileloc`` next, ahead of
        its periodic pass. The file is named by one of its DAGs (tagged ``tag``), so it
        must define one already. Best effort: False when none is found or the caller may
        not ask (Airflow wants edit rights on the file's DAGs)."""
        token = _file_tokens.get((self.base_url, relative_fileloc))
        try:
            if token is None:
                r = self._call("GET", "/api/v2/dags", params={"tags": tag, "limit": 100})
                token = next(
                    (
                        d["file_token"]
                        for d in r.json().get("dags", [])
                        if d.get("relative_fileloc") == relative_fileloc and d.get("file_token")
                    ),
                    None,
                )
                if token is None:
                    return False
                _file_tokens[(self.base_url, relative_fileloc)] = token
            self._call("PUT", f"/api/v2/parseDagFile/{token}", ok=(200, 201))
        except AirflowAPIError:
            _file_tokens.pop((self.base_url, relative_fileloc), None)  # a new secret key?
            return False
        return True

    def dag_details(self, dag_id: str) -> dict:
        """The DAG with its params (the trigger form's typed fields)."""
        return self._call("GET", f"/api/v2/dags/{dag_id}/details").json()

    def wait_for_dag(self, dag_id: str, timeout: float = DAG_APPEAR_TIMEOUT_S) -> dict:
        """New plans appear after the dag-processor's next pass over dags/."""
        deadline = time.monotonic() + timeout
        while True:
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            if time.monotonic() > deadline:
                raise AirflowAPIError(
                    f"DAG {dag_id} did not appear in Airflow within {timeout:.0f} s", 504
                )
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self, dag_id: str, run_id: str, conf: dict[str, Any], note: str | None = None
    ) -> dict:
        """``note`` is shown on the run in Airflow's UI (the deployment it works for)."""
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        if note:
            body["note"] = note
        r = self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", ok=(200, 201, 409), json=body)
        if r.status_code == 409:  # an earlier attempt landed, or the id was already used
            run = self.get_run(dag_id, run_id)
            if run.get("conf") != conf:
                raise AirflowAPIError(f"DAG run {dag_id}/{run_id} exists with other inputs", 409)
            return run
        return r.json()

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()

    def runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        """The DAG's runs, oldest first (each with its ``run_type``: manual, scheduled,
        asset_triggered, ...)."""
        r = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": limit})
        return r.json().get("dag_runs", [])

    def stop_run(self, dag_id: str, run_id: str) -> dict:
        """Mark the run failed, as the UI's "mark failed" does: what waits is cancelled."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        return self._call("PATCH", path, json={"state": "failed"}).json()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every task instance of the run, page by page: Airflow answers at most
        ``[api] maximum_page_limit`` (100) per call, whatever the limit asked for, and a
        campaign of 200 jobs has more."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        found: list[dict] = []
        while True:
            body = self._call("GET", path, params={"limit": 100, "offset": len(found)}).json()
            page = body.get("task_instances", [])
            found += page
            if not page or len(found) >= body.get("total_entries", 0):
                return found

    def start_run(
        self,
        dag_id: str,
        run_id: str,
        conf: dict[str, Any],
        trigger_slot: Callable[[], AbstractContextManager[Any]] = nullcontext,
        note: str | None = None,
    ) -> None:
        """Wait for the DAG to be parsed, unpause it if needed, trigger the run.

        Only unpause when paused: a user may be allowed to trigger a DAG but not to edit it.
        A DAG this process saw ready less than ``READY_FOR_S`` ago is not looked up again
        (a pause within that time is noticed at the next look-up). The trigger itself runs
        inside ``trigger_slot()`` (the embedded Airflow passes its one-at-a-time lock; the
        reads before it need none).
        """
        known = (self.base_url, dag_id)
        seen = _ready_since.get(known)
        if seen is None or time.monotonic() - seen >= READY_FOR_S:
            self._make_ready(dag_id)
        try:
            with trigger_slot():
                self.trigger(dag_id, run_id, conf, note)
        except AirflowAPIError as exc:
            _ready_since.pop(known, None)
            if exc.status != 404 or seen is None:
                raise
            # Gone since we last saw it (its file removed, then back): wait as for a new one.
            self._make_ready(dag_id)
            with trigger_slot():
                self.trigger(dag_id, run_id, conf, note)
        _ready_since[known] = time.monotonic()

    def _make_ready(self, dag_id: str) -> None:
        if self.wait_for_dag(dag_id).get("is_paused"):
            self.unpause(dag_id)
