"""The kubernetes site with the real ``kubernetes`` client over real HTTP, against the fake
API server and fake kubelet in ``tests/fakes/kube_server.py``, with the real Store."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.requires import client_library

client_library("kubernetes")

from stratoflow.errors import SiteError, TemplateError  # noqa: E402
from stratoflow.maintenance.reaper import reap_site  # noqa: E402
from stratoflow.sites import catalogue  # noqa: E402
from stratoflow.sites.base import HostRequest, JobSpec  # noqa: E402
from stratoflow.sites.kubernetes import register  # noqa: E402
from stratoflow.sites.kubernetes.compute import KubernetesCompute  # noqa: E402
from stratoflow.sites.kubernetes.config import L_DEPLOYMENT, L_KEY  # noqa: E402
from stratoflow.store import Store  # noqa: E402
from tests.fakes.kube_server import FakeKube  # noqa: E402

TOKEN = "sk-kube-9f8e7d6c5b4a-secret-token"
MIB = 1 << 20
HOSTS = [HostRequest("workers", count=2, num_cpus=1, mem_bytes=256 * MIB)]


@pytest.fixture
def kube():
    fake = FakeKube(TOKEN, seed=7).start()
    yield fake
    fake.stop()


def connect(monkeypatch, conn_id: str, url: str, token: str | None = TOKEN) -> None:
    conn = {"conn_type": "kubernetes_site", "host": url, "extra": {"verify_ssl": False}}
    if token is not None:
        conn["password"] = token
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def store(tmp_path):
    return Store.open("sqlite:///" + str(tmp_path / "s.db"))


def make_site(tmp_path, conn_id: str = "k8s_test", **extra) -> KubernetesCompute:
    config = {
        "conn_id": conn_id,
        "cores": 64,
        "memory": 16 << 30,
        "workdir": str(tmp_path / "shared"),
        "retry_backoff_s": 0.01,
        "teardown_wait_s": 5,
        "kill_grace_s": 1,
    }
    return KubernetesCompute("k8s", {**config, **extra})


@pytest.fixture
def site(tmp_path, kube, monkeypatch):
    connect(monkeypatch, "k8s_test", kube.url)
    return make_site(tmp_path)


@pytest.fixture
def alloc(site, store):
    a = site.provision("dep1", HOSTS, store)
    yield a
    site.teardown("dep1", store, a)


def wait(site, alloc, handle, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = site.job_status(alloc, handle)
        if st.done:
            return st
        time.sleep(0.05)
    raise AssertionError(f"{handle} still running after {timeout} s")


def wait_empty(kube, timeout=10.0):
    deadline = time.time() + timeout
    while kube.live() != (0, 0) and time.time() < deadline:
        time.sleep(0.05)
    return kube.live()


def py(code: str) -> list[str]:
    return ["python", "-c", code]


def test_provision_labels_adopts_and_tears_down(site, store, kube, tmp_path):
    alloc = site.provision("dep1", HOSTS, store)
    ns = alloc.data["namespace"]
    (rec,) = store.resources("dep1")
    assert ns == rec.key and rec.state == "created" and rec.external_id == ns
    labels = kube.namespaces[ns]["metadata"]["labels"]
    assert labels[L_DEPLOYMENT] == "dep1" and labels[L_KEY] == rec.key
    assert alloc.cores == 2 and Path(alloc.workdir).is_dir()
    assert Path(alloc.workdir) == tmp_path / "shared" / "deployments" / "dep1"
    # A retried provision adopts: same namespace, no second create.
    again = site.provision("dep1", HOSTS, store)
    assert again.data["namespace"] == ns and len(kube.namespaces) == 1
    (tagged,) = site.list_tagged()
    assert (tagged.kind, tagged.key, tagged.external_id) == ("namespace", rec.key, ns)
    assert isinstance(tagged.created_at, datetime) and tagged.created_at.tzinfo is not None
    site.teardown("dep1", store, alloc)
    assert kube.live() == (0, 0) and not Path(alloc.workdir).exists()
    assert store.resources("dep1") == [] and store.resources("dep1", True)[0].state == "deleted"
    site.teardown("dep1", store, alloc)  # idempotent


def test_namespace_prefix_and_lost_create_reply(site, store, kube, tmp_path, monkeypatch):
    prefixed = make_site(tmp_path, namespace_prefix="team-a")
    kube.script = [("POST", "drop")]  # namespace created, reply lost: the retry must adopt
    alloc = prefixed.provision("dep2", HOSTS, store)
    assert alloc.data["namespace"].startswith("team-a-sf-dep2")
    assert list(kube.namespaces) == [alloc.data["namespace"]]
    assert ("POST", "/api/v1/namespaces", -1) in kube.calls
    prefixed.teardown("dep2", store, alloc)
    assert kube.live() == (0, 0)


def test_job_writes_output_committed_atomically(site, alloc, kube):
    script = b"import os, sys\nopen(os.path.join(sys.argv[1], 'r.txt'), 'w').write('42')\n"
    job = JobSpec(
        "analyse",
        0,
        "python {artifacts}/w.py {outdir} && echo done-$GREETING",
        env={"GREETING": "hi"},
        num_cpus=2,
        mem_bytes=300 * MIB,
        timeout_s=60,
        artifacts={"w.py": script},
    )
    handle = site.start_job(alloc, job)
    st = wait(site, alloc, handle)
    assert st.state == "succeeded", st.reason
    assert Path(st.outdir) == Path(alloc.workdir) / "outputs" / "analyse" / "0"
    assert (Path(st.outdir) / "r.txt").read_text() == "42"
    assert list(site.job_log(alloc, handle)) == ["done-hi"]
    pod = next(iter(kube.pods.values())).obj
    c = pod["spec"]["containers"][0]
    assert c["command"][:2] == ["/bin/sh", "-c"] and "{outdir}" not in c["command"][2]
    assert c["resources"]["limits"] == {"cpu": "2", "memory": str(300 * MIB)}
    assert pod["spec"]["activeDeadlineSeconds"] == 60
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["STRATOFLOW_SANDBOX"] == alloc.workdir and env["OMP_NUM_THREADS"] == "2"
    assert pod["metadata"]["labels"]["stratoflow.io/step"] == "analyse"
    # Started again: the committed output means succeeded; no second pod.
    assert site.start_job(alloc, job) == handle and len(kube.pods) == 1


def test_lost_pod_create_reply_adopts_the_pod(site, alloc, kube):
    kube.script = [("POST", "drop")]
    handle = site.start_job(alloc, JobSpec("s", 3, py("print('once')"), timeout_s=30))
    assert handle == "s/3/attempt-1" and len(kube.pods) == 1
    st = wait(site, alloc, handle)
    assert st.state == "succeeded" and list(site.job_log(alloc, handle)) == ["once"]
    # Lost reply, then the resend is refused: the pod exists all the same and is adopted.
    kube.script = [("POST", "drop"), ("POST", "403")]
    handle = site.start_job(alloc, JobSpec("s", 4, py("print('twice')"), timeout_s=30))
    assert handle == "s/4/attempt-1" and len(kube.pods) == 2
    assert wait(site, alloc, handle).state == "succeeded"


def test_failing_job_reports_exit_code_and_log_tail(site, alloc, kube):
    code = "import sys; print('reading input'); sys.stderr.write('boom: bad row 7\\n'); sys.exit(3)"
    handle = site.start_job(alloc, JobSpec("fail", -1, py(code), timeout_s=30))
    st = wait(site, alloc, handle)
    assert st.state == "failed" and st.exit_code == 3
    assert st.reason.startswith("exit code 3") and "boom: bad row 7" in st.reason
    assert "reading input" in list(site.job_log(alloc, handle))
    assert not (Path(alloc.workdir) / "outputs" / "fail").exists()
    # Airflow's retry starts a fresh attempt, with its own pod.
    assert site.start_job(alloc, JobSpec("fail", -1, py("pass"))) == "fail/-1/attempt-2"
    assert len(kube.pods) == 2


def test_memory_limit_is_oomkilled(site, alloc):
    hog = "import time; b = b'x' * (200 << 20); time.sleep(30)"
    handle = site.start_job(alloc, JobSpec("hog", 0, py(hog), mem_bytes=64 * MIB))
    st = wait(site, alloc, handle)
    assert st.state == "failed" and "OOMKilled" in st.reason and "64 MiB" in st.reason


def test_killed_pod_and_deadline(site, alloc, kube):
    h1 = site.start_job(alloc, JobSpec("victim", 0, py("import time; time.sleep(30)")))
    h2 = site.start_job(alloc, JobSpec("slow", 0, py("import time; time.sleep(30)"), timeout_s=1))
    ns = alloc.data["namespace"]
    while kube.pods[(ns, "sf-victim-0-a1")].proc is None:
        time.sleep(0.02)
    kube.kill_pod(ns, "sf-victim-0-a1")
    st = wait(site, alloc, h1)
    assert st.state == "failed" and st.exit_code == 137 and "signal 9" in st.reason
    st = wait(site, alloc, h2)
    assert st.state == "failed" and "timed out after 1 s" in st.reason


def test_cancel_deletes_the_pod(site, alloc, kube):
    handle = site.start_job(alloc, JobSpec("c", 0, py("import time; time.sleep(30)")))
    site.cancel_job(alloc, handle)
    st = site.job_status(alloc, handle)
    assert st.state == "failed" and st.reason == "cancelled"
    deadline = time.time() + 5
    while kube.pods and time.time() < deadline:
        time.sleep(0.05)
    assert not kube.pods


def test_chaos_provision_exactly_once_and_nothing_leaks(store, kube, tmp_path, monkeypatch):
    connect(monkeypatch, "k8s_test", kube.url)
    site = make_site(tmp_path, retry_attempts=2)  # few retries, so some provisions do fail
    kube.rng.seed(5)  # this seed fails two provisions, one of them after a lost create
    kube.configure(error_rate=0.15, drop_rate=0.15)
    outcome = {}
    for i in range(20):
        dep = f"chaos{i}"
        try:
            alloc = site.provision(dep, HOSTS, store)
            outcome[dep] = "provisioned"
        except SiteError as e:
            outcome[dep] = f"failed: {e}"
            continue
        try:
            site.start_job(alloc, JobSpec("j", 0, py("print(1)"), timeout_s=30))
        except SiteError:
            pass  # a refused job is the operator's retry; teardown must still clean it
    keys = [ns["metadata"]["labels"][L_KEY] for ns in kube.namespaces.values()]
    assert len(keys) == len(set(keys))  # no idempotency key maps to two namespaces
    for dep, result in outcome.items():
        recs = store.resources(dep)
        if result == "provisioned":
            assert [r.state for r in recs] == ["created"]
            assert recs[0].external_id in kube.namespaces
    assert sum(1 for _, _, code in kube.calls if code == -1) > 0
    assert sum(1 for _, _, code in kube.calls if code >= 500) > 0
    for dep in outcome:  # teardown is retried by Airflow; three tries here
        for attempt in range(3):
            try:
                site.teardown(dep, store)
                break
            except SiteError:
                assert attempt < 2
    kube.configure(error_rate=0.0, drop_rate=0.0)
    reap_site("k8s", site, store, run_id="chaos", grace=timedelta(0))
    assert wait_empty(kube) == (0, 0)
    assert site.list_tagged() == []
    assert store.live_resources("k8s") == []
    failures = [v for v in outcome.values() if v != "provisioned"]
    assert 0 < len(failures) < len(outcome)
    assert all(f.startswith("failed: kubernetes site 'k8s': ") for f in failures), failures


def test_quota_exhausted_is_a_clear_error_and_leaves_nothing(site, store, kube, tmp_path):
    kube.max_namespaces = 0
    with pytest.raises(SiteError, match="quota") as err:
        site.provision("dep3", HOSTS, store)
    assert "exceeded quota" in str(err.value)
    assert kube.live() == (0, 0) and store.live_resources("k8s") == []
    assert not (tmp_path / "shared" / "deployments" / "dep3").exists()


def test_pod_quota_refuses_job_without_leftovers(site, alloc, kube):
    kube.max_pods = 0
    with pytest.raises(SiteError, match="quota exhausted"):
        site.start_job(alloc, JobSpec("q", 0, py("pass")))
    assert not list((Path(alloc.workdir) / "jobs" / "q" / "0").glob("attempt-*"))


def test_the_providers_kubernetes_connection_works_too(tmp_path, kube, store, monkeypatch):
    """A connection of the cncf.kubernetes provider's type, with a kube_config extra, as
    Airflow users already write them; namespace_prefix is ours."""
    from stratoflow.hooks.kubernetes import KubernetesSiteHook

    kube_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "campus", "cluster": {"server": kube.url}}],
        "users": [{"name": "sf", "user": {"token": TOKEN}}],
        "contexts": [{"name": "campus", "context": {"cluster": "campus", "user": "sf"}}],
        "current-context": "campus",
    }
    conn = {
        "conn_type": "kubernetes",
        "extra": {"kube_config": kube_config, "namespace_prefix": "pv"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_K8S_PROVIDER", json.dumps(conn))
    assert KubernetesSiteHook("k8s_provider").test_connection() == (
        True,
        f"connected to Kubernetes v1.37.0-fake at {kube.url}",
    )
    site = make_site(tmp_path, "k8s_provider")
    alloc = site.provision("dep-pv", HOSTS, store)
    assert alloc.data["namespace"].startswith("pv-")
    site.teardown("dep-pv", store, alloc)
    assert store.resources("dep-pv") == []
    monkeypatch.setenv(
        "AIRFLOW_CONN_K8S_BROKEN",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": "{]"}}),
    )
    with pytest.raises(SiteError, match="'k8s_broken': cannot build a client"):
        make_site(tmp_path, "k8s_broken").provision("dep-x", HOSTS, store)
    assert store.resources("dep-x") == []  # nothing half-created


def test_bad_or_missing_token_is_a_clear_error(tmp_path, kube, store, monkeypatch):
    from stratoflow.hooks.kubernetes import KubernetesSiteHook

    connect(monkeypatch, "k8s_bad", kube.url, token="not-the-token")
    with pytest.raises(SiteError, match="401 Unauthorized.*'k8s_bad'"):
        make_site(tmp_path, "k8s_bad").provision("dep4", HOSTS, store)
    ok, message = KubernetesSiteHook("k8s_bad").test_connection()
    assert not ok and "401" in message
    connect(monkeypatch, "k8s_good", kube.url)
    assert KubernetesSiteHook("k8s_good").test_connection() == (
        True,
        f"connected to Kubernetes v1.37.0-fake at {kube.url}",
    )
    connect(monkeypatch, "k8s_none", kube.url, token=None)
    with pytest.raises(SiteError, match="no password"):
        make_site(tmp_path, "k8s_none").provision("dep5", HOSTS, store)
    with pytest.raises(SiteError, match="not defined"):
        make_site(tmp_path, "k8s_missing").provision("dep6", HOSTS, store)
    assert kube.live() == (0, 0) and store.live_resources() == []


def test_token_never_logged(site, store, kube, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    kube.script = [("GET", "503"), ("POST", "drop")]
    errors = []
    alloc = site.provision("dep7", HOSTS, store)
    h = site.start_job(alloc, JobSpec("t", 0, py("import sys; sys.exit(1)")))
    errors.append(wait(site, alloc, h).reason)
    connect(monkeypatch, "k8s_bad2", kube.url, token=TOKEN[::-1])
    with pytest.raises(SiteError) as e:
        make_site(tmp_path, "k8s_bad2").provision("dep8", HOSTS, store)
    errors.append(str(e.value))
    site.teardown("dep7", store, alloc)
    records = [r.to_dict() for d in ("dep7", "dep8") for r in store.resources(d, True)]
    haystack = caplog.text + "\n".join(errors) + json.dumps(records, default=str)
    assert "retrying" in caplog.text  # the log was really captured
    assert TOKEN not in haystack and TOKEN[::-1] not in haystack


def test_catalogue_validator(tmp_path, monkeypatch):
    register()
    bad = {"sites": [{"name": "k", "kind": "kubernetes", "cores": 0, "colour": "x"}]}
    with pytest.raises(TemplateError) as err:
        catalogue.parse_catalogue(bad)
    text = str(err.value)
    assert "sites[0].conn_id: required" in text and "sites[0].cores" in text
    assert "sites[0].colour: unknown field" in text
    good = {"sites": [{"name": "k", "kind": "kubernetes", "conn_id": "c", "workdir": "/srv/sf"}]}
    compute = catalogue.compute_for(catalogue.parse_catalogue(good)["k"])
    assert isinstance(compute, KubernetesCompute) and compute.cfg.workdir == Path("/srv/sf")


def test_slow_api_timeout_then_cleanup(tmp_path, kube, store, monkeypatch):
    # The server does the work after the client gave up: the namespace exists, the client
    # never heard. Provision fails clearly; teardown (Airflow's retry) removes it.
    connect(monkeypatch, "k8s_test", kube.url)
    slow = make_site(tmp_path, retry_attempts=2, request_timeout_s=0.2)
    kube.latency = 0.4
    with pytest.raises(SiteError, match="no reply from the API server"):
        slow.provision("dep9", HOSTS, store)
    kube.latency = 0.0
    deadline = time.time() + 5
    while not kube.namespaces and time.time() < deadline:
        time.sleep(0.05)
    slow.teardown("dep9", store)
    assert wait_empty(kube) == (0, 0) and store.live_resources("k8s") == []


def test_reaper_deletes_orphans_and_keeps_live_deployments(site, store, kube, tmp_path):
    from tests.reaper_scenario import run_reaper_scenario

    def provision(dep: str, ledger: Store) -> None:
        site.provision(dep, HOSTS, ledger)

    run_reaper_scenario(site, store, provision, tmp_path)
    assert wait_empty(kube) == (0, 0)
    assert not list((tmp_path / "shared" / "deployments").glob("*"))  # sandboxes too


def test_reap_command_deletes_an_orphan_and_reports_it(site, store, kube, tmp_path, monkeypatch):
    """`stratoflow reap` as an operator runs it, against the catalogue and the store."""
    from stratoflow import cli
    from stratoflow.execution import placement

    sites = tmp_path / "sites.yaml"
    sites.write_text(
        "sites:\n  - name: k8s\n    kind: kubernetes\n    conn_id: k8s_test\n"
        f"    workdir: {tmp_path / 'shared'}\n"
    )
    monkeypatch.setenv("STRATOFLOW_SITES", str(sites))
    monkeypatch.setenv("STRATOFLOW_STORE_URL", str(store.engine.url))
    placement.catalogue.cache_clear()
    elsewhere = Store.open("sqlite:///" + str(tmp_path / "elsewhere.db"))
    site.provision("lost-dep", HOSTS, elsewhere)
    try:
        assert cli.main(["reap", "--dry-run", "--grace-s", "0"]) == 0
        assert kube.live()[0] == 1
        assert cli.main(["reap", "--grace-s", "0"]) == 0
    finally:
        placement.catalogue.cache_clear()
    assert wait_empty(kube) == (0, 0)
    actions = [a["action"] for a in store.reaper_actions(site="k8s")]
    assert actions == ["deleted", "would_delete"]  # newest first
