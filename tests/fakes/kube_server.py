"""A fake Kubernetes API server (core/v1 namespaces, pods, pod logs) with a fake kubelet.

It speaks the documented REST shapes over real HTTP on 127.0.0.1 so that the real
``kubernetes`` client is exercised: ``Status`` error bodies (401, 403, 404, 409, 422),
``resourceVersion``, ``uid``, ``creationTimestamp``, label selectors, namespace deletion
through ``Terminating``.

Deviations from a real cluster, on purpose:
- The kubelet ignores the image. It runs the container's ``command`` + ``args`` as a local
  subprocess with the container's ``env`` (plus PATH of this interpreter, standing in for
  the image's), ``workingDir`` and hostPath mounts. There is no mount namespace, so a mount
  must use ``mountPath == hostPath.path`` (the job sees the same files); anything else is
  refused with 422 so a test cannot silently pass on a path the pod would not see.
- Memory limits are enforced by polling the resident set of the process group (a pod over
  its limit is SIGKILLed and reported ``OOMKilled``, exit 137); CPU limits are not enforced.
- Quota is a count of namespaces or pods, not a ResourceQuota object.

Fault knobs: ``error_rate`` (5xx before doing anything), ``drop_rate`` (do the work, then
close the connection without replying), ``latency`` (seconds per request), ``max_namespaces``
and ``max_pods`` (403 "exceeded quota" on create). Faults are drawn from a seeded RNG.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

PAGE = os.sysconf("SC_PAGE_SIZE")
_SUFFIX = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6}
_SUFFIX.update({"G": 10**9, "T": 10**12})
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ROUTES = [
    (re.compile(r"^/api/v1/namespaces$"), "namespaces"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)$"), "namespace"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/pods$"), "pods"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$"), "pod"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$"), "log"),
    (re.compile(r"^/api/v1/pods$"), "allpods"),
    (re.compile(r"^/version/?$"), "version"),
]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quantity(value: Any) -> int:
    s = str(value)
    for suffix, mult in sorted(_SUFFIX.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(float(s))


def matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def group_rss(pgid: int) -> int:
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    total += int(fields[21]) * PAGE
            except (OSError, IndexError, ValueError):
                continue
    return total


REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}
REASONS.update({405: "MethodNotAllowed", 409: "AlreadyExists", 422: "Invalid"})


class ApiError(Exception):
    """A Kubernetes ``Status`` failure body."""

    def __init__(self, code: int, message: str, reason: str | None = None):
        super().__init__(message)
        self.code = code
        reason = reason or REASONS.get(code, "InternalError")
        self.body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        self.body.update(message=message, reason=reason, code=code)


@dataclass
class Pod:
    obj: dict[str, Any]
    log: Path
    proc: subprocess.Popen | None = None
    cause: str | None = None  # why we killed it: OOMKilled | DeadlineExceeded | deleted
    done: threading.Event = field(default_factory=threading.Event)


class FakeKube:
    """The cluster's state and behaviour; ``start()`` serves it on a random local port."""

    def __init__(self, token: str = "fake-token", *, seed: int = 0, **knobs: Any):
        self.token = token
        self.rng = random.Random(seed)
        self.error_rate = 0.0
        self.drop_rate = 0.0
        self.latency = 0.0
        self.max_namespaces: int | None = None
        self.max_pods: int | None = None
        self.schedule_delay = 0.05  # Pending -> Running
        self.terminate_delay = 0.1  # Terminating -> gone
        self.max_grace_s = 1.0  # cap on a pod's termination grace period, keeps tests fast
        # Deterministic faults, consumed in order by the next request of that method:
        # e.g. [("POST", "drop"), ("GET", "503")].
        self.script: list[tuple[str, str]] = []
        self.configure(**knobs)
        self.lock = threading.RLock()
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], Pod] = {}
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status); -1 = dropped
        self._rv = 0
        self._root = Path(tempfile.mkdtemp(prefix="fake-kube-"))
        self._server: ThreadingHTTPServer | None = None

    def configure(self, **knobs: Any) -> None:
        for k, v in knobs.items():
            if not hasattr(self, k) or k.startswith("_"):
                raise TypeError(f"unknown knob {k}")
            setattr(self, k, v)

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeKube:
        fake = self

        class Handler(_Handler):
            kube = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self.lock:
            pods = list(self.pods.values())
        for pod in pods:
            self._signal(pod, signal.SIGKILL)
        for pod in pods:
            pod.done.wait(5)

    # ---- helpers for tests -------------------------------------------------------------

    def kill_pod(self, namespace: str, name: str, cause: str | None = None) -> None:
        """Kill the pod's process from outside (node pressure, a crashed node, OOM)."""
        pod = self.pods[(namespace, name)]
        pod.cause = cause
        self._signal(pod, signal.SIGKILL)

    def live(self) -> tuple[int, int]:
        """(namespaces, pods) the fake still holds, in any state."""
        with self.lock:
            return len(self.namespaces), len(self.pods)

    # ---- objects -----------------------------------------------------------------------

    def _meta(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        meta = dict(body.get("metadata") or {})
        name = meta.get("name")
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            raise ApiError(422, f'{kind} "{name}" is invalid: metadata.name: Invalid value')
        self._rv += 1
        meta.update(uid=str(uuid.uuid4()), resourceVersion=str(self._rv), creationTimestamp=now())
        meta["labels"] = dict(meta.get("labels") or {})
        return meta

    def _touch(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def _namespace(self, name: str, forbid_terminating: str = "") -> dict[str, Any]:
        ns = self.namespaces.get(name)
        if ns is None:
            raise ApiError(404, f'namespaces "{name}" not found')
        if forbid_terminating and ns["status"]["phase"] == "Terminating":
            raise ApiError(
                403,
                f"{forbid_terminating} is forbidden: unable to create new content in namespace"
                f" {name} because it is being terminated",
            )
        return ns

    def _list(self, kind: str, items: list[dict[str, Any]], selector: str | None) -> dict:
        items = [i for i in items if matches(i["metadata"].get("labels", {}), selector)]
        meta = {"resourceVersion": str(self._rv)}
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "items": items}

    def handle(self, method: str, route: str, args: tuple, query: dict, body: Any) -> Any:
        q = {k: v[0] for k, v in query.items()}
        with self.lock:
            if route == "version":
                return {"major": "1", "minor": "37", "gitVersion": "v1.37.0-fake",
                        "gitCommit": "0" * 40, "gitTreeState": "clean", "goVersion": "go1.25",
                        "buildDate": "2026-01-01T00:00:00Z", "compiler": "gc",
                        "platform": "linux/amd64"}  # fmt: skip
            if route == "namespaces" and method == "GET":
                return self._list(
                    "NamespaceList", list(self.namespaces.values()), q.get("labelSelector")
                )
            if route == "namespaces" and method == "POST":
                return self._create_namespace(body)
            if route == "namespace" and method == "GET":
                return self._namespace(args[0])
            if route == "namespace" and method == "DELETE":
                return self._delete_namespace(args[0])
            if route == "allpods" and method == "GET":
                pods = [p.obj for p in self.pods.values()]
                return self._list("PodList", pods, q.get("labelSelector"))
            if route == "pods" and method == "GET":
                self._namespace(args[0])
                pods = [p.obj for (ns, _), p in self.pods.items() if ns == args[0]]
                return self._list("PodList", pods, q.get("labelSelector"))
            if route == "pods" and method == "POST":
                return self._create_pod(args[0], body)
            if route in ("pod", "log"):
                pod = self.pods.get(args)
                if pod is None:
                    raise ApiError(404, f'pods "{args[1]}" not found')
                if route == "log":
                    return self._log(pod, q)
                if method == "GET":
                    return pod.obj
                if method == "DELETE":
                    return self._delete_pod(args, pod, q, body)
        raise ApiError(405, f"{method} is not supported by the fake")

    def _create_namespace(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = self._meta(body, "namespaces")
        name = meta["name"]
        if name in self.namespaces:
            raise ApiError(409, f'namespaces "{name}" already exists')
        if self.max_namespaces is not None and len(self.namespaces) >= self.max_namespaces:
            raise ApiError(
                403,
                f'namespaces "{name}" is forbidden: exceeded quota: namespaces,'
                f" requested: count/namespaces=1, used: count/namespaces={len(self.namespaces)},"
                f" limited: count/namespaces={self.max_namespaces}",
            )
        meta["labels"]["kubernetes.io/metadata.name"] = name
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
        ns.update(spec={"finalizers": ["kubernetes"]}, status={"phase": "Active"})
        self.namespaces[name] = ns
        return ns

    def _delete_namespace(self, name: str) -> dict[str, Any]:
        ns = self._namespace(name)
        if ns["status"]["phase"] == "Terminating":
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on namespaces "{name}": The system is ensuring'
                " all content is removed from this namespace.  Upon completion, this namespace"
                " will automatically be purged by the system.",
                "Conflict",
            )
        ns["status"]["phase"] = "Terminating"
        ns["metadata"]["deletionTimestamp"] = now()
        self._touch(ns)
        threading.Thread(target=self._finalize_namespace, args=(name,), daemon=True).start()
        return ns

    def _finalize_namespace(self, name: str) -> None:
        time.sleep(self.terminate_delay)
        with self.lock:
            pods = [(k, p) for k, p in self.pods.items() if k[0] == name]
        for _, pod in pods:
            pod.cause = pod.cause or "deleted"
            self._signal(pod, signal.SIGKILL)
        for key, pod in pods:
            pod.done.wait(10)
            with self.lock:
                self.pods.pop(key, None)
        with self.lock:
            self.namespaces.pop(name, None)

    def _create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = self._meta(body, "pods")
        name = meta["name"]
        self._namespace(namespace, forbid_terminating=f'pods "{name}"')
        if (namespace, name) in self.pods:
            raise ApiError(409, f'pods "{name}" already exists')
        running = [
            p for p in self.pods.values() if p.obj["status"]["phase"] in ("Pending", "Running")
        ]
        if self.max_pods is not None and len(running) >= self.max_pods:
            raise ApiError(
                403,
                f'pods "{name}" is forbidden: exceeded quota: compute-resources, requested:'
                f" pods=1, used: pods={len(running)}, limited: pods={self.max_pods}",
            )
        spec = dict(body.get("spec") or {})
        containers = spec.get("containers") or []
        if not containers or not (containers[0].get("command") or containers[0].get("args")):
            raise ApiError(422, f'pods "{name}" is invalid: spec.containers: Required')
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for m in containers[0].get("volumeMounts") or []:
            host = (volumes.get(m.get("name")) or {}).get("hostPath") or {}
            if host.get("path") != m.get("mountPath"):
                raise ApiError(
                    422,
                    f'pods "{name}" is invalid: the fake kubelet only supports hostPath mounts'
                    f" with mountPath == hostPath.path (mount {m.get('name')!r})",
                )
        meta["namespace"] = namespace
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        obj["status"] = {"phase": "Pending", "qosClass": "Burstable"}
        pod = Pod(obj, self._root / f"{namespace}.{name}.{meta['uid']}.log")
        self.pods[(namespace, name)] = pod
        threading.Thread(target=self._kubelet, args=(pod,), daemon=True).start()
        return obj

    def _delete_pod(self, key: tuple, pod: Pod, q: dict, body: Any) -> dict[str, Any]:
        grace = (body or {}).get("gracePeriodSeconds", q.get("gracePeriodSeconds", 30))
        if "deletionTimestamp" not in pod.obj["metadata"]:
            pod.obj["metadata"]["deletionTimestamp"] = now()
            self._touch(pod.obj)
            pod.cause = pod.cause or "deleted"
            threading.Thread(
                target=self._terminate, args=(key, pod, float(grace)), daemon=True
            ).start()
        return pod.obj

    def _terminate(self, key: tuple, pod: Pod, grace: float) -> None:
        self._signal(pod, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if not pod.done.wait(min(grace, self.max_grace_s)):
            self._signal(pod, signal.SIGKILL)
            pod.done.wait(10)
        with self.lock:
            if self.pods.get(key) is pod:
                del self.pods[key]

    def _log(self, pod: Pod, q: dict) -> str:
        if pod.proc is None and not pod.log.exists():
            raise ApiError(
                400,
                f'container "{pod.obj["spec"]["containers"][0]["name"]}" in pod'
                f' "{pod.obj["metadata"]["name"]}" is waiting to start: ContainerCreating',
            )
        text = pod.log.read_text(errors="replace") if pod.log.exists() else ""
        if "tailLines" in q:
            n = int(q["tailLines"])
            text = "".join(text.splitlines(keepends=True)[-n:]) if n else ""
        if "limitBytes" in q:
            text = text[: int(q["limitBytes"])]
        return text

    # ---- the kubelet -------------------------------------------------------------------

    def _signal(self, pod: Pod, sig: int) -> None:
        with self.lock:  # the kubelet starts processes under this lock: no orphan can slip by
            if pod.proc is None:
                pod.done.set()  # never started: nothing to wait for
                return
            try:
                os.killpg(pod.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _kubelet(self, pod: Pod) -> None:
        time.sleep(self.schedule_delay)
        spec = pod.obj["spec"]
        c = spec["containers"][0]
        argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
        env = {"PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin"}
        env["HOSTNAME"] = pod.obj["metadata"]["name"]
        env.update({e["name"]: str(e.get("value", "")) for e in c.get("env") or []})
        cwd = c.get("workingDir") or str(self._root)
        limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        limit_b = quantity(limit) if limit else None
        deadline = spec.get("activeDeadlineSeconds")
        with self.lock:
            if pod.cause is not None or pod.done.is_set():
                pod.done.set()
                return
            started = now()
            try:
                with open(pod.log, "wb") as log:
                    pod.proc = subprocess.Popen(
                        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
            except OSError as e:
                pod.log.write_text(f"exec {argv[:1]} failed: {e}\n")
                self._finish(pod, 128, "StartError", started, str(e))
                return
            st = pod.obj["status"]
            st.update(phase="Running", startTime=started, podIP="127.0.0.1")
            st["containerStatuses"] = [_cstatus(c, {"running": {"startedAt": started}})]
            self._touch(pod.obj)
        t0 = time.monotonic()
        while pod.proc.poll() is None:
            if limit_b is not None and group_rss(pod.proc.pid) > limit_b:
                pod.cause = "OOMKilled"
                self._signal(pod, signal.SIGKILL)
            elif deadline is not None and time.monotonic() - t0 > float(deadline):
                pod.cause = "DeadlineExceeded"
                self._signal(pod, signal.SIGTERM)
                try:
                    pod.proc.wait(self.max_grace_s)
                except subprocess.TimeoutExpired:
                    self._signal(pod, signal.SIGKILL)
            time.sleep(0.02)
        self._signal(pod, signal.SIGKILL)  # what the job left behind dies with the container
        rc = pod.proc.returncode
        code = 128 - rc if rc < 0 else rc
        reason = "Completed" if code == 0 else "Error"
        if pod.cause == "OOMKilled":
            reason = "OOMKilled"
        self._finish(pod, code, reason, started)

    def _finish(self, pod: Pod, code: int, reason: str, started: str, message: str = "") -> None:
        with self.lock:
            st = pod.obj["status"]
            ok = code == 0 and pod.cause in (None, "deleted")
            st["phase"] = "Succeeded" if ok else "Failed"
            if pod.cause == "DeadlineExceeded":
                st["reason"] = "DeadlineExceeded"
                st["message"] = "Pod was active on the node longer than the specified deadline"
            term = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now()}
            if message:
                term["message"] = message
            c = pod.obj["spec"]["containers"][0]
            st["containerStatuses"] = [_cstatus(c, {"terminated": term})]
            self._touch(pod.obj)
            pod.done.set()


def _cstatus(c: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    running = "running" in state
    return {"name": c["name"], "image": c.get("image", ""), "imageID": "", "restartCount": 0,
            "ready": running, "started": running, "state": state}  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _reply(self, code: int, body: Any) -> None:
        ctype = "application/json"
        if isinstance(body, str):
            data, ctype = body.encode(), "text/plain"
        else:
            data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        kube = self.kube
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if kube.latency:
            time.sleep(kube.latency)
        if self.headers.get("Authorization") != f"Bearer {kube.token}":
            kube.calls.append((method, url.path, 401))
            return self._reply(401, ApiError(401, "Unauthorized").body)
        with kube.lock:
            roll = kube.rng.random()
            action = next((a for m, a in kube.script if m == method), None)
            if action is not None:
                kube.script.remove((method, action))
                roll = kube.error_rate if action == "drop" else -1.0
        if roll < kube.error_rate:
            code = int(action) if action else (500 if kube.rng.random() < 0.5 else 503)
            kube.calls.append((method, url.path, code))
            msg = "etcdserver: request timed out" if code == 500 else "service unavailable"
            return self._reply(code, ApiError(code, msg, "InternalError").body)
        drop = action == "drop" or roll < kube.error_rate + kube.drop_rate
        match = next(((p.match(url.path), r) for p, r in ROUTES if p.match(url.path)), None)
        if match is None:
            kube.calls.append((method, url.path, 404))
            err = ApiError(404, "the server could not find the requested resource")
            return self._reply(404, err.body)
        try:
            body = json.loads(raw) if raw else None
            m, route = match
            code, result = 200, kube.handle(method, route, m.groups(), parse_qs(url.query), body)
            if method == "POST":
                code = 201
        except ApiError as e:
            code, result = e.code, e.body
        if drop:  # the work is done; the reply is lost
            kube.calls.append((method, url.path, -1))
            self.close_connection = True
            return
        kube.calls.append((method, url.path, code))
        self._reply(code, result)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")
