"""A fake Oneprovider (REST API v3) on 127.0.0.1: files, QoS requirements, transfers.

It speaks the documented shapes under ``/api/v3/oneprovider`` with ``X-Auth-Token``:
``POST /lookup-file-id/{path}``, ``PUT /data/{id}/path/{path}?type=REG&create_parents=true``
(body = content), ``GET /data/{id}`` (attributes), ``GET``/``PUT /data/{id}/content``
(``Range``; ``offset``), ``GET /data/{id}/children``, ``DELETE /data/{id}``,
``POST``/``GET``/``DELETE /qos_requirements[/{id}]``, ``POST``/``GET /transfers[/{id}]``.
Errors use OneData's body: ``{"error": {"id": "posix", "details": {"errno": "enoent"},
"description": ...}}``.

Time does not pass here: a QoS requirement is ``pending`` for ``qos_polls`` reads, then
``fulfilled`` (or ``impossible`` when its expression names a storage parameter no storage
has); a transfer goes scheduled -> active -> completed the same way. Faults: seeded
``error_rate`` (5xx before acting), ``corrupt_reads`` (the next N content reads have one
byte flipped), ``write_error_after`` (a content write dies part way: a partial file).
"""

from __future__ import annotations

import json
import random
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PREFIX = "/api/v3/oneprovider"
STORAGES = [{"country": "FR", "tier": "1"}, {"country": "IT", "tier": "2"}]


