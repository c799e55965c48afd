"""Jobs and staging on VM sites, through the Stratoflow agent each VM boots with.

``AgentJobs`` gives a VM-based Compute (OpenStack, EC2) the job half of the interface;
``AgentStorage`` serves ``sfagent://`` URLs so stage-in and stage-out reach the sandbox.
Both find the agent from the URL and derive its token from the site's connection.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stratoflow.errors import ChecksumMismatch, SiteError, StagingError
from stratoflow.sites.agent.client import SCHEME, AgentClient, AgentURL
from stratoflow.sites.base import Allocation, JobSpec, JobStatus, StagedFile, Storage
from stratoflow.sites.checksums import compare, file_checksums
from stratoflow.sites.credentials import credentials


def client_for(site_config: dict[str, Any], url: AgentURL) -> AgentClient:
    token = credentials().agent_token(str(site_config["conn_id"]), url.deployment)
    return AgentClient(
        url,
        token,
        attempts=int(site_config.get("retry_attempts", 6)),
        backoff_s=float(site_config.get("retry_backoff_s", 0.5)),
    )


def sandbox_url(site: str, host: str, port: int, deployment_id: str) -> str:
    return str(AgentURL(site, host, port, deployment_id))


# One question to a booting VM's agent waits at least this long (a VM that is up answers
# in milliseconds) and at most this long (the client's own timeout).
AGENT_ASK_MIN_S, AGENT_ASK_MAX_S = 2.0, 60.0


class AgentJobs:
    """Mixin for a Compute whose allocation's ``workdir`` is an ``sfagent://`` URL."""

    name: str
    config: dict[str, Any]

    def _agent(self, alloc: Allocation) -> AgentClient:
        return client_for(self.config, AgentURL.parse(alloc.workdir))

    def wait_for_agent(self, alloc: Allocation, timeout_s: float) -> None:
        """Provisioning ends when the agent answers: the VM booted and cloud-init ran.
        It asks at least once (a VM that came up just in time counts), each time for no
        longer than the time left, so a lost connection does not overrun the bound."""
        agent = self._agent(alloc)
        agent.attempts = 1
        deadline, last = time.monotonic() + timeout_s, ""
        try:
            while True:
                left = deadline - time.monotonic()
                try:
                    agent.health(timeout_s=min(max(left, AGENT_ASK_MIN_S), AGENT_ASK_MAX_S))
                    return
                except SiteError as e:
                    last = str(e)
                if deadline - time.monotonic() < 1.0:
                    break
                time.sleep(1.0)
        finally:
            agent.close()
        raise SiteError(f"{self.name}: the agent did not answer within {timeout_s:.0f} s: {last}")

    def start_job(self, alloc: Allocation, job: JobSpec) -> str:
        base = AgentURL.parse(alloc.workdir)
        inputs, command = [], job.command
        for f in job.inputs:
            u = AgentURL.parse(f) if f.startswith(f"{SCHEME}://") else None
            if u is None or (u.host, u.deployment) != (base.host, base.deployment):
                raise SiteError(f"{self.name}: job input {f} is not in this deployment's sandbox")
            inputs.append(u.rel)
            # The command names inputs by URL; on the VM they are files in the sandbox,
            # whose path only the agent knows: it fills in {sandbox}.
            command = _replace(command, f, "{sandbox}/" + u.rel)
        body = {
            "step": job.step,
            "index": job.index,
            "command": command,
            "inputs": inputs,
            "env": job.env,
            "num_cpus": job.num_cpus,
            "mem_bytes": job.mem_bytes,
            "timeout_s": job.timeout_s,
            "image": job.image,
            "artifacts": {
                k: base64.b64encode(_bytes(v)).decode() for k, v in job.artifacts.items()
            },
        }
        agent = self._agent(alloc)
        try:
            return agent.start_job(body)
        finally:
            agent.close()

    def job_status(self, alloc: Allocation, handle: str) -> JobStatus:
        agent = self._agent(alloc)
        try:
            st = agent.job_status(handle)
        finally:
            agent.close()
        outdir = st.get("outdir")
        return JobStatus(
            handle,
            st["state"],
            exit_code=st.get("exit_code"),
            reason=st.get("reason") or "",
            outdir=str(AgentURL.parse(alloc.workdir).child(outdir)) if outdir else None,
            core_seconds=float(st.get("core_seconds") or 0.0),
        )

    def job_log(self, alloc: Allocation, handle: str) -> Iterator[str]:
        agent = self._agent(alloc)
        try:
            text = agent.job_log(handle)
        finally:
            agent.close()
        yield from text.splitlines()

    def cancel_job(self, alloc: Allocation, handle: str) -> None:
        agent = self._agent(alloc)
        try:
            agent.cancel_job(handle)
        finally:
            agent.close()

    def list_outputs(self, alloc: Allocation, outdir: str) -> list[str]:
        url = AgentURL.parse(outdir)
        agent = self._agent(alloc)
        try:
            return [str(url.child(rel[len(url.rel) :].lstrip("/"))) for rel in agent.list(url.rel)]
        finally:
            agent.close()


