"""The Stratoflow agent: what a VM (OpenStack, EC2) runs so Stratoflow can use it.

cloud-init writes ``/etc/stratoflow/agent.json`` and starts ``stratoflow-agent --config``
on boot. The agent serves one deployment's sandbox over HTTP, with the bearer token from
that file (derived per deployment from the site's connection, see ``hooks/agent.py``):

    GET    /v1/health                  {"deployment", "cores", "memory"}
    PUT    /v1/files/<rel>             body = the file; X-Sha256 (required) is checked
                                       before the atomic rename; 422 on a mismatch
    GET    /v1/files/<rel>             the file, with X-Sha256 / X-Adler32 headers
    GET    /v1/list/<rel>              {"files": [<rel>, ...]} under a directory
    POST   /v1/jobs                    a JobSpec (JSON, artifacts base64) -> {"handle"}
    GET    /v1/jobs/<handle>           a JobStatus, outdir relative to the sandbox
    GET    /v1/jobs/<handle>/log       the job's output, text
    DELETE /v1/jobs/<handle>           cancel

Jobs run exactly as on the local site (``LocalCompute``: supervised runner, timeout,
memory limit, atomic outputs, adoption of a live attempt). Paths in requests are relative
to the sandbox and may not leave it.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stratoflow.errors import SiteError, StratoflowError
from stratoflow.sites.base import Allocation, JobSpec
from stratoflow.sites.checksums import BLOCK, Summer
from stratoflow.sites.local.compute import LocalCompute

MAX_JSON = 64 << 20


class Agent:
    def __init__(self, config: dict[str, Any]):
        self.deployment = str(config["deployment"])
        self.token = str(config["token"])
        root = Path(config["workdir"]).resolve()
        self.sandbox = root / "deployments" / self.deployment
        for sub in ("inputs", "artifacts", "jobs", "outputs"):
            (self.sandbox / sub).mkdir(parents=True, exist_ok=True)
        self.cores = int(config.get("cores") or os.cpu_count() or 1)
        self.memory = int(config.get("memory") or 1 << 30)
        self.local = LocalCompute(
            "agent",
            {
                "cores": self.cores,
                "memory": self.memory,
                "workdir": str(root),
                "allowed_roots": [str(self.sandbox)],
                "writable_roots": [str(self.sandbox)],
            },
        )
        self.alloc = Allocation("agent", "agent", self.deployment, str(self.sandbox), self.cores)

    def path(self, rel: str) -> Path:
        """``rel`` inside the sandbox; anything that would leave it is refused."""
        rel = unquote(rel).lstrip("/")
        p = (self.sandbox / rel).resolve()
        if p != self.sandbox and not p.is_relative_to(self.sandbox):
            raise PermissionError(f"{rel}: outside the deployment's sandbox")
        return p

    def rel(self, p: str | Path) -> str:
        return str(Path(p).resolve().relative_to(self.sandbox))

    def authorised(self, header: str | None) -> bool:
        want = f"Bearer {self.token}"
        return header is not None and hmac.compare_digest(header.encode(), want.encode())

    def start_job(self, body: dict[str, Any]) -> str:
        artifacts = {k: base64.b64decode(v) for k, v in (body.get("artifacts") or {}).items()}
        command = body["command"]
        sandbox = str(self.sandbox)
        if isinstance(command, str):
            command = command.replace("{sandbox}", sandbox)
        else:
            command = [str(a).replace("{sandbox}", sandbox) for a in command]
        spec = JobSpec(
            step=str(body["step"]),
            index=int(body["index"]),
            command=command,
            inputs=[str(self.path(i)) for i in body.get("inputs") or []],
            env={str(k): str(v) for k, v in (body.get("env") or {}).items()},
            num_cpus=int(body.get("num_cpus") or 1),
            mem_bytes=int(body.get("mem_bytes") or 1 << 30),
            timeout_s=float(body.get("timeout_s") or 3600),
            image=body.get("image"),
            artifacts=artifacts,
        )
        return self.local.start_job(self.alloc, spec)

    def job_status(self, handle: str) -> dict[str, Any]:
        st = asdict(self.local.job_status(self.alloc, handle))
        st["outdir"] = self.rel(st["outdir"]) if st.get("outdir") else None
        return st


class Handler(BaseHTTPRequestHandler):
    agent: Agent
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the job logs say enough
        pass

    def _reply(self, code: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        if not self.agent.authorised(self.headers.get("Authorization")):
            self.rfile.read(length)
            return self._reply(401, {"error": "invalid or missing bearer token"})
        try:
            self._dispatch(method, path, length)
        except PermissionError as e:
            self._reply(403, {"error": str(e)})
        except FileNotFoundError as e:
            self._reply(404, {"error": f"not found: {e.filename or e}"})
        except (KeyError, ValueError, TypeError) as e:
            self._reply(400, {"error": f"bad request: {e}"})
        except (SiteError, StratoflowError) as e:
            self._reply(409, {"error": str(e)})
        except OSError as e:  # e.g. a directory where a file was expected
            self._reply(400, {"error": f"{type(e).__name__}: {e.strerror or e}"})

    def _dispatch(self, method: str, path: str, length: int) -> None:
        a = self.agent
        if method == "GET" and path == "/v1/health":
            return self._reply(200, {"deployment": a.deployment, "cores": a.cores})
        if path.startswith("/v1/files/"):
            rel = path[len("/v1/files/") :]
            if method == "PUT":
                return self._put(a.path(rel), length)
            if method == "GET":
                return self._get(a.path(rel))
        if method == "GET" and path.startswith("/v1/list/"):
            top = a.path(path[len("/v1/list/") :])
            files = sorted(a.rel(Path(root) / n) for root, _d, names in os.walk(top) for n in names)
            return self._reply(200, {"files": files})
        if method == "POST" and path == "/v1/jobs":
            if length > MAX_JSON:
                raise ValueError("job spec too large")
            return self._reply(201, {"handle": a.start_job(json.loads(self.rfile.read(length)))})
        if path.startswith("/v1/jobs/"):
            handle = unquote(path[len("/v1/jobs/") :])
            if method == "GET" and handle.endswith("/log"):
                text = "\n".join(a.local.job_log(a.alloc, handle[: -len("/log")]))
                return self._reply(200, {"log": text})
            if method == "GET":
                return self._reply(200, a.job_status(handle))
            if method == "DELETE":
                a.local.cancel_job(a.alloc, handle)
                return self._reply(204)
        self._reply(404, {"error": f"no route {method} {path}"})

    def _put(self, dest: Path, length: int) -> None:
        want = (self.headers.get("X-Sha256") or "").lower()
        if not want:
            self.rfile.read(length)
            raise ValueError("X-Sha256 header is required")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part-{secrets.token_hex(6)}")
        summer, left = Summer(), length
        try:
            with open(tmp, "wb") as out:
                while left > 0:
                    block = self.rfile.read(min(BLOCK, left))
                    if not block:
                        break
                    left -= len(block)
                    summer.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if left or summer.sha256 != want:
                tmp.unlink(missing_ok=True)
                got = f"{summer.size} bytes, sha256 {summer.sha256}"
                return self._reply(422, {"error": f"checksum mismatch: expected {want}, got {got}"})
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        body = {"size": summer.size, "adler32": summer.adler32, "sha256": summer.sha256}
        self._reply(201, body)

    def _get(self, src: Path) -> None:
        summer = Summer()
        with open(src, "rb") as f:  # sums first: the headers come before the body
            while block := f.read(BLOCK):
                summer.update(block)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(summer.size))
        self.send_header("X-Sha256", summer.sha256)
        self.send_header("X-Adler32", summer.adler32)
        self.end_headers()
        with open(src, "rb") as f:
            while block := f.read(BLOCK):
                self.wfile.write(block)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._route("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


def serve(config: dict[str, Any]) -> ThreadingHTTPServer:
    host, _, port = str(config.get("listen") or "0.0.0.0:8765").rpartition(":")
    handler = type("AgentHandler", (Handler,), {"agent": Agent(config)})
    return ThreadingHTTPServer((host or "0.0.0.0", int(port)), handler)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="stratoflow-agent", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="the agent's JSON configuration")
    args = p.parse_args(argv)
    server = serve(json.loads(Path(args.config).read_text()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
