"""The OpenStack site: one Nova server per requested host, optional floating IPs.

Every server is named with its idempotency key and carries it in its metadata, so a retried
task (or a create whose reply was lost) adopts the server instead of booting a second one.
Provisioning runs in three phases so the Airflow layer can defer while VMs boot:
``provision_start`` (create, returns at BUILD) -> ``ServerActiveTrigger`` or
``wait_active`` -> ``provision_finish`` (floating IPs, addresses). ``provision`` chains them.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.sites.agent.bootstrap import user_data
from stratoflow.sites.agent.jobs import AgentJobs, sandbox_url
from stratoflow.sites.base import (
    Allocation,
    Capacity,
    Compute,
    HostRequest,
    ResourceLedger,
    TaggedResource,
    parse_time,
)
from stratoflow.sites.credentials import credentials
from stratoflow.sites.openstack.api import Caller
from stratoflow.sites.openstack.config import MIB, OpenStackConfig, choose_flavor
from stratoflow.sites.openstack.teardown import TeardownMixin
from stratoflow.sites.openstack.volumes import VolumesMixin
from stratoflow.sites.openstack.waits import ServersActive
from stratoflow.sites.waits import WaitSpec, wait_until_done

log = logging.getLogger(__name__)
LOOKUP_TTL_S = 300.0


def fip_key(server_key: str) -> str:
    return f"{server_key}-fip"


class OpenStackCompute(AgentJobs, TeardownMixin, VolumesMixin, Compute):
    kind = "openstack"

    def __init__(self, name: str, config: dict[str, Any] | None = None, connection: Any = None):
        super().__init__(name, dict(config or {}))
        self.cfg = OpenStackConfig.from_dict(name, self.config)
        self.call = Caller(name, self.cfg.retry_attempts, self.cfg.retry_backoff_s)
        self._conn = connection  # an injected openstack Connection; else built from conn_id
        # Flavors, image and network ids change rarely: remembering them for a few minutes
        # spares the cloud (and a flaky API) several calls per deployment.
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def _cached(self, key: tuple[str, str], load: Any) -> Any:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < LOOKUP_TTL_S:
            return hit[1]
        value = load()
        self._cache[key] = (time.monotonic(), value)
        return value

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = credentials().openstack_connection(self.cfg.conn_id)
        return self._conn

    # ---- lookups --------------------------------------------------------------------

    def flavors(self) -> list[dict[str, Any]]:
        return self._cached(("flavors", ""), self._load_flavors)

    def _load_flavors(self) -> list[dict[str, Any]]:
        allowed = set(self.cfg.flavors)
        out = []
        for f in self.call("list flavors", lambda: list(self.conn.compute.flavors(details=True))):
            if allowed and f.name not in allowed and f.id not in allowed:
                continue
            out.append(
                {
                    "id": f.id,
                    "name": f.name,
                    "vcpus": f.vcpus or 0,
                    "ram": f.ram or 0,
                    "disk": f.disk or 0,
                    "extra_specs": dict(f.extra_specs or {}),
                    "disabled": bool(f.is_disabled),
                }
            )
        return out

    def _find(self, what: str, finder: Any, name_or_id: str) -> str:
        def load() -> str:
            found = self.call(
                f"find {what} {name_or_id!r}", finder, name_or_id, ignore_missing=True
            )
            if found is None:
                raise SiteError(f"openstack: site {self.name!r} has no {what} {name_or_id!r}")
            return found.id

        return self._cached((what, name_or_id), load)

    def find_server(self, key: str) -> Any:
        """The server named ``key`` that carries our metadata; extras (which only a broken
        cloud could make) are deleted so one key never maps to two servers."""

        def lookup() -> list:
            # Nova's name filter is a regex matched anywhere: anchor it, then compare exactly.
            servers = self.conn.compute.servers(details=True, name=f"^{key}$")
            return [
                s
                for s in servers
                if s.name == key and (s.metadata or {}).get("stratoflow_key") == key
            ]

        matches = sorted(self.call(f"look up server {key}", lookup), key=lambda s: s.created_at)
        for extra in matches[1:]:
            log.error(
                "openstack %s: duplicate server %s for %s; deleting", self.name, extra.id, key
            )
            self.call("delete duplicate server", self.conn.compute.delete_server, extra.id)
        return matches[0] if matches else None

    def find_fip(self, key: str) -> Any:
        ips = self.call(
            f"look up floating IP {key}", lambda: list(self.conn.network.ips(description=key))
        )
        return ips[0] if ips else None

    def list_tagged(self) -> list[TaggedResource]:
        """Servers carrying Stratoflow metadata, and floating IPs described by a key."""
        servers = self.call("list servers", lambda: list(self.conn.compute.servers(details=True)))
        ips = self.call("list floating IPs", lambda: list(self.conn.network.ips()))
        return (
            [
                TaggedResource(
                    "server", s.id, s.metadata["stratoflow_key"], parse_time(s.created_at)
                )
                for s in servers
                if (s.metadata or {}).get("stratoflow_key")
            ]
            + [
                TaggedResource("floating_ip", ip.id, ip.description, parse_time(ip.created_at))
                for ip in ips
                if (ip.description or "").startswith("sf-") and ip.description.endswith("-fip")
            ]
            + self.tagged_volumes()
        )

    def capacity(self) -> Capacity:
        # Without cores/memory hints the cloud's quota is the limit.
        return Capacity(self.cfg.cores, self.cfg.memory, quota_decides=True)

    # ---- provisioning ---------------------------------------------------------------

    def provision(
        self, deployment_id: str, hosts: list[HostRequest], ledger: ResourceLedger
    ) -> Allocation:
        alloc = self.provision_start(deployment_id, hosts, ledger)  # cleans up on failure
        try:
            self.wait_active(alloc)
        except Exception as e:
            self.cleanup_attempt(deployment_id, ledger, e)
            raise
        return self.provision_finish(alloc, ledger)  # cleans up on failure

    def provision_start(
        self, deployment_id: str, hosts: list[HostRequest], ledger: ResourceLedger
    ) -> Allocation:
        """Create (or adopt) every server and return without waiting for ACTIVE. On failure
        it deletes what it holds for the deployment here, then raises ``SiteError``."""
        if any(h.public_endpoint for h in hosts) and not self.cfg.public_network:
            raise SiteError(
                f"openstack: site {self.name!r} has no public_network configured, but the"
                " template asks for a public endpoint"
            )
        try:
            # Reads first: a wrong image or a request no flavor fits fails before any create.
            flavors = self.flavors()
            plan = [(h, choose_flavor(self.name, flavors, h)) for h in hosts]
            cores = sum(h.count * f["vcpus"] for h, f in plan)
            mem = sum(h.count * f["ram"] * MIB for h, f in plan)
            self._check_hints(deployment_id, cores, mem, ledger)
            network = (
                self._find("network", self.conn.network.find_network, self.cfg.network)
                if self.cfg.network
                else None
            )
            entries = []
            for h, flavor in plan:
                image = self.cfg.images.get(h.image or "", self.cfg.image)
                image_id = self._find("image", self.conn.image.find_image, image)
                for i in range(h.count):
                    entry = self._ensure_server(
                        deployment_id, h, i, flavor, image_id, network, ledger
                    )
                    if h.volumes:
                        entry["volumes"] = self.ensure_volumes(deployment_id, h, i, ledger)
                    entries.append(entry)
        except Exception as e:  # API errors are SiteErrors already (see Caller)
            self.cleanup_attempt(deployment_id, ledger, e)
            raise
        return Allocation(
            site=self.name,
            kind=self.kind,
            deployment_id=deployment_id,
            workdir=f"{self.cfg.workdir}/{deployment_id}",
            cores=cores,
            hosts=entries,
            data={
                "conn_id": self.cfg.conn_id,
                "mem_bytes": mem,
                "server_ids": [e["server_id"] for e in entries],
            },
        )

    def _check_hints(
        self, deployment_id: str, cores: int, mem: int, ledger: ResourceLedger
    ) -> None:
        cap_cores, cap_mem = self.cfg.cores, self.cfg.memory
        if cap_cores is None and cap_mem is None:
            return
        cap_cores, cap_mem = cap_cores or 1 << 30, cap_mem or 1 << 62
        if cores > cap_cores or mem > cap_mem:
            raise SiteError(
                f"openstack: deployment {deployment_id} needs {cores} cores and {mem // MIB}"
                f" MiB but site {self.name!r} allows {cap_cores} cores and {cap_mem // MIB} MiB"
            )
        if not ledger.reserve(self.name, deployment_id, cores, mem, cap_cores, cap_mem):
            raise SiteError(
                f"openstack: site {self.name!r} quota hint is held by other deployments"
                f" (needs {cores} cores, {mem // MIB} MiB); retry later"
            )

    def _ensure_server(
        self,
        dep: str,
        h: HostRequest,
        i: int,
        flavor: dict,
        image_id: str,
        net: str | None,
        ledger: ResourceLedger,
    ) -> dict[str, Any]:
        # Write-ahead: the record (and its key) exists before the create call.
        rec = ledger.intend_resource(dep, self.name, "server", h.node, i)
        if rec.site != self.name:
            raise SiteError(
                f"openstack: resource {rec.key} is still held at site {rec.site!r}; it must be"
                " torn down (or reaped) before this deployment can move here"
            )
        key = rec.key

        agent = {
            "token": credentials().agent_token(self.cfg.conn_id, dep),
            "listen": f"0.0.0.0:{self.cfg.agent_port}",
            "cores": flavor["vcpus"],
            "memory": flavor["ram"] * MIB,
        }

        def create() -> Any:
            return self.conn.compute.create_server(
                name=key,
                flavor_id=flavor["id"],
                image_id=image_id,
                networks=[{"uuid": net}] if net else "auto",
                metadata={"stratoflow_deployment": dep, "stratoflow_key": key},
                user_data=base64.b64encode(
                    user_data(dep, key, h.node, self.cfg.workdir, agent).encode()
                ).decode(),
            )

        server, created = self.call.create_or_adopt(
            f"server {key}", lambda: self.find_server(key), create
        )
        log.info(
            "openstack %s: %s server %s (%s) as %s",
            self.name,
            "created" if created else "adopted",
            key,
            flavor["name"],
            server.id,
        )
        data = {"flavor": flavor["name"], "node": h.node}
        ledger.mark_resource_created(key, server.id, data)
        return {
            "node": h.node,
            "index": i,
            "name": key,
            "id": server.id,
            "server_id": server.id,
            "flavor": flavor["name"],
            "public_endpoint": h.public_endpoint,
            "address": None,
            "public_address": None,
        }

    def boot_wait(self, alloc: Allocation) -> WaitSpec | None:
        return self._servers_active(alloc)

    def _servers_active(self, alloc: Allocation) -> WaitSpec:
        return WaitSpec(
            "openstack.servers_active",
            {"conn_id": self.cfg.conn_id, "server_ids": [h["server_id"] for h in alloc.hosts]},
            poll_interval_s=max(self.cfg.poll_interval_s, 0.1),
            timeout_s=self.boot_seconds(self.cfg.boot_timeout_s),
        )

    def wait_active(self, alloc: Allocation) -> None:
        """Block until every server is ACTIVE (the triggerer's check, in this thread);
        ERROR or timeout raises."""
        spec = self._servers_active(alloc)
        ids = spec.kwargs["server_ids"]
        event = wait_until_done(spec, ServersActive(self.cfg.conn_id, ids, self.conn))
        names = {h["server_id"]: h["name"] for h in alloc.hosts}
        if event["status"] == "timeout":
            raise SiteError(
                f"openstack: servers {sorted(names[i] for i in event['pending'])} at site"
                f" {self.name!r} not ACTIVE after {spec.timeout_s or 0:.0f} s"
            )
        if event["status"] != "active":
            key = names.get(event["server_id"], event["server_id"])
            how = "(ERROR)" if event.get("server_status") == "ERROR" else "(API)"
            raise SiteError(
                f"openstack: server {key} at site {self.name!r} failed to boot {how}:"
                f" {event['message']}"
            )

    def provision_finish(self, alloc: Allocation, ledger: ResourceLedger) -> Allocation:
        """After ACTIVE: floating IPs for public endpoints, addresses into the allocation."""
        try:
            for h in alloc.hosts:
                s = self.call("get server", self.conn.compute.get_server, h["server_id"])
                fixed = [
                    a["addr"]
                    for net in (s.addresses or {}).values()
                    for a in net
                    if a.get("OS-EXT-IPS:type", "fixed") == "fixed"
                ]
                h["address"] = fixed[0] if fixed else None
                if h["public_endpoint"]:
                    h["public_address"], h["floating_ip_id"] = self._ensure_fip(alloc, h, ledger)
            self.attach_volumes(alloc.hosts)
            # Jobs run on the first host's agent; the others are the template's (services,
            # workers it manages itself). Ready means that agent answers.
            first = alloc.hosts[0]["address"] if alloc.hosts else None
            if not first:
                raise SiteError(
                    f"openstack: deployment {alloc.deployment_id} has no addressed host"
                )
            alloc.workdir = sandbox_url(self.name, first, self.cfg.agent_port, alloc.deployment_id)
            self.wait_for_agent(alloc, self.boot_seconds(self.cfg.boot_timeout_s))
        except Exception as e:
            self.cleanup_attempt(alloc.deployment_id, ledger, e)
            raise
        return alloc

    def _ensure_fip(self, alloc: Allocation, h: dict, ledger: ResourceLedger) -> tuple[str, str]:
        dep, key = alloc.deployment_id, fip_key(h["name"])
        ledger.intend_resource(
            dep, self.name, "floating_ip", h["node"], h["index"], idempotency_key=key
        )
        pub = self._find("network", self.conn.network.find_network, self.cfg.public_network)

        def create() -> Any:
            return self.conn.network.create_ip(floating_network_id=pub, description=key)

        fip, _ = self.call.create_or_adopt(f"floating IP {key}", lambda: self.find_fip(key), create)
        ledger.mark_resource_created(key, fip.id, {"server_id": h["server_id"]})
        ports = self.call(
            "list ports", lambda: list(self.conn.network.ports(device_id=h["server_id"]))
        )
        if not ports:
            raise SiteError(f"openstack: server {h['name']} has no port for a floating IP")
        if fip.port_id != ports[0].id:  # PUT is idempotent: safe to repeat after a lost reply
            fip = self.call(
                "associate floating IP", self.conn.network.update_ip, fip, port_id=ports[0].id
            )
        ledger.mark_resource_created(key, fip.id, {"address": fip.floating_ip_address})
        return fip.floating_ip_address, fip.id
