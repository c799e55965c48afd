"""A fake OpenStack (Keystone v3, Nova v2.1, Neutron v2.0, Glance v2, Cinder v3) on 127.0.0.1.

One threaded HTTP server serves every service under a path prefix (/identity, /compute,
/network, /image, /volume); the Keystone catalog points back at it, so real openstacksdk runs
unchanged. Servers advance by *observations* (each time one is rendered), not wall-clock
time, so tests are deterministic. Faults: seeded ``error_rate`` (5xx before acting),
``drop_rate`` (act, then close without a reply), ``latency_s``, one-shot ``scripted``
faults, ``quota``, ``fail_boots``; version documents and Keystone are never faulted unless
``fault_identity``. Block storage (volumes, Nova's volume attachments) lives in
tests/fakes/openstack_volumes.py.
"""

from __future__ import annotations

import base64
import json
import random
import re
import socket
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.openstack_volumes import VOLUME_DOCS, BlockStorage
from tests.fakes.vm_boot import VmBooter

MAX_MICRO = "2.96"
DOMAIN = {"id": "default", "name": "Default"}
PROJECT = {"id": "p-0001", "name": "demo", "domain": DOMAIN}
USER = {"id": "u-0001", "name": "alice", "domain": DOMAIN}
# (name, vcpus, ram MiB, disk GB, extra_specs)
FLAVORS = [("m1.tiny", 1, 512, 1, {}), ("m1.small", 1, 2048, 20, {})]
FLAVORS += [("m1.medium", 2, 4096, 40, {}), ("m1.large", 4, 8192, 80, {})]
FLAVORS += [("g1.large", 4, 8192, 80, {"pci_passthrough:alias": "a100:1"})]
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
DOCS: tuple[str, ...] = ("/identity", "/identity/v3", "/compute", "/compute/v2.1", "/network")
DOCS += ("/image", *VOLUME_DOCS)
Reply = tuple[int, Any, dict]
UNAUTHORIZED: Reply = (401, {"error": {"code": 401, "message": "Authentication required"}}, {})