class AgentStorage(Storage):
    """Verified copies into (upload) and out of (download) a VM's sandbox.

    The other end is a file:// path under this site's roots, or any URL another backend
    serves (it is staged through a temporary file on the worker first)."""

    schemes = (SCHEME,)

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        from stratoflow.sites.local.config import worker_staging

        self.name = name
        self.config = dict(config or {})
        self.local = worker_staging(name, self.config)

    def copy(
        self,
        source_url: str,
        dest_url: str,
        *,
        adler32: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        overwrite: bool = False,
    ) -> StagedFile:
        declared: dict[str, Any] = {"adler32": adler32, "sha256": sha256, "size": size}
        self.local.cfg.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="copy-", dir=self.local.cfg.workdir) as tmp:
            if dest_url.startswith(f"{SCHEME}://"):
                return self._upload(source_url, dest_url, Path(tmp), declared)
            return self._download(source_url, dest_url, Path(tmp), declared, overwrite)

    def _upload(self, source: str, dest: str, tmp: Path, declared: dict) -> StagedFile:
        from stratoflow.sites.catalogue import storage_for_url

        local = tmp / "file"
        # Verified onto the worker first (any backend, any scheme), then verified again by
        # the agent: a byte flipped on either hop is caught.
        remote = urlsplit(source).scheme not in ("", "file")
        storage = storage_for_url(source, self.name) if remote else self.local
        storage.copy(source, local.as_uri(), **declared)
        n, adler, sha = file_checksums(local)
        url = AgentURL.parse(dest)
        agent = client_for(self.config, url)
        try:
            agent.put_file(url.rel, local, sha)
        finally:
            agent.close()
        return StagedFile(dest, n, adler, sha)

    def _download(
        self, source: str, dest: str, tmp: Path, declared: dict, overwrite: bool
    ) -> StagedFile:
        url = AgentURL.parse(source)
        local = tmp / "file"
        agent = client_for(self.config, url)
        try:
            sha, _adler = agent.get_file(url.rel, local)
        finally:
            agent.close()
        actual = file_checksums(local)
        try:
            compare(source, actual, sha256=sha or None)  # what the agent read on the VM
        except ChecksumMismatch as e:
            raise StagingError(f"{source}: corrupted in transit ({e})") from e
        return self.local.copy(local.as_uri(), dest, **declared, overwrite=overwrite)


def _replace(command: list[str] | str, old: str, new: str) -> list[str] | str:
    if isinstance(command, str):
        return command.replace(old, new)
    return [a.replace(old, new) for a in command]


def _bytes(v: bytes | str) -> bytes:
    return v.encode() if isinstance(v, str) else bytes(v)
