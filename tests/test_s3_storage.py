"""S3Storage against moto in server mode, over real HTTP, through a fault-injecting proxy."""

from __future__ import annotations

import hashlib
import logging
import random
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoflow.errors import (
    ChecksumMismatch,
    SiteError,
    StagingError,
    StagingRefused,
    TemplateError,
)
from tests.fakes.aws import ACCESS_KEY, FaultProxy, Rule, aws_connection_env, fault_proxy

MIB = 1 << 20
SECRET = "s3-secret-" + uuid.uuid4().hex


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with fault_proxy(seed=7) as p:
        yield p


@pytest.fixture
def site(proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from stratoflow.sites.s3 import S3Storage

    name, value = aws_connection_env("sf_s3_test", proxy.url, SECRET)
    monkeypatch.setenv(name, value)
    storage = S3Storage(
        "objstore",
        {
            "conn_id": "sf_s3_test",
            "multipart_threshold": 5 * MIB,
            "multipart_chunksize": 5 * MIB,
            "max_concurrency": 2,
            "allowed_roots": [str(tmp_path)],
            "writable_roots": [str(tmp_path)],
        },
    )
    bucket = f"sf-{uuid.uuid4().hex[:12]}"
    storage.s3.create_bucket(Bucket=bucket)
    proxy.seen.clear()
    return storage, bucket


def data_file(path: Path, size: int, seed: int = 1) -> tuple[Path, str, str]:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return path, format(zlib.adler32(data) & 0xFFFFFFFF, "08x"), hashlib.sha256(data).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".part-" in p.name]


@pytest.mark.parametrize("size", [1000, 12 * MIB], ids=["single-part", "multipart"])
def test_upload_then_download_verifies_both_sums(site, proxy, tmp_path: Path, size: int):
    storage, bucket = site
    src, adler, sha = data_file(tmp_path / "in.dat", size)
    url = f"s3://{bucket}/data/in.dat"
    up = storage.copy(src.as_uri(), url, adler32=adler, sha256=sha, size=size)
    assert (up.url, up.size, up.adler32, up.sha256) == (url, size, adler, sha)
    head = storage.s3.head_object(Bucket=bucket, Key="data/in.dat")
    assert head["Metadata"] == {"sha256": sha, "adler32": adler}
    parts = [s for s in proxy.seen if s.method == "PUT" and "partNumber=" in s.path]
    assert len(parts) == (3 if size > 5 * MIB else 0)

    proxy.seen.clear()
    dest = tmp_path / "out" / "copy.dat"
    down = storage.copy(url, dest.as_uri(), adler32="ADLER32:" + adler, sha256=sha)
    assert (down.size, down.adler32, down.sha256) == (size, adler, sha)
    assert dest.read_bytes() == src.read_bytes()
    ranged = [s for s in proxy.seen if s.method == "GET" and "Range" in s.headers]
    assert len(ranged) == (3 if size > 5 * MIB else 0)
    assert leftovers(dest.parent) == []


def test_s3_to_s3_copy_is_server_side_and_verified(site, proxy, tmp_path: Path):
    storage, bucket = site
    src, adler, sha = data_file(tmp_path / "a.dat", 3000)
    storage.copy(src.as_uri(), f"s3://{bucket}/a.dat")
    proxy.seen.clear()
    got = storage.copy(f"s3://{bucket}/a.dat", f"s3://{bucket}/b/a.dat", sha256=sha)
    assert (got.size, got.adler32, got.sha256) == (3000, adler, sha)
    # No object body crossed the proxy: the copy happened inside the store.
    assert not [s for s in proxy.seen if s.method == "GET"]
    body = storage.s3.get_object(Bucket=bucket, Key="b/a.dat")["Body"].read()
    assert body == src.read_bytes()
    with pytest.raises(ChecksumMismatch):
        storage.copy(f"s3://{bucket}/a.dat", f"s3://{bucket}/c.dat", adler32="00000001")
    assert "Contents" not in storage.s3.list_objects_v2(Bucket=bucket, Prefix="c.dat")