def _now(delta: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nova_err(status: int, message: str) -> Reply:
    key = {400: "badRequest", 403: "forbidden", 404: "itemNotFound"}.get(status, "computeFault")
    return status, {key: {"message": message, "code": status}}, {}


def _neutron_err(status: int, kind: str, message: str) -> Reply:
    return status, {"NeutronError": {"type": kind, "message": message, "detail": ""}}, {}


def _version(vid: str, href: str, **extra: Any) -> dict:
    return {"id": vid, "status": "CURRENT", "links": [{"rel": "self", "href": href}], **extra}


class FakeOpenStack(BlockStorage):
    project_id, user_id = str(PROJECT["id"]), str(USER["id"])

    def __init__(self, *, seed: int = 0, build_polls: int = 2, delete_polls: int = 1) -> None:
        self.users = {("alice", "s3cret-password")}  # (username, password)
        self.app_creds = {"ac-0001": "ac-s3cret"}  # id -> secret
        self.flavors = {
            f"f-{i}": {"id": f"f-{i}", "name": n, "vcpus": c, "ram": r, "disk": d, "swap": 0}
            | {"extra_specs": s, "OS-FLV-DISABLED:disabled": False, "rxtx_factor": 1.0}
            for i, (n, c, r, d, s) in enumerate(FLAVORS)
        }
        image = {"id": "img-0001", "name": "ubuntu-22.04", "status": "active", "tags": []}
        image |= {"visibility": "public", "disk_format": "qcow2", "container_format": "bare"}
        self.images = {image["id"]: image}
        common = {"status": "ACTIVE", "admin_state_up": True, "subnets": [], "tags": []}
        self.networks = {
            "net-priv": {"id": "net-priv", "name": "private", "router:external": False} | common,
            "net-pub": {"id": "net-pub", "name": "public", "router:external": True} | common,
        }
        self.quota = {"instances": 10, "cores": 40, "ram": 64 * 1024, "floatingip": 10}
        self.quota |= {"volumes": 10, "gigabytes": 1000}  # Cinder's
        self.build_polls, self.delete_polls = build_polls, delete_polls
        self.error_rate = self.drop_rate = self.latency_s = 0.0
        self.fault_identity = False  # also fault Keystone's token requests
        self.scripted: list[tuple[str, str, str]] = []  # (method, path regex, "5xx"|"drop")
        self.fail_boots = 0  # the next N servers go to ERROR instead of ACTIVE
        self.fail_volumes = 0  # the next N volumes go to error instead of available
        self.leak_ports_on_delete = False  # Nova sometimes leaves a server's ports behind
        self.servers: dict[str, dict] = {}
        self.ports: dict[str, dict] = {}
        self.fips: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}  # not in leftovers(): see volumes_left()
        self.tokens: set[str] = set()
        self.created_names: Counter[str] = Counter()  # every server name ever created
        self.requests: list[tuple[str, str, str]] = []  # (method, path, outcome)
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""
        self.vms = VmBooter(seed)  # ACTIVE servers run their user data's agent

    def start(self) -> FakeOpenStack:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"owner": self}))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self.vms.stop()

    auth_url = property(lambda self: f"{self.url}/identity/v3")

    def chaos(self, error_rate: float = 0.0, drop_rate: float = 0.0, latency_s: float = 0.0):
        self.error_rate, self.drop_rate, self.latency_s = error_rate, drop_rate, latency_s

    @property
    def faults_injected(self) -> int:
        return sum(outcome in ("5xx", "dropped") for _, _, outcome in self.requests)

    def leftovers(self) -> dict[str, list[str]]:
        """What still exists: the tests' leak check."""
        with self._lock:
            tables = {"servers": self.servers, "ports": self.ports, "floatingips": self.fips}
            return {k: sorted(v) for k, v in tables.items()}

    # ---- request routing -----------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body: Any, headers: Any) -> tuple:
        """-> (status, json body or None, extra headers, drop the reply?)"""
        with self._lock:
            is_doc = path.rstrip("/") in DOCS
            identity = path.startswith("/identity")
            faulty = not is_doc and (self.fault_identity or not identity)
            fault = self._fault(method, path) if faulty else None
            if fault == "5xx":
                self.requests.append((method, path, "5xx"))
                return (*_nova_err(self._rng.choice([500, 502, 503]), "injected"), False)
            # Version documents are public, as in real clouds; everything else needs a token.
            if not identity and not is_doc and headers.get("X-Auth-Token") not in self.tokens:
                return (*UNAUTHORIZED, False)
            status, out, extra = self._route(method, path, query, body, headers)
            self.requests.append((method, path, "dropped" if fault else str(status)))
            return status, out, extra, fault == "drop"

    def _fault(self, method: str, path: str) -> str | None:
        for i, (m, pattern, what) in enumerate(self.scripted):  # exact one-shot faults first
            if m == method and re.fullmatch(pattern, path):
                del self.scripted[i]
                return what
        roll = self._rng.random()
        if roll < self.error_rate:
            return "5xx"
        return "drop" if roll < self.error_rate + self.drop_rate else None

    def _route(self, method: str, path: str, q: dict, body: Any, headers: Any) -> Reply:
        for m, pattern, fn in self._routes():
            match = re.fullmatch(pattern, path)
            if match and m == method:
                return fn(q, body, headers, *match.groups())
        return _nova_err(404, f"no route {method} {path}")

    def _routes(self) -> list:
        c, n, g, u = "/compute/v2.1", "/network/v2.0", "/image/v2", self.url
        ks = _version("v3.14", f"{u}/identity/v3/") | {"status": "stable"}
        nova = _version("v2.1", f"{u}{c}/", version=MAX_MICRO, min_version="2.1")
        neutron, glance = _version("v2.0", f"{u}{n}/"), _version("v2.16", f"{u}{g}/")
        return [
            ("GET", r"/identity/?", lambda *a: (300, {"versions": {"values": [ks]}}, {})),
            ("GET", r"/identity/v3/?", lambda *a: (200, {"version": ks}, {})),
            ("POST", r"/identity/v3/auth/tokens", self._token),
            ("GET", r"/compute/?", lambda *a: (200, {"versions": [nova]}, {})),
            ("GET", rf"{c}/?", lambda *a: (200, {"version": nova}, {})),
            ("GET", rf"{c}/flavors(?:/detail)?", self._list("flavors", self.flavors)),
            ("POST", rf"{c}/servers", self._create_server),
            ("GET", rf"{c}/servers(/detail)?", self._list_servers),
            ("GET", rf"{c}/servers/([^/]+)", self._get_server),
            ("DELETE", rf"{c}/servers/([^/]+)", self._delete_server),
            ("GET", r"/network/?", lambda *a: (200, {"versions": [neutron]}, {})),
            ("GET", rf"{n}/networks", self._list("networks", self.networks)),
            ("GET", rf"{n}/networks/([^/]+)", self._get("network", self.networks)),
            ("GET", rf"{n}/ports", self._list("ports", self.ports)),
            ("DELETE", rf"{n}/ports/([^/]+)", self._delete("Port", self.ports)),
            ("GET", rf"{n}/floatingips", self._list("floatingips", self.fips)),
            ("POST", rf"{n}/floatingips", self._create_fip),
            ("PUT", rf"{n}/floatingips/([^/]+)", self._update_fip),
            ("DELETE", rf"{n}/floatingips/([^/]+)", self._delete("FloatingIP", self.fips)),
            ("GET", r"/image/?", lambda *a: (300, {"versions": [glance]}, {})),
            ("GET", rf"{g}/images", self._list("images", self.images)),
            ("GET", rf"{g}/images/([^/]+)", self._get("", self.images)),
            *self._volume_routes(),
        ]

    def _token(self, q: dict, body: Any, headers: Any) -> Reply:
        ident = (body or {}).get("auth", {}).get("identity", {})
        methods = ident.get("methods", [])
        ok = False  # the two methods Stratoflow supports: password, application_credential
        if "password" in methods:
            user = ident.get("password", {}).get("user", {})
            ok = (user.get("name"), user.get("password")) in self.users
        elif "application_credential" in methods:
            ac = ident.get("application_credential", {})
            ok = ac.get("secret") is not None and self.app_creds.get(ac.get("id")) == ac["secret"]
        if not ok:
            msg = "The request you have made requires authentication."
            return 401, {"error": {"code": 401, "title": "Unauthorized", "message": msg}}, {}
        token = uuid.uuid4().hex
        self.tokens.add(token)
        services = [("identity", "/identity"), ("compute", "/compute/v2.1")]
        services += [("network", "/network"), ("image", "/image")]
        # Cinder's classic entry: type volumev3 (an alias of block-storage), project in the URL.
        services += [("volumev3", f"/volume/v3/{PROJECT['id']}")]
        catalog = [
            {"type": kind, "name": kind, "id": kind, "endpoints": [
                {"id": f"{kind}-public", "interface": "public", "region": "RegionOne",
                 "region_id": "RegionOne", "url": f"{self.url}{path}"}]}
            for kind, path in services
        ]  # fmt: skip
        tok = {"methods": methods, "expires_at": _now(3600), "issued_at": _now()}
        tok |= {"user": USER, "project": PROJECT, "catalog": catalog, "audit_ids": [token[:8]]}
        tok["roles"] = [{"id": "r-member", "name": "member"}]
        return 201, {"token": tok}, {"X-Subject-Token": token}

    def _micro(self, headers: Any) -> dict:
        v = (headers.get("OpenStack-API-Version") or "compute 2.1").split()[-1]
        return {"OpenStack-API-Version": f"compute {v}", "X-OpenStack-Nova-API-Version": v}

    def _create_server(self, q: dict, body: Any, headers: Any) -> Reply:
        s = (body or {}).get("server") or {}
        flavor, image = self.flavors.get(s.get("flavorRef")), s.get("imageRef")
        nets = s.get("networks", "auto")
        nets = [{"uuid": "net-priv"}] if nets == "auto" else [] if nets == "none" else nets
        try:
            user_data = base64.b64decode(s.get("user_data") or "", validate=True).decode()
        except ValueError:
            return _nova_err(400, "User data needs to be valid base 64.")
        for bad, message in [
            (not s.get("name"), "Invalid input for field/attribute name."),
            (flavor is None, f"Flavor {s.get('flavorRef')} could not be found."),
            (image not in self.images, f"Can not find requested image {image}"),
            (any(n.get("uuid") not in self.networks for n in nets), "Network could not be found."),
        ]:
            if bad:
                return _nova_err(400, message)
        used = list(self.servers.values())
        need = {"instances": 1, "cores": flavor["vcpus"], "ram": flavor["ram"]}
        have = {"instances": len(used), "cores": sum(x["flavor"]["vcpus"] for x in used)}
        have["ram"] = sum(x["flavor"]["ram"] for x in used)
        for res, n in need.items():
            if have[res] + n > self.quota[res]:
                return _nova_err(403, f"Quota exceeded for {res}: Requested {n}, but already used"
                                 f" {have[res]} of {self.quota[res]} {res}")  # fmt: skip
        sid = str(uuid.uuid4())
        fail, self.fail_boots = self.fail_boots > 0, max(0, self.fail_boots - 1)
        server = {"id": sid, "name": s["name"], "status": "BUILD", "created": _now(), "_polls": 0}
        server |= {"metadata": s.get("metadata") or {}, "user_data": user_data, "addresses": {}}
        server |= {"flavor": {"original_name": flavor["name"], **flavor}, "_fail": fail}
        server["image"] = {"id": image}
        for net in nets:
            pid, ip = str(uuid.uuid4()), self.vms.next_address()
            self.ports[pid] = {"id": pid, "network_id": net["uuid"], "device_id": sid}
            self.ports[pid] |= {"device_owner": "compute:nova", "status": "ACTIVE", "tags": []}
            self.ports[pid]["fixed_ips"] = [{"subnet_id": "sub-1", "ip_address": ip}]
            addr = {"addr": ip, "version": 4, "OS-EXT-IPS:type": "fixed"}
            server["addresses"].setdefault(self.networks[net["uuid"]]["name"], []).append(addr)
        self.servers[sid] = server
        self.created_names[s["name"]] += 1
        return 202, {"server": {"id": sid, "links": [], "adminPass": "x"}}, self._micro(headers)

    def _observe(self, s: dict) -> dict | None:
        """Advance a server one step and render it (None once it has vanished)."""
        s["_polls"] += 1
        if s.get("_deleting") and s["_polls"] > self.delete_polls:
            del self.servers[s["id"]]
            self.vms.destroy(s["id"])
            for pid, port in list(self.ports.items()):
                if port["device_id"] == s["id"] and not self.leak_ports_on_delete:
                    self._drop_port(pid)
            return None
        if s["status"] == "BUILD" and s["_polls"] > self.build_polls:
            s["status"] = "ERROR" if s["_fail"] else "ACTIVE"
            if s["status"] == "ACTIVE":
                addrs = [a["addr"] for net in s["addresses"].values() for a in net]
                self.vms.boot(s["id"], addrs[0] if addrs else "127.0.0.1", s["user_data"])
        out = {k: v for k, v in s.items() if not k.startswith("_") and k != "user_data"}
        out["OS-EXT-SRV-ATTR:user_data"] = base64.b64encode(s["user_data"].encode()).decode()
        out["OS-EXT-STS:task_state"] = "deleting" if s.get("_deleting") else None
        out |= {"OS-EXT-STS:vm_state": s["status"].lower(), "tenant_id": PROJECT["id"]}
        out |= {"updated": _now(), "user_id": USER["id"], "links": [], "tags": []}
        out["os-extended-volumes:volumes_attached"] = self._volumes_attached(s["id"])
        if s["status"] == "ERROR":
            out["fault"] = {"code": 500, "created": s["created"], "message": NO_VALID_HOST}
        return out

    def _list_servers(self, q: dict, body: Any, headers: Any, detail: str | None) -> Reply:
        out = []
        for s in list(self.servers.values()):
            # Nova's name filter is a regular expression, matched anywhere in the name.
            if "name" in q and not re.search(q["name"], s["name"]):
                continue
            r = self._observe(s)
            if r is not None:
                out.append(r if detail else {"id": r["id"], "name": r["name"], "links": []})
        return 200, {"servers": out}, self._micro(headers)

    def _get_server(self, q: dict, body: Any, headers: Any, sid: str) -> Reply:
        r = self._observe(self.servers[sid]) if sid in self.servers else None
        if r is None:
            return _nova_err(404, f"Instance {sid} could not be found.")
        return 200, {"server": r}, self._micro(headers)

    def _delete_server(self, q: dict, body: Any, headers: Any, sid: str) -> Reply:
        if sid not in self.servers:
            return _nova_err(404, f"Instance {sid} could not be found.")
        self.servers[sid].update(_deleting=True, _polls=0)  # Nova: task_state "deleting"
        self._release_volumes(sid)  # Nova detaches the server's volumes as it deletes it
        return 204, None, self._micro(headers)

    # ---- Neutron and Glance (generic list/show with attribute filters) -------------------

    def _list(self, key: str, table: dict):
        def fn(q: dict, body: Any, headers: Any) -> Reply:
            conds = {k: v for k, v in q.items() if k not in ("limit", "marker", "fields")}
            conds.pop("is_public", None)  # flavors: every fake flavor is public
            rows = [r for r in table.values() if all(str(r.get(k)) == v for k, v in conds.items())]
            return 200, {key: rows}, {}

        return fn

    def _get(self, key: str, table: dict):
        def fn(q: dict, body: Any, headers: Any, rid: str) -> Reply:
            if rid not in table:
                return _neutron_err(404, "NotFound", f"{key or 'image'} {rid} could not be found")
            return 200, ({key: table[rid]} if key else table[rid]), {}

        return fn

    def _drop_port(self, pid: str) -> None:
        self.ports.pop(pid, None)
        for fip in self.fips.values():  # Neutron disassociates the port's floating IPs
            if fip["port_id"] == pid:
                fip.update(port_id=None, fixed_ip_address=None, status="DOWN")

    def _delete(self, kind: str, table: dict):
        def fn(q: dict, body: Any, headers: Any, rid: str) -> Reply:
            if rid not in table:
                return _neutron_err(404, f"{kind}NotFound", f"{kind} {rid} could not be found.")
            self._drop_port(rid) if table is self.ports else table.pop(rid)
            return 204, None, {}

        return fn

    def _create_fip(self, q: dict, body: Any, headers: Any) -> Reply:
        f = (body or {}).get("floatingip") or {}
        net = self.networks.get(f.get("floating_network_id"))
        if net is None or not net["router:external"]:
            return _neutron_err(404, "ExternalNetworkNotFound", "External network not found")
        if len(self.fips) >= self.quota["floatingip"]:
            return _neutron_err(409, "OverQuota", "Quota exceeded for resources: ['floatingip'].")
        fid = str(uuid.uuid4())
        address = f"203.0.{113 + len(self.fips) // 250}.{len(self.fips) % 250 + 1}"
        self.fips[fid] = {"id": fid, "floating_network_id": net["id"], "port_id": None}
        self.fips[fid] |= {"floating_ip_address": address, "fixed_ip_address": None, "tags": []}
        self.fips[fid] |= {"description": f.get("description", ""), "status": "DOWN"}
        self.fips[fid] |= {"created_at": _now(), "updated_at": _now()}
        if f.get("port_id"):
            status, out, _ = self._update_fip(q, {"floatingip": {"port_id": f["port_id"]}}, {}, fid)
            if status != 200:
                del self.fips[fid]
                return status, out, {}
        return 201, {"floatingip": self.fips[fid]}, {}

    def _update_fip(self, q: dict, body: Any, headers: Any, fid: str) -> Reply:
        pid = ((body or {}).get("floatingip") or {}).get("port_id")
        if fid not in self.fips:
            return _neutron_err(404, "FloatingIPNotFound", f"Floating IP {fid} not found")
        if pid is not None and pid not in self.ports:
            return _neutron_err(404, "PortNotFound", f"Port {pid} could not be found.")
        ip = self.ports[pid]["fixed_ips"][0]["ip_address"] if pid else None
        self.fips[fid].update(port_id=pid, fixed_ip_address=ip, status="ACTIVE" if pid else "DOWN")
        return 200, {"floatingip": self.fips[fid]}, {}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOpenStack
    protocol_version = "HTTP/1.1"  # keep-alive, like a real API endpoint

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: Nagle + delayed ACK would add 40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:  # quiet: pytest output stays readable
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        fake = self.owner
        if fake.latency_s:
            threading.Event().wait(fake.latency_s)
        status, out, extra, drop = fake.handle(self.command, parts.path, query, body, self.headers)
        if drop:  # the work is done; the reply is lost
            self.close_connection = True
            return
        data = json.dumps(out).encode() if out is not None else b""
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve
