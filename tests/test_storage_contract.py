"""The Storage contract, one suite for every kind that stores files.

Each kind is reached the way a task reaches it: its real client over real HTTP against its
loopback fake (moto for s3, the fake Oneprovider for onedata), or the local filesystem. A
kind that behaves differently from the others here has drifted from the contract in
``stratoflow/sites/base.py`` (``Storage.copy``, ``checksums`` and ``delete``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stratoflow.errors import ChecksumMismatch, StagingError
from stratoflow.sites.base import Storage


@dataclass
class Backend:
    storage: Storage
    url: Callable[[str], str]  # a fresh location in this storage, from a relative name


def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    from stratoflow.sites.local import LocalStorage

    roots = [str(tmp_path)]
    storage = LocalStorage(
        "local", {"workdir": str(tmp_path / "w"), "allowed_roots": roots, "writable_roots": roots}
    )
    yield Backend(storage, lambda rel: (tmp_path / "store" / rel).as_uri())


def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    from tests.requires import client_library

    client_library("boto3")
    from stratoflow.sites.s3 import S3Storage
    from tests.fakes.aws import aws_connection_env, shared_moto_url

    name, value = aws_connection_env("sf_contract_s3", shared_moto_url(), "contract-secret")
    monkeypatch.setenv(name, value)
    roots = [str(tmp_path)]
    storage = S3Storage(
        "objstore", {"conn_id": "sf_contract_s3", "allowed_roots": roots, "writable_roots": roots}
    )
    bucket = f"sf-{uuid.uuid4().hex[:12]}"
    storage.s3.create_bucket(Bucket=bucket)
    yield Backend(storage, lambda rel: f"s3://{bucket}/contract/{rel}")


def onedata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    from stratoflow.sites.onedata.storage import OnedataStorage
    from tests.fakes.onedata_server import FakeOnedata

    fake = FakeOnedata("contract-token", spaces=("exp",)).start()
    conn = {"conn_type": "onedata", "host": fake.url, "password": "contract-token"}
    monkeypatch.setenv("AIRFLOW_CONN_ONEDATA_CONTRACT", json.dumps(conn))
    monkeypatch.setenv("STRATOFLOW_HOME", str(tmp_path / "home"))
    roots = [str(tmp_path)]
    storage = OnedataStorage(
        "od", {"conn_id": "onedata_contract", "allowed_roots": roots, "writable_roots": roots}
    )
    try:
        yield Backend(storage, lambda rel: f"onedata://exp/contract/{rel}")
    finally:
        fake.stop()


# Storage classes checked elsewhere, and why: the agent's sfagent:// storage needs a
# provisioned VM (tests/test_openstack_site.py, tests/test_compute_contract.py run it);
# FTS3 copies between grid endpoints, never from file:// (tests/test_fts3.py).
ELSEWHERE = {"stratoflow.sites.agent.jobs:AgentStorage", "stratoflow.sites.fts3:FTS3Transfer"}

# How each Storage class is reached in this suite, by its registry target. The suite runs
# every target the registry declares, except those checked ELSEWHERE (see the bottom).
SETUPS = {
    "stratoflow.sites.local:LocalStorage": local,
    "stratoflow.sites.s3:S3Storage": s3,
    "stratoflow.sites.onedata:OnedataStorage": onedata,
}


def _registered() -> list[str]:
    from stratoflow.sites.catalogue import kinds

    targets = {t for kind in kinds().values() for t in kind.storage.values()}
    return sorted(targets - ELSEWHERE)


@pytest.fixture(params=_registered(), ids=lambda t: t.rsplit(":", 1)[-1])
def backend(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    setup = SETUPS.get(request.param)
    if setup is None:
        pytest.fail(f"storage {request.param} is registered but has no setup in SETUPS")
    yield from setup(tmp_path, monkeypatch)


def sums(data: bytes) -> dict:
    return {
        "size": len(data),
        "adler32": format(zlib.adler32(data) & 0xFFFFFFFF, "08x"),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def source(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


def read_back(backend: Backend, url: str, tmp_path: Path) -> bytes:
    out = tmp_path / "back" / uuid.uuid4().hex
    backend.storage.copy(url, out.as_uri())
    return out.read_bytes()


def test_round_trip_is_verified_and_reports_the_sums(backend: Backend, tmp_path: Path):
    data = b"dimuon events\n" * 3000
    url = backend.url("runs/a.dat")
    staged = backend.storage.copy(source(tmp_path, "a.dat", data), url, **sums(data))
    assert (staged.url, staged.size, staged.sha256) == (url, len(data), sums(data)["sha256"])
    assert staged.adler32 == sums(data)["adler32"]
    assert read_back(backend, url, tmp_path) == data


def test_a_declared_checksum_that_does_not_match_leaves_nothing(backend: Backend, tmp_path):
    data = b"payload" * 100
    url = backend.url("bad.dat")
    wrong = {**sums(data), "sha256": "0" * 64}
    with pytest.raises(ChecksumMismatch):
        backend.storage.copy(source(tmp_path, "bad.dat", data), url, **wrong)
    with pytest.raises(StagingError):
        read_back(backend, url, tmp_path)


def test_a_retried_copy_adopts_an_identical_file(backend: Backend, tmp_path: Path):
    data = b"same bytes" * 50
    src, url = source(tmp_path, "s.dat", data), backend.url("s.dat")
    first = backend.storage.copy(src, url, **sums(data))
    again = backend.storage.copy(src, url, **sums(data))
    assert again.sha256 == first.sha256 and read_back(backend, url, tmp_path) == data


def test_other_content_is_refused_unless_overwrite(backend: Backend, tmp_path: Path):
    old, new = b"first version\n" * 20, b"second version\n" * 20
    url = backend.url("v.dat")
    backend.storage.copy(source(tmp_path, "v1.dat", old), url)
    with pytest.raises(StagingError):
        backend.storage.copy(source(tmp_path, "v2.dat", new), url)
    assert read_back(backend, url, tmp_path) == old  # someone's file is never lost
    backend.storage.copy(source(tmp_path, "v2.dat", new), url, overwrite=True)
    assert read_back(backend, url, tmp_path) == new


def test_a_missing_source_is_a_staging_error(backend: Backend, tmp_path: Path):
    with pytest.raises(StagingError):
        backend.storage.copy(backend.url("no/such/file"), (tmp_path / "x").as_uri())


def test_checksums_are_read_back_and_delete_removes_the_file(backend: Backend, tmp_path):
    """What a lifecycle policy's verification and deletion use."""
    data = b"replica under a policy\n" * 400
    url = backend.url("kept/r.dat")
    backend.storage.copy(source(tmp_path, "r.dat", data), url, **sums(data))
    found = backend.storage.checksums(url)
    assert (found.size, found.adler32, found.sha256) == (
        len(data),
        sums(data)["adler32"],
        sums(data)["sha256"],
    )
    backend.storage.delete(url)
    with pytest.raises(FileNotFoundError):
        backend.storage.checksums(url)
    backend.storage.delete(url)  # gone already is not an error
