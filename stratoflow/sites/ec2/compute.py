"""EC2 compute: instances for bursting to a commercial cloud, never created twice.

Idempotency, in three layers:

1. the write-ahead record (``ledger.intend_resource``) exists before any EC2 call, and
   carries a ``client_token`` chosen once per record generation;
2. ``RunInstances(ClientToken=...)``: EC2's own idempotency. A repeated call (a retry after
   a lost response) returns the original reservation instead of launching another;
3. before every create the instance is looked up by its ``stratoflow:key`` tag, so a
   retried task adopts what an earlier try launched even when its reply was lost.

Waiting for ``running`` is a bounded poll here. In production this wait belongs in a
deferrable trigger (a VM boot takes minutes and must not hold a worker slot); the poll
keeps the Compute interface synchronous until the provision operator defers.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.retry import create_or_adopt, retrying
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
from stratoflow.sites.ec2 import volumes
from stratoflow.sites.ec2.config import EC2Config, InstanceType
from stratoflow.sites.ec2.volumes import EC2Volumes, tag_value

log = logging.getLogger(__name__)

LIVE = ["pending", "running", "stopping", "stopped"]
QUOTA = {
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
}
TRANSIENT = {
    "RequestLimitExceeded",
    "Throttling",
    "Unavailable",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "InvalidInstanceID.NotFound",  # eventual consistency right after a launch
}


def _code(e: BaseException) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def _transient(e: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(e, HTTPClientError | ConnectionError):
        return True  # includes a reply lost after the request was done
    if isinstance(e, ClientError):
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return status >= 500 or _code(e) in TRANSIENT
    return False


class EC2Compute(AgentJobs, EC2Volumes, Compute):
    kind = "ec2"

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        super().__init__(name, dict(config or {}))
        self.cfg = EC2Config.from_dict(name, self.config)
        self._ec2: Any = None

    def capacity(self) -> Capacity:
        # The account's vCPU limits answer at launch time.
        return Capacity(None, None, quota_decides=True)

    @property
    def ec2(self) -> Any:
        if self._ec2 is None:
            self._ec2 = credentials().aws_client(
                self.cfg.conn_id,
                "ec2",
                region_name=self.cfg.region,
                endpoint_url=self.cfg.endpoint_url,
                max_attempts=self.cfg.max_attempts,
            )
        return self._ec2

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """An idempotent call (describe, terminate), retried on transient faults."""
        return retrying(
            lambda: fn(**kwargs),
            attempts=self.cfg.retry_attempts,
            backoff_s=self.cfg.retry_backoff_s,
            transient=_transient,
            on_retry=lambda e, _: log.info(
                "ec2: %s failed (%s); retrying", what, _code(e) or type(e).__name__
            ),
        )

    def _find(self, filters: list[dict], states: list[str] = LIVE) -> list[dict]:
        filters = [*filters, {"Name": "instance-state-name", "Values": states}]
        out = []
        pages = self._call("describe", self.ec2.describe_instances, Filters=filters)
        for reservation in pages.get("Reservations", []):
            out += reservation.get("Instances", [])
        return sorted(out, key=lambda i: (str(i.get("LaunchTime", "")), i["InstanceId"]))

    def _by_key(self, key: str) -> list[dict]:
        return self._find(
            [
                {"Name": "tag:stratoflow:key", "Values": [key]},
                {"Name": "tag:stratoflow:site", "Values": [self.name]},
            ]
        )

    # ---- provisioning -------------------------------------------------------------

    def provision(
        self, deployment_id: str, hosts: list[HostRequest], ledger: ResourceLedger
    ) -> Allocation:
        # Choose every type first: a host that can never fit fails before anything exists.
        plan = [(h, i, self.cfg.pick(self.name, h)) for h in hosts for i in range(h.count)]
        records = []
        volume_records: dict[tuple[str, int], list] = {}
        for h, i, itype in plan:
            token = f"{deployment_id[:24]}-{h.node[:16]}-{i}-{secrets.token_hex(8)}"[-64:]
            rec = ledger.intend_resource(
                deployment_id, self.name, "instance", h.node, i, data={"client_token": token}
            )
            if rec.site != self.name and rec.state != "deleted":
                raise SiteError(
                    f"ec2: resource {rec.key} of deployment {deployment_id} is still held at"
                    f" site {rec.site!r} ({rec.state}); tear it down there first"
                )
            if rec.state in ("created", "failed") and not self._by_key(rec.key):
                # Its instance is gone (terminated outside Stratoflow). A fresh generation
                # gets a fresh ClientToken: EC2 would answer the old one with the dead
                # instance instead of launching.
                ledger.mark_resource_deleted(rec.key)
                rec = ledger.intend_resource(
                    deployment_id, self.name, "instance", h.node, i, data={"client_token": token}
                )
            records.append((h, i, itype, rec))
            volume_records[(h.node, i)] = volumes.intend(ledger, deployment_id, self.name, h, i)
        try:
            instances = [self._ensure(deployment_id, h, i, t, rec) for h, i, t, rec in records]
            running = self._wait_running([x["InstanceId"] for x in instances])
            for (h, _i, t, rec), inst in zip(records, instances, strict=True):
                ledger.mark_resource_created(
                    rec.key, inst["InstanceId"], {"instance_type": t.name, "node": h.node}
                )
            ids = [x["InstanceId"] for x in instances]
            alloc = self._allocation(deployment_id, records, [running[i] for i in ids])
            for (h, i, _t, _rec), host in zip(records, alloc.hosts, strict=True):
                if h.volumes:
                    host["volumes"] = volumes.record_attached(
                        ledger, running[host["instance_id"]], h, i, volume_records[(h.node, i)]
                    )
            # Jobs run on the first host's agent: ready means it answers.
            self.wait_for_agent(alloc, self.boot_seconds(self.cfg.boot_timeout_s))
        except Exception as e:
            reason = self._reason(e)
            cleanup = self.cleanup_attempt(deployment_id, ledger, e)
            raise SiteError(
                f"ec2: provisioning deployment {deployment_id} at site {self.name!r} failed:"
                f" {reason}{cleanup}"
            ) from e
        return alloc

    def _reason(self, e: BaseException) -> str:
        code = _code(e)
        if code in QUOTA:
            return f"quota or capacity exceeded ({code}: {e})"
        return str(e)

    def _ensure(
        self, deployment_id: str, host: HostRequest, index: int, itype: InstanceType, rec: Any
    ) -> dict:
        """The record's instance: adopted if it exists, else launched (idempotently)."""
        key = rec.key
        token = (rec.data or {}).get("client_token") or key[:64]

        def find() -> dict | None:
            found = self._by_key(key)
            if not found:
                return None
            if len(found) > 1:  # never expected; keep the oldest, remove the rest
                extra = [x["InstanceId"] for x in found[1:]]
                log.warning("ec2: %s has duplicates %s; terminating them", key, extra)
                self._call("terminate", self.ec2.terminate_instances, InstanceIds=extra)
            log.info("ec2: adopting %s for %s", found[0]["InstanceId"], key)
            return found[0]

        def launch() -> dict:
            args = self._run_args(deployment_id, host, itype, key, token)
            return self.ec2.run_instances(**args)["Instances"][0]

        # A launch whose reply was lost is adopted by the next look-up; the same
        # ClientToken makes a re-sent launch harmless too.
        instance, _created = create_or_adopt(
            find,
            launch,
            attempts=self.cfg.retry_attempts,
            backoff_s=self.cfg.retry_backoff_s,
            transient=_transient,
            on_retry=lambda e, _: log.info("ec2: launching %s failed (%s); retrying", key, e),
        )
        return instance

    def _run_args(
        self, deployment_id: str, host: HostRequest, itype: InstanceType, key: str, token: str
    ) -> dict:
        tags = [
            {"Key": "Name", "Value": key},
            {"Key": "stratoflow:deployment", "Value": deployment_id},
            {"Key": "stratoflow:key", "Value": key},
            {"Key": "stratoflow:site", "Value": self.name},
            {"Key": "stratoflow:node", "Value": host.node},
        ]
        args: dict[str, Any] = {
            "ImageId": self.cfg.image_id,
            "InstanceType": itype.name,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": token,
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if self.cfg.spot:
            spot: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if self.cfg.max_price:
                spot["MaxPrice"] = self.cfg.max_price
            args["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        if host.volumes:
            args["BlockDeviceMappings"] = volumes.block_device_mappings(host)
        if self.cfg.subnet_id:
            args["SubnetId"] = self.cfg.subnet_id
        if self.cfg.security_group_ids:
            args["SecurityGroupIds"] = list(self.cfg.security_group_ids)
        if self.cfg.key_name:
            args["KeyName"] = self.cfg.key_name
        agent = {
            "token": credentials().agent_token(self.cfg.conn_id, deployment_id),
            "listen": f"0.0.0.0:{self.cfg.agent_port}",
            "cores": itype.cpus,
            "memory": itype.mem,
        }
        # boto3 base64-encodes UserData for RunInstances.
        args["UserData"] = user_data(deployment_id, key, host.node, self.cfg.workdir, agent)
        return args

    def _wait_running(self, ids: list[str]) -> dict[str, dict]:
        timeout_s = self.boot_seconds(self.cfg.boot_timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._find(
                [{"Name": "instance-id", "Values": ids}], LIVE + ["shutting-down", "terminated"]
            )
            by_id = {x["InstanceId"]: x for x in found}
            dead = [
                i for i, x in by_id.items() if x["State"]["Name"] in ("shutting-down", "terminated")
            ]
            if dead:
                reason = by_id[dead[0]].get("StateReason", {}).get("Message", "no reason given")
                raise SiteError(f"instance {dead[0]} terminated while booting ({reason})")
            if len(by_id) == len(ids) and all(
                x["State"]["Name"] == "running" for x in by_id.values()
            ):
                return by_id
            if time.monotonic() > deadline:
                states = {i: by_id.get(i, {}).get("State", {}).get("Name", "unknown") for i in ids}
                raise SiteError(f"instances not running after {timeout_s:.0f} s: {states}")
            time.sleep(self.cfg.poll_interval_s)

    def _allocation(self, deployment_id: str, records: list, instances: list[dict]) -> Allocation:
        hosts = []
        for (h, i, t, _rec), inst in zip(records, instances, strict=True):
            hosts.append(
                {
                    "node": h.node,
                    "index": i,
                    "id": inst["InstanceId"],
                    "instance_id": inst["InstanceId"],
                    "instance_type": t.name,
                    "address": inst.get("PrivateIpAddress"),
                    "public_address": inst.get("PublicIpAddress"),
                    "spot": inst.get("InstanceLifecycle") == "spot",
                }
            )
        return Allocation(
            site=self.name,
            kind=self.kind,
            deployment_id=deployment_id,
            workdir=sandbox_url(
                self.name, hosts[0]["address"] or "", self.cfg.agent_port, deployment_id
            ),
            cores=sum(t.cpus for _, _, t, _ in records),
            hosts=hosts,
            data={"instance_ids": [x["instance_id"] for x in hosts], "spot": self.cfg.spot},
        )

    # ---- teardown -----------------------------------------------------------------

    def remove_attempt(self, deployment_id: str, ledger: ResourceLedger) -> None:
        # A failed attempt's instances need not be waited for long: the reaper finishes.
        self.teardown(deployment_id, ledger, timeout_s=min(self.cfg.terminate_timeout_s, 60))

    def teardown(
        self,
        deployment_id: str,
        ledger: ResourceLedger,
        alloc: Allocation | None = None,
        timeout_s: float | None = None,
    ) -> None:
        records = [
            r
            for r in ledger.resources(deployment_id)
            if r.kind == "instance" and r.site == self.name
        ]
        ids = {r.external_id for r in records if r.external_id}
        ids |= {h["instance_id"] for h in (alloc.hosts if alloc else []) if h.get("instance_id")}
        # Instances whose launch reply was lost are known only by their tags.
        tagged = self._find(
            [
                {"Name": "tag:stratoflow:deployment", "Values": [deployment_id]},
                {"Name": "tag:stratoflow:site", "Values": [self.name]},
            ],
            LIVE + ["shutting-down"],
        )
        ids |= {x["InstanceId"] for x in tagged}
        for r in records:
            if r.state != "deleting":
                ledger.mark_resource_deleting(r.key)
        if ids:
            self._terminate(sorted(ids), timeout_s or self.cfg.terminate_timeout_s)
        for r in records:
            ledger.mark_resource_deleted(r.key)
        self.delete_volumes(deployment_id, ledger)

    def _terminate(self, ids: list[str], timeout_s: float) -> None:
        alive = self._find([{"Name": "instance-id", "Values": ids}], LIVE + ["shutting-down"])
        if alive:
            self._call(
                "terminate",
                self.ec2.terminate_instances,
                InstanceIds=[x["InstanceId"] for x in alive],
            )
        deadline = time.monotonic() + timeout_s
        while alive:
            alive = self._find([{"Name": "instance-id", "Values": ids}], LIVE + ["shutting-down"])
            if not alive:
                return
            if time.monotonic() > deadline:
                raise SiteError(
                    f"ec2: instances {[x['InstanceId'] for x in alive]} at site {self.name!r}"
                    f" not terminated after {timeout_s:.0f} s"
                )
            time.sleep(self.cfg.poll_interval_s)

    def list_tagged(self) -> list[TaggedResource]:
        """Live instances Stratoflow launched at this site, for the orphan reaper."""
        return [
            TaggedResource(
                "instance",
                x["InstanceId"],
                tag_value(x, "stratoflow:key") or "",
                parse_time(x.get("LaunchTime")),
            )
            for x in self._find(
                [{"Name": "tag:stratoflow:site", "Values": [self.name]}], LIVE + ["shutting-down"]
            )
        ] + self.tagged_volumes()

    def delete_tagged(self, resource: TaggedResource) -> None:
        if resource.kind == "volume":
            self._delete_volume(resource.external_id)
            return
        if resource.kind != "instance":
            raise SiteError(f"ec2: cannot delete a {resource.kind}")
        self._terminate([resource.external_id], self.cfg.terminate_timeout_s)