class FakeOnedata:
    def __init__(self, token: str, spaces: tuple[str, ...] = ("exp",), seed: int = 0):
        self.token = token
        self.files: dict[str, dict[str, Any]] = {}  # id -> {name, parent, type, data}
        self.roots: dict[str, str] = {}  # space name -> root dir id
        for space in spaces:
            self.roots[space] = self._new(space, None, "DIR")
        self.qos: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.qos_polls = 2
        self.error_rate = 0.0
        self.corrupt_reads = 0
        self.requests: list[tuple[str, str, int]] = []
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeOnedata:
        handler = type("H", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # ---- the tree -------------------------------------------------------------------

    def _new(self, name: str, parent: str | None, kind: str, data: bytes = b"") -> str:
        fid = uuid.uuid4().hex
        self.files[fid] = {"name": name, "parent": parent, "type": kind, "data": data}
        return fid

    def _child(self, parent: str, name: str) -> str | None:
        return next(
            (i for i, f in self.files.items() if f["parent"] == parent and f["name"] == name),
            None,
        )

    def resolve(self, path: str) -> str | None:
        """``space/a/b`` -> file id."""
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in self.roots:
            return None
        fid: str | None = self.roots[parts[0]]
        for name in parts[1:]:
            fid = self._child(fid, name) if fid else None
        return fid

    def read(self, path: str) -> bytes:
        fid = self.resolve(path)
        assert fid is not None, path
        return self.files[fid]["data"]

    def paths(self) -> list[str]:
        def full(fid: str) -> str:
            f = self.files[fid]
            return f["name"] if f["parent"] is None else f"{full(f['parent'])}/{f['name']}"

        return sorted(full(i) for i, f in self.files.items() if f["type"] == "REG")

    # ---- requests -------------------------------------------------------------------

    def handle(self, method: str, path: str, q: dict, headers: Any, body: bytes) -> tuple:
        if headers.get("X-Auth-Token") != self.token:
            return _err(401, "unauthorized", "Invalid or missing access token")
        if self._rng.random() < self.error_rate:
            return _err(503, "serviceUnavailable", "Injected fault")
        m = re.fullmatch(r"/lookup-file-id/(.+)", path)
        if method == "POST" and m:
            fid = self.resolve(unquote(m.group(1)))
            return (200, {"fileId": fid}) if fid else _enoent(m.group(1))
        m = re.fullmatch(r"/data/([^/]+)/path/(.+)", path)
        if method == "PUT" and m:
            return self._create(m.group(1), unquote(m.group(2)), q, body)
        m = re.fullmatch(r"/data/([^/]+)(/content|/children)?", path)
        if m:
            fid, sub = m.group(1), m.group(2)
            if fid not in self.files:
                return _enoent(fid)
            f = self.files[fid]
            if method == "GET" and sub is None:
                return 200, {"fileId": fid, "name": f["name"], "type": f["type"],
                             "size": len(f["data"])}  # fmt: skip
            if method == "GET" and sub == "/content":
                return self._read(f, headers.get("Range"))
            if method == "PUT" and sub == "/content":
                offset = int(q.get("offset", ["0"])[0])
                f["data"] = f["data"][:offset] + body
                return 204, None
            if method == "GET" and sub == "/children":
                kids = [{"id": i, "name": c["name"]} for i, c in self.files.items()
                        if c["parent"] == fid]  # fmt: skip
                return 200, {"children": kids, "isLast": True}
            if method == "DELETE" and sub is None:
                self._delete(fid)
                return 204, None
        if path == "/qos_requirements" and method == "POST":
            return self._add_qos(json.loads(body or b"{}"))
        m = re.fullmatch(r"/qos_requirements/([^/]+)", path)
        if m:
            req = self.qos.get(m.group(1))
            if req is None:
                return _err(404, "notFound", "The resource could not be found.")
            if method == "DELETE":
                del self.qos[m.group(1)]
                return 204, None
            req["_polls"] += 1
            if req["status"] == "pending" and req["_polls"] > self.qos_polls:
                req["status"] = "fulfilled"
            return 200, {k: v for k, v in req.items() if not k.startswith("_")}
        if path == "/transfers" and method == "POST":
            doc = json.loads(body or b"{}")
            if doc.get("fileId") not in self.files or doc.get("type") not in (
                "replication", "eviction", "migration"):  # fmt: skip
                return _err(400, "badValueIdentifier", "fileId or type is invalid")
            tid = uuid.uuid4().hex
            self.transfers[tid] = {"transferId": tid, "type": doc["type"], "_polls": 0}
            self.transfers[tid] |= {"fileId": doc["fileId"], "transferStatus": "scheduled"}
            return 201, {"transferId": tid}
        m = re.fullmatch(r"/transfers/([^/]+)", path)
        if m and method == "GET":
            t = self.transfers.get(m.group(1))
            if t is None:
                return _err(404, "notFound", "The resource could not be found.")
            t["_polls"] += 1
            order = ["scheduled", "enqueued", "active", "completed"]
            t["transferStatus"] = order[min(t["_polls"], len(order) - 1)]
            return 200, {k: v for k, v in t.items() if not k.startswith("_")}
        return _err(404, "notFound", f"No route {method} {path}")

    def _create(self, parent: str, rel: str, q: dict, body: bytes) -> tuple:
        if parent not in self.files:
            return _enoent(parent)
        parts = [p for p in rel.split("/") if p]
        parents = q.get("create_parents", ["false"])[0] == "true"
        for name in parts[:-1]:
            nxt = self._child(parent, name)
            if nxt is None:
                if not parents:
                    return _enoent(name)
                nxt = self._new(name, parent, "DIR")
            parent = nxt
        if self._child(parent, parts[-1]) is not None:
            return _err(400, "posix", "File exists", errno="eexist")
        kind = q.get("type", ["REG"])[0]
        return 201, {"fileId": self._new(parts[-1], parent, kind, body)}

    def _read(self, f: dict, range_header: str | None) -> tuple:
        data = f["data"]
        if range_header:
            a, _, b = range_header.removeprefix("bytes=").partition("-")
            data = data[int(a) : (int(b) + 1 if b else None)]
        with self._lock:
            corrupt, self.corrupt_reads = self.corrupt_reads > 0, max(0, self.corrupt_reads - 1)
        if corrupt and data:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        return (206 if range_header else 200), data

    def _delete(self, fid: str) -> None:
        for kid in [i for i, c in self.files.items() if c["parent"] == fid]:
            self._delete(kid)
        del self.files[fid]

    def _add_qos(self, doc: dict) -> tuple:
        if doc.get("fileId") not in self.files:
            return _enoent(str(doc.get("fileId")))
        expr, n = str(doc.get("expression") or ""), int(doc.get("replicasNum") or 1)
        terms = re.findall(r"([A-Za-z_]+)=([A-Za-z0-9_-]+)", expr)
        matching = [s for s in STORAGES if all(s.get(k) == v for k, v in terms)]
        status = "impossible" if (terms and len(matching) < 1) or n > len(STORAGES) else "pending"
        qid = uuid.uuid4().hex
        self.qos[qid] = {"qosRequirementId": qid, "fileId": doc["fileId"], "expression": expr,
                         "replicasNum": n, "status": status, "_polls": 0}  # fmt: skip
        return 201, {"qosRequirementId": qid}


def _err(code: int, eid: str, description: str, errno: str | None = None) -> tuple:
    err: dict[str, Any] = {"id": eid, "description": description}
    if errno:
        err["details"] = {"errno": errno}
    return code, {"error": err}


def _enoent(what: str) -> tuple:
    return _err(400, "posix", f"No such file or directory: {what}", errno="enoent")


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOnedata
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not parts.path.startswith(PREFIX):
            code, out = _err(404, "notFound", "not a oneprovider path")
        else:
            with self.owner._lock:
                code, out = self.owner.handle(
                    method, parts.path[len(PREFIX) :], parse_qs(parts.query), self.headers, body
                )
        self.owner.requests.append((method, parts.path, code))
        data = out if isinstance(out, bytes) else (b"" if out is None else json.dumps(out).encode())
        self.send_response(code)
        ctype = "application/octet-stream" if isinstance(out, bytes) else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")
