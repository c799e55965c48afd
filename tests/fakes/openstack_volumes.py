"""Block storage for the fake OpenStack: Cinder v3 volumes and Nova's os-volume_attachments.

A mixin of ``FakeOpenStack`` (tests/fakes/openstack_server.py), kept apart so that file stays
readable. Cinder is served under ``/volume/v3/{project_id}`` (the catalog's ``volumev3``
endpoint; since 3.67 the project id may be left out, so that form is routed too). Volumes
advance by observation, like servers: ``creating`` becomes ``available`` (``error`` for the
next ``fail_volumes``) once rendered more than ``build_polls`` times; ``attaching``,
``detaching`` and ``deleting`` settle after ``delete_polls``. Errors carry the bodies and
messages Cinder and Nova send, so clients are exercised against what a real cloud says.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

CINDER_MAX_MICRO = "3.71"
VOLUME_DOCS = ("/volume", "/volume/v3")  # public version documents
ZONE = "nova"
DEVICES = [f"/dev/vd{c}" for c in "bcdefghijklmnopqrstuvwxyz"]  # vda is the root disk
DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
NOT_DELETABLE = (
    "Invalid volume: Volume status must be available or error or error_restoring or"
    " error_extending or error_managing and must not be migrating, attached, belong to a"
    " group, have snapshots, awaiting a transfer, or be disassociated from snapshots after"
    " volume transfer."
)
NOT_DETACHABLE = (
    "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and"
    " attach_status must be 'attached' to detach."
)
Reply = tuple[int, Any, dict]


def _stamp() -> str:
    # Cinder's own format: naive UTC with microseconds (ISO 8601, no zone designator).
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _fault(status: int, message: str) -> Reply:
    # Cinder and Nova share one WSGI fault body: {"<kind>": {"message": ..., "code": ...}}.
    kinds = {400: "badRequest", 403: "forbidden", 404: "itemNotFound"}
    kinds |= {409: "conflictingRequest", 413: "overLimit"}
    fault: dict[str, Any] = {"message": message, "code": status}
    if status == 413:
        fault["retryAfter"] = "0"
    return status, {kinds.get(status, "computeFault"): fault}, {}


def _version_tuple(v: str) -> tuple[int, int]:
    major, _, minor = v.partition(".")
    return int(major), int(minor or 0)


def _metadata_filter(raw: str | None) -> dict | str | None:
    """Cinder reads the ``metadata`` filter with ``ast.literal_eval``: ``{'k': 'v'}``. A bare
    key is accepted too (meaning "has this key"): that is what openstacksdk sends for a dict,
    whose values it then checks itself."""
    if raw is None:
        return None
    for parse in (ast.literal_eval, json.loads):
        try:
            value = parse(raw)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    return raw


class BlockStorage:
    """Cinder volumes plus Nova's volume attachments; state lives on the FakeOpenStack."""

    # Provided by FakeOpenStack.
    project_id: str
    user_id: str
    url: str
    servers: dict[str, dict]
    volumes: dict[str, dict]
    quota: dict[str, int]
    build_polls: int
    delete_polls: int
    fail_volumes: int

    _micro: Callable[[Any], dict]  # Nova's microversion reply headers

    def volumes_left(self) -> list[str]:
        """Ids of the volumes that still exist: the tests' leak check for block storage."""
        return sorted(self.volumes)

    def _volume_routes(self) -> list:
        v = rf"/volume/v3(?:/{self.project_id})?"  # the project id is optional since 3.67
        c = r"/compute/v2.1/servers/([^/]+)/os-volume_attachments"
        doc: dict[str, Any] = {"id": "v3.0", "status": "CURRENT", "version": CINDER_MAX_MICRO}
        doc |= {"min_version": "3.0", "updated": "2023-08-31T00:00:00Z"}
        doc["links"] = [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": f"{self.url}/volume/v3/"},
        ]
        media = {"base": "application/json"}
        doc["media-types"] = [media | {"type": "application/vnd.openstack.volume+json;version=3"}]
        return [
            ("GET", r"/volume/?", lambda *a: (300, {"versions": [doc]}, {})),
            ("GET", r"/volume/v3/?", lambda *a: (200, {"versions": [doc]}, {})),
            ("POST", rf"{v}/volumes", self._create_volume),
            ("GET", rf"{v}/volumes(/detail)?", self._list_volumes),  # before .../{id}
            ("GET", rf"{v}/volumes/([^/]+)", self._get_volume),
            ("DELETE", rf"{v}/volumes/([^/]+)", self._delete_volume),
            ("POST", c, self._attach_volume),
            ("GET", c, self._list_attachments),
            ("GET", rf"{c}/([^/]+)", self._get_attachment),
            ("DELETE", rf"{c}/([^/]+)", self._detach_volume),
        ]

    # ---- Cinder ----------------------------------------------------------------------

    def _cinder_micro(self, headers: Any) -> dict:
        asked = (headers.get("OpenStack-API-Version") or "volume 3.0").split()[-1]
        return {"OpenStack-API-Version": f"volume {asked}"}

    def _create_volume(self, q: dict, body: Any, headers: Any) -> Reply:
        spec = (body or {}).get("volume") or {}
        size, meta = spec.get("size"), spec.get("metadata") or {}
        if isinstance(size, str) and size.isdigit():
            size = int(size)  # Cinder accepts "10" as well as 10
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            return _fault(400, f"Invalid input received: Volume size '{size}' must be an"
                          " integer and greater than 0")  # fmt: skip
        # Cinder's schema: metadata is a mapping of strings to strings.
        pairs = meta.items() if isinstance(meta, dict) else [(None, None)]
        if not all(isinstance(k, str) and isinstance(x, str) for k, x in pairs):
            return _fault(400, "Invalid input for field/attribute metadata.")
        count, used = len(self.volumes), sum(x["size"] for x in self.volumes.values())
        if count + 1 > self.quota["volumes"]:
            return _fault(413, "VolumeLimitExceeded: Maximum number of volumes allowed"
                          f" ({self.quota['volumes']}) exceeded for quota 'volumes'.")  # fmt: skip
        if used + size > self.quota["gigabytes"]:
            quota = self.quota["gigabytes"]
            return _fault(413, "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot"
                          f" exceeds allowed gigabytes quota. Requested {size}G, quota is"
                          f" {quota}G and {used}G has been consumed.")  # fmt: skip
        vid, now = str(uuid.uuid4()), _stamp()
        fail, self.fail_volumes = self.fail_volumes > 0, max(0, self.fail_volumes - 1)
        vol = {"id": vid, "name": spec.get("name"), "size": size, "status": "creating"}
        vol |= {"metadata": dict(meta), "description": spec.get("description")}
        vol |= {"created_at": now, "updated_at": now, "_polls": 0, "_fail": fail, "_attach": None}
        self.volumes[vid] = vol
        return 202, {"volume": self._render(vol)}, self._cinder_micro(headers)

    def _set_status(self, vol: dict, status: str) -> None:
        vol.update(status=status, updated_at=_stamp(), _polls=0)

    def _observe_volume(self, vol: dict) -> dict | None:
        """Advance a volume one step and render it (None once it has vanished)."""
        vol["_polls"] += 1
        busy = self.build_polls if vol["status"] == "creating" else self.delete_polls
        if vol["_polls"] > busy:
            match vol["status"]:
                case "creating":
                    self._set_status(vol, "error" if vol["_fail"] else "available")
                case "attaching":
                    self._set_status(vol, "in-use")
                case "detaching":
                    self._set_status(vol, "available")
                    vol["_attach"] = None
                case "deleting":
                    del self.volumes[vol["id"]]
                    return None
        return self._render(vol)

    def _render(self, vol: dict) -> dict:
        out = {k: v for k, v in vol.items() if not k.startswith("_")}
        att = vol["_attach"]
        # Cinder lists only completed attachments (its attach_status "attached").
        if att and vol["status"] in ("in-use", "detaching"):
            out["attachments"] = [{"id": vol["id"], "attachment_id": att["attachment_id"],
                                   "volume_id": vol["id"], "server_id": att["server_id"],
                                   "host_name": None, "device": att["device"],
                                   "attached_at": att["attached_at"]}]  # fmt: skip
        else:
            out["attachments"] = []
        out |= {"availability_zone": ZONE, "bootable": "false", "encrypted": False}
        out |= {"multiattach": False, "volume_type": "__DEFAULT__", "snapshot_id": None}
        out |= {"source_volid": None, "replication_status": None, "consistencygroup_id": None}
        out |= {"user_id": self.user_id, "os-vol-tenant-attr:tenant_id": self.project_id}
        href = f"{self.url}/volume/v3/{self.project_id}/volumes/{vol['id']}"
        out["links"] = [{"rel": "self", "href": href}]
        return out

    def _list_volumes(self, q: dict, body: Any, headers: Any, detail: str | None) -> Reply:
        # One project only: all_tenants changes nothing. Unknown filters are ignored.
        want_meta = _metadata_filter(q.get("metadata"))
        out = []
        for vol in list(self.volumes.values()):
            if "name" in q and vol["name"] != q["name"]:  # Cinder's name filter is exact
                continue
            if isinstance(want_meta, dict) and any(
                vol["metadata"].get(k) != v for k, v in want_meta.items()
            ):
                continue
            if isinstance(want_meta, str) and want_meta not in vol["metadata"]:
                continue
            r = self._observe_volume(vol)
            if r is None or ("status" in q and r["status"] != q["status"]):
                continue
            out.append(r if detail else {k: r[k] for k in ("id", "name", "links")})
        return 200, {"volumes": out}, self._cinder_micro(headers)

    def _get_volume(self, q: dict, body: Any, headers: Any, vid: str) -> Reply:
        r = self._observe_volume(self.volumes[vid]) if vid in self.volumes else None
        if r is None:
            return _fault(404, f"Volume {vid} could not be found.")
        return 200, {"volume": r}, self._cinder_micro(headers)

    def _delete_volume(self, q: dict, body: Any, headers: Any, vid: str) -> Reply:
        vol = self.volumes.get(vid)
        if vol is None:
            return _fault(404, f"Volume {vid} could not be found.")
        # As in Cinder, "deleting" is not deletable either: a retried delete gets this 400.
        if vol["status"] not in DELETABLE or vol["_attach"]:
            return _fault(400, NOT_DELETABLE)
        self._set_status(vol, "deleting")
        return 202, None, self._cinder_micro(headers)

    # ---- Nova's os-volume_attachments --------------------------------------------------

    def _server_conflict(self, sid: str, action: str) -> Reply | None:
        """Nova's 404 for a missing server, 409 unless it is ACTIVE and not being deleted."""
        s = self.servers.get(sid)
        if s is None:
            return _fault(404, f"Instance {sid} could not be found.")
        if s.get("_deleting"):
            return _fault(409, f"Cannot '{action}' instance {sid} while it is in task_state"
                          " deleting")  # fmt: skip
        if s["status"] != "ACTIVE":
            state = {"BUILD": "building"}.get(s["status"], s["status"].lower())
            return _fault(409, f"Cannot '{action}' instance {sid} while it is in vm_state {state}")
        return None

    def _attached_to(self, sid: str) -> list[dict]:
        return [v for v in self.volumes.values() if (v["_attach"] or {}).get("server_id") == sid]

    def _attachment_view(self, vol: dict, headers: Any) -> dict:
        att, micro = vol["_attach"], self._micro(headers)
        version = _version_tuple(micro["X-OpenStack-Nova-API-Version"])
        out = {"device": att["device"], "serverId": att["server_id"], "volumeId": vol["id"]}
        if version < (2, 89):  # 2.89 dropped "id" (it was the volume id) for the Cinder ids
            out["id"] = vol["id"]
        else:
            out |= {"attachment_id": att["attachment_id"], "bdm_uuid": att["bdm_uuid"]}
        if version >= (2, 70):
            out["tag"] = att["tag"]
        if version >= (2, 79):
            out["delete_on_termination"] = att["delete_on_termination"]
        return out

    def _attach_volume(self, q: dict, body: Any, headers: Any, sid: str) -> Reply:
        a = (body or {}).get("volumeAttachment") or {}
        vid, device = a.get("volumeId"), a.get("device")
        if not vid:
            return _fault(400, "Invalid input for field/attribute volumeAttachment.")
        # Nova checks the instance's state before it looks at the volume.
        if conflict := self._server_conflict(sid, "attach_volume"):
            return conflict
        vol = self.volumes.get(vid)
        if vol is None:
            return _fault(404, f"Volume {vid} could not be found.")
        if vol["status"] != "available":
            return _fault(400, f"Invalid volume: Volume {vid} status must be available or"
                          " downloading to reserve, but the current status is"
                          f" {vol['status']}.")  # fmt: skip
        taken = {v["_attach"]["device"] for v in self._attached_to(sid)}
        if device is not None and not re.fullmatch(r"/dev/[a-z]+[0-9]*", device):
            return _fault(400, f"The supplied device path ({device}) is invalid.")
        if device in taken:
            return _fault(409, f"The supplied device path ({device}) is in use.")
        device = device or next(d for d in DEVICES if d not in taken)
        vol["_attach"] = {"server_id": sid, "device": device, "attached_at": _stamp()}
        vol["_attach"] |= {"attachment_id": str(uuid.uuid4()), "bdm_uuid": str(uuid.uuid4())}
        vol["_attach"] |= {"tag": a.get("tag")}
        vol["_attach"]["delete_on_termination"] = bool(a.get("delete_on_termination"))
        self._set_status(vol, "attaching")  # in-use after delete_polls observations
        return 200, {"volumeAttachment": self._attachment_view(vol, headers)}, self._micro(headers)

    def _list_attachments(self, q: dict, body: Any, headers: Any, sid: str) -> Reply:
        if sid not in self.servers:
            return _fault(404, f"Instance {sid} could not be found.")
        out = [self._attachment_view(v, headers) for v in self._attached_to(sid)]
        return 200, {"volumeAttachments": out}, self._micro(headers)

    def _get_attachment(self, q: dict, body: Any, headers: Any, sid: str, vid: str) -> Reply:
        if sid not in self.servers:
            return _fault(404, f"Instance {sid} could not be found.")
        vol = self.volumes.get(vid)
        if vol is None or vol not in self._attached_to(sid):
            return _fault(404, f"Instance {sid} is not attached to volume {vid}")
        return 200, {"volumeAttachment": self._attachment_view(vol, headers)}, self._micro(headers)

    def _detach_volume(self, q: dict, body: Any, headers: Any, sid: str, vid: str) -> Reply:
        if conflict := self._server_conflict(sid, "detach_volume"):
            return conflict
        vol = self.volumes.get(vid)
        if vol is None:
            return _fault(404, f"Volume {vid} could not be found.")
        if vol not in self._attached_to(sid):
            return _fault(404, f"Instance {sid} is not attached to volume {vid}")
        if vol["status"] != "in-use":
            return _fault(400, NOT_DETACHABLE)
        self._set_status(vol, "detaching")  # available after delete_polls observations
        return 202, None, self._micro(headers)

    def _release_volumes(self, sid: str) -> None:
        """A server is being deleted: Nova detaches its volumes (they become available) and
        deletes those attached with delete_on_termination."""
        for vol in self._attached_to(sid):
            if vol["_attach"]["delete_on_termination"]:
                vol["_attach"] = None
                self._set_status(vol, "deleting")
            else:
                self._set_status(vol, "detaching")

    def _volumes_attached(self, sid: str) -> list[dict]:
        """The server's ``os-extended-volumes:volumes_attached``."""
        return [{"id": v["id"], "delete_on_termination": v["_attach"]["delete_on_termination"]}
                for v in self._attached_to(sid)]  # fmt: skip