@pytest.mark.parametrize("size", [4000, 12 * MIB], ids=["single-part", "multipart"])
def test_corrupted_get_is_detected_and_a_retry_succeeds(site, proxy, tmp_path: Path, size):
    storage, bucket = site
    src, adler, sha = data_file(tmp_path / "in.dat", size, seed=3)
    url = f"s3://{bucket}/in.dat"
    storage.copy(src.as_uri(), url)
    dest = tmp_path / "staged" / "in.dat"
    dest.parent.mkdir()
    rule = proxy.add(Rule("corrupt", method="GET", path_contains="/in.dat", times=1))
    with pytest.raises(ChecksumMismatch):
        storage.copy(url, dest.as_uri(), adler32=adler, sha256=sha)
    assert rule.fired == 1
    assert list(dest.parent.iterdir()) == []  # nothing at the destination, no temp file
    got = storage.copy(url, dest.as_uri(), adler32=adler, sha256=sha)
    assert got.sha256 == sha and dest.read_bytes() == src.read_bytes()


def test_corrupted_get_is_caught_by_recorded_sums_even_when_nothing_is_declared(
    site, proxy, tmp_path: Path
):
    storage, bucket = site
    src, _, _ = data_file(tmp_path / "in.dat", 12 * MIB, seed=4)
    storage.copy(src.as_uri(), f"s3://{bucket}/in.dat")
    proxy.add(Rule("corrupt", method="GET", times=1))
    dest = tmp_path / "x.dat"
    with pytest.raises(ChecksumMismatch, match="recorded at upload"):
        storage.copy(f"s3://{bucket}/in.dat", dest.as_uri())
    assert not dest.exists() and leftovers(tmp_path) == []


def test_declared_mismatch_on_upload_leaves_no_object(site, proxy, tmp_path: Path):
    storage, bucket = site
    src, adler, _ = data_file(tmp_path / "in.dat", 2048)
    with pytest.raises(ChecksumMismatch, match="sha256 expected"):
        storage.copy(src.as_uri(), f"s3://{bucket}/in.dat", adler32=adler, sha256="ab" * 32)
    assert not [s for s in proxy.seen if s.method == "PUT"]  # refused before sending
    assert "Contents" not in storage.s3.list_objects_v2(Bucket=bucket)


def test_overwrite_semantics(site, proxy, tmp_path: Path):
    storage, bucket = site
    a, adler_a, sha_a = data_file(tmp_path / "a.dat", 5000, seed=1)
    b, _, sha_b = data_file(tmp_path / "b.dat", 5000, seed=2)
    url = f"s3://{bucket}/obj"
    storage.copy(a.as_uri(), url, sha256=sha_a)
    proxy.seen.clear()
    # A retried upload of the same data is a success that sends nothing.
    again = storage.copy(a.as_uri(), url, sha256=sha_a)
    assert again.sha256 == sha_a and again.adler32 == adler_a
    assert not [s for s in proxy.seen if s.method in ("PUT", "POST")]
    assert storage.copy(a.as_uri(), url).sha256 == sha_a  # nothing declared: same data
    with pytest.raises(StagingError, match="overwrite=True"):
        storage.copy(b.as_uri(), url)
    assert storage.copy(b.as_uri(), url, overwrite=True).sha256 == sha_b

    dest = tmp_path / "d.dat"
    storage.copy(url, dest.as_uri())
    proxy.seen.clear()
    assert storage.copy(url, dest.as_uri(), sha256=sha_b).sha256 == sha_b
    assert not [s for s in proxy.seen if s.method == "GET"]  # verified locally, not fetched
    dest.write_bytes(b"something else")
    with pytest.raises(StagingError, match="exists and does not match"):
        storage.copy(url, dest.as_uri())
    storage.copy(url, dest.as_uri(), overwrite=True)
    assert dest.read_bytes() == b.read_bytes()


