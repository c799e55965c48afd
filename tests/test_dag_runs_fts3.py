"""A real DAG run (`airflow dags test`) of a DataTransfer between grid storage through the
real `fts3` client and the fake FTS3 server: 250 files go in two bulk jobs, the task
defers to FTS3JobsTrigger, one copy is corrupted, FTS's checksum verification fails it,
the task retries, and every destination file finally matches its source."""

from __future__ import annotations

import hashlib
import random
import zlib
from pathlib import Path

import pytest

from stratoflow.store import Store
from tests.cloud_sites import assert_no_secrets, site_in_catalogue
from tests.requires import client_library

client_library("fts3")

from tests.fakes.fts3_server import FakeFTS3  # noqa: E402

pytestmark = pytest.mark.airflow

TOKEN = "fts3-dagrun-oidc-token-4b7e9d"
CONN_ID = "stratoflow_fts3_dagrun"
N = 250


@pytest.fixture(scope="module")
def fake(airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    fake = FakeFTS3(tmp_path_factory.mktemp("se"), tokens={TOKEN: "stratoflow"}, seed=2).start()
    entry = (
        f"  - name: grid\n    kind: fts3\n    conn_id: {CONN_ID}\n"
        "    poll_interval_s: 0.2\n    retry_backoff_s: 0.05\n"
    )
    conn = {"conn_type": "fts3", "host": fake.url, "password": TOKEN, "extra": {"verify": False}}
    try:
        with site_in_catalogue(airflow_env, entry, {CONN_ID: conn}):
            yield fake
    finally:
        fake.stop()


def _template(fake: FakeFTS3, directory: Path) -> Path:
    rng = random.Random(7)
    lines = []
    for i in range(N):
        data = rng.randbytes(rng.randint(10, 400))
        url = f"davs://fake-se-a.test/raw/run1/f{i:04d}.dat"
        fake.put(url, data)
        adler = format(zlib.adler32(data) & 0xFFFFFFFF, "08x")
        lines.append(f"          - {{ url: {url}, size: {len(data)}, adler32: '{adler}' }}")
    path = directory / "grid_copy.yaml"
    path.write_text(
        "tosca_definitions_version: tosca_simple_yaml_1_3\n"
        "metadata: { template_name: grid_copy }\n"
        "imports: [stratoflow-types]\n"
        "topology_template:\n"
        "  node_templates:\n"
        "    raw:\n"
        "      type: stratoflow.nodes.Dataset\n"
        "      properties:\n"
        "        files:\n" + "\n".join(lines) + "\n"
        "    copy:\n"
        "      type: stratoflow.nodes.DataTransfer\n"
        "      properties: { destination: 'root://fake-se-b.test/replica/run1' }\n"
        "      requirements: [{ source: raw }]\n"
    )
    return path


def test_bulk_transfer_defers_catches_a_corrupted_copy_and_retries(
    run_dag, airflow_env, fake, tmp_path
):
    template = _template(fake, tmp_path)
    fake.corrupt_copies = {7}
    result = run_dag(template)
    dep = result["deployment"]
    assert dep.status == "CREATE_COMPLETE", dep.status_reason
    assert fake.counts["submit"] == 4, fake.counts  # two bulk jobs per try, two tries
    (retry,) = Store.open().step_events(dep.id, "retry")
    assert retry["step"] == "copy" and "ChecksumMismatch" in retry["message"]
    files = dep.outputs["copy"]["files"]
    assert len(files) == N
    for f in files:
        src = f["url"].replace("root://fake-se-b.test/replica/", "davs://fake-se-a.test/raw/")
        got, want = fake.path_of(f["url"]).read_bytes(), fake.path_of(src).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(want).digest(), f["url"]
    assert "FTS3 transferred 250 files" in result["log"]
    assert_no_secrets(airflow_env, result, {"FTS token": TOKEN})
