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


def test_a_token_just_used_is_refused_once_it_expires(anonymous, token, airflow_env):
    """A validated token is remembered for a few seconds (``RecentTokens``), never past its
    expiry. Airflow accepts a token up to ``jwt_leeway`` (10 s) after it: this one is
    valid for 3.5 s more, then refused, though it was used a moment before."""
    secret = (Path(airflow_env["AIRFLOW_HOME"]) / ".jwt_secret").read_text().strip()
    now = time.time()
    leeway = 10  # Airflow's [api_auth] jwt_leeway
    claims = {**_claims(token), "iat": now - 60, "nbf": now - 60, "exp": now - leeway + 3.5}
    short = {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS512')}"}
    assert anonymous.get("/templates", headers=short).status_code == 200
    # Past its validity, and still within the 5 s a token is remembered for.
    time.sleep(max(now + 4.5 - time.time(), 0))
    r = anonymous.get("/templates", headers=short)
    assert r.status_code == 401, r.text


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
    assert ["body", "template", "topology_template.inputs.chunk_size"] in locs
    assert _deployment_ids(api) == before


@pytest.mark.parametrize(
    "template", ["../../etc/passwd", "/etc/passwd", "dimuon/../dimuon_campaign.yaml", "nope.yaml"]
)
def test_template_outside_the_catalogue_is_422_naming_template(api, template):
    before = _deployment_ids(api)
    r = api.post("/deployments", json={"template": template, "inputs": {}})
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "template"]]
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