def test_read_range(site, tmp_path: Path):
    storage, bucket = site
    src, _, _ = data_file(tmp_path / "r.dat", 10_000)
    storage.copy(src.as_uri(), f"s3://{bucket}/r.dat")
    data = src.read_bytes()
    assert storage.read_range(f"s3://{bucket}/r.dat", 1234, 100) == data[1234:1334]
    assert storage.read_range(f"s3://{bucket}/r.dat", 9990, 100) == data[9990:]
    with pytest.raises(StagingError, match="past the end"):
        storage.read_range(f"s3://{bucket}/r.dat", 20_000, 10)
    with pytest.raises(StagingRefused):
        storage.read_range(f"s3://{bucket}/r.dat", -1, 10)
    with pytest.raises(StagingError, match="no such"):
        storage.read_range(f"s3://{bucket}/missing", 0, 10)


def test_5xx_surfaces_as_staging_error_and_leaves_nothing(site, proxy, tmp_path: Path):
    storage, bucket = site
    src, _, sha = data_file(tmp_path / "in.dat", 12 * MIB)
    proxy.add(Rule("error", method="PUT", path_contains="partNumber=2", status=503))
    with pytest.raises(StagingError) as err:
        storage.copy(src.as_uri(), f"s3://{bucket}/in.dat", sha256=sha)
    assert not isinstance(err.value, ChecksumMismatch)
    assert "Contents" not in storage.s3.list_objects_v2(Bucket=bucket)
    assert storage.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    proxy.rules.clear()
    assert storage.copy(src.as_uri(), f"s3://{bucket}/in.dat", sha256=sha).sha256 == sha


def test_local_paths_outside_the_roots_are_refused(site, tmp_path: Path):
    storage, bucket = site
    with pytest.raises(StagingRefused):
        storage.copy("file:///etc/hostname", f"s3://{bucket}/x")
    with pytest.raises(StagingRefused):
        storage.copy(f"s3://{bucket}/x", "file:///etc/stratoflow-x")
    with pytest.raises(StagingRefused, match="invalid bucket"):
        storage.copy("s3://B/x", (tmp_path / "x").as_uri())
    with pytest.raises(StagingRefused, match="not a prefix"):
        storage.copy(f"s3://{bucket}/dir/", (tmp_path / "x").as_uri())


def test_secrets_never_reach_the_logs(site, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    storage, bucket = site
    caplog.set_level(logging.DEBUG)
    storage._s3 = None  # rebuild the client, so the hook's connection log is captured
    src, _, sha = data_file(tmp_path / "in.dat", 1000)
    storage.copy(src.as_uri(), f"s3://{bucket}/in.dat", sha256=sha)
    assert caplog.text and SECRET not in caplog.text  # botocore's DEBUG output included
    # Our own log lines name the key id only masked (botocore's signing log shows the id,
    # which AWS treats as an identifier, never the secret).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("stratoflow"))
    assert ACCESS_KEY[:4] + "…" + ACCESS_KEY[-4:] in ours and ACCESS_KEY not in ours


def test_register_adds_scheme_and_a_kind_that_runs_no_jobs(monkeypatch, tmp_path: Path):
    from stratoflow.sites import catalogue
    from stratoflow.sites.s3 import S3Storage, register

    register()
    sites = catalogue.parse_catalogue(
        {"sites": [{"name": "store", "kind": "s3", "conn_id": "c", "region": "eu-west-1"}]}
    )
    assert isinstance(catalogue.storage_for("s3://bkt/k", sites), S3Storage)
    with pytest.raises(SiteError, match="is an S3-compatible object store .* cannot provision"):
        catalogue.compute_for(sites["store"])
    with pytest.raises(TemplateError) as err:
        catalogue.parse_catalogue(
            {"sites": [{"name": "s", "kind": "s3", "multipart_chunksize": 10, "bogus": 1}]}
        )
    text = str(err.value)
    assert "sites[0].conn_id: required" in text
    assert "sites[0].multipart_chunksize: expected an integer >= 5242880" in text
    assert "sites[0].bogus: unknown field" in text
