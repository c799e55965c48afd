"""The demo dimuon analysis, run as real jobs at the local site on the shipped data."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stratoflow.config import include_dir
from stratoflow.sites.base import HostRequest, JobSpec
from stratoflow.sites.checksums import file_checksums
from stratoflow.sites.local import LocalCompute, LocalStorage
from stratoflow.store import Store

TEMPLATES = include_dir() / "templates"
DIMUON = TEMPLATES / "dimuon"
ANALYSIS = DIMUON / "analysis.py"


def template():
    return yaml.safe_load((TEMPLATES / "dimuon_campaign.yaml").read_text())


def dataset_files():
    nodes = template()["topology_template"]["node_templates"]
    return nodes["dimuon_data"]["properties"]["files"]


def test_template_checksums_match_shipped_data():
    files = dataset_files()
    assert [f["url"] for f in files] == [f"dimuon/data/dimuon_00{i}.csv.gz" for i in range(4)]
    total = 0
    for f in files:
        size, adler, sha = file_checksums(TEMPLATES / f["url"])
        assert (size, adler, sha) == (f["size"], f["adler32"], f["sha256"]), f["url"]
        total += size
    assert total < 4_000_000


def test_template_shape():
    doc = template()
    assert doc["tosca_definitions_version"] == "tosca_simple_yaml_1_3"
    assert doc["imports"] == ["stratoflow-types"]
    assert doc["metadata"]["template_name"] == "dimuon_campaign"
    tt = doc["topology_template"]
    assert set(tt["inputs"]) == {"site", "chunk_size", "output_location", "cpus_per_job"}
    nodes = tt["node_templates"]
    assert nodes["fill"]["properties"]["command"][:2] == ["python", "{artifacts}/analysis.py"]
    assert nodes["fill"]["artifacts"]["analysis"]["file"] == "dimuon/analysis.py"
    assert nodes["campaign"]["properties"]["outputs"] == [
        "mass_histogram.json",
        "mass_spectrum.png",
    ]
    assert tt["policies"][0]["placement"]["properties"]["site"] == {"get_input": "site"}


def wait(site, alloc, handle, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = site.job_status(alloc, handle)
        if st.done:
            return st
        time.sleep(0.05)
    raise AssertionError(f"{handle} did not finish")


def merge(inputs, out):
    subprocess.run(
        [sys.executable, str(ANALYSIS), "merge", *map(str, inputs), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def test_campaign_finds_the_resonances(tmp_path):
    store = Store.open("sqlite:///" + str(tmp_path / "s.db"))
    config = {
        "cores": 2,
        "memory": 4 << 30,
        "workdir": str(tmp_path / "site"),
        "allowed_roots": [str(include_dir())],
    }
    site, storage = LocalCompute("local", config), LocalStorage("local", config)
    alloc = site.provision("dimuon", [HostRequest("workers", num_cpus=2)], store)
    artifacts = {"analysis.py": ANALYSIS.read_bytes()}
    try:
        staged = []
        for f in dataset_files():  # stage in, verifying the template's checksums
            dest = Path(alloc.workdir) / "inputs" / Path(f["url"]).name
            staged.append(
                storage.copy(
                    str(TEMPLATES / f["url"]),
                    str(dest),
                    adler32=f["adler32"],
                    sha256=f["sha256"],
                    size=f["size"],
                ).url[len("file://") :]
            )
        art = alloc.data["artifacts_dir"]
        handles = [
            site.start_job(
                alloc,
                JobSpec(
                    "fill",
                    i,
                    ["python", f"{art}/analysis.py", "fill", path, "--out", "{outdir}"],
                    inputs=[path],
                    artifacts=artifacts,
                    mem_bytes=1 << 30,
                ),
            )
            for i, path in enumerate(staged)
        ]
        statuses = [wait(site, alloc, h) for h in handles]
        assert all(s.state == "succeeded" for s in statuses), [s.reason for s in statuses]
        hists = [str(Path(s.outdir) / "hist.json") for s in statuses]
        h = site.start_job(
            alloc,
            JobSpec(
                "merge",
                -1,
                ["python", f"{art}/analysis.py", "merge", *hists, "--out", "{outdir}"],
                inputs=hists,
                artifacts=artifacts,
            ),
        )
        st = wait(site, alloc, h)
        assert st.state == "succeeded", st.reason
        out = Path(st.outdir)
        result = json.loads((out / "mass_histogram.json").read_text())
        png = (out / "mass_spectrum.png").read_bytes()

        assert png.startswith(b"\x89PNG") and b"Software" not in png
        assert result["n_events"] == 60000 and result["n_histograms"] == 4
        assert 55000 < result["n_pairs"] < 60000  # same-sign pairs are rejected
        assert result["inputs"] == [f"dimuon_00{i}.csv.gz" for i in range(4)]
        edges, counts = result["edges"], result["counts"]
        assert len(edges) == 301 and edges[0] == pytest.approx(0.5) and edges[-1] == 120

        def peak(lo, hi):
            window = [
                (c, (edges[i] * edges[i + 1]) ** 0.5)
                for i, c in enumerate(counts)
                if lo <= edges[i] and edges[i + 1] <= hi
            ]
            return max(window)[1]

        assert 3.0 < peak(2.0, 6.0) < 3.2  # J/psi
        assert 9.2 < peak(8.0, 12.0) < 9.7  # Upsilon(1S)
        assert 89.0 < peak(60.0, 120.0) < 93.0  # Z
        assert result["peaks"]["Z"] == pytest.approx(peak(60.0, 120.0), rel=1e-3)

        # Order-independent and byte-identical: merge again, inputs reversed.
        again = merge(list(reversed(hists)), tmp_path / "again")
        assert (again / "mass_histogram.json").read_bytes() == (
            out / "mass_histogram.json"
        ).read_bytes()
        assert (again / "mass_spectrum.png").read_bytes() == png
    finally:
        site.teardown("dimuon", store, alloc)


def test_merge_refuses_different_binning(tmp_path):
    a = {"edges": [1.0, 2.0, 3.0], "counts": [1, 2], "n_events": 3, "n_pairs": 3, "inputs": ["a"]}
    b = dict(a, edges=[1.0, 2.5, 3.0], inputs=["b"])
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    proc = subprocess.run(
        [
            sys.executable,
            str(ANALYSIS),
            "merge",
            str(tmp_path / "a.json"),
            str(tmp_path / "b.json"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "binning differs" in proc.stderr


def test_fill_counts_only_opposite_sign_pairs(tmp_path):
    csv = tmp_path / "ev.csv"
    e = (45.6**2 + 0.10566**2) ** 0.5  # back-to-back muons from a 91.2 GeV state
    row = "1,{ev},{e},45.6,0,0,45.6,0,0,{q1},{e},-45.6,0,0,45.6,0,3.1416,{q2}\n"
    csv.write_text(
        "Run,Event,E1,px1,py1,pz1,pt1,eta1,phi1,Q1,E2,px2,py2,pz2,pt2,eta2,phi2,Q2\n"
        + row.format(ev=1, e=e, q1=1, q2=-1)
        + row.format(ev=2, e=e, q1=1, q2=1)
    )
    subprocess.run(
        [sys.executable, str(ANALYSIS), "fill", str(csv), "--out", str(tmp_path / "o")],
        check=True,
        capture_output=True,
    )
    h = json.loads((tmp_path / "o" / "hist.json").read_text())
    assert h["n_events"] == 2 and h["n_pairs"] == 1 and sum(h["counts"]) == 1
    i = next(i for i, c in enumerate(h["counts"]) if c)
    assert h["edges"][i] <= 91.2 < h["edges"][i + 1]


def test_generator_is_byte_reproducible(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(DIMUON / "make_events.py"), "--out", str(tmp_path), "--files", "1"],
        check=True,
        capture_output=True,
        text=True,
    )
    shipped = DIMUON / "data" / "dimuon_000.csv.gz"
    assert (tmp_path / "dimuon_000.csv.gz").read_bytes() == shipped.read_bytes()
    size, adler, sha = file_checksums(shipped)
    assert f"size={size} adler32={adler} sha256={sha}" in proc.stdout
