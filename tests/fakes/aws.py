"""moto in server mode behind a fault-injecting HTTP proxy, for S3 and EC2 tests.

The real boto3 client talks real HTTP to the proxy on 127.0.0.1, which forwards to a
``moto.server.ThreadedMotoServer``. The proxy can, per request and by rule:

* ``error``    answer 5xx itself (the request never reaches moto: nothing was done);
* ``drop``     forward the request, then close the connection without replying (the
               request WAS done, the reply is lost: the case idempotency keys exist for);
* ``corrupt``  flip one byte in the body of a GET of an object (integrity tests);
* ``respond``  answer with a canned status and body (e.g. EC2 ``InstanceLimitExceeded``);
* ``latency``  sleep before forwarding.

Every request is recorded (method, path, EC2 action and form parameters, headers) so tests
can check what a client really sent, e.g. spot market options or that no secret leaked.

moto 5.2.5 ignores ``RunInstances``' ``ClientToken``; real EC2 honours it (a repeated
call with the same token returns the original reservation). ``honour_client_token()``
patches moto's backend so the fake follows the documented behaviour.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Rule:
    """One fault. ``action``/``method``/``path_contains`` narrow which requests it hits."""

    kind: str  # "error" | "drop" | "corrupt" | "respond" | "latency"
    rate: float = 1.0  # fraction of matching requests hit
    times: int | None = None  # hit at most this many requests (None: unlimited)
    after: int = 0  # let this many matching requests through first
    action: str | None = None  # EC2 query action, e.g. "RunInstances"
    method: str | None = None
    path_contains: str | None = None
    status: int = 503
    body: bytes = b""
    delay: float = 0.0
    fired: int = 0
    matched: int = 0

    def matches(self, req: Seen) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.action is not None and req.action != self.action:
            return False
        if self.method is not None and req.method != self.method:
            return False
        return self.path_contains is None or self.path_contains in req.path


@dataclass
class Seen:
    method: str
    path: str
    action: str | None
    params: dict[str, str]
    headers: dict[str, str]
    faults: list[str] = field(default_factory=list)


class FaultProxy:
    """A threaded HTTP/1.1 proxy in front of ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int], seed: int = 0):
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self, seed: int = 0) -> None:
        with self._lock:
            self.rules.clear()
            self.seen.clear()
            self._rng = random.Random(seed)

    def requests(self, action: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if action is None or s.action == action]

    def decide(self, req: Seen) -> list[Rule]:
        """The rules that fire for this request (one lock, one seeded RNG: deterministic
        for a sequential client)."""
        with self._lock:
            self.seen.append(req)
            hits = []
            for rule in self.rules:
                if not rule.matches(req):
                    continue
                rule.matched += 1
                if rule.matched > rule.after and self._rng.random() < rule.rate:
                    rule.fired += 1
                    hits.append(rule)
                    req.faults.append(rule.kind)
            return hits

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue, as botocore uses
    owner: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet tests
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle plus delayed
        # ACKs add 40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        params: dict[str, str] = {}
        ctype = self.headers.get("Content-Type", "")
        if self.command == "POST" and "x-www-form-urlencoded" in ctype:
            params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        req = Seen(
            self.command, self.path, params.get("Action"), params, dict(self.headers.items())
        )
        rules = self.owner.decide(req)
        kinds = {r.kind: r for r in rules}
        if "latency" in kinds:
            time.sleep(kinds["latency"].delay)
        if "respond" in kinds:
            return self._reply(kinds["respond"].status, kinds["respond"].body, {})
        if "error" in kinds:
            return self._reply(kinds["error"].status, _error_body(req), {})
        status, headers, data = self._forward(body)
        if "drop" in kinds:
            # The upstream did the work; the client never learns it.
            self.close_connection = True
            return None
        if "corrupt" in kinds and self.command == "GET" and status in (200, 206) and data:
            b = bytearray(data)
            b[len(b) // 2] ^= 0x01
            data = bytes(b)
        return self._reply(status, data, headers)

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers.pop("Expect", None)
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP}
            return resp.status, out, data
        finally:
            conn.close()

    def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = _handle

    def do_HEAD(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        req = Seen("HEAD", self.path, None, {}, dict(self.headers.items()))
        rules = {r.kind: r for r in self.owner.decide(req)}
        if "error" in rules:
            self.send_response(rules["error"].status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, headers, _ = self._forward(b"")
        if "drop" in rules:
            self.close_connection = True
            return
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("server", "date"):
                self.send_header(k, v)
        self.end_headers()


def _error_body(req: Seen) -> bytes:
    if req.action:  # EC2 query API
        return (
            b"<Response><Errors><Error><Code>Unavailable</Code><Message>injected fault"
            b"</Message></Error></Errors><RequestID>fault</RequestID></Response>"
        )
    return (
        b"<Error><Code>ServiceUnavailable</Code><Message>injected fault</Message>"
        b"<RequestId>fault</RequestId></Error>"
    )


def ec2_error(code: str, message: str, status: int = 400, after: int = 0) -> Rule:
    """A canned EC2 error answer to RunInstances, e.g. ``InstanceLimitExceeded``."""
    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        "</Errors><RequestID>fault</RequestID></Response>"
    ).encode()
    return Rule("respond", action="RunInstances", status=status, body=body, after=after)


_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def shared_moto_url() -> str:
    """One ThreadedMotoServer on a free port of 127.0.0.1 for the whole test process
    (moto takes seconds to warm up; S3 and EC2 tests share it). Stopped at exit."""
    with _shared_lock:
        if "url" not in _shared:
            import atexit
            import logging
            import os

            from moto.server import ThreadedMotoServer

            # Skip loading moto's thousands of default AMIs: seconds saved, and any AMI id
            # is accepted without them (MOTO_ENABLE_AMI_VALIDATION is off by default).
            os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            _shared["server"] = server
            _shared["url"] = f"http://{host}:{port}"
            atexit.register(server.stop)
        return str(_shared["url"])


@contextmanager
def fault_proxy(seed: int = 0) -> Iterator[FaultProxy]:
    """A fresh FaultProxy in front of the shared moto server."""
    host, port = urlsplit(shared_moto_url()).netloc.split(":")
    proxy = FaultProxy((host, int(port)), seed=seed)
    try:
        yield proxy
    finally:
        proxy.close()


@contextmanager
def honour_client_token() -> Iterator[None]:
    """Make moto's RunInstances idempotent on ClientToken, as EC2 documents."""
    from moto.ec2.models.instances import InstanceBackend

    original = InstanceBackend.run_instances
    lock = threading.Lock()

    def run_instances(self: Any, image_id: str, count: int, *args: Any, **kwargs: Any) -> Any:
        token = kwargs.get("client_token")
        with lock:
            if token and token != "ABCDE":  # moto's placeholder when none is sent
                for reservation in list(self.reservations.values()):
                    first = reservation.instances[0] if reservation.instances else None
                    if first is not None and first.client_token == token:
                        return reservation
            return original(self, image_id, count, *args, **kwargs)

    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]
    try:
        yield
    finally:
        InstanceBackend.run_instances = original  # type: ignore[method-assign]


