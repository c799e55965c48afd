"""Block volumes (TOSCA BlockStorage) at an EC2 site.

Each volume is an EBS volume in its instance's block device mappings, with
``DeleteOnTermination``: the launch creates and attaches it in the same idempotent
``RunInstances`` call (same ClientToken, same tags), and terminating the instance deletes
it. Teardown still deletes any tagged volume left behind (one detached by hand survives
its instance), and the reaper lists them.
"""

from __future__ import annotations

import re
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.sites.base import HostRequest, ResourceLedger, TaggedResource, parse_time

# The device names EC2 documents for EBS data volumes on Linux instances.
_EC2_DEVICE = re.compile(r"^/dev/(sd|xvd)[f-p]$")
_FREE = [f"/dev/sd{c}" for c in "fghijklmnop"]


def devices(host: HostRequest) -> list[str]:
    """One device name per volume: the template's when EC2 accepts it, else the next free
    one of /dev/sdf../dev/sdp (an OpenStack-style /dev/vdb means nothing to EC2)."""
    wanted = [v.device if v.device and _EC2_DEVICE.match(v.device) else None for v in host.volumes]
    free = [d for d in _FREE if d not in wanted]
    out = []
    for name in wanted:
        if name is None:
            if not free:
                raise SiteError(f"ec2: host {host.node} asks for more than {len(_FREE)} volumes")
            name = free.pop(0)
        out.append(name)
    return out


def block_device_mappings(host: HostRequest) -> list[dict[str, Any]]:
    return [
        {
            "DeviceName": device,
            "Ebs": {"VolumeSize": v.size_gib, "DeleteOnTermination": True, "VolumeType": "gp3"},
        }
        for v, device in zip(host.volumes, devices(host), strict=True)
    ]


def intend(
    ledger: ResourceLedger, deployment_id: str, site: str, host: HostRequest, index: int
) -> list[Any]:
    """Write-ahead records of one instance's volumes, before its launch."""
    return [
        ledger.intend_resource(
            deployment_id,
            site,
            "volume",
            v.node,
            index,
            data={"host": host.node, "device": device, "size_gib": v.size_gib},
        )
        for v, device in zip(host.volumes, devices(host), strict=True)
    ]


def record_attached(
    ledger: ResourceLedger, instance: dict, host: HostRequest, index: int, records: list[Any]
) -> list[dict]:
    """Mark the launched instance's volumes created; their allocation entries."""
    by_device = {
        m["DeviceName"]: m.get("Ebs", {}).get("VolumeId")
        for m in instance.get("BlockDeviceMappings", [])
    }
    entries = []
    for v, device, rec in zip(host.volumes, devices(host), records, strict=True):
        volume_id = by_device.get(device)
        if not volume_id:
            raise SiteError(
                f"ec2: instance {instance['InstanceId']} has no volume at {device} for {v.node}"
            )
        ledger.mark_resource_created(rec.key, volume_id, {"instance": instance["InstanceId"]})
        entries.append(
            {
                "node": v.node,
                "index": index,
                "id": volume_id,
                "device": device,
                "size_gib": v.size_gib,
            }
        )
    return entries


class EC2Volumes:
    """The volume half of EC2Compute's teardown and reaping."""

    name: str
    ec2: Any
    _call: Any

    def _tagged_volumes(self, filters: list[dict]) -> list[dict]:
        filters = [*filters, {"Name": "tag:stratoflow:site", "Values": [self.name]}]
        return self._call("describe volumes", self.ec2.describe_volumes, Filters=filters).get(
            "Volumes", []
        )

    def delete_volumes(self, deployment_id: str, ledger: ResourceLedger) -> None:
        """After its instances are gone: delete any of the deployment's volumes left."""
        records = [
            r for r in ledger.resources(deployment_id) if r.kind == "volume" and r.site == self.name
        ]
        for r in records:
            if r.state != "deleting":
                ledger.mark_resource_deleting(r.key)
        left = self._tagged_volumes(
            [{"Name": "tag:stratoflow:deployment", "Values": [deployment_id]}]
        )
        for volume in left:
            self._delete_volume(volume["VolumeId"])
        for r in records:
            ledger.mark_resource_deleted(r.key)

    def _delete_volume(self, volume_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("delete volume", self.ec2.delete_volume, VolumeId=volume_id)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "InvalidVolume.NotFound":
                raise SiteError(f"ec2: cannot delete volume {volume_id}: {e}") from e

    def tagged_volumes(self) -> list[TaggedResource]:
        """Volumes left without their instance (attached ones go with it), for the reaper."""
        return [
            TaggedResource(
                "volume",
                v["VolumeId"],
                tag_value(v, "stratoflow:key") or "",
                parse_time(v.get("CreateTime")),
            )
            for v in self._tagged_volumes([{"Name": "status", "Values": ["available", "error"]}])
        ]


def tag_value(resource: dict, key: str) -> str | None:
    """The value of an EC2 resource's tag, or None."""
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)
