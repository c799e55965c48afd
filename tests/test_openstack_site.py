"""The OpenStack site over real HTTP: real openstacksdk + keystoneauth against the fake
Keystone/Nova/Neutron/Glance in tests/fakes, the real Store on SQLite as the ledger."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from stratoflow.errors import ChecksumMismatch, SiteError, TemplateError
from stratoflow.maintenance.reaper import reap_site
from stratoflow.sites.base import HostRequest, JobSpec
from stratoflow.sites.openstack.config import choose_flavor
from tests.conftest import CHAOS_ROUNDS
from tests.fakes.openstack_server import FakeOpenStack

# openstacksdk warns about its own internals on every resource it builds: noise, and slow.
pytestmark = pytest.mark.filterwarnings(
    "ignore::PendingDeprecationWarning", "ignore::DeprecationWarning"
)
GIB = 1 << 30
PASSWORD, AC_SECRET = "s3cret-password", "ac-s3cret"
# A fake VM's agent is a real process: 60 s is ample on two loaded cores, and a test whose
# agent never starts fails in a minute instead of the default boot timeout's ten.
FAST = {"retry_backoff_s": 0.0, "poll_interval_s": 0.0, "retry_attempts": 8, "boot_timeout_s": 60}


@pytest.fixture
def fake() -> Iterator[FakeOpenStack]:
    # Importing Airflow configures logging and replaces the root handlers; do it during
    # setup so caplog's handler (installed per phase) survives into the test body.
    import stratoflow.hooks.openstack  # noqa: F401

    f = FakeOpenStack(seed=7).start()
    try:
        yield f
    finally:
        f.stop()


def connection(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenStack, **kw: object) -> str:
    """An Airflow connection as an AIRFLOW_CONN_ env var (unique id: no cached values)."""
    conn_id = f"os_{uuid.uuid4().hex[:8]}"
    doc = {"conn_type": "openstack", "host": fake.auth_url, **kw}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(doc))
    return conn_id


def password_conn(monkeypatch, fake, password: str = PASSWORD) -> str:
    extra = {"project_name": "demo", "user_domain_name": "Default", "region_name": "RegionOne"}
    return connection(monkeypatch, fake, login="alice", password=password, extra=extra)


def appcred_conn(monkeypatch, fake) -> str:
    extra = {"application_credential_id": "ac-0001", "application_credential_secret": AC_SECRET}
    return connection(monkeypatch, fake, extra=extra)


def site(conn_id: str, **cfg: object):
    from stratoflow.sites.openstack import OpenStackCompute

    config = {"conn_id": conn_id, "image": "ubuntu-22.04", "network": "private",
              "public_network": "public", **FAST, **cfg}  # fmt: skip
    return OpenStackCompute("cloud-a", config)


def test_password_auth_two_hosts_smallest_flavor(monkeypatch, fake, sqlite_store):
    os_site = site(password_conn(monkeypatch, fake))
    hosts = [HostRequest("workers", count=2, num_cpus=2, mem_bytes=3 * GIB)]
    alloc = os_site.provision("dep-a", hosts, sqlite_store)

    assert len(fake.servers) == 2 and len(alloc.hosts) == 2
    for h in alloc.hosts:
        s = fake.servers[h["server_id"]]
        assert s["status"] == "ACTIVE" and s["name"] == h["name"]
        assert s["flavor"]["name"] == "m1.medium"  # 2 vCPU/4 GiB: smallest that fits
        assert s["metadata"] == {"stratoflow_deployment": "dep-a", "stratoflow_key": h["name"]}
        assert s["user_data"].startswith("#cloud-config") and h["name"] in s["user_data"]
        assert h["address"].startswith("127.")  # the fake VM's own loopback address
    records = sqlite_store.resources("dep-a")
    assert {(r.kind, r.state.value) for r in records} == {("server", "created")}
    assert {r.external_id for r in records} == set(fake.servers)
    assert alloc.cores == 4 and alloc.to_dict()["data"]["conn_id"]
    tagged = os_site.list_tagged()
    assert sorted(t.key for t in tagged) == sorted(h["name"] for h in alloc.hosts)
    assert {t.kind for t in tagged} == {"server"} and all(t.created_at for t in tagged)

    again = os_site.provision("dep-a", hosts, sqlite_store)  # a retried task adopts
    assert [h["server_id"] for h in again.hosts] == [h["server_id"] for h in alloc.hosts]
    assert max(fake.created_names.values()) == 1

    fake.leak_ports_on_delete = True  # Nova leaving ports behind: teardown removes them
    os_site.teardown("dep-a", sqlite_store, alloc)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert sqlite_store.resources("dep-a") == []
    os_site.teardown("dep-a", sqlite_store, alloc)  # idempotent


def test_application_credential_public_endpoint_gets_floating_ip(monkeypatch, fake, sqlite_store):
    os_site = site(appcred_conn(monkeypatch, fake))
    alloc = os_site.provision("dep-b", [HostRequest("head", public_endpoint=True)], sqlite_store)
    (host,) = alloc.hosts
    (fip,) = fake.fips.values()
    port = fake.ports[fip["port_id"]]
    assert port["device_id"] == host["server_id"]
    assert host["public_address"] == fip["floating_ip_address"]
    assert fake.servers[host["server_id"]]["flavor"]["name"] == "m1.small"  # 1 vCPU, 1 GiB
    kinds = {r.kind: r for r in sqlite_store.resources("dep-b")}
    assert kinds["floating_ip"].external_id == fip["id"]
    assert "floatingips" in {p.split("/")[3] for _, p, _ in fake.requests if "/network/" in p}
    assert ("PUT", f"/network/v2.0/floatingips/{fip['id']}", "200") in fake.requests
    os_site.teardown("dep-b", sqlite_store)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}


def test_lost_create_reply_is_adopted_not_duplicated(monkeypatch, fake, sqlite_store):
    os_site = site(password_conn(monkeypatch, fake))
    fake.scripted = [("POST", r"/compute/v2\.1/servers", "drop"),
                     ("POST", r"/network/v2\.0/floatingips", "drop")]  # fmt: skip
    alloc = os_site.provision("dep-l", [HostRequest("n", public_endpoint=True)], sqlite_store)
    assert len(fake.servers) == 1 and len(fake.fips) == 1 and fake.faults_injected == 2
    assert alloc.hosts[0]["server_id"] in fake.servers
    os_site.teardown("dep-l", sqlite_store)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}


def test_chaos_each_deployment_once_and_nothing_leaks(monkeypatch, fake, sqlite_store):
    os_site = site(password_conn(monkeypatch, fake))
    fake.leak_ports_on_delete = True
    fake.quota.update(instances=100, cores=100)  # quota is not what this test is about
    fake.chaos(error_rate=0.15, drop_rate=0.15)  # 30% of API calls fail
    outcomes = {}
    for d in range(CHAOS_ROUNDS):
        hosts = [HostRequest("w"), HostRequest("head", public_endpoint=d % 3 == 0)]
        try:
            alloc = os_site.provision(f"dep-{d}", hosts, sqlite_store)
            outcomes[d] = "ok"
            assert {h["server_id"] for h in alloc.hosts} <= set(fake.servers)
        except SiteError as e:
            outcomes[d] = str(e)
            assert str(e).startswith("openstack: ")
    assert fake.faults_injected > 2.5 * CHAOS_ROUNDS, fake.faults_injected
    assert max(fake.created_names.values()) == 1  # no key ever mapped to two servers
    names = [s["name"] for s in fake.servers.values()]
    assert len(names) == len(set(names))
    assert list(outcomes.values()).count("ok") >= 0.7 * CHAOS_ROUNDS, outcomes
    for d in range(CHAOS_ROUNDS):  # teardown under chaos too; Airflow would retry a failed teardown
        for attempt in range(3):
            try:
                os_site.teardown(f"dep-{d}", sqlite_store)
                break
            except SiteError:
                assert attempt < 2
    # One reaper run (still under chaos) finds nothing teardown missed: orphans would be
    # listed, and any it found must be gone afterwards.
    reap_site("cloud-a", os_site, sqlite_store, run_id="chaos", grace=timedelta(0))
    fake.chaos()
    assert os_site.list_tagged() == []
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert fake.vms.running() == []
    assert sqlite_store.live_resources("cloud-a") == []
    print(f"chaos: {len(fake.requests)} requests, {fake.faults_injected} faults, {outcomes}")


def test_quota_exceeded_cleans_up(monkeypatch, fake, sqlite_store):
    os_site = site(password_conn(monkeypatch, fake))
    fake.quota["instances"] = 2
    with pytest.raises(SiteError, match=r"quota exceeded .*Quota exceeded for instances"):
        os_site.provision("dep-q", [HostRequest("w", count=3)], sqlite_store)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert fake.created_names.total() == 2 and sqlite_store.resources("dep-q") == []
    fake.quota["floatingip"] = 0  # Neutron's 409 OverQuota, after the server booted
    with pytest.raises(SiteError, match=r"quota exceeded .*\['floatingip'\]"):
        os_site.provision("dep-q2", [HostRequest("w", public_endpoint=True)], sqlite_store)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}


def test_boot_failure_cleans_up(monkeypatch, fake, sqlite_store):
    os_site = site(password_conn(monkeypatch, fake))
    fake.fail_boots = 1
    with pytest.raises(SiteError, match=r"failed to boot \(ERROR\): No valid host was found"):
        os_site.provision("dep-e", [HostRequest("w", count=2)], sqlite_store)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}
    assert sqlite_store.resources("dep-e") == []


def test_no_fitting_flavor_names_the_request(monkeypatch, fake, sqlite_store):
    os_site = site(password_conn(monkeypatch, fake), flavors=["m1.tiny", "m1.small"])
    with pytest.raises(SiteError, match=r"no flavor for node 'big' needing 2 cores"):
        os_site.provision("dep-f", [HostRequest("big", num_cpus=2)], sqlite_store)
    assert not fake.servers and fake.created_names.total() == 0


def test_choose_flavor_gpus_and_smallest():
    flavors = [
        {"id": "a", "name": "big", "vcpus": 8, "ram": 16384, "disk": 80},
        {"id": "b", "name": "small", "vcpus": 2, "ram": 4096, "disk": 20},
        {"id": "g", "name": "gpu", "vcpus": 8, "ram": 16384, "disk": 80,
         "extra_specs": {"resources:VGPU": "1"}},
        {"id": "off", "name": "off", "vcpus": 2, "ram": 2048, "disk": 20, "disabled": True},
    ]  # fmt: skip
    assert choose_flavor("s", flavors, HostRequest("n", num_cpus=2))["name"] == "small"
    assert choose_flavor("s", flavors, HostRequest("n", num_cpus=4))["name"] == "big"
    assert choose_flavor("s", flavors, HostRequest("n", gpus=1))["name"] == "gpu"
    with pytest.raises(SiteError, match="2 GPUs"):
        choose_flavor("s", flavors, HostRequest("n", gpus=2))


def test_bad_credentials_clear_error_without_secret(monkeypatch, fake, sqlite_store):
    os_site = site(password_conn(monkeypatch, fake, password="wrong-password-123"))
    with pytest.raises(SiteError, match="authentication failed at site 'cloud-a'") as err:
        os_site.provision("dep-x", [HostRequest("w")], sqlite_store)
    assert "wrong-password-123" not in str(err.value)
    assert not fake.servers and sqlite_store.resources("dep-x") == []


def test_secrets_never_logged(monkeypatch, fake, sqlite_store, caplog):
    # keystoneauth logs every request, its headers and body at DEBUG.
    for name in ("", "keystoneauth", "openstack", "stratoflow"):
        caplog.set_level(logging.DEBUG, logger=name)
    for conn_id in (password_conn(monkeypatch, fake), appcred_conn(monkeypatch, fake)):
        os_site = site(conn_id)
        alloc = os_site.provision(f"dep-{conn_id}", [HostRequest("w")], sqlite_store)
        os_site.teardown(f"dep-{conn_id}", sqlite_store)
        blob = json.dumps(alloc.to_dict()) + json.dumps(
            [r.data for r in sqlite_store.resources(f"dep-{conn_id}", include_deleted=True)]
        )
        assert PASSWORD not in blob and AC_SECRET not in blob
    assert "auth/tokens" in caplog.text  # keystoneauth did log the auth requests...
    assert PASSWORD not in caplog.text and AC_SECRET not in caplog.text
    tokens = [t for t in fake.tokens]
    assert tokens and not any(t in caplog.text for t in tokens)


def test_server_active_trigger(monkeypatch, fake, sqlite_store):
    from stratoflow.triggers.openstack import ServerActiveTrigger
    from stratoflow.triggers.wait import SiteWaitTrigger

    conn_id = password_conn(monkeypatch, fake)
    os_site = site(conn_id)

    async def first_event(trigger: SiteWaitTrigger) -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    alloc = os_site.provision_start("dep-t", [HostRequest("w", count=2)], sqlite_store)
    ids = alloc.data["server_ids"]
    assert {fake.servers[i]["status"] for i in ids} == {"BUILD"}
    spec = os_site.boot_wait(alloc)
    assert spec.waiter == "openstack.servers_active" and spec.kwargs["server_ids"] == ids
    trigger = SiteWaitTrigger.from_spec(replace(spec, poll_interval_s=0.01))
    classpath, kwargs = trigger.serialize()
    assert classpath == "stratoflow.triggers.wait.SiteWaitTrigger"
    again = SiteWaitTrigger(**json.loads(json.dumps(kwargs)))
    assert again.spec.deadline == trigger.spec.deadline  # a re-run keeps the original bound
    fake.scripted = [("GET", rf"/compute/v2\.1/servers/{ids[0]}", "5xx")]  # only delays
    event = asyncio.run(first_event(again))
    assert event["status"] == "active" and set(event["servers"]) == set(ids)
    final = os_site.provision_finish(alloc, sqlite_store)
    assert all(h["address"] for h in final.hosts)

    fake.fail_boots = 1
    bad = os_site.provision_start("dep-t2", [HostRequest("w")], sqlite_store)
    # The old classpath still loads (a wait deferred before an upgrade), as the same wait.
    event = asyncio.run(first_event(ServerActiveTrigger(conn_id, bad.data["server_ids"], 30, 0)))
    assert event["status"] == "error" and "No valid host" in event["message"]

    fake.build_polls = 10**6
    slow = os_site.provision_start("dep-t3", [HostRequest("w")], sqlite_store)
    event = asyncio.run(first_event(ServerActiveTrigger(conn_id, slow.data["server_ids"], 0, 0)))
    assert event == {"status": "timeout", "pending": slow.data["server_ids"], "echo": {}}
    for dep in ("dep-t", "dep-t2", "dep-t3"):
        os_site.teardown(dep, sqlite_store)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}


def _wait_job(os_site, alloc, handle, timeout=30.0):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        st = os_site.job_status(alloc, handle)
        if st.done:
            return st
        time.sleep(0.1)
    raise AssertionError(f"{handle} still running")


def test_jobs_and_staging_go_through_the_vm_agent(monkeypatch, fake, sqlite_store, tmp_path):
    import hashlib

    from stratoflow.errors import StagingRefused
    from stratoflow.sites.agent.jobs import AgentStorage

    roots = {"allowed_roots": [str(tmp_path)], "writable_roots": [str(tmp_path)]}
    os_site = site(password_conn(monkeypatch, fake), **roots)
    alloc = os_site.provision("dep-j", [HostRequest("w")], sqlite_store)
    src = tmp_path / "in.txt"
    src.write_text("a\nb\nc\n")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    storage = AgentStorage("cloud-a", os_site.config)
    staged = storage.copy(src.as_uri(), f"{alloc.workdir}/inputs/in.txt", sha256=sha, size=6)
    assert staged.url == f"{alloc.workdir}/inputs/in.txt" and staged.sha256 == sha
    with pytest.raises(ChecksumMismatch):  # a declared sum that is wrong: nothing is sent
        storage.copy(src.as_uri(), f"{alloc.workdir}/inputs/bad.txt", sha256="0" * 64)
    with pytest.raises(StagingRefused):  # the site's roots bound what may be read
        storage.copy("file:///etc/passwd", f"{alloc.workdir}/inputs/p")

    count = "import sys; n = sum(1 for _ in open(sys.argv[1])); print('lines', n)"
    write = "; open(sys.argv[2] + '/n.txt', 'w').write(str(n))"
    job = JobSpec("count", 0, ["python", "-c", count + write, staged.url, "{outdir}"])
    job = JobSpec(**{**job.__dict__, "inputs": [staged.url]})
    handle = os_site.start_job(alloc, job)
    assert os_site.start_job(alloc, job) == handle  # a retried task adopts the running job
    st = _wait_job(os_site, alloc, handle)
    assert st.state == "succeeded", st.reason
    assert "lines 3" in list(os_site.job_log(alloc, handle))
    (out,) = os_site.list_outputs(alloc, st.outdir)
    assert out == f"{alloc.workdir}/outputs/count/0/n.txt"
    dest = tmp_path / "results" / "n.txt"
    got = storage.copy(out, dest.as_uri())
    assert dest.read_text() == "3" and got.size == 1

    fail = JobSpec("boom", 0, ["python", "-c", "import sys; print('bad input'); sys.exit(3)"])
    st = _wait_job(os_site, alloc, os_site.start_job(alloc, fail))
    assert st.state == "failed" and st.exit_code == 3 and "bad input" in st.reason

    other = JobSpec("count", 1, ["true"], inputs=["sfagent://cloud-a@10.9.9.9:8765/x/inputs/y"])
    with pytest.raises(SiteError, match="not in this deployment's sandbox"):
        os_site.start_job(alloc, other)
    os_site.teardown("dep-j", sqlite_store)
    assert fake.vms.running() == []


def test_the_agent_refuses_a_wrong_token_and_paths_outside_its_sandbox(
    monkeypatch, fake, sqlite_store
):
    import httpx

    from stratoflow.sites.agent.client import AgentURL

    os_site = site(password_conn(monkeypatch, fake))
    alloc = os_site.provision("dep-t", [HostRequest("w")], sqlite_store)
    url = AgentURL.parse(alloc.workdir)
    base = f"http://{url.host}:{url.port}"
    assert httpx.get(f"{base}/v1/health").status_code == 401
    bad = {"Authorization": "Bearer " + "0" * 64}
    assert httpx.get(f"{base}/v1/health", headers=bad).status_code == 401
    agent = os_site._agent(alloc)
    try:
        assert agent.health()["deployment"] == "dep-t"
        auth = dict(agent._http.headers)
        headers = {"Authorization": auth["authorization"]}
        for path in ("/v1/list/..%2F..%2F..", "/v1/files/%2E%2E/%2E%2E/agent.json"):
            r = httpx.get(base + path, headers=headers)
            assert r.status_code == 403, (path, r.status_code, r.text)
        r = httpx.get(base + "/v1/files/inputs", headers=headers)  # a directory
        assert r.status_code == 400 and "IsADirectoryError" in r.json()["error"]
    finally:
        agent.close()
    os_site.teardown("dep-t", sqlite_store)


def test_registration_and_validator(monkeypatch):
    from stratoflow.sites import catalogue
    from stratoflow.sites.openstack import register

    register()
    with pytest.raises(TemplateError) as err:
        catalogue.parse_catalogue({"sites": [{"name": "os", "kind": "openstack", "cores": 0}]})
    text = str(err.value)
    assert "sites[0].conn_id: required" in text and "sites[0].image: required" in text
    assert "sites[0].cores: expected a positive integer" in text
    sites = catalogue.parse_catalogue(
        {"sites": [{"name": "os", "kind": "openstack", "conn_id": "c", "image": "i"}]}
    )
    compute = catalogue.compute_for(sites["os"])
    assert compute.kind == "openstack" and compute.cfg.conn_id == "c"


def test_user_data_is_cloud_config_that_starts_the_agent(monkeypatch, fake, sqlite_store):
    import yaml

    from stratoflow.hooks.agent import agent_token

    conn_id = password_conn(monkeypatch, fake)
    os_site = site(conn_id)
    alloc = os_site.provision("dep-u", [HostRequest("w")], sqlite_store)
    (server,) = fake.servers.values()
    doc = yaml.safe_load(server["user_data"])  # Nova got it base64-encoded, as it requires
    assert "STRATOFLOW_DEPLOYMENT=dep-u" in doc["write_files"][0]["content"]
    agent = json.loads(doc["write_files"][1]["content"])
    assert doc["write_files"][1]["path"] == "/etc/stratoflow/agent.json"
    assert agent["deployment"] == "dep-u" and agent["listen"] == "0.0.0.0:8765"
    assert agent["token"] == agent_token(conn_id, "dep-u") != agent_token(conn_id, "dep-v")
    assert any(
        "stratoflow-agent --config /etc/stratoflow/agent.json" in str(c) for c in doc["runcmd"]
    )
    assert PASSWORD not in server["user_data"]
    # Provisioning returned once the agent answered, at the server's fixed address.
    assert alloc.workdir == f"sfagent://cloud-a@{alloc.hosts[0]['address']}:8765/dep-u"
    assert fake.vms.running() == [server["id"]]
    os_site.teardown("dep-u", sqlite_store)
    assert fake.vms.running() == []


def test_hook_auth_kwargs_and_missing_connection():
    from stratoflow.hooks.openstack import OpenStackHook, auth_kwargs, describe

    kw = auth_kwargs("https://ks/v3", "alice", "pw-123456", {"project_name": "p"})
    assert kw["auth_type"] == "password" and kw["project_domain_name"] == "Default"
    extra = {"application_credential_id": "ac1", "application_credential_secret": "sec-123456"}
    kw = auth_kwargs("https://ks/v3", None, None, extra)
    assert kw["auth_type"] == "v3applicationcredential" and "username" not in kw
    assert "sec-123456" not in describe(kw) and "ac1" in describe(kw)
    with pytest.raises(SiteError, match="needs login and password"):
        auth_kwargs("https://ks/v3", "alice", None, {})
    with pytest.raises(SiteError, match="no host"):
        auth_kwargs(None, "alice", "pw", {})
    with pytest.raises(SiteError, match="cannot read Airflow connection 'os_nowhere'"):
        OpenStackHook("os_nowhere").get_conn()


def test_reaper_deletes_orphans_and_keeps_live_deployments(
    monkeypatch, fake, sqlite_store, tmp_path
):
    from tests.reaper_scenario import run_reaper_scenario

    os_site = site(password_conn(monkeypatch, fake))
    fake.leak_ports_on_delete = True  # the reaper must remove what Nova leaves behind

    def provision(dep: str, ledger) -> None:
        os_site.provision(
            dep, [HostRequest("w"), HostRequest("head", public_endpoint=True)], ledger
        )

    run_reaper_scenario(os_site, sqlite_store, provision, tmp_path)
    assert fake.leftovers() == {"servers": [], "ports": [], "floatingips": []}
