"""The Stratoflow REST API, mounted by the plugin in the real embedded Airflow, over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.engine import assert_engine_alive

pytestmark = [
    pytest.mark.airflow,
    # The embedded Airflow's own secret is what the "expired" token must be signed with.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

DEMO = "dimuon_campaign.yaml"
# (method, path, json body) of every route that must demand a token.
AUTHENTICATED_ROUTES = [
    ("GET", "/deployments", None),
    ("GET", "/deployments/00000000-0000-0000-0000-000000000000", None),
    ("POST", "/deployments", {"template": DEMO, "inputs": {}}),
    ("GET", "/templates", None),
    ("GET", "/sites", None),
    ("GET", "/queue", None),
]


@pytest.fixture(scope="module")
def airflow(airflow_up) -> httpx.Client:
    with httpx.Client(base_url=airflow_up.api_url(), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def token(airflow, airflow_up) -> str:
    r = airflow.post(
        "/auth/token", json={"username": "admin", "password": airflow_up.admin_password()}
    )
    assert r.status_code in (200, 201), r.text
    return r.json()["access_token"]


@pytest.fixture(scope="module")
def api(airflow_up, token) -> httpx.Client:
    """A client of the Stratoflow API authenticated as admin."""
    with httpx.Client(
        base_url=f"{airflow_up.api_url()}/stratoflow",
        headers={"Authorization": f"Bearer {token}"},
        timeout=200,  # POST /deployments waits for a new DAG to be parsed
    ) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(airflow_up) -> httpx.Client:
    with httpx.Client(base_url=f"{airflow_up.api_url()}/stratoflow", timeout=60) as client:
        yield client


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _forged_tokens(token: str, airflow_home: Path) -> dict[str, str]:
    """Tokens that must all be refused: same claims as a real one, wrong key or none;
    and a correctly signed one that has expired."""
    claims = _claims(token)
    now = int(time.time())
    secret = (airflow_home / ".jwt_secret").read_text().strip()
    return {
        "wrong key": jwt.encode(claims, "not-the-airflow-secret" * 4, algorithm="HS512"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "expired": jwt.encode(
            {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600},
            secret,
            algorithm="HS512",
        ),
        "garbage": "not.a.jwt",
    }


def test_health_needs_no_token(anonymous):
    r = anonymous.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("method,path,body", AUTHENTICATED_ROUTES)
def test_every_route_refuses_missing_and_forged_tokens(
    anonymous, token, airflow_env, method, path, body
):
    r = anonymous.request(method, path, json=body)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = anonymous.request(method, path, json=body, headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 401, r.text
    for what, forged in _forged_tokens(token, Path(airflow_env["AIRFLOW_HOME"])).items():
        r = anonymous.request(
            method, path, json=body, headers={"Authorization": f"Bearer {forged}"}
        )
        assert r.status_code == 401, f"{what}: {r.status_code} {r.text}"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert forged not in r.text


def test_sites_show_capacity_not_configuration(api):
    r = api.get("/sites")
    assert r.status_code == 200, r.text
    sites = {s["name"]: s for s in r.json()}
    local = sites["local"]  # the session catalogue (conftest) may list more sites
    assert local["kind"] == "local"
    assert local["capacity"]["cores"] == 2 and local["capacity"]["memory"] > 0
    for site in sites.values():
        assert set(site) == {"name", "kind", "capacity"}  # no roots, paths or credentials
        assert set(site["capacity"]) <= {"cores", "memory", "gpus", "max_instances"}


def test_templates_list_the_demo_with_its_inputs(api):
    r = api.get("/templates")
    assert r.status_code == 200, r.text
    by_name = {t["name"]: t for t in r.json()}
    demo = by_name[DEMO]
    assert demo["dag_id"].startswith("dimuon_campaign_")
    assert {"site", "chunk_size", "output_location", "cpus_per_job"} <= set(demo["inputs"])
    assert demo["inputs"]["chunk_size"]["type"] == "integer"
    assert api.get("/templates").json() == r.json()  # served from the cache, unchanged


def _deployment_ids(api: httpx.Client) -> set[str]:
    r = api.get("/deployments", params={"limit": 500})
    assert r.status_code == 200, r.text
    return {d["id"] for d in r.json()}


def test_bad_input_is_422_naming_the_field_and_deploys_nothing(api):
    before = _deployment_ids(api)
    r = api.post("/deployments", json={"template": DEMO, "inputs": {"chunk_size": "x"}})
    assert r.status_code == 422, r.text
    locs = [d["loc"] for d in r.json()["detail"]]
    assert "topology_template.inputs.chunk_size" in locs
    assert _deployment_ids(api) == before


@pytest.mark.parametrize(
    "template", ["../../etc/passwd", "/etc/passwd", "dimuon/../dimuon_campaign.yaml", "nope.yaml"]
)
def test_template_outside_the_catalogue_is_422_naming_template(api, template):
    before = _deployment_ids(api)
    r = api.post("/deployments", json={"template": template, "inputs": {}})
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == ["template"]
    assert _deployment_ids(api) == before


def test_list_limit_is_bounded(api):
    assert api.get("/deployments", params={"limit": 501}).status_code == 422
    assert api.get("/deployments", params={"limit": 0}).status_code == 422


def test_unknown_deployment_is_404(api):
    r = api.get("/deployments/no-such-id")
    assert r.status_code == 404
    assert r.json() == {"detail": "deployment no-such-id not found"}


def test_demo_deployment_runs_to_complete_with_its_outputs(api):
    r = api.post("/deployments", json={"template": DEMO, "inputs": {}})
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"id", "dag_id", "run_id", "status"}
    assert created["dag_id"].startswith("dimuon_campaign_")

    deadline = time.monotonic() + 300
    while True:
        r = api.get(f"/deployments/{created['id']}")
        assert r.status_code == 200, r.text
        info = r.json()
        if info["status"] != "CREATE_IN_PROGRESS":
            break
        assert time.monotonic() < deadline, f"still {info['status']} after 300 s"
        assert_engine_alive()
        time.sleep(3)
    assert info["status"] == "CREATE_COMPLETE", info.get("status_reason")
    assert info["owner"] == "admin"  # the authenticated user, not a fixed name
    assert info["run_id"] == created["run_id"]
    files = [f["url"] for f in info["outputs"]["stage_out"]["files"]]
    assert any(url.endswith("/mass_spectrum.png") for url in files), files
    assert "resources" in info and "usage" in info
    assert info["usage"]["core_seconds"] > 0

    listed = api.get("/deployments", params={"owner": "admin"}).json()
    assert created["id"] in {d["id"] for d in listed}
    assert api.get("/deployments", params={"owner": "somebody-else"}).json() == []


# -- the INDIGO-compatible routes (/orchestrator) ---------------------------------------


@pytest.fixture(scope="module")
def indigo(airflow_up, token) -> httpx.Client:
    with httpx.Client(
        base_url=f"{airflow_up.api_url()}/orchestrator",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as client:
        yield client


def test_indigo_routes_refuse_a_missing_token(airflow_up):
    with httpx.Client(base_url=f"{airflow_up.api_url()}/orchestrator", timeout=60) as client:
        for path in ("/deployments", "/deployments/00000000-0000-0000-0000-000000000000"):
            assert client.get(path).status_code == 401, path


def test_indigo_list_is_paged_and_each_deployment_reads_back(indigo):
    import uuid

    from stratoflow.store import Store

    store = Store.open()
    owner = f"indigo-{uuid.uuid4().hex[:8]}"
    made = [  # records only: no DAG runs behind them
        store.create_deployment("indigo_paging", f"run-{uuid.uuid4().hex}", "0" * 16, {}, owner)
        for _ in range(5)
    ]
    try:
        _check_paging(indigo, store, owner)
    finally:  # final, so that nothing else in this home takes them for live work
        for d in made:
            store.set_status(d.id, "CREATE_FAILED", reason="a test's record")


def _check_paging(indigo, store, owner: str) -> None:
    r = indigo.get("/deployments", params={"createdBy": owner, "size": 2, "page": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["page"] == {"size": 2, "totalElements": 5, "totalPages": 3, "number": 1}
    expected = [d.id for d in store.list_deployments(owner=owner, limit=2, offset=2)]
    assert [d["uuid"] for d in body["content"]] == expected
    links = {link["rel"]: link["href"] for link in body["links"]}
    assert set(links) == {"self", "prev", "next"}
    assert "page=2" in links["next"] and "page=0" in links["prev"]
    last = indigo.get(links["next"]).json()
    assert len(last["content"]) == 1 and {x["rel"] for x in last["links"]} == {"self", "prev"}

    shown = body["content"][0]
    assert shown["status"] == "CREATE_IN_PROGRESS" and shown["task"] == "NONE"
    assert shown["createdBy"] == {"subject": owner}
    assert len(shown["creationTime"]) == len("2026-12-06T15:04+0000")
    assert "statusReason" not in shown and "cloudProviderName" not in shown  # nulls left out
    links = {link["rel"]: link["href"] for link in shown["links"]}
    assert set(links) == {"self", "template"}
    assert indigo.get(links["self"]).json() == shown
    missing = indigo.get(links["template"])  # these records have no plan behind them
    assert missing.status_code == 404 and "no stored template" in missing.json()["detail"]


def test_indigo_template_is_the_tosca_text(indigo):
    import uuid

    from stratoflow.store import Store

    store = Store.open()
    text = "tosca_definitions_version: tosca_simple_yaml_1_3\n# indigo template test\n"
    plan_hash = uuid.uuid4().hex[:16]
    dag_id = f"indigo_template_{plan_hash}"
    store.save_plan(plan_hash, "indigo_template", dag_id, {}, text)
    made = store.create_deployment(dag_id, "run-1", plan_hash, {}, "indigo-template")
    try:
        r = indigo.get(f"/deployments/{made.id}/template")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert r.text == text
    finally:
        store.set_status(made.id, "CREATE_FAILED", reason="a test's record")


def test_indigo_created_by_me_is_the_caller(indigo):
    from stratoflow.store import Store

    body = indigo.get("/deployments", params={"createdBy": "me", "size": 100}).json()
    assert body["page"]["totalElements"] == Store.open().count_deployments(owner="admin")
    assert all(d["createdBy"] == {"subject": "admin"} for d in body["content"])


@pytest.mark.parametrize(
    "params", [{"size": 0}, {"size": -1}, {"size": 10**9}, {"page": -1}, {"createdBy": ""}]
)
def test_indigo_bad_paging_is_422_naming_the_parameter(indigo, params):
    r = indigo.get("/deployments", params=params)
    assert r.status_code == 422, r.text
    (name,) = params
    assert [e["loc"] for e in r.json()["detail"]] == [["query", name]]


def test_indigo_unknown_deployment_is_404(indigo):
    r = indigo.get("/deployments/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and "not found" in r.json()["detail"]
