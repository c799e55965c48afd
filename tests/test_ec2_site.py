"""EC2Compute against moto in server mode, over real HTTP, through a fault-injecting proxy.

The ledger is the real Store on a temporary SQLite file (conftest's ``sqlite_store``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from stratoflow.errors import SiteError, TemplateError
from stratoflow.maintenance.reaper import reap_site
from stratoflow.sites.base import HostRequest
from tests.conftest import CHAOS_ROUNDS
from tests.fakes.aws import (
    ACCESS_KEY,
    FaultProxy,
    Rule,
    aws_connection_env,
    boot_agents,
    ec2_error,
    fault_proxy,
    honour_client_token,
    shared_moto_url,
)

GIB = 1 << 30
SECRET = "ec2-secret-" + uuid.uuid4().hex
TYPES = [
    {"name": "t3.micro", "cpus": 2, "mem": "1 GiB"},
    {"name": "t3.large", "cpus": 2, "mem": "8 GiB"},
    {"name": "m5.xlarge", "cpus": 4, "mem": 16 * GIB},
]


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with honour_client_token(), boot_agents(), fault_proxy(seed=11) as p:
        yield p


@pytest.fixture
def moto_ec2():
    """A client straight to moto (no proxy, no faults) for the tests' own checks."""
    import boto3

    return boto3.client(
        "ec2",
        endpoint_url=shared_moto_url(),
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def make_site(proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch):
    from stratoflow.sites.ec2 import EC2Compute

    def make(max_attempts: int = 1, **config):
        conn = f"sf_ec2_{max_attempts}"
        name, value = aws_connection_env(conn, proxy.url, SECRET, max_attempts=max_attempts)
        monkeypatch.setenv(name, value)
        cfg = {
            "conn_id": conn,
            "region": "us-east-1",
            "image_id": "ami-12345678",
            "instance_types": TYPES,
            "poll_interval_s": 0.01,
            "boot_timeout_s": 60,
            "terminate_timeout_s": 30,
            "retry_backoff_s": 0.001,
            **config,
        }
        return EC2Compute(f"burst-{uuid.uuid4().hex[:8]}", cfg)

    return make


def instances(client, site: str, live_only: bool = True) -> list[dict]:
    filters = [{"Name": "tag:stratoflow:site", "Values": [site]}]
    if live_only:
        filters.append({"Name": "instance-state-name", "Values": ["pending", "running"]})
    out = client.describe_instances(Filters=filters)["Reservations"]
    return [i for r in out for i in r["Instances"]]


def tag(instance: dict, key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def test_provision_two_hosts_of_the_smallest_fitting_type(make_site, sqlite_store, moto_ec2):
    site = make_site()
    alloc = site.provision(
        "dep-1", [HostRequest("worker", count=2, mem_bytes=4 * GIB)], sqlite_store
    )
    assert [h["instance_type"] for h in alloc.hosts] == ["t3.large", "t3.large"]
    assert alloc.cores == 4 and all(h["address"] for h in alloc.hosts)
    live = instances(moto_ec2, site.name)
    assert sorted(i["InstanceId"] for i in live) == sorted(alloc.data["instance_ids"])
    assert {i["InstanceType"] for i in live} == {"t3.large"}
    assert {tag(i, "stratoflow:deployment") for i in live} == {"dep-1"}
    records = sqlite_store.resources("dep-1")
    assert [r.state for r in records] == ["created", "created"]
    assert {tag(i, "stratoflow:key") for i in live} == {r.key for r in records}
    assert len(site.list_tagged()) == 2

    # A retried task adopts what exists: no second launch.
    again = site.provision(
        "dep-1", [HostRequest("worker", count=2, mem_bytes=4 * GIB)], sqlite_store
    )
    assert again.data["instance_ids"] == alloc.data["instance_ids"]
    assert len(instances(moto_ec2, site.name)) == 2

    site.teardown("dep-1", sqlite_store, alloc)
    assert instances(moto_ec2, site.name) == [] and site.list_tagged() == []
    assert sqlite_store.resources("dep-1") == []
    site.teardown("dep-1", sqlite_store, alloc)  # idempotent


def test_a_host_no_type_fits_fails_before_anything_exists(make_site, sqlite_store, proxy):
    site = make_site()
    with pytest.raises(SiteError, match="no instance type .* fits node 'big'"):
        site.provision("dep-2", [HostRequest("big", num_cpus=64)], sqlite_store)
    assert sqlite_store.resources("dep-2", include_deleted=True) == []
    assert proxy.requests("RunInstances") == []


def test_spot_market_options_reach_ec2(make_site, sqlite_store, proxy, moto_ec2):
    site = make_site(spot=True, max_price="0.05")
    alloc = site.provision("dep-3", [HostRequest("w")], sqlite_store)
    (sent,) = proxy.requests("RunInstances")
    assert sent.params["InstanceMarketOptions.MarketType"] == "spot"
    assert sent.params["InstanceMarketOptions.SpotOptions.MaxPrice"] == "0.05"
    assert sent.params["ClientToken"]
    assert [i["InstanceLifecycle"] for i in instances(moto_ec2, site.name)] == ["spot"]
    assert alloc.hosts[0]["spot"] is True
    site.teardown("dep-3", sqlite_store)


def test_quota_exceeded_is_a_clear_site_error_and_leaves_nothing(
    make_site, sqlite_store, proxy, moto_ec2
):
    site = make_site()
    # The first host launches; the second hits the account's instance limit.
    proxy.add(ec2_error("InstanceLimitExceeded", "You have requested more instances", after=1))
    with pytest.raises(SiteError, match="quota or capacity exceeded .*InstanceLimitExceeded"):
        site.provision("dep-4", [HostRequest("w", count=2)], sqlite_store)
    assert instances(moto_ec2, site.name) == []
    assert len(instances(moto_ec2, site.name, live_only=False)) == 1  # launched, then removed
    assert sqlite_store.resources("dep-4") == []  # every record marked deleted


def test_a_lost_launch_reply_is_adopted_not_repeated(make_site, sqlite_store, proxy, moto_ec2):
    site = make_site()
    proxy.add(Rule("drop", action="RunInstances", times=1))
    alloc = site.provision("dep-5", [HostRequest("w")], sqlite_store)
    assert len(proxy.requests("RunInstances")) == 1  # found by its tag, not launched again
    live = instances(moto_ec2, site.name)
    assert [i["InstanceId"] for i in live] == alloc.data["instance_ids"]
    site.teardown("dep-5", sqlite_store)


def test_client_token_makes_a_resent_launch_harmless(make_site, sqlite_store, proxy, moto_ec2):
    site = make_site(max_attempts=3)  # botocore itself re-sends after the lost reply
    proxy.add(Rule("drop", action="RunInstances", times=1))
    site.provision("dep-6", [HostRequest("w")], sqlite_store)
    sent = proxy.requests("RunInstances")
    assert len(sent) == 2 and sent[0].params["ClientToken"] == sent[1].params["ClientToken"]
    assert len(instances(moto_ec2, site.name, live_only=False)) == 1
    site.teardown("dep-6", sqlite_store)


def test_chaos_never_two_instances_per_key_and_teardown_leaves_none(
    make_site, sqlite_store, proxy, moto_ec2
):
    site = make_site()
    proxy.add(Rule("error", rate=0.3, status=503))
    proxy.add(Rule("drop", action="RunInstances", rate=0.3))
    outcomes: dict[str, str] = {}
    for n in range(CHAOS_ROUNDS):
        dep = f"chaos-{n}"
        try:
            site.provision(dep, [HostRequest("w", count=2)], sqlite_store)
            outcomes[dep] = "ok"
        except SiteError as e:
            assert f"deployment {dep} at site {site.name!r} failed" in str(e)
            outcomes[dep] = "failed"
        live = instances(moto_ec2, site.name)
        per_key = Counter(tag(i, "stratoflow:key") for i in live)
        assert all(c == 1 for c in per_key.values()), per_key
    every = instances(moto_ec2, site.name, live_only=False)
    per_token = Counter(i["ClientToken"] for i in every)
    assert all(c == 1 for c in per_token.values()), per_token
    assert sum(1 for s in proxy.seen if s.faults) > CHAOS_ROUNDS // 2  # they really happened
    assert list(outcomes.values()).count("ok") >= 0.4 * CHAOS_ROUNDS, outcomes
    for n in range(CHAOS_ROUNDS):
        for _try in range(5):  # Airflow retries a failed teardown task
            try:
                site.teardown(f"chaos-{n}", sqlite_store)
                break
            except Exception:
                continue
    proxy.reset()  # the reaper runs once the API is healthy again
    reap_site(site.name, site, sqlite_store, run_id="chaos", grace=timedelta(0))
    assert instances(moto_ec2, site.name) == []
    assert all(sqlite_store.resources(f"chaos-{n}") == [] for n in range(CHAOS_ROUNDS))


def test_a_job_runs_on_the_instance_agent(make_site, sqlite_store, proxy):
    import time

    from stratoflow.sites.base import JobSpec

    site = make_site()
    alloc = site.provision("dep-job", [HostRequest("w")], sqlite_store)
    assert alloc.workdir.startswith(f"sfagent://{site.name}@127.")
    job = JobSpec("hello", 0, ["python", "-c", "print('hi from ec2')"])
    handle = site.start_job(alloc, job)
    deadline = time.time() + 30
    while not (st := site.job_status(alloc, handle)).done and time.time() < deadline:
        time.sleep(0.1)
    assert st.state == "succeeded", st.reason
    assert "hi from ec2" in list(site.job_log(alloc, handle))
    site.teardown("dep-job", sqlite_store, alloc)


def test_secrets_never_reach_logs_or_the_wire(make_site, sqlite_store, proxy, caplog):
    caplog.set_level(logging.DEBUG)
    site = make_site()
    site.provision("dep-7", [HostRequest("w")], sqlite_store)
    site.teardown("dep-7", sqlite_store)
    assert caplog.text and SECRET not in caplog.text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("stratoflow"))
    assert ACCESS_KEY not in ours
    assert not any(SECRET in str(s.headers) + str(s.params) for s in proxy.seen)


def test_register_and_validate(monkeypatch):
    from stratoflow.sites import catalogue
    from stratoflow.sites.ec2 import EC2Compute, register

    register()
    entry = {"name": "aws", "kind": "ec2", "conn_id": "aws", "image_id": "ami-1"}
    sites = catalogue.parse_catalogue({"sites": [{**entry, "instance_types": TYPES}]})
    assert isinstance(catalogue.compute_for(sites["aws"]), EC2Compute)
    bad = {
        **entry,
        "image_id": None,
        "spot": "yes",
        "instance_types": [{"name": "x", "cpus": 0}, {"name": "y", "cpus": 1, "mem": "lots"}],
    }
    with pytest.raises(TemplateError) as err:
        catalogue.parse_catalogue({"sites": [{**bad, "flavour": 1}]})
    text = str(err.value)
    for fragment in (
        "sites[0].image_id: required",
        "sites[0].spot: expected true or false",
        "sites[0].instance_types[0].cpus: expected a positive integer",
        "sites[0].instance_types[0].mem: required: its memory, in bytes or a size",
        "sites[0].instance_types[1].mem: expected bytes or a size like '4 GiB', got 'lots'",
        "sites[0].flavour: unknown field",
    ):
        assert fragment in text


def test_an_instance_terminated_behind_our_back_is_replaced(make_site, sqlite_store, moto_ec2):
    site = make_site()
    first = site.provision("dep-8", [HostRequest("w")], sqlite_store)
    moto_ec2.terminate_instances(InstanceIds=first.data["instance_ids"])
    second = site.provision("dep-8", [HostRequest("w")], sqlite_store)
    assert second.data["instance_ids"] != first.data["instance_ids"]
    assert [i["InstanceId"] for i in instances(moto_ec2, site.name)] == second.data["instance_ids"]
    site.teardown("dep-8", sqlite_store)


def test_reaper_deletes_orphans_and_keeps_live_deployments(
    make_site, sqlite_store, moto_ec2, tmp_path
):
    from tests.reaper_scenario import run_reaper_scenario

    site = make_site()

    def provision(dep: str, ledger) -> None:
        site.provision(dep, [HostRequest("w", count=2)], ledger)

    run_reaper_scenario(site, sqlite_store, provision, tmp_path)
    assert instances(moto_ec2, site.name) == []


def test_the_attempt_deadline_cuts_the_boot_wait_short(
    make_site, sqlite_store, moto_ec2, monkeypatch
):
    """providerTimeoutMins and timeoutMins reach a wait in the worker too: the agent never
    answers, and the attempt ends at its deadline (not the site's 60 s) with nothing left."""
    from tests.fakes.vm_boot import VmBooter

    monkeypatch.setattr(VmBooter, "boot", lambda self, vm_id, address, user_data: False)
    site = make_site()
    site.attempt_deadline = time.time() + 2
    started = time.monotonic()
    with pytest.raises(SiteError, match="the agent did not answer within [0-2] s"):
        site.provision("dep-late", [HostRequest("w")], sqlite_store)
    assert time.monotonic() - started < 15
    assert instances(moto_ec2, site.name) == []
    assert [r.state for r in sqlite_store.resources("dep-late")] == []