ACCESS_KEY = "AKIASTRATOFLOWTEST01"


def aws_connection_env(
    conn_id: str, endpoint_url: str, secret: str, max_attempts: int = 1
) -> tuple[str, str]:
    """(name, value) of an ``AIRFLOW_CONN_<ID>`` variable holding a JSON connection.

    ``max_attempts=1`` switches botocore's own retries off so injected faults reach the
    code under test instead of being absorbed by the client.
    """
    extra = {"region_name": "us-east-1", "endpoint_url": endpoint_url}
    extra["max_attempts"] = max_attempts  # type: ignore[assignment]
    value = json.dumps(
        {"conn_type": "aws", "login": ACCESS_KEY, "password": secret, "extra": extra}
    )
    return f"AIRFLOW_CONN_{conn_id.upper()}", value


@contextmanager
def boot_agents() -> Iterator[Any]:
    """Make moto's instances boot like VMs: each one whose user data configures the
    Stratoflow agent gets a loopback address of its own and runs that agent until it is
    terminated (see vm_boot.py). Yields the VmBooter."""
    from moto.ec2.models.instances import Instance

    from tests.fakes.vm_boot import VmBooter

    booter = VmBooter()
    original_init, original_terminate = Instance.__init__, Instance.terminate

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        text = self.user_data.decode() if self.user_data is not None else ""
        if text.startswith("#cloud-config"):
            address = booter.next_address()
            self.nics[0].private_ip_address = address
            booter.boot(self.id, address, text)

    def terminate(self: Any) -> Any:
        booter.destroy(self.id)
        return original_terminate(self)

    Instance.__init__ = init  # type: ignore[method-assign]
    Instance.terminate = terminate  # type: ignore[method-assign]
    try:
        yield booter
    finally:
        Instance.__init__ = original_init  # type: ignore[method-assign]
        Instance.terminate = original_terminate  # type: ignore[method-assign]
        booter.stop()
