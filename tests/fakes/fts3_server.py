"""A fake FTS3 REST server on 127.0.0.1 that the real ``fts3`` client talks to over HTTP.

Job and file state machines follow fts-rest-flask (``controllers/jobs.py``, ``JobBuilder``):
files go SUBMITTED -> ACTIVE -> FINISHED | FAILED | CANCELED and the job state is derived
from them (FINISHED, FINISHEDDIRTY, FAILED, CANCELED). State advances by *observation* (each
read of a job), not wall-clock time, so tests are deterministic. Copies are real: each
storage host (``davs://fake-se-a.test/p``, root://, gsiftp://, srm://, https://) is a
directory under ``root``; ADLER32 is checked as ``verify_checksum`` says, a copy that fails
verification is deleted (gfal2's clean-up) and the file gets an FTS-like reason. As in FTS,
``id_generator=deterministic`` + ``sid`` gives job id uuid5(uuid5(BASE_ID, vo), sid), and a
repeated sid answers 409.

Auth: ``Authorization: Bearer <token>`` only (token -> VO); none: 401, unknown: 403. X.509
and delegation are out of scope. ``GET /`` is public, so ``Context()`` builds first.
Faults (seeded RNG, endpoints in ``fault_endpoints``): ``error_rate`` 5xx before acting,
``drop_rate`` act then close without a reply, ``latency_s``; ``corrupt_copies`` (1-based
copy ordinals get one byte flipped); ``max_jobs`` (quota: 429); ``paused``; ``honour_sid``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

BASE_ID = uuid.UUID("01874efb-4735-4595-bc9c-591aef8240c9")  # fts-rest-flask JobBuilder_utils
JOB_ACTIVE = {"STAGING", "SUBMITTED", "READY", "ACTIVE", "DELETE", "ARCHIVING"}
FILE_ACTIVE = JOB_ACTIVE | {"STARTED"}
SCHEMES = {"davs", "https", "root", "gsiftp", "srm"}
CANCEL_REASON = "Job canceled by the user"


def adler32_bytes(data: bytes) -> str:
    return format(zlib.adler32(data) & 0xFFFFFFFF, "08x")


class HTTPError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class FakeFTS3:
    # fmt: off
    def __init__(self, root: Path, *, tokens: dict[str, str] | None = None, seed: int = 0,
                 hosts: tuple[str, ...] = ("fake-se-a.test", "fake-se-b.test"),
                 submitted_polls: int = 1, active_polls: int = 1) -> None:
        # fmt: on
        self.root = Path(root)
        self.tokens = dict(tokens or {"test-token-0123456789": "stratoflow"})  # token -> VO
        self.hosts = set(hosts)
        for h in self.hosts:
            (self.root / h).mkdir(parents=True, exist_ok=True)
        self.submitted_polls, self.active_polls = submitted_polls, active_polls
        self.jobs: dict[str, dict] = {}
        self.files: dict[str, list[dict]] = {}  # job id -> file records
        self.counts: Counter[str] = Counter()  # endpoint -> requests received
        self.status_batch_sizes: list[int] = []  # ids per GET /jobs/{ids}
        self.injected: Counter[str] = Counter()  # "5xx" / "dropped"
        self.tokens_seen: list[str] = []
        # fault knobs
        self.error_rate = self.drop_rate = self.latency_s = 0.0
        self.fault_endpoints: set[str] = {"submit", "status", "files", "cancel", "whoami"}
        self.corrupt_copies: set[int] = set()
        self.max_jobs: int | None = None
        self.paused = False  # the transfer agent picks nothing up (for cancel tests)
        self.honour_sid = True  # False models a server that ignores id_generator
        self.copies = 0
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._next_file_id = 1
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    # ---- lifecycle and test helpers -----------------------------------------------------

    def start(self) -> FakeFTS3:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # fmt: off
    def chaos(self, error_rate: float = 0.0, drop_rate: float = 0.0, latency_s: float = 0.0,
              endpoints: set[str] | None = None) -> None:
        # fmt: on
        self.error_rate, self.drop_rate, self.latency_s = error_rate, drop_rate, latency_s
        if endpoints is not None:
            self.fault_endpoints = set(endpoints)

    def path_of(self, surl: str) -> Path:
        """The local file behind a storage URL (srm's ?SFN= path wins over the URL path)."""
        u = urlsplit(surl)
        if u.scheme not in SCHEMES or u.hostname not in self.hosts:
            raise FileNotFoundError(f"unknown storage endpoint {u.scheme}://{u.hostname}")
        path = parse_qs(u.query).get("SFN", [u.path])[0]
        parts = [p for p in unquote(path).split("/") if p not in ("", ".")]
        if ".." in parts or not parts:
            raise FileNotFoundError(f"bad path {path!r}")
        return self.root.joinpath(u.hostname, *parts)

    def put(self, surl: str, data: bytes) -> None:
        p = self.path_of(surl)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def sids(self) -> list[str]:
        """The idempotency key (job_metadata.sid) of every job, duplicates included."""
        with self._lock:
            return [(j["job_metadata"] or {}).get("sid", "") for j in self.jobs.values()]

    # ---- request handling -----------------------------------------------------------------

    def handle(self, method: str, path: str, q: dict, body: Any, headers: Any) -> tuple:
        """-> (status, body or None, drop?)"""
        name, route = self._route(method, path)
        with self._lock:
            self.counts[name] += 1
            roll = self._rng.random() if name in self.fault_endpoints else 1.0
        if roll < self.error_rate:
            with self._lock:
                self.injected["5xx"] += 1
            code = 503 if roll < self.error_rate / 2 else 500
            return code, {"status": f"{code} Error", "message": "injected fault"}, False
        drop = roll < self.error_rate + self.drop_rate
        try:
            vo = None if name == "api" else self._auth(headers)
            with self._lock:
                status, out = route(vo, q, body)
        except HTTPError as e:
            status, out = e.code, {"status": f"{e.code}", "message": e.message}
        if drop:
            with self._lock:
                self.injected["dropped"] += 1
        return status, out, drop

    def _auth(self, headers: Any) -> str:
        value = headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPError(401, "Authentication required: send an OIDC bearer token")
        with self._lock:
            self.tokens_seen.append(token)
        if token not in self.tokens:
            raise HTTPError(403, "Invalid or expired access token")
        return self.tokens[token]

    def _route(self, method: str, path: str) -> tuple[str, Any]:
        path = path.rstrip("/") or "/"
        if method == "GET" and path == "/":
            version = {"major": 3, "minor": 14, "patch": 2}
            info = {"api": version, "schema": version, "delegation": {"major": 1, "minor": 0}}
            return "api", lambda *_: (200, info)
        if method == "GET" and path == "/whoami":
            return "whoami", self._whoami
        if path == "/jobs":
            return ("submit", self._submit) if method == "POST" else ("list", self._list)
        m = re.fullmatch(r"/jobs/([^/]+)(/files|/dm)?(?:/([^/]+))?(/retries)?", path)
        if m and method == "GET" and m.group(2) == "/files" and not m.group(3):
            return "files", lambda vo, q, b: (200, self._observe(self._job(m.group(1), vo))[1])
        if m and method == "GET" and m.group(2):
            return "other", lambda *_: (200, [])
        if m and method == "GET":
            return "status", lambda vo, q, b: self._status(m.group(1), vo, q)
        if m and method == "DELETE" and not m.group(2):
            return "cancel", lambda vo, q, b: self._cancel(m.group(1), vo)
        return "other", lambda *_: (404, {"status": "404", "message": f"no route {path}"})

    # ---- endpoints ------------------------------------------------------------------------

    def _whoami(self, vo: str, q: dict, body: Any) -> tuple:
        dn = f"oauth2:{vo}"
        # fmt: off
        return 200, {"dn": [dn], "user_dn": dn, "vos": [vo], "voms_cred": [],
                     "vos_id": [str(uuid.uuid5(BASE_ID, vo))], "base_id": str(BASE_ID),
                     "delegation_id": uuid.uuid5(BASE_ID, dn).hex[:16], "method": "oauth2",
                     "is_root": False, "level": {"transfer": "vo"}}
        # fmt: on

    def _job(self, job_id: str, vo: str) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPError(404, f'No job with the id "{job_id}" has been found')
        if job["vo_name"] != vo:
            raise HTTPError(403, f'Not enough permissions to check the job "{job_id}"')
        return job

    def _submit(self, vo: str, q: dict, body: Any) -> tuple:
        if not isinstance(body, dict) or not isinstance(body.get("files"), list):
            raise HTTPError(400, "No transfers operations specified")
        if body.get("delete"):
            raise HTTPError(405, "Deletion jobs are no longer supported by FTS")
        params = dict(body.get("params") or {})
        if not body["files"]:
            raise HTTPError(400, "No valid pairs available")
        if _int(params.get("bring_online")) > 0 or _int(params.get("archive_timeout")) > 0:
            raise HTTPError(
                400, "Requests to retrieve from tape using token authentication are not supported"
            )
        if self.max_jobs is not None and len(self.jobs) >= self.max_jobs:
            raise HTTPError(429, f"Submission quota exhausted for VO {vo}")
        if params.get("id_generator") == "deterministic" and self.honour_sid:
            if not params.get("sid"):
                raise HTTPError(400, "Need sid for deterministic job id generation")
            job_id = str(uuid.uuid5(uuid.uuid5(BASE_ID, vo), str(params["sid"])))
            if job_id in self.jobs:
                raise HTTPError(409, "The sid provided by the user is duplicated")
        else:
            job_id = str(uuid.uuid1())
        files = [self._new_file(job_id, i, f) for i, f in enumerate(body["files"])]
        has_checksum = any((f["checksum"] or "").partition(":")[2] for f in files)
        method = params.get("verify_checksum", False)
        if isinstance(method, bool) or method is None:  # JobBuilder._check_checksum
            method = (
                ("both" if method else "target") if has_checksum else ("both" if method else "none")
            )
        if str(method)[:1] not in ("b", "s", "t", "n"):
            raise HTTPError(400, "verify_checksum does not contain a valid value")
        metadata = params.get("job_metadata") or {}
        if not isinstance(metadata, dict):
            metadata = {"label": metadata}
        # fmt: off
        self.jobs[job_id] = {
            "job_id": job_id, "job_state": "SUBMITTED", "job_type": "N", "vo_name": vo,
            "user_dn": f"oauth2:{vo}", "submit_time": _ts(), "job_finished": None,
            "reason": None, "priority": max(1, min(5, _int(params.get("priority")) or 3)),
            "verify_checksum": str(method)[0], "overwrite_flag": bool(params.get("overwrite")),
            "retry": _int(params.get("retry")), "bring_online": _int(params.get("bring_online")),
            "job_metadata": {**metadata, "auth_method": "oauth2"},
            "source_se": _se(files[0]["source_surl"]), "dest_se": _se(files[0]["dest_surl"]),
        }
        # fmt: on
        self.files[job_id] = files
        return 200, {"job_id": job_id}

    def _new_file(self, job_id: str, index: int, f: Any) -> dict:
        if not isinstance(f, dict) or not f.get("sources") or not f.get("destinations"):
            raise HTTPError(400, "Missing parameter: 'sources' and 'destinations' are required")
        if len(f["sources"]) != 1 or len(f["destinations"]) != 1:
            raise HTTPError(400, "the fake supports one source and one destination per file")
        src, dst = str(f["sources"][0]).strip(), str(f["destinations"][0]).strip()
        for url in (src, dst):
            u = urlsplit(url)
            if not u.scheme or u.scheme == "file" or not u.hostname or u.path in ("", "/"):
                raise HTTPError(400, f"Invalid value within the request: bad url ({url})")
        checksum = f.get("checksum") or "ADLER32"
        algo, _, value = str(checksum).partition(":")
        if algo.upper() != "ADLER32" or (value and not re.fullmatch(r"[0-9a-fA-F]{1,8}", value)):
            raise HTTPError(400, f"Invalid value within the request: checksum {checksum!r}")
        try:
            size = float(f.get("filesize") or 0)
        except (TypeError, ValueError):
            raise HTTPError(400, "Invalid value within the request: filesize") from None
        self._next_file_id += 1
        # fmt: off
        return {"file_id": self._next_file_id, "job_id": job_id, "file_index": index,
                "file_state": "SUBMITTED", "source_surl": src, "dest_surl": dst,
                "checksum": checksum, "user_filesize": size, "filesize": 0, "reason": None,
                "file_metadata": f.get("metadata"), "activity": f.get("activity") or "default",
                "start_time": None, "finish_time": None, "retry": 0, "_seen": 0}
        # fmt: on

    def _status(self, ids: str, vo: str, q: dict) -> tuple:
        job_ids = [i for i in ids.split(",") if i]
        self.status_batch_sizes.append(len(job_ids))
        fields = [f for f in q.get("files", "").split(",") if f]
        out, errors = [], 0
        for job_id in job_ids:
            try:
                job, files = self._observe(self._job(job_id, vo))
                entry = {**job, "http_status": "200 Ok"}
                if fields:
                    entry["files"] = [{k: f[k] for k in fields if k in f} for f in files]
                out.append(entry)
            except HTTPError as e:
                errors += 1
                out.append(
                    {"job_id": job_id, "http_status": f"{e.code} Error", "http_message": e.message}
                )
        if len(job_ids) == 1:
            return (200 if not errors else int(out[0]["http_status"][:3])), out[0]
        return (207 if errors else 200), out

    def _list(self, vo: str, q: dict, body: Any) -> tuple:
        """GET /jobs: newest first; ``state_in`` + ``limit`` also return finished jobs."""
        states = set(q["state_in"].split(",")) if q.get("state_in") else None
        jobs = [j for j in self.jobs.values() if j["vo_name"] == vo]
        if states is None or "limit" not in q:
            jobs = [j for j in jobs if j["job_state"] in JOB_ACTIVE]
        if states is not None:
            jobs = [j for j in jobs if j["job_state"] in states]
        jobs.sort(key=lambda j: j["submit_time"], reverse=True)
        return 200, jobs[: min(_int(q.get("limit")) or 500, 500)]

    def _cancel(self, job_id: str, vo: str) -> tuple:
        job = self._job(job_id, vo)
        if job["job_state"] not in JOB_ACTIVE:
            return 304, None  # "The job is in a terminal state": no body, like werkzeug's 304
        for f in self.files[job_id]:
            if f["file_state"] in FILE_ACTIVE:
                f.update(file_state="CANCELED", reason=CANCEL_REASON, finish_time=_ts())
        job.update(job_state="CANCELED", reason=CANCEL_REASON, job_finished=_ts())
        return 200, {**job, "http_status": "200 Ok"}

    # ---- the transfer agent: state machine + real copies ----------------------------------

    def _observe(self, job: dict) -> tuple[dict, list[dict]]:
        files = self.files[job["job_id"]]
        if job["job_state"] in JOB_ACTIVE and not self.paused:
            for f in files:
                if f["file_state"] == "SUBMITTED":
                    f["_seen"] += 1
                    if f["_seen"] >= self.submitted_polls:
                        f.update(file_state="ACTIVE", start_time=_ts(), _seen=0)
                elif f["file_state"] == "ACTIVE":
                    f["_seen"] += 1
                    if f["_seen"] >= self.active_polls:
                        self._transfer(job, f)
            self._derive(job, files)
        return job, [{k: v for k, v in f.items() if not k.startswith("_")} for f in files]

    def _transfer(self, job: dict, f: dict) -> None:
        reason = self._copy(job, f)
        f.update(finish_time=_ts(), _seen=0)
        if reason is None:
            f.update(file_state="FINISHED", reason="")
        elif f["retry"] < job["retry"]:  # FTS's own retries: back to the queue
            f.update(file_state="SUBMITTED", retry=f["retry"] + 1, reason=reason)
        else:
            f.update(file_state="FAILED", reason=reason)

    def _copy(self, job: dict, f: dict) -> str | None:
        """Copy one file like gfal2 would; return the failure reason, or None."""
        try:
            src = self.path_of(f["source_surl"])
            data = src.read_bytes()
        except OSError as e:
            return f"SOURCE [2] Failed to stat file: {e.strerror or e}"
        try:
            dst = self.path_of(f["dest_surl"])
        except OSError as e:
            return f"DESTINATION [2] {e}"
        # fmt: off
        if dst.exists() and not job["overwrite_flag"]:
            return ("TRANSFER [17] DESTINATION OVERWRITE Destination file exists and overwrite"
                    " is not enabled")
        mode, declared = job["verify_checksum"], f["checksum"].partition(":")[2].lower()
        declared = declared.zfill(8) if declared else ""
        src_sum = adler32_bytes(data)
        if mode in "bs" and declared and declared != src_sum:
            return ("SOURCE [5] SOURCE CHECKSUM MISMATCH User defined checksum and source"
                    f" checksum do not match ({declared} != {src_sum})")
        if f["user_filesize"] and int(f["user_filesize"]) != len(data):
            return ("SOURCE [22] SOURCE SIZE MISMATCH User defined size and source size do not"
                    f" match ({int(f['user_filesize'])} != {len(data)})")
        self.copies += 1
        if self.copies in self.corrupt_copies and data:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        dst_sum, f["filesize"] = adler32_bytes(dst.read_bytes()), dst.stat().st_size
        if mode in "bt":
            want, what = ((declared, "User defined checksum and destination checksum")
                          if declared else (src_sum, "Source and destination ADLER32"))
            if dst_sum != want or (mode == "b" and dst_sum != src_sum):
                dst.unlink()  # gfal2 removes a destination that failed verification
                return (f"TRANSFER [5] DESTINATION CHECKSUM MISMATCH {what} do not match"
                        f" ({want} != {dst_sum})")
        # fmt: on
        return None

    @staticmethod
    def _derive(job: dict, files: list[dict]) -> None:
        states = [f["file_state"] for f in files]
        if any(s in FILE_ACTIVE for s in states):
            job["job_state"] = "ACTIVE" if "ACTIVE" in states else "SUBMITTED"
            return
        if all(s == "FINISHED" for s in states) or all(s == "CANCELED" for s in states):
            job["job_state"] = states[0]
        else:
            job["job_state"] = "FINISHEDDIRTY" if "FINISHED" in states else "FAILED"
        job["job_finished"] = _ts()
        if job["job_state"] != "FINISHED":
            job["reason"] = "One or more files failed. Please have a look at the details"


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _se(surl: str) -> str:
    u = urlsplit(surl)
    return f"{u.scheme}://{u.hostname}"


def _ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}"


class _Handler(BaseHTTPRequestHandler):
    owner: FakeFTS3
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet: pytest output stays readable
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        fake = self.owner
        if fake.latency_s:
            time.sleep(fake.latency_s)
        status, out, drop = fake.handle(self.command, parts.path, query, body, self.headers)
        if drop:  # the work is done; the reply is lost
            self.close_connection = True
            return
        data = json.dumps(out).encode() if out is not None else b""
        self.send_response(status)
        if status != 304:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 304:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve
