"""Benchmark: HTTP requests to stage N files through FTS3, bulk (ours) versus one job per file.

Not a test. Both runs use the real ``fts3`` client against the fake FTS3 server in
tests/fakes (fresh instance each, same settings, no injected latency or faults), in this
process, over real HTTP on 127.0.0.1. Requests are counted by the fake, per endpoint.

* ours:  ``FTS3Transfer.submit`` (200 files per job, deterministic sids) + ``wait``
         (one ``GET /jobs/{id1,...,id100}`` per 100 jobs per round);
* naive: one ``submit`` per file, then ``get_job_status`` per job per round until every job
         is terminal (each polling round skips jobs already known to be done).

The fake advances a file one state per observation (SUBMITTED -> ACTIVE -> FINISHED), so
both need the same number of polling rounds. Every destination file is checked against its
source (sha256) afterwards. Last line: ``requests=N naive_requests=M ratio=N/M`` (decimal).

    .venv/bin/python bench/fts_bulk.py [--files 10000] [--naive-files 10000]

``--naive-files`` below ``--files`` measures the naive run on that many files and scales
its counts linearly (marked "scaled" in the output); by default it is measured in full.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.fts3_server import FakeFTS3  # noqa: E402

TOKEN = "bench-oidc-token-" + uuid.uuid4().hex


def make_files(fake: FakeFTS3, n: int, rng: random.Random) -> list[dict]:
    files = []
    for i in range(n):
        data = rng.randbytes(rng.randint(16, 512))
        src = f"davs://fake-se-a.test/bench/f{i:05d}"
        fake.put(src, data)
        files.append(
            {
                "source": src,
                "destination": f"davs://fake-se-b.test/bench/f{i:05d}",
                "adler32": format(zlib.adler32(data), "08x"),
                "size": len(data),
            }
        )
    return files


def verify(fake: FakeFTS3, files: list[dict]) -> None:
    for f in files:
        a = hashlib.sha256(fake.path_of(f["source"]).read_bytes()).digest()
        b = hashlib.sha256(fake.path_of(f["destination"]).read_bytes()).digest()
        if a != b:
            raise SystemExit(f"integrity failure: {f['destination']}")


def start(root: Path) -> FakeFTS3:
    return FakeFTS3(root, tokens={TOKEN: "bench"}).start()


def run_ours(root: Path, n: int) -> dict:
    from stratoflow.sites.fts3.transfer import FTS3Transfer

    fake = start(root)
    try:
        files = make_files(fake, n, random.Random(1))
        conn = {
            "conn_type": "fts3",
            "host": fake.url,
            "password": TOKEN,
            "extra": {"verify": False},
        }
        os.environ["AIRFLOW_CONN_FTS3_BENCH"] = json.dumps(conn)
        fts = FTS3Transfer("bench", {"conn_id": "fts3_bench", "poll_interval_s": 0.0})
        fts.context  # noqa: B018 -- import Airflow + build the client outside the timing
        t0 = time.perf_counter()
        ids = fts.submit(files, key="bench:stage_in:0")
        t1 = time.perf_counter()
        states = fts.wait(ids)
        t2 = time.perf_counter()
        assert set(states.values()) == {"FINISHED"}, states
        verify(fake, files)
        counts = dict(fake.counts)
        polling = counts.get("status", 0) + counts.get("files", 0)
        return {
            "jobs": len(ids),
            "total": sum(counts.values()),
            "polling": polling,
            "submission": sum(counts.values()) - polling,
            "counts": counts,
            "submit_s": t1 - t0,
            "poll_s": t2 - t1,
            "scale": 1.0,
        }
    finally:
        fake.stop()


def run_naive(root: Path, n: int, scale: float) -> dict:
    from fts3.rest.client import easy as fts3

    fake = start(root)
    try:
        files = make_files(fake, n, random.Random(1))
        ctx = fts3.Context(fake.url, fts_access_token=TOKEN, verify=False)
        t0 = time.perf_counter()
        ids = []
        for f in files:
            t = fts3.new_transfer(
                f["source"],
                f["destination"],
                checksum=f"ADLER32:{f['adler32']}",
                filesize=f["size"],
            )
            ids.append(fts3.submit(ctx, fts3.new_job([t], verify_checksum="both")))
        t1 = time.perf_counter()
        pending = set(ids)
        while pending:
            for job_id in list(pending):
                if fts3.get_job_status(ctx, job_id)["job_state"] in (
                    "FINISHED",
                    "FINISHEDDIRTY",
                    "FAILED",
                    "CANCELED",
                ):
                    pending.discard(job_id)
        t2 = time.perf_counter()
        verify(fake, files)
        counts = dict(fake.counts)
        polling = counts.get("status", 0)
        total = sum(counts.values())
        return {
            "jobs": len(ids),
            "total": round(total * scale),
            "polling": round(polling * scale),
            "submission": round((total - polling) * scale),
            "counts": counts,
            "submit_s": (t1 - t0) * scale,
            "poll_s": (t2 - t1) * scale,
            "scale": scale,
        }
    finally:
        fake.stop()


def report(name: str, r: dict, n: int) -> None:
    scaled = f" (scaled x{r['scale']:g} from a measured run)" if r["scale"] != 1.0 else ""
    print(
        f"{name}: files={n} jobs={r['jobs']} submission_requests={r['submission']}"
        f" polling_requests={r['polling']} total_requests={r['total']}"
        f" submit_time={r['submit_s']:.2f}s poll_time={r['poll_s']:.2f}s{scaled}"
    )
    print(f"  by endpoint (measured): {json.dumps(r['counts'], sort_keys=True)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--naive-files", type=int, default=None)
    args = ap.parse_args()
    naive_n = min(args.naive_files or args.files, args.files)
    with tempfile.TemporaryDirectory(prefix="fts-bench-") as tmp:
        ours = run_ours(Path(tmp) / "ours", args.files)
        report("ours (bulk)", ours, args.files)
        naive = run_naive(Path(tmp) / "naive", naive_n, args.files / naive_n)
        report("naive (one job per file)", naive, args.files)
    n, m = ours["total"], naive["total"]
    print(f"requests={n} naive_requests={m} ratio={n / m:.6f}")


if __name__ == "__main__":
    main()
