"""The Compute contract, one suite for every kind that runs jobs.

Each kind runs against its real client and its loopback fake (FakeKube, FakeOpenStack
with agents on "VMs", moto for EC2 with agents), or the local machine. What every kind
must do: provision idempotently, run a job and commit its output once, report a failing
job's exit code and log, and leave nothing behind at the site or in the ledger.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from stratoflow.sites.base import Compute, HostRequest, JobSpec, JobStatus
from stratoflow.store import Store

HOSTS = [HostRequest("workers", count=1, num_cpus=1, mem_bytes=256 << 20)]
WRITE = "import sys; print('hello from the job'); open(sys.argv[1] + '/n.txt', 'w').write('42')"
FAIL = "import sys; print('bad input'); sys.exit(3)"


@dataclass
class Backend:
    compute: Compute
    leftovers: Any  # () -> what still exists at the site by its own account; falsy: nothing


def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    from stratoflow.sites.local import LocalCompute

    compute = LocalCompute("local", {"workdir": str(tmp_path / "w"), "cores": 4})
    yield Backend(compute, lambda: sorted((tmp_path / "w").glob("deployments/*")))


def kubernetes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    from tests.requires import client_library

    client_library("kubernetes")
    from stratoflow.sites.kubernetes import KubernetesCompute
    from tests.fakes.kube_server import FakeKube

    fake = FakeKube("contract-kube-token", seed=3).start()
    conn = {"conn_type": "kubernetes_site", "host": fake.url, "password": "contract-kube-token"}
    monkeypatch.setenv("AIRFLOW_CONN_K8S_CONTRACT", json.dumps({**conn, "extra": {}}))
    compute = KubernetesCompute(
        "k8s",
        {
            "conn_id": "k8s_contract",
            "cores": 8,
            "memory": 16 << 30,
            "workdir": str(tmp_path / "shared"),
            "retry_backoff_s": 0.01,
            "teardown_wait_s": 5,
            "kill_grace_s": 1,
        },
    )
    try:
        yield Backend(compute, lambda: sorted(t.external_id for t in compute.list_tagged()))
    finally:
        fake.stop()


def openstack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    from tests.requires import client_library

    client_library("openstack")
    from stratoflow.sites.openstack import OpenStackCompute
    from tests.fakes.openstack_server import FakeOpenStack

    fake = FakeOpenStack(seed=5).start()
    extra = {"project_name": "demo", "user_domain_name": "Default", "region_name": "RegionOne"}
    conn = {"conn_type": "openstack", "host": fake.auth_url, "login": "alice"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_OS_CONTRACT",
        json.dumps({**conn, "password": "s3cret-password", "extra": extra}),
    )
    compute = OpenStackCompute(
        "cloud-c",
        {
            "conn_id": "os_contract",
            "image": "ubuntu-22.04",
            "network": "private",
            "retry_backoff_s": 0.0,
            "poll_interval_s": 0.0,
            "retry_attempts": 8,
        },
    )
    try:
        yield Backend(
            compute, lambda: [v for v in fake.leftovers().values() if v] + fake.volumes_left()
        )
    finally:
        fake.stop()


def ec2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    from tests.requires import client_library

    client_library("boto3")
    from stratoflow.sites.ec2 import EC2Compute
    from tests.fakes.aws import aws_connection_env, boot_agents, fault_proxy, honour_client_token

    with honour_client_token(), boot_agents(), fault_proxy(seed=13) as proxy:
        name, value = aws_connection_env("sf_ec2_contract", proxy.url, "ec2-contract-secret")
        monkeypatch.setenv(name, value)
        compute = EC2Compute(
            f"burst-{uuid.uuid4().hex[:8]}",
            {
                "conn_id": "sf_ec2_contract",
                "region": "us-east-1",
                "image_id": "ami-12345678",
                "instance_types": [{"name": "t3.small", "cpus": 2, "mem": 2 << 30}],
                "poll_interval_s": 0.01,
                "boot_timeout_s": 60,
                "terminate_timeout_s": 30,
                "retry_backoff_s": 0.001,
            },
        )
        yield Backend(compute, lambda: sorted(t.external_id for t in compute.list_tagged()))


# How each kind is reached in this suite. The suite runs every kind the registry says runs
# jobs: a new kind without an entry here fails, naming what to add.
SETUPS = {f.__name__: f for f in (local, kubernetes, openstack, ec2)}


def _registered(block_storage: bool = False) -> list[str]:
    from stratoflow.sites.catalogue import kinds

    return sorted(
        name
        for name, kind in kinds().items()
        if kind.runs_jobs and (kind.block_storage or not block_storage)
    )


def _backend(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    setup = SETUPS.get(kind)
    if setup is None:
        pytest.fail(f"kind {kind!r} runs jobs but has no setup in {__name__}.SETUPS")
    yield from setup(tmp_path, monkeypatch)


@pytest.fixture(params=_registered())
def backend(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    yield from _backend(request.param, tmp_path, monkeypatch)


@pytest.fixture(params=_registered(block_storage=True))
def volume_backend(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """The kinds whose registry entry says they attach block volumes."""
    yield from _backend(request.param, tmp_path, monkeypatch)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'ledger.db'}") as store:
        yield store


def provisioned(compute: Compute, deployment_id: str, ledger: Store):
    """provision_start, the boot wait (in this thread), provision_finish: the path the
    provision task takes, minus the triggerer."""
    from stratoflow.sites.waits import wait_until_done

    alloc = compute.provision_start(deployment_id, HOSTS, ledger)
    spec = compute.boot_wait(alloc)
    if spec is not None:
        event = wait_until_done(replace(spec, poll_interval_s=0.05))
        assert event["status"] == "active", event
    return compute.provision_finish(alloc, ledger)


def finished(compute: Compute, alloc, handle: str, timeout: float = 60.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while not (status := compute.job_status(alloc, handle)).done:
        assert time.monotonic() < deadline, f"{handle} still running"
        time.sleep(0.05)
    return status


def test_a_job_runs_once_and_teardown_leaves_nothing(backend: Backend, ledger: Store):
    compute, dep = backend.compute, f"dep-{uuid.uuid4().hex[:6]}"
    alloc = provisioned(compute, dep, ledger)
    assert alloc.site == compute.name and alloc.deployment_id == dep
    records = ledger.resources(dep)
    assert records and {r.state for r in records} == {"created"}

    job = JobSpec("count", 0, ["python", "-c", WRITE, "{outdir}"])
    handle = compute.start_job(alloc, job)
    assert compute.start_job(alloc, job) == handle  # a retried task adopts, never reruns
    status = finished(compute, alloc, handle)
    assert status.state == "succeeded", status.reason
    assert "hello from the job" in "\n".join(compute.job_log(alloc, handle))
    (out,) = compute.list_outputs(alloc, status.outdir)
    assert out.endswith("/outputs/count/0/n.txt")
    # Once committed, the same job is never run again, even by a new try.
    assert finished(compute, alloc, compute.start_job(alloc, job)).outdir == status.outdir

    compute.teardown(dep, ledger, alloc)
    assert ledger.resources(dep) == []
    assert {r.state for r in ledger.resources(dep, include_deleted=True)} == {"deleted"}
    assert not backend.leftovers()
    compute.teardown(dep, ledger, alloc)  # idempotent
    assert ledger.resources(dep) == []


def test_provision_again_adopts_instead_of_creating_twice(backend: Backend, ledger: Store):
    compute, dep = backend.compute, f"dep-{uuid.uuid4().hex[:6]}"
    first = provisioned(compute, dep, ledger)
    keys = sorted(r.key for r in ledger.resources(dep))
    second = provisioned(compute, dep, ledger)  # a retried provision task
    assert sorted(r.key for r in ledger.resources(dep, include_deleted=True)) == keys
    assert second.workdir == first.workdir
    compute.teardown(dep, ledger, second)
    assert ledger.resources(dep) == [] and not backend.leftovers()


def test_a_failing_job_reports_its_exit_code_and_log(backend: Backend, ledger: Store):
    compute, dep = backend.compute, f"dep-{uuid.uuid4().hex[:6]}"
    alloc = provisioned(compute, dep, ledger)
    try:
        handle = compute.start_job(alloc, JobSpec("boom", 0, ["python", "-c", FAIL]))
        status = finished(compute, alloc, handle)
        assert status.state == "failed" and status.exit_code == 3
        assert "bad input" in status.reason
    finally:
        compute.teardown(dep, ledger, alloc)
    assert ledger.resources(dep) == []


def test_block_volumes_are_made_per_instance_and_removed(volume_backend: Backend, ledger: Store):
    from stratoflow.sites.base import VolumeRequest

    compute = volume_backend.compute
    dep = f"dep-{uuid.uuid4().hex[:8]}"
    hosts = [replace(HOSTS[0], count=2, volumes=(VolumeRequest("disk", 1 << 30),))]
    alloc = compute.provision(dep, hosts, ledger)
    try:
        volumes = [v for h in alloc.hosts for v in h["volumes"]]
        assert [(v["node"], v["index"]) for v in volumes] == [("disk", 0), ("disk", 1)]
        assert len({v["id"] for v in volumes}) == 2
        recorded = {r.external_id for r in ledger.resources(dep) if r.kind == "volume"}
        assert recorded == {v["id"] for v in volumes}
    finally:
        compute.teardown(dep, ledger, alloc)
    assert ledger.resources(dep) == []
    assert not volume_backend.leftovers()
