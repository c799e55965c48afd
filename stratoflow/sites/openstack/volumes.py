"""Block volumes (TOSCA BlockStorage) at an OpenStack site: Cinder volumes, attached
through Nova once their server is ACTIVE.

Like servers, a volume is named with its idempotency key and carries it in its metadata,
so a retried task adopts it instead of creating a second one. Volumes outlive their
server (Nova only detaches them), so teardown deletes them after the servers are gone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.sites.base import HostRequest, ResourceLedger, TaggedResource, parse_time
from stratoflow.sites.openstack.api import is_not_found

log = logging.getLogger(__name__)


class VolumesMixin:
    """Needs ``name``, ``cfg``, ``call``, ``conn`` and ``boot_seconds`` (see
    OpenStackCompute)."""

    name: str
    cfg: Any
    call: Any
    conn: Any
    boot_seconds: Any

    def find_volume(self, key: str) -> Any:
        def lookup() -> list:
            volumes = self.conn.block_storage.volumes(details=True, name=key)
            return [
                v
                for v in volumes
                if v.name == key and (v.metadata or {}).get("stratoflow_key") == key
            ]

        matches = sorted(self.call(f"look up volume {key}", lookup), key=lambda v: v.created_at)
        return matches[0] if matches else None

    def ensure_volumes(
        self, deployment_id: str, host: HostRequest, index: int, ledger: ResourceLedger
    ) -> list[dict[str, Any]]:
        """Create (or adopt) one instance's volumes; their allocation entries."""
        entries = []
        for v in host.volumes:
            data = {"host": host.node, "device": v.device, "size_gib": v.size_gib}
            key = ledger.intend_resource(
                deployment_id, self.name, "volume", v.node, index, data=data
            ).key

            def create(key: str = key, size: int = v.size_gib) -> Any:
                return self.conn.block_storage.create_volume(
                    size=size,
                    name=key,
                    metadata={"stratoflow_deployment": deployment_id, "stratoflow_key": key},
                )

            volume, created = self.call.create_or_adopt(
                f"volume {key}", lambda key=key: self.find_volume(key), create
            )
            log.info(
                "openstack %s: %s volume %s (%d GiB) as %s",
                self.name,
                "created" if created else "adopted",
                key,
                v.size_gib,
                volume.id,
            )
            ledger.mark_resource_created(key, volume.id, data)
            entries.append(
                {
                    "node": v.node,
                    "index": index,
                    "id": volume.id,
                    "device": v.device,
                    "size_gib": v.size_gib,
                }
            )
        return entries

    def attach_volumes(self, hosts: list[dict[str, Any]]) -> None:
        """Attach each ACTIVE server's volumes (adopting attachments a retry finds)."""
        for h in hosts:
            for v in h.get("volumes") or []:
                volume = self._wait_volume(v["id"], ("available", "in-use"))
                mine = [a for a in volume.attachments or [] if a.get("server_id") == h["server_id"]]
                if not mine:
                    extra = {"device": v["device"]} if v.get("device") else {}
                    self.call(
                        "attach volume",
                        self.conn.compute.create_volume_attachment,
                        h["server_id"],
                        volume=v["id"],
                        **extra,
                    )
                    volume = self._wait_volume(v["id"], ("in-use",))
                    mine = [
                        a for a in volume.attachments or [] if a.get("server_id") == h["server_id"]
                    ]
                if mine and mine[0].get("device"):
                    v["device"] = mine[0]["device"]

    def _wait_volume(self, volume_id: str, wanted: tuple[str, ...]) -> Any:
        timeout_s = self.boot_seconds(self.cfg.boot_timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            volume = self.call("get volume", self.conn.block_storage.get_volume, volume_id)
            if volume.status in wanted:
                return volume
            if volume.status in ("error", "error_deleting"):
                raise SiteError(f"openstack: volume {volume_id} is in status {volume.status}")
            if time.monotonic() > deadline:
                raise SiteError(
                    f"openstack: volume {volume_id} still {volume.status} after"
                    f" {timeout_s:.0f} s (wanted {' or '.join(wanted)})"
                )
            time.sleep(self.cfg.poll_interval_s)

    def delete_volumes(self, deployment_id: str, ledger: ResourceLedger) -> list[str]:
        """After the deployment's servers are gone (Nova detached the volumes): delete
        its volumes and wait until they are. Returns one error per volume left."""
        errors = []
        for r in ledger.resources(deployment_id):
            if r.kind != "volume" or r.site != self.name:
                continue
            if r.state != "deleting":
                ledger.mark_resource_deleting(r.key)
            try:
                found = self.find_volume(r.key)
                for vid in {i for i in (r.external_id, found.id if found else None) if i}:
                    self.delete_volume(vid)
                ledger.mark_resource_deleted(r.key)
            except SiteError as e:
                ledger.mark_resource_failed(r.key, str(e))
                errors.append(f"{r.key}: {e}")
        return errors

    def delete_volume(self, volume_id: str) -> None:
        """Delete one volume once detached, and wait until it is gone; gone is not an error."""
        deadline = time.monotonic() + self.cfg.delete_timeout_s
        asked = False
        while True:
            try:
                volume = self.call("get volume", self.conn.block_storage.get_volume, volume_id)
            except SiteError as e:
                if is_not_found(e.__cause__ or e):
                    return
                raise
            if volume.status in ("available", "error") and not asked:
                # Cinder refuses a second delete of a volume already deleting: ask once.
                self.call("delete volume", self.conn.block_storage.delete_volume, volume_id)
                asked = True
            if time.monotonic() > deadline:
                raise SiteError(
                    f"openstack: volume {volume_id} still {volume.status} after"
                    f" {self.cfg.delete_timeout_s:.0f} s"
                )
            time.sleep(self.cfg.poll_interval_s)

    def tagged_volumes(self) -> list[TaggedResource]:
        volumes = self.call(
            "list volumes", lambda: list(self.conn.block_storage.volumes(details=True))
        )
        return [
            TaggedResource("volume", v.id, v.metadata["stratoflow_key"], parse_time(v.created_at))
            for v in volumes
            if (v.metadata or {}).get("stratoflow_key")
        ]
