"""The onedata backend over real HTTP (httpx) against the fake Oneprovider in
tests/fakes/onedata_server.py: verified copies both ways, corruption, QoS, transfers,
the trigger, and a token that never reaches the logs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import zlib
from pathlib import Path

import pytest

from stratoflow.errors import ChecksumMismatch, StagingError, StagingRefused
from tests.fakes.onedata_server import FakeOnedata

TOKEN = "onedata-access-token-5e1f0c9a"


@pytest.fixture
def fake():
    f = FakeOnedata(TOKEN, spaces=("exp", "archive")).start()
    yield f
    f.stop()


@pytest.fixture
def storage(fake, monkeypatch, tmp_path):
    from stratoflow.sites.onedata.storage import OnedataStorage

    conn = {"conn_type": "onedata", "host": fake.url, "password": TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_ONEDATA_TEST", json.dumps(conn))
    monkeypatch.setenv("STRATOFLOW_HOME", str(tmp_path / "home"))
    roots = {"allowed_roots": [str(tmp_path)], "writable_roots": [str(tmp_path)]}
    return OnedataStorage("od", {"conn_id": "onedata_test", **roots})


def sums(data: bytes) -> dict:
    adler = format(zlib.adler32(data) & 0xFFFFFFFF, "08x")
    return {"adler32": adler, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_upload_then_download_verified(storage, fake, tmp_path: Path):
    data = b"dimuon events\n" * 5000
    src = tmp_path / "in.dat"
    src.write_bytes(data)
    up = storage.copy(src.as_uri(), "onedata://exp/runs/2026/in.dat", **sums(data))
    assert up.sha256 == sums(data)["sha256"] and fake.read("exp/runs/2026/in.dat") == data
    # A retried upload of the same content adopts it; different content is refused.
    storage.copy(src.as_uri(), "onedata://exp/runs/2026/in.dat")
    other = tmp_path / "other.dat"
    other.write_bytes(b"something else")
    with pytest.raises(StagingError, match="exists and does not match"):
        storage.copy(other.as_uri(), "onedata://exp/runs/2026/in.dat")
    assert fake.read("exp/runs/2026/in.dat") == data  # never deleted someone's file
    dest = tmp_path / "out" / "in.dat"
    got = storage.copy("onedata://exp/runs/2026/in.dat", dest.as_uri(), **sums(data))
    assert dest.read_bytes() == data and got.size == len(data)


def test_corrupted_read_is_detected_and_a_retry_succeeds(storage, fake, tmp_path: Path):
    data = bytes(range(256)) * 100
    src = tmp_path / "x.bin"
    src.write_bytes(data)
    storage.copy(src.as_uri(), "onedata://exp/x.bin")
    dest = tmp_path / "staged" / "x.bin"
    fake.corrupt_reads = 1
    with pytest.raises(ChecksumMismatch):
        storage.copy("onedata://exp/x.bin", dest.as_uri(), **sums(data))
    assert not dest.exists()  # nothing at the destination
    storage.copy("onedata://exp/x.bin", dest.as_uri(), **sums(data))
    assert dest.read_bytes() == data


def test_an_upload_the_provider_stored_wrongly_is_deleted_and_raised(storage, fake, tmp_path: Path):
    src = tmp_path / "y.bin"
    src.write_bytes(b"y" * 10000)
    fake.corrupt_reads = 1  # the read-back sees different bytes than were sent
    with pytest.raises(ChecksumMismatch, match="read back"):
        storage.copy(src.as_uri(), "onedata://exp/y.bin")
    assert "exp/y.bin" not in fake.paths()


def test_refusals_name_the_problem(storage, fake, tmp_path: Path):
    with pytest.raises(StagingError, match="no such file"):
        storage.copy("onedata://exp/missing.dat", (tmp_path / "m").as_uri())
    with pytest.raises(StagingError, match="without '..'"):
        storage.copy("onedata://exp/../etc/passwd", (tmp_path / "p").as_uri())
    with pytest.raises(StagingRefused):
        storage.copy("file:///etc/passwd", "onedata://exp/passwd")
    src = tmp_path / "z"
    src.write_bytes(b"z")
    with pytest.raises(StagingError, match="no space 'nope'"):
        storage.copy(src.as_uri(), "onedata://nope/z")
    with pytest.raises(ChecksumMismatch):  # a declared sum that is wrong: nothing is sent
        storage.copy(src.as_uri(), "onedata://exp/z", sha256="0" * 64)
    assert fake.paths() == []


def test_transient_5xx_are_retried(storage, fake, tmp_path: Path):
    src = tmp_path / "t"
    src.write_bytes(b"t" * 100)
    fake._rng.seed(1)
    fake.error_rate = 0.3
    storage.client.backoff_s = 0.0
    storage.copy(src.as_uri(), "onedata://exp/t")
    fake.error_rate = 0.0
    assert fake.read("exp/t") == b"t" * 100
    assert any(code == 503 for _, _, code in fake.requests)


def test_bad_token_is_a_clear_error(fake, monkeypatch, tmp_path):
    from stratoflow.sites.onedata.storage import OnedataStorage

    conn = {"conn_type": "onedata", "host": fake.url, "password": "wrong-token-xyz"}
    monkeypatch.setenv("AIRFLOW_CONN_OD_BAD", json.dumps(conn))
    monkeypatch.setenv("STRATOFLOW_HOME", str(tmp_path))
    bad = OnedataStorage("od", {"conn_id": "od_bad", "writable_roots": [str(tmp_path)]})
    with pytest.raises(StagingError, match="401") as err:
        bad.copy("onedata://exp/a", (tmp_path / "a").as_uri())
    assert "wrong-token-xyz" not in str(err.value)


def test_qos_and_transfers_through_the_trigger(storage, fake, tmp_path: Path, caplog):
    from stratoflow.sites.onedata.replication import replicate, require_replicas
    from stratoflow.triggers.onedata import OnedataReplicationTrigger

    caplog.set_level(logging.DEBUG)
    src = tmp_path / "r"
    src.write_bytes(b"r" * 10)
    urls = [f"onedata://exp/r{i}" for i in range(3)]
    for u in urls:
        storage.copy(src.as_uri(), u)
    qos = require_replicas(storage.client, urls, "country=FR", 1)
    transfers = replicate(storage.client, urls[:1], provider="p-2")
    trigger = OnedataReplicationTrigger("onedata_test", qos, transfers, poll_interval=0.01)
    classpath, kwargs = trigger.serialize()
    assert classpath == "stratoflow.triggers.wait.SiteWaitTrigger"
    assert kwargs["waiter"] == "onedata.replicas_done"
    assert TOKEN not in json.dumps(kwargs)

    async def first(t):
        async for event in t.run():
            return event.payload

    done = asyncio.run(first(trigger))
    assert done["status"] == "success", done
    assert set(done["qos"].values()) == {"fulfilled"}
    assert set(done["transfers"].values()) == {"completed"}

    impossible = require_replicas(storage.client, urls[:1], "country=XX", 1)
    done = asyncio.run(first(OnedataReplicationTrigger("onedata_test", impossible, [], 0.01)))
    assert done["status"] == "failed" and list(done["qos"].values()) == ["impossible"]
    assert TOKEN not in caplog.text


def test_register_and_validate(monkeypatch, tmp_path):
    from stratoflow.sites import catalogue
    from stratoflow.sites.onedata import OnedataStorage

    sites = catalogue.parse_catalogue(
        {"sites": [{"name": "od", "kind": "onedata", "conn_id": "c"}]}
    )
    assert isinstance(catalogue.storage_for("onedata://exp/a", sites), OnedataStorage)
    from stratoflow.errors import SiteError, TemplateError

    with pytest.raises(TemplateError) as err:
        catalogue.parse_catalogue({"sites": [{"name": "od", "kind": "onedata", "spaces": 1}]})
    assert {i.path for i in err.value.issues} == {"sites[0].spaces", "sites[0].conn_id"}
    with pytest.raises(SiteError, match="OneData space provider"):
        catalogue.compute_for(sites["od"])
