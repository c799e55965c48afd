"""A burst of deployments posted at once by concurrent clients: half through Stratoflow's
``POST /stratoflow/deployments``, half through Airflow's own
``POST /api/v2/dags/{dag_id}/dagRuns``. Plain HTTP clients that never retry, so every 5xx
is seen. Used by bench/embedded_burst.py."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from clients import drain  # bench/ is on sys.path when run as a script


@dataclass(frozen=True)
class Post:
    seconds: float
    status: int
    route: str  # "stratoflow" or "airflow"
    deployment_id: str | None  # None unless accepted


def post_burst(
    n: int, clients: int, template: str, inputs: dict[str, Any], dag_id: str, conf: dict
) -> list[Post]:
    """Post ``n`` deployments of catalogue ``template`` from ``clients`` threads, even ones
    through Stratoflow's API (with ``inputs``), odd ones as runs of ``dag_id`` (with the
    template's bound inputs, ``conf``), to the Airflow of this process's home."""
    from stratoflow import embedded
    from stratoflow.store import deployment_id_for

    posts: list[Post] = []
    lock = threading.Lock()
    login = {"username": embedded.ADMIN, "password": embedded.admin_password()}

    def token_for(http: Any) -> str:
        return http.post("/auth/token", json=login).json()["access_token"]

    def post(http: Any, i: int) -> None:
        t = time.monotonic()
        if i % 2 == 0:
            body = {"template": template, "inputs": inputs}
            r = http.post("/stratoflow/deployments", json=body)
            new_id = r.json().get("id") if r.status_code == 201 else None
        else:
            run_id = f"airflow_api__{uuid.uuid4().hex[:16]}"
            body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
            r = http.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
            new_id = deployment_id_for(dag_id, run_id) if r.is_success else None
        route = "stratoflow" if i % 2 == 0 else "airflow"
        with lock:
            posts.append(Post(time.monotonic() - t, r.status_code, route, new_id))

    drain(range(n), clients, post, token_for=token_for)
    return posts
