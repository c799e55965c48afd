"""Teardown of an OpenStack site's resources, shared by ``teardown`` and by the cleanup of
a failed provision (Airflow never runs the teardown of a setup task that failed)."""

from __future__ import annotations

import logging
import time
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.sites.base import Allocation, ResourceLedger, TaggedResource
from stratoflow.sites.openstack.api import is_not_found

log = logging.getLogger(__name__)
KINDS = ("server", "floating_ip")


class TeardownMixin:
    """Needs ``name``, ``cfg``, ``call``, ``conn``, ``find_server``, ``find_fip``,
    ``delete_volumes`` and ``delete_volume``."""

    name: str
    cfg: Any
    call: Any
    conn: Any
    find_server: Any
    find_fip: Any
    delete_volumes: Any
    delete_volume: Any

    def teardown(
        self, deployment_id: str, ledger: ResourceLedger, alloc: Allocation | None = None
    ) -> None:
        records = [
            r for r in ledger.resources(deployment_id) if r.site == self.name and r.kind in KINDS
        ]
        for r in records:
            if r.state != "deleting":
                ledger.mark_resource_deleting(r.key)
        errors: list[str] = []
        # Floating IPs first: a server cannot go while something still points at its port.
        for r in (r for r in records if r.kind == "floating_ip"):
            try:
                ids = {r.external_id} - {None}
                found = self.find_fip(r.key)
                ids |= {found.id} if found is not None else set()
                for fid in ids:
                    self.call(
                        "delete floating IP", self.conn.network.delete_ip, fid, ignore_missing=True
                    )
                ledger.mark_resource_deleted(r.key)
            except SiteError as e:
                errors.append(self._failed(ledger, r.key, e))
        servers: dict[str, tuple[Any, set[str]]] = {}  # server id -> (record, port ids)
        for r in (r for r in records if r.kind == "server"):
            try:
                found = self.find_server(r.key)
                for sid in {i for i in (r.external_id, found.id if found else None) if i}:
                    ports = self.call(
                        "list ports", lambda s=sid: list(self.conn.network.ports(device_id=s))
                    )
                    servers[sid] = (r, {p.id for p in ports})
                    self.call(
                        "delete server", self.conn.compute.delete_server, sid, ignore_missing=True
                    )
                if not ({r.external_id} | {found.id if found else None}) - {None}:
                    ledger.mark_resource_deleted(r.key)  # never created: nothing to wait for
            except SiteError as e:
                errors.append(self._failed(ledger, r.key, e))
        errors += self._await_gone(servers, ledger)
        if not errors:  # Nova detaches volumes when their server goes; then they can go
            errors += self.delete_volumes(deployment_id, ledger)
        ledger.release(self.name, deployment_id)
        if errors:
            raise SiteError(
                f"openstack: teardown of {deployment_id} at site {self.name!r}"
                f" incomplete: {'; '.join(errors)}"
            )

    def _await_gone(
        self, servers: dict[str, tuple[Any, set[str]]], ledger: ResourceLedger
    ) -> list[str]:
        errors: list[str] = []
        deadline = time.monotonic() + self.cfg.delete_timeout_s
        pending = dict(servers)
        while pending:
            for sid, (rec, ports) in list(pending.items()):
                try:
                    self.call("get server", self.conn.compute.get_server, sid)
                except SiteError as e:
                    if not is_not_found(e.__cause__ or e):
                        errors.append(self._failed(ledger, rec.key, e))
                        del pending[sid]
                        continue
                    try:  # Nova deletes the ports it made, but not always: finish the job
                        for pid in ports:
                            self.call(
                                "delete port",
                                self.conn.network.delete_port,
                                pid,
                                ignore_missing=True,
                            )
                        del pending[sid]
                        if all(s not in pending for s, (r, _) in servers.items() if r is rec):
                            ledger.mark_resource_deleted(rec.key)
                    except SiteError as pe:
                        errors.append(self._failed(ledger, rec.key, pe))
                        del pending[sid]
            if pending and time.monotonic() > deadline:
                for sid, (rec, _) in pending.items():
                    errors.append(self._failed(ledger, rec.key, f"server {sid} still exists"))
                break
            if pending:
                time.sleep(self.cfg.poll_interval_s)
        return errors

    def delete_tagged(self, resource: TaggedResource) -> None:
        """Delete a server (waiting until it is gone, then its leftover ports) or a
        floating IP. What is gone already is not an error."""
        rid = resource.external_id
        if resource.kind == "volume":
            self.delete_volume(rid)
            return
        if resource.kind == "floating_ip":
            self.call("delete floating IP", self.conn.network.delete_ip, rid, ignore_missing=True)
            return
        if resource.kind != "server":
            raise SiteError(f"openstack: cannot delete a {resource.kind}")
        ports = self.call("list ports", lambda: list(self.conn.network.ports(device_id=rid)))
        self.call("delete server", self.conn.compute.delete_server, rid, ignore_missing=True)
        deadline = time.monotonic() + self.cfg.delete_timeout_s
        while self.call("get server", lambda: self.conn.compute.find_server(rid)) is not None:
            if time.monotonic() > deadline:
                raise SiteError(f"openstack: server {rid} still exists after deletion")
            time.sleep(self.cfg.poll_interval_s)
        for port in ports:
            self.call("delete port", self.conn.network.delete_port, port.id, ignore_missing=True)

    def _failed(self, ledger: ResourceLedger, key: str, e: BaseException | str) -> str:
        ledger.mark_resource_failed(key, str(e))
        return f"{key}: {e}"
