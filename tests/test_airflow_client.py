"""The Airflow REST client against a loopback server that speaks the v2 shapes it uses and
fails the way Airflow does under load (500 "Database error" when SQLite is locked)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from stratoflow.client import AirflowAPIError, AirflowClient

MAXIMUM_PAGE_LIMIT = 100  # Airflow's [api] maximum_page_limit
DB_ERROR = {"detail": "Database error", "status": 500, "title": "Internal Server Error"}


class FakeAirflow:
    """``/auth/token``, ``GET``/``PATCH /api/v2/dags/{id}``, ``POST``/``GET .../dagRuns``.

    ``fail[(method, route)]`` is how many of the next such requests answer 500 "Database
    error"; ``land_then_fail`` makes a trigger create the run and still answer 500, as when
    the commit succeeded but the response did not.
    """

    def __init__(self) -> None:
        self.dags: dict[str, dict[str, Any]] = {"d": {"dag_id": "d", "is_paused": True}}
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail: dict[tuple[str, str], int] = {}
        self.land_then_fail = False
        self.calls: list[tuple[str, str, int]] = []
        self.forbidden_token = "nobody"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                owner.calls.append((self.command, self.path, code))
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def _route(self) -> str:
                parts = self.path.split("?")[0].strip("/").split("/")
                return "runs" if "dagRuns" in parts else parts[0] if parts[0] == "auth" else "dag"

            def _handle(self) -> None:
                body = self._body()
                if self.path == "/auth/token":
                    return self._reply(201, {"access_token": "jwt"})
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if token == owner.forbidden_token:
                    return self._reply(403, {"detail": "Forbidden"})
                key = (self.command, self._route())
                if owner.fail.get(key, 0) > 0:
                    owner.fail[key] -= 1
                    return self._reply(500, DB_ERROR)
                parts = self.path.split("?")[0].strip("/").split("/")
                dag = owner.dags.get(parts[3])
                if dag is None:
                    return self._reply(404, {"detail": "DAG not found"})
                if len(parts) == 4:
                    if self.command == "PATCH":
                        dag.update(body)
                    return self._reply(200, dag)
                if self.command == "POST":
                    run_key = (parts[3], body["dag_run_id"])
                    if run_key in owner.runs:
                        return self._reply(409, {"detail": "DagRun already exists"})
                    owner.runs[run_key] = {"dag_run_id": body["dag_run_id"], "conf": body["conf"]}
                    if owner.land_then_fail:
                        owner.land_then_fail = False
                        return self._reply(500, DB_ERROR)
                    return self._reply(200, owner.runs[run_key])
                run = owner.runs.get((parts[3], parts[5]))
                if run is None:
                    return self._reply(404, {"detail": "no run"})
                if parts[-1] == "taskInstances":  # pages of at most maximum_page_limit
                    query = parse_qs(urlsplit(self.path).query)
                    limit = min(int(query.get("limit", ["50"])[0]), MAXIMUM_PAGE_LIMIT)
                    offset = int(query.get("offset", ["0"])[0])
                    tis = run.get("task_instances", [])
                    page = {"task_instances": tis[offset : offset + limit]}
                    return self._reply(200, page | {"total_entries": len(tis)})
                return self._reply(200, run)

            do_GET = do_POST = do_PATCH = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def airflow() -> Iterator[FakeAirflow]:
    fake = FakeAirflow()
    yield fake
    fake.close()


def client(fake: FakeAirflow, **kw: Any) -> AirflowClient:
    return AirflowClient(fake.url, "admin", "pw", backoff_s=0.01, **kw)


def test_database_error_on_unpause_is_retried(airflow: FakeAirflow) -> None:
    airflow.fail[("PATCH", "dag")] = 2
    with client(airflow) as api:
        api.start_run("d", "r1", {"x": 1})
    assert airflow.dags["d"]["is_paused"] is False
    assert airflow.runs[("d", "r1")]["conf"] == {"x": 1}
    assert [c for c in airflow.calls if c[0] == "PATCH"] == [
        ("PATCH", "/api/v2/dags/d", 500),
        ("PATCH", "/api/v2/dags/d", 500),
        ("PATCH", "/api/v2/dags/d", 200),
    ]


def test_trigger_that_landed_before_a_500_returns_the_run(airflow: FakeAirflow) -> None:
    airflow.land_then_fail = True
    with client(airflow) as api:
        run = api.trigger("d", "r2", {"y": 2})
    assert run == {"dag_run_id": "r2", "conf": {"y": 2}}
    assert len(airflow.runs) == 1


def test_reused_run_id_with_other_inputs_is_refused(airflow: FakeAirflow) -> None:
    with client(airflow) as api:
        api.trigger("d", "r3", {"a": 1})
        with pytest.raises(AirflowAPIError, match="exists with other inputs") as err:
            api.trigger("d", "r3", {"a": 2})
    assert err.value.status == 409


def test_persistent_5xx_gives_up_with_the_status(airflow: FakeAirflow) -> None:
    airflow.fail[("GET", "runs")] = 99
    with client(airflow, attempts=3) as api, pytest.raises(AirflowAPIError) as err:
        api.get_run("d", "nope")
    assert err.value.status == 500
    assert "3 attempts" in str(err.value) and "Database error" in str(err.value)
    assert sum(1 for c in airflow.calls if c[0] == "GET") == 3


def test_forbidden_is_not_retried(airflow: FakeAirflow) -> None:
    with AirflowClient(airflow.url, token="nobody", backoff_s=0.01) as api:
        with pytest.raises(AirflowAPIError) as err:
            api.start_run("d", "r4", {})
    assert err.value.status == 403
    assert len(airflow.calls) == 1
    assert not airflow.runs


def test_a_dag_seen_ready_is_triggered_without_a_look_up(airflow: FakeAirflow) -> None:
    with client(airflow) as api:
        api.start_run("d", "r5", {})
        api.start_run("d", "r6", {})
    dag_reads = [c for c in airflow.calls if c[:2] == ("GET", "/api/v2/dags/d")]
    assert len(dag_reads) == 1
    assert {("d", "r5"), ("d", "r6")} <= set(airflow.runs)


def test_a_dag_gone_since_it_was_seen_is_waited_for_again(airflow: FakeAirflow) -> None:
    with client(airflow) as api:
        api.start_run("d", "r7", {})
        removed = airflow.dags.pop("d")
        threading.Timer(0.3, lambda: airflow.dags.setdefault("d", removed)).start()
        api.start_run("d", "r8", {})
    assert ("d", "r8") in airflow.runs
    assert [c[2] for c in airflow.calls if c[:2] == ("POST", "/api/v2/dags/d/dagRuns")] == [
        200,
        404,
        200,
    ]


def test_every_task_instance_of_a_large_run_is_listed(airflow: FakeAirflow) -> None:
    """A campaign of 250 jobs has more task instances than one page of Airflow's answer."""
    tis = [{"task_id": "job", "map_index": i} for i in range(250)]
    airflow.runs[("d", "big")] = {"dag_run_id": "big", "task_instances": tis}
    with client(airflow) as api:
        assert api.task_instances("d", "big") == tis
