"""Talking to a VM's Stratoflow agent: its URLs and an HTTP client with retries.

A deployment's sandbox on a VM is named by a URL, so that it can travel through XCom like
a local path: ``sfagent://<site>@<host>:<port>/<deployment>/<path in the sandbox>``. The
site names the connection the token is derived from; nothing secret is in the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from stratoflow.errors import ChecksumMismatch, SiteError, StagingError
from stratoflow.retry import call_with_retries
from stratoflow.tls import tls_context

SCHEME = "sfagent"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class AgentURL:
    site: str
    host: str
    port: int
    deployment: str
    rel: str = ""  # path inside the sandbox, no leading slash

    def __str__(self) -> str:
        tail = f"/{quote(self.rel)}" if self.rel else ""
        return f"{SCHEME}://{self.site}@{self.host}:{self.port}/{self.deployment}{tail}"

    def child(self, rel: str) -> AgentURL:
        joined = f"{self.rel}/{rel}" if self.rel else rel
        return AgentURL(self.site, self.host, self.port, self.deployment, joined.strip("/"))

    @classmethod
    def parse(cls, url: str) -> AgentURL:
        parts = urlsplit(url)
        if parts.scheme != SCHEME or not parts.username or not parts.hostname:
            raise StagingError(f"{url}: not a {SCHEME}://site@host:port/deployment/path URL")
        deployment, _, rel = unquote(parts.path).lstrip("/").partition("/")
        if not deployment or ".." in Path(rel).parts:
            raise StagingError(f"{url}: names no deployment, or climbs out of its sandbox")
        return cls(parts.username, parts.hostname, parts.port or DEFAULT_PORT, deployment, rel)


class AgentClient:
    """One agent, one deployment. Every call is safe to repeat (PUT of a verified file,
    GET, DELETE; a job start adopts the running attempt), so all of them retry."""

    def __init__(
        self,
        base: AgentURL,
        token: str,
        *,
        attempts: int = 6,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
    ) -> None:
        self.base = base
        self.attempts, self.backoff_s = max(1, attempts), backoff_s
        self._http = httpx.Client(
            base_url=f"http://{base.host}:{base.port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            verify=tls_context(),
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, what: str, fn: Callable[[], httpx.Response], ok: tuple[int, ...]) -> Any:
        host = self.base.host

        def refuse(r: httpx.Response, detail: str) -> Exception:
            if r.status_code == 422:  # the agent's verdict on an upload's checksum
                return ChecksumMismatch(f"{what}: {detail}")
            return SiteError(f"agent {host}: {what}: {r.status_code} {detail}")

        return call_with_retries(
            what,
            fn,
            ok,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            detail=_error,
            refuse=refuse,
            give_up=lambda last, _status: SiteError(
                f"agent {host}: {what} failed {self.attempts} times: {last}"
            ),
        )

    def health(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The agent's health; ``timeout_s`` bounds this one question (default: the
        client's timeout)."""
        timeout: Any = timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        return self._call(
            "health", lambda: self._http.get("/v1/health", timeout=timeout), (200,)
        ).json()

    def put_file(self, rel: str, local: Path, sha256: str) -> dict[str, Any]:
        def send() -> httpx.Response:
            with open(local, "rb") as f:
                return self._http.put(
                    f"/v1/files/{quote(rel)}", content=f, headers={"X-Sha256": sha256}
                )

        return self._call(f"upload {rel}", send, (201,)).json()

    def get_file(self, rel: str, local: Path) -> tuple[str, str]:
        """Download to ``local``; return the agent's (sha256, adler32) of the file."""

        def fetch() -> httpx.Response:
            with self._http.stream("GET", f"/v1/files/{quote(rel)}") as r:
                if r.status_code == 200:
                    with open(local, "wb") as out:
                        for block in r.iter_bytes():
                            out.write(block)
                else:
                    r.read()
                return r

        r = self._call(f"download {rel}", fetch, (200,))
        return r.headers.get("X-Sha256", ""), r.headers.get("X-Adler32", "")

    def list(self, rel: str) -> list[str]:
        r = self._call(f"list {rel}", lambda: self._http.get(f"/v1/list/{quote(rel)}"), (200,))
        return list(r.json()["files"])

    def start_job(self, body: dict[str, Any]) -> str:
        r = self._call("start job", lambda: self._http.post("/v1/jobs", json=body), (201,))
        return r.json()["handle"]

    def job_status(self, handle: str) -> dict[str, Any]:
        path = f"/v1/jobs/{quote(handle, safe='')}"
        return self._call(f"job {handle}", lambda: self._http.get(path), (200,)).json()

    def job_log(self, handle: str) -> str:
        path = f"/v1/jobs/{quote(handle, safe='')}/log"
        return self._call(f"log of {handle}", lambda: self._http.get(path), (200,)).json()["log"]

    def cancel_job(self, handle: str) -> None:
        path = f"/v1/jobs/{quote(handle, safe='')}"
        self._call(f"cancel {handle}", lambda: self._http.delete(path), (204, 404))


def _error(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error") or r.text[:300])
    except ValueError:
        return r.text[:300]
