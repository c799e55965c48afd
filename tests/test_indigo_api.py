"""The INDIGO-compatible deployments API (``/orchestrator``), over HTTP against the plugin in
the real embedded Airflow, driven as orchent and the INDIGO dashboards call it."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from stratoflow.api.app import app as stratoflow_app
from stratoflow.api.indigo import app as indigo_app
from stratoflow.store import STARTING, Store
from tests.engine import assert_engine_alive, wait_for
from tests.fakes.callbacks import CallbackReceiver

pytestmark = pytest.mark.airflow

CLUSTER = Path(__file__).parents[1] / "include" / "templates" / "local_cluster.yaml"


@pytest.fixture(scope="module", autouse=True)
def cloud(airflow_env):
    """Site ``cloud`` (the OpenStack fake, real openstacksdk), in the catalogue and its
    Connection in the environment before the module's Airflow starts (autouse: first)."""
    from tests.cloud_sites import openstack_site

    with openstack_site(airflow_env) as fake:
        yield fake


@pytest.fixture(scope="module")
def indigo(airflow_up, token) -> httpx.Client:
    with httpx.Client(
        base_url=f"{airflow_up.api_url()}/orchestrator",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as client:
        yield client


@pytest.fixture
def receiver():
    r = CallbackReceiver()
    yield r
    r.stop()


def _new_template(name: str) -> str:
    """The catalogue's cluster under a name Airflow has never seen: a new DAG."""
    text = CLUSTER.read_text()
    return text.replace("template_name: local_cluster", f"template_name: {name}")


def _status(indigo: httpx.Client, deployment_id: str) -> dict:
    r = indigo.get(f"/deployments/{deployment_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _settled(indigo: httpx.Client, deployment_id: str, timeout: float = 240) -> dict:
    def done() -> dict | None:
        assert_engine_alive()
        shown = _status(indigo, deployment_id)
        return None if shown["status"].endswith("_IN_PROGRESS") else shown

    return wait_for(done, timeout, f"deployment {deployment_id} to settle", every=1.0)


def test_routes_refuse_a_missing_token(airflow_up):
    with httpx.Client(base_url=f"{airflow_up.api_url()}/orchestrator", timeout=60) as client:
        some = "/deployments/00000000-0000-0000-0000-000000000000"
        for method, path in (
            ("GET", "/deployments"),
            ("GET", some),
            ("POST", "/deployments"),
            ("DELETE", some),
            ("PATCH", some),
        ):
            assert client.request(method, path).status_code == 401, (method, path)


def test_a_new_template_posted_as_text_is_created_then_deleted(indigo, receiver):
    """orchent's create, get, list and delete, end to end on the local site, with a
    template Airflow has never parsed: the POST answers before its DAG exists. Its
    callback gets each final state once, although it fails the first POST."""
    posted = time.monotonic()
    r = indigo.post(
        "/deployments",
        json={
            "template": _new_template(f"indigo_{uuid.uuid4().hex[:8]}"),
            "parameters": {"hosts": 1},
            "callback": receiver.url,
            "keepLastAttempt": False,
        },
    )
    answered_s = time.monotonic() - posted
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "CREATE_IN_PROGRESS"
    assert created["statusReason"] == STARTING  # answered before the run is triggered
    assert created["createdBy"] == {"subject": "admin"}
    assert created["callback"] == receiver.url
    assert r.headers["Location"].endswith(f"/orchestrator/deployments/{created['uuid']}")
    assert answered_s < 10, f"the POST took {answered_s:.1f} s"  # not a parse wait (60 s+)

    shown = _settled(indigo, created["uuid"])
    assert shown["status"] == "CREATE_COMPLETE", shown.get("statusReason")
    assert shown["cloudProviderName"] == "local" and shown["physicalId"] == created["physicalId"]
    listed = indigo.get("/deployments", params={"createdBy": "me", "size": 100}).json()
    assert created["uuid"] in {d["uuid"] for d in listed["content"]}
    assert "template_name: indigo_" in indigo.get(f"/deployments/{created['uuid']}/template").text
    _check_resources(indigo, shown)

    r = indigo.delete(f"/deployments/{created['uuid']}")
    assert r.status_code == 204, r.text
    again = indigo.delete(f"/deployments/{created['uuid']}")
    assert again.status_code in (409, 204), again.text  # 204 only if it finished already
    if again.status_code == 409:
        assert "DELETE_IN_PROGRESS" in again.json()["detail"]
    assert _settled(indigo, created["uuid"])["status"] == "DELETE_COMPLETE"
    wait_for(lambda: len(receiver.accepted()) == 2, 60, "the callbacks")
    time.sleep(2)  # no further POST comes
    assert receiver.accepted() == ["CREATE_COMPLETE", "DELETE_COMPLETE"]
    assert [body["status"] for code, body in receiver.posts if code != 200] == ["CREATE_COMPLETE"]
    last = receiver.posts[-1][1]
    assert last["uuid"] == created["uuid"] and last["callback"] == receiver.url
    r = indigo.patch(f"/deployments/{created['uuid']}", json={"status": "DELETE_FAILED"})
    assert r.status_code == 409 and "DELETE_COMPLETE" in r.json()["detail"]


def _check_resources(indigo: httpx.Client, shown: dict) -> None:
    links = {link["rel"]: link["href"] for link in shown["links"]}
    r = indigo.get(links["resources"])
    assert r.status_code == 200, r.text
    (host,) = r.json()["content"]  # one host: its sandbox on the local site
    assert host["toscaNodeName"] == "cluster" and host["toscaNodeType"] == "tosca.nodes.Compute"
    assert host["state"] == "CREATED" and host["metadata"]["site"] == "local"
    self_link = next(x["href"] for x in host["links"] if x["rel"] == "self")
    assert indigo.get(self_link).json() == host
    typed = indigo.get(links["resources"], params={"type": "tosca.nodes.Compute"}).json()
    assert typed["content"] == [host] and typed["page"]["totalElements"] == 1
    other = indigo.get(links["resources"], params={"type": "tosca.nodes.Database"}).json()
    assert other["content"] == [] and other["page"]["totalElements"] == 0
    missing = indigo.get(f"{links['resources']}/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404

    (machine,) = indigo.get(f"{links['self']}/extrainfo").json()
    assert machine["vmId"] == host["physicalId"] and machine["toscaNodeName"] == "cluster"
    log = indigo.get(f"{links['self']}/log")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    assert " provision" in log.text, log.text


def test_a_vm_on_the_openstack_fake_is_created_then_deleted(indigo, cloud):
    r = indigo.post(
        "/deployments",
        json={"template": "local_cluster.yaml", "parameters": {"site": "cloud", "hosts": 1}},
    )
    assert r.status_code == 201, r.text
    deployment_id = r.json()["uuid"]
    shown = _settled(indigo, deployment_id)
    assert shown["status"] == "CREATE_COMPLETE", shown.get("statusReason")
    assert shown["cloudProviderName"] == "cloud"
    resources = indigo.get(f"/deployments/{deployment_id}/resources").json()["content"]
    servers = [r for r in resources if r["metadata"]["kind"] == "server"]
    assert len(servers) == 1 and servers[0]["physicalId"] in cloud.servers
    (vm,) = indigo.get(f"/deployments/{deployment_id}/extrainfo").json()
    assert vm["vmId"] == servers[0]["physicalId"] and vm["site"] == "cloud"

    assert indigo.delete(f"/deployments/{deployment_id}").status_code == 204
    assert _settled(indigo, deployment_id)["status"] == "DELETE_COMPLETE"
    assert cloud.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert cloud.vms.running() == []


def test_a_catalogue_template_may_be_named(indigo):
    r = indigo.post("/deployments", json={"template": "local_cluster.yaml", "parameters": {}})
    assert r.status_code == 201, r.text
    deployment_id = r.json()["uuid"]
    try:
        assert _settled(indigo, deployment_id)["status"] == "CREATE_COMPLETE"
    finally:
        assert indigo.delete(f"/deployments/{deployment_id}").status_code == 204
        assert _settled(indigo, deployment_id)["status"] == "DELETE_COMPLETE"


def test_a_run_airflow_refuses_to_start_makes_the_deployment_fail(indigo, token, airflow_env):
    """The run starts in the background as the caller, so Airflow's own permissions apply
    after the 201: a viewer may read DAGs but not trigger them, and the deployment ends
    CREATE_FAILED saying so, with nothing provisioned."""
    import jwt

    secret = (Path(airflow_env["AIRFLOW_HOME"]) / ".jwt_secret").read_text().strip()
    claims = {**jwt.decode(token, options={"verify_signature": False})}
    claims.update(sub="vera", role="VIEWER", jti=uuid.uuid4().hex)
    viewer = {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS512')}"}
    r = indigo.post(
        "/deployments",
        json={"template": "local_cluster.yaml", "parameters": {}},
        headers=viewer,
    )
    assert r.status_code == 201, r.text
    assert r.json()["createdBy"]["subject"] == "vera"
    shown = _settled(indigo, r.json()["uuid"], timeout=60)
    assert shown["status"] == "CREATE_FAILED", shown
    assert "403" in shown["statusReason"] or "forbidden" in shown["statusReason"].lower()
    assert Store.open().resources(shown["uuid"]) == []


def test_max_providers_retry_bounds_the_failover(indigo, airflow_env):
    """A cluster that may go to alpha, then beta, with alpha broken: it fails over to beta,
    unless maxProvidersRetry is 1: then it fails at alpha, and beta is never tried."""
    template = _new_template(f"indigo_failover_{uuid.uuid4().hex[:8]}").replace(
        "site: { get_input: site }", "sites: [alpha, beta]"
    )
    # A real fault at alpha: its sites directory is a file, so no sandbox can be made there.
    alpha = Path(airflow_env["STRATOFLOW_HOME"]) / "sites" / "alpha"
    alpha.parent.mkdir(parents=True, exist_ok=True)
    alpha.write_text("not a directory")
    try:
        bounded, free = (
            indigo.post(
                "/deployments",
                json={"template": template, "parameters": {"hosts": 1}, **extra},
            ).json()["uuid"]
            for extra in ({"maxProvidersRetry": 1}, {})
        )
        failed, moved = _settled(indigo, bounded), _settled(indigo, free)
    finally:
        alpha.unlink()
    assert failed["status"] == "CREATE_FAILED", failed
    assert "alpha" in failed["statusReason"] and "beta" not in failed["statusReason"]
    assert moved["status"] == "CREATE_COMPLETE" and moved["cloudProviderName"] == "beta"
    assert indigo.delete(f"/deployments/{free}").status_code == 204
    assert _settled(indigo, free)["status"] == "DELETE_COMPLETE"


def test_timeout_mins_bounds_the_create(indigo):
    """A deployment whose timeoutMins ran out before its first step fails, saying so, and
    nothing is provisioned. (The clock is moved instead of waiting a minute: its creation
    time is set two minutes back before its run starts.)"""
    from sqlalchemy import update

    from stratoflow.store.schema import deployments

    r = indigo.post(
        "/deployments",
        json={"template": "local_cluster.yaml", "parameters": {"hosts": 1}, "timeoutMins": 1},
    )
    assert r.status_code == 201, r.text
    deployment_id = r.json()["uuid"]
    store = Store.open()
    with store.engine.begin() as db:
        long_ago = store.get_deployment(deployment_id).created_at - timedelta(minutes=2)
        db.execute(
            update(deployments).where(deployments.c.id == deployment_id).values(created_at=long_ago)
        )
    shown = _settled(indigo, deployment_id)
    assert shown["status"] == "CREATE_FAILED", shown
    assert "timeoutMins ran out" in shown["statusReason"]
    assert store.resources(deployment_id, include_deleted=True) == []


def test_patch_resets_a_delete_stuck_in_progress(indigo):
    store = Store.open()
    made = store.create_deployment("indigo_stuck", f"run-{uuid.uuid4().hex}", "0" * 16, {}, "admin")
    store.begin_delete(made.id, "a test's delete that never runs")
    r = indigo.patch(f"/deployments/{made.id}", json={"status": "DELETE_FAILED"})
    assert r.status_code == 204, r.text
    shown = _status(indigo, made.id)
    assert shown["status"] == "DELETE_FAILED" and "reset by admin" in shown["statusReason"]
    r = indigo.patch(f"/deployments/{made.id}", json={"status": "CREATE_COMPLETE"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "status"]


def test_another_owners_deployment_cannot_be_deleted_or_reset(indigo):
    store = Store.open()
    made = store.create_deployment("indigo_other", f"run-{uuid.uuid4().hex}", "0" * 16, {}, "bob")
    try:
        assert indigo.delete(f"/deployments/{made.id}").status_code == 403
        r = indigo.patch(f"/deployments/{made.id}", json={"status": "DELETE_FAILED"})
        assert r.status_code == 403 and "belongs to bob" in r.json()["detail"]
        assert _status(indigo, made.id)["status"] == "CREATE_IN_PROGRESS"
        for private in ("log", "extrainfo"):
            assert indigo.get(f"/deployments/{made.id}/{private}").status_code == 403
        assert indigo.get(f"/deployments/{made.id}/resources").json()["content"] == []
    finally:
        store.set_status(made.id, "CREATE_FAILED", reason="a test's record")


URL_ARTIFACT = _new_template("indigo_url_artifact").replace(
    "  node_templates:\n    cluster:\n",
    "  node_templates:\n    cluster:\n      artifacts:\n"
    "        setup: { file: 'https://example.org/setup.sh' }\n",
)


@pytest.mark.parametrize(
    "body,loc",
    [
        ({"template": 5}, ["body", "template"]),
        ({"template": ["tosca"]}, ["body", "template"]),
        ({"template": "x" * (10 * 1024 * 1024)}, ["body", "template"]),
        ({"template": ""}, ["body", "template"]),
        ({}, ["body", "template"]),
        ({"template": "local_cluster.yaml", "callback": "ftp://h/x"}, ["body", "callback"]),
        ({"template": "local_cluster.yaml", "callback": "file:///etc/x"}, ["body", "callback"]),
        (
            {"template": "local_cluster.yaml", "timeoutMins": 5, "providerTimeoutMins": 10},
            ["body", "providerTimeoutMins"],
        ),
        ({"template": "local_cluster.yaml", "timeoutMins": 0}, ["body", "timeoutMins"]),
        (
            {"template": "local_cluster.yaml", "maxProvidersRetry": -1},
            ["body", "maxProvidersRetry"],
        ),
        ({"template": "local_cluster.yaml", "colour": "red"}, ["body", "colour"]),
        ({"template": "local_cluster.yaml", "parameters": {"hosts": 99}}, None),
        ({"template": "no_such.yaml"}, ["body", "template"]),
        ({"template": "tosca_definitions_version: [1\n"}, None),
        (
            {"template": URL_ARTIFACT},
            ["body", "template", "topology_template.node_templates.cluster.artifacts.setup.file"],
        ),
    ],
    ids=lambda v: str(v)[:40] if not isinstance(v, dict) else ",".join(map(str, v)),
)
def test_bad_input_is_422_naming_the_field_and_creates_nothing(indigo, body, loc):
    store = Store.open()
    before = store.count_deployments()
    r = indigo.post("/deployments", json=body)
    assert r.status_code == 422, r.text[:500]
    locs = [e["loc"] for e in r.json()["detail"]]
    if loc is not None:
        assert loc in locs, locs
    assert store.count_deployments() == before


def test_list_is_paged_and_each_deployment_reads_back(indigo):
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
    assert set(links) == {"self", "resources", "template"}
    assert indigo.get(links["self"]).json() == shown
    missing = indigo.get(links["template"])  # these records have no plan behind them
    assert missing.status_code == 404 and "no stored template" in missing.json()["detail"]


def test_template_is_the_tosca_text(indigo):
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


def test_created_by_me_is_the_caller(indigo):
    body = indigo.get("/deployments", params={"createdBy": "me", "size": 100}).json()
    assert body["page"]["totalElements"] == Store.open().count_deployments(owner="admin")
    assert all(d["createdBy"] == {"subject": "admin"} for d in body["content"])


@pytest.mark.parametrize(
    "params", [{"size": 0}, {"size": -1}, {"size": 10**9}, {"page": -1}, {"createdBy": ""}]
)
def test_bad_paging_is_422_naming_the_parameter(indigo, params):
    r = indigo.get("/deployments", params=params)
    assert r.status_code == 422, r.text
    (name,) = params
    assert [e["loc"] for e in r.json()["detail"]] == [["query", name]]


def test_unknown_deployment_is_404(indigo):
    r = indigo.get("/deployments/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and "not found" in r.json()["detail"]


# -- the OpenAPI documents hold: schemathesis over every route of both apps ---------------


def _loaded(app) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(app.openapi())


STRATOFLOW_SCHEMA = _loaded(stratoflow_app)
INDIGO_SCHEMA = _loaded(indigo_app)
FUZZ = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases each run: a failure here is reproducible
)


def test_the_served_documents_are_the_apps(airflow, token):
    for prefix, app in (("/stratoflow", stratoflow_app), ("/orchestrator", indigo_app)):
        served = airflow.get(f"{prefix}/openapi.json").json()
        assert served["paths"] == app.openapi()["paths"], prefix
    paths = indigo_app.openapi()["paths"]
    assert "put" not in paths["/deployments/{deployment_id}"]  # the update issue's


# Where a request the schema allows may still be refused with 422: a template's TOSCA
# and a site's name are checked against the catalogues, which no JSON schema can express.
# Every other check (no 5xx, status codes, content types, response schemas, headers,
# negative data refused, auth enforced) applies to every route.
SEMANTIC = {("POST", "/deployments"), ("GET", "/queue")}


def _call(case, base_url: str, token: str) -> None:
    semantic = (case.method.upper(), case.path) in SEMANTIC
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[positive_data_acceptance] if semantic else [],
        timeout=60,
    )


@STRATOFLOW_SCHEMA.parametrize()
@FUZZ
def test_the_stratoflow_api_keeps_its_document(case, airflow_up, token):
    _call(case, f"{airflow_up.api_url()}/stratoflow", token)


@INDIGO_SCHEMA.parametrize()
@FUZZ
def test_the_indigo_api_keeps_its_document(case, airflow_up, token):
    _call(case, f"{airflow_up.api_url()}/orchestrator", token)
