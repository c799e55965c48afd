"""The local site: a sandbox directory per deployment, jobs as detached local processes.

Layout under ``<workdir>/deployments/<deployment_id>/`` (the sandbox)::

    artifacts/                         job artifacts (scripts), shared by the deployment
    jobs/<step>/<index>/attempt-<n>/   spec.json runner.json job.json job.log status.json
    outputs/<step>/<index>/            committed outputs (atomic rename of out.tmp)

Every decision reads the files, never process memory, so a task that restarts (or a
trigger on another machine sharing the filesystem) sees the same truth.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.filelock import locked
from stratoflow.sites.base import (
    Allocation,
    Capacity,
    Compute,
    HostRequest,
    JobSpec,
    JobStatus,
    ResourceLedger,
)
from stratoflow.sites.local.config import LocalConfig
from stratoflow.sites.local.runner import LEASE_S, identity, kill_group, runner_alive, visible
from stratoflow.sites.sandbox import (
    JobSlot,
    parse_handle,
    read_json,
    safe_name,
    tail,
    write_artifacts,
    write_json_atomic,
)

MIB = 1 << 20
LOOPBACK = "127.0.0.1"
# What a local deployment's records are: its hosts (directories in its sandbox), or the
# sandbox itself for a deployment without hosts (and records made before hosts were).
RECORD_KINDS = ("host", "sandbox")
# Runners we started from this process; polled only so they do not linger as zombies.
_children: dict[int, subprocess.Popen] = {}


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


class LocalCompute(Compute):
    kind = "local"

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        super().__init__(name, dict(config or {}))
        self.cfg = LocalConfig.from_dict(name, self.config)

    def capacity(self) -> Capacity:
        return Capacity(self.cfg.cores, self.cfg.memory)

    # ---- provisioning -------------------------------------------------------------

    def sandbox(self, deployment_id: str) -> Path:
        return self.cfg.workdir / "deployments" / safe_name(deployment_id, "deployment id")

    def provision(
        self, deployment_id: str, hosts: list[HostRequest], ledger: ResourceLedger
    ) -> Allocation:
        sandbox = self.sandbox(deployment_id)
        cores = sum(h.count * h.num_cpus for h in hosts) or 1
        mem = sum(h.count * h.mem_bytes for h in hosts) or MIB
        if cores > self.cfg.cores or mem > self.cfg.memory:
            raise SiteError(
                f"local: deployment {deployment_id} needs {cores} cores and {mem // MIB} MiB"
                f" but site {self.name!r} has only {self.cfg.cores} cores and"
                f" {self.cfg.memory // MIB} MiB in total; it can never fit here"
            )
        data = {"sandbox": str(sandbox)}
        # Write-ahead: the records exist before the directories do, so a crash in between
        # leaves something the reaper (and teardown) can find. One record per host instance
        # (a directory in the sandbox); a deployment without hosts records the sandbox.
        wanted = [("host", h.node, i) for h in hosts for i in range(h.count)]
        records = [
            ledger.intend_resource(deployment_id, self.name, kind, node, i, data=data)
            for kind, node, i in wanted or [("sandbox", "sandbox", 0)]
        ]
        adopting = sandbox.is_dir() and all(r.state == "created" for r in records)
        try:
            for sub in ("artifacts", "jobs", "outputs"):
                (sandbox / sub).mkdir(parents=True, exist_ok=True)
            instances = self._host_entries(sandbox, hosts)
            granted = ledger.reserve(
                self.name, deployment_id, cores, mem, self.cfg.cores, self.cfg.memory
            )
        except Exception as e:
            self._undo(sandbox, records, ledger, adopting)
            raise SiteError(f"local: cannot create sandbox {sandbox}: {e}") from e
        if not granted:
            self._undo(sandbox, records, ledger, adopting)
            raise SiteError(
                f"local: insufficient capacity at site {self.name!r} for deployment"
                f" {deployment_id} ({cores} cores, {mem // MIB} MiB): other deployments hold"
                " the rest; retry later"
            )
        homes = {(e["node"], e["index"]): e["id"] for e in instances}
        for r in records:
            if r.state != "created":
                ledger.mark_resource_created(r.key, homes.get((r.node, r.index), str(sandbox)))
        return Allocation(
            site=self.name,
            kind=self.kind,
            deployment_id=deployment_id,
            workdir=str(sandbox),
            cores=cores,
            hosts=instances,
            data={
                "sandbox": str(sandbox),
                "artifacts_dir": str(sandbox / "artifacts"),
                "outputs_dir": str(sandbox / "outputs"),
                "mem_bytes": mem,
            },
        )

    @staticmethod
    def _host_entries(sandbox: Path, hosts: list[HostRequest]) -> list[dict]:
        """One entry per instance, each with its own directory in the sandbox. They are all
        this machine: both addresses are the loopback."""
        entries = []
        for h in hosts:
            for i in range(h.count):
                home = sandbox / "hosts" / f"{safe_name(h.node, 'node name')}-{i}"
                home.mkdir(parents=True, exist_ok=True)
                entries.append(
                    {
                        "node": h.node,
                        "index": i,
                        "id": str(home),
                        "address": LOOPBACK,
                        "public_address": LOOPBACK,
                    }
                )
        return entries

    def _undo(self, sandbox: Path, records: list, ledger: ResourceLedger, adopting: bool) -> None:
        if not adopting:
            shutil.rmtree(sandbox, ignore_errors=True)
            for r in records:
                ledger.mark_resource_deleted(r.key)

    def teardown(
        self, deployment_id: str, ledger: ResourceLedger, alloc: Allocation | None = None
    ) -> None:
        sandboxes = {self.sandbox(deployment_id)}
        if alloc is not None:
            sandboxes.add(Path(alloc.workdir))
        records = [
            r
            for r in ledger.resources(deployment_id)
            if r.kind in RECORD_KINDS and r.site == self.name
        ]
        for r in records:
            where = r.data.get("sandbox") or r.external_id
            if where:
                sandboxes.add(Path(where))
            if r.state != "deleting":
                ledger.mark_resource_deleting(r.key)
        for sandbox in sandboxes:
            # Only ever delete something shaped like a sandbox we made, whatever a record says.
            if sandbox.name != deployment_id or sandbox.parent.name != "deployments":
                continue
            self._kill_all(sandbox)
            shutil.rmtree(sandbox, ignore_errors=True)
            if sandbox.exists():
                raise SiteError(f"local: could not remove sandbox {sandbox}")
        ledger.release(self.name, deployment_id)
        for r in records:
            ledger.mark_resource_deleted(r.key)

    def _kill_all(self, sandbox: Path) -> None:
        elsewhere = []
        for attempt in sandbox.glob("jobs/*/*/attempt-*"):
            if (attempt / "status.json").exists():
                continue
            (attempt / "cancel").touch()
            runner = read_json(attempt / "runner.json")
            if visible(runner):  # first the supervisor, so it cannot commit anything
                kill_group(int(runner["pid"]), signal.SIGKILL)
            elif runner_alive(attempt):
                elsewhere.append(attempt)  # another namespace's: only its cancel marker reaches it
            job = read_json(attempt / "job.json")
            if visible(job):
                kill_group(int(job["pid"]), signal.SIGKILL)
        # Their runners kill their jobs on the marker; the sandbox goes once they have.
        deadline = time.time() + self.cfg.kill_grace_s + LEASE_S
        while elsewhere and time.time() < deadline:
            elsewhere = [
                a for a in elsewhere if not (a / "status.json").exists() and runner_alive(a)
            ]
            time.sleep(0.1)
        _reap()

    # ---- jobs ---------------------------------------------------------------------

    def start_job(self, alloc: Allocation, job: JobSpec) -> str:
        _reap()
        slot = JobSlot(Path(alloc.workdir), job.step, int(job.index))
        final = slot.final
        if not Path(alloc.workdir).is_dir():
            raise SiteError(f"local: sandbox {alloc.workdir} is gone (torn down?); provision first")
        with locked(slot.jobdir / ".lock"):
            numbers = slot.attempts()
            if final.exists():
                return slot.committed_handle(numbers)
            if numbers:
                last = slot.attempt(numbers[-1])
                if not (last / "status.json").exists():
                    if runner_alive(last):
                        return slot.handle(numbers[-1])  # adopt the live attempt
                    self._lost(last)
            n = (numbers[-1] if numbers else 0) + 1
            attempt = slot.attempt(n)
            attempt.mkdir(parents=True)
            artifacts = Path(alloc.workdir) / "artifacts"
            write_artifacts(artifacts, job.artifacts)
            spec = {
                "step": job.step,
                "index": int(job.index),
                "command": job.command,
                "inputs": list(job.inputs),
                "env": dict(job.env),
                "num_cpus": int(job.num_cpus),
                "mem_bytes": int(job.mem_bytes),
                "timeout_s": float(job.timeout_s),
                "kill_grace_s": self.cfg.kill_grace_s,
                "address_space_limit": self.cfg.address_space_limit,
                "sandbox": str(alloc.workdir),
                "artifacts_dir": str(artifacts),
                "final_outdir": str(final),
            }
            (attempt / "spec.json").write_text(json.dumps(spec, indent=1))
            if job.image:
                # No container runtime here: say so where the user will look, then run
                # the command with the site's own interpreter and tools.
                (attempt / "job.log").write_text(
                    f"[stratoflow] local site {self.name!r} runs without containers;"
                    f" image {job.image!r} is ignored\n"
                )
            with open(attempt / "runner.log", "ab") as rlog:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "stratoflow.sites.local.runner", "spec.json"],
                    cwd=attempt,
                    stdin=subprocess.DEVNULL,
                    stdout=rlog,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives the task process and its signals
                    close_fds=True,
                )
            _children[proc.pid] = proc
            write_json_atomic(attempt / "runner.json", identity(proc.pid))
            return slot.handle(n)

    def _attempt(self, alloc: Allocation, handle: str) -> tuple[Path | None, Path]:
        return parse_handle("local", Path(alloc.workdir), handle)

    def _lost(self, attempt: Path) -> dict[str, Any]:
        """Record a runner that died without a verdict (host reboot, OOM killer, kill -9)."""
        job = read_json(attempt / "job.json")
        if visible(job):
            kill_group(int(job["pid"]), signal.SIGKILL)
        shutil.rmtree(attempt / "out.tmp", ignore_errors=True)
        status = read_json(attempt / "status.json")  # it may have finished meanwhile
        if status is None:
            reason = "runner lost"
            runner_log = tail(attempt / "runner.log", 5)
            if runner_log:  # the supervisor's own traceback, if it crashed rather than died
                reason += ": " + runner_log
            status = {
                "state": "failed",
                "exit_code": None,
                "reason": reason,
                "core_seconds": 0.0,
                "outdir": None,
            }
            write_json_atomic(attempt / "status.json", status)
        return status

    def job_status(self, alloc: Allocation, handle: str) -> JobStatus:
        attempt, final = self._attempt(alloc, handle)
        if attempt is None:
            if final.exists():
                return JobStatus(handle, "succeeded", exit_code=0, outdir=str(final))
            return JobStatus(handle, "failed", reason="committed output is missing")
        status = read_json(attempt / "status.json")
        if status is None:
            if runner_alive(attempt):
                return JobStatus(handle, "running")
            _reap()
            status = self._lost(attempt)
        return JobStatus(
            handle,
            status["state"],
            exit_code=status.get("exit_code"),
            reason=status.get("reason") or "",
            outdir=status.get("outdir"),
            core_seconds=float(status.get("core_seconds") or 0.0),
        )

    def job_log(self, alloc: Allocation, handle: str) -> Iterator[str]:
        attempt, _ = self._attempt(alloc, handle)
        if attempt is None:
            return
        try:
            with open(attempt / "job.log", encoding="utf-8", errors="replace") as f:
                for line in f:
                    yield line.rstrip("\n")
        except FileNotFoundError:
            return

    def cancel_job(self, alloc: Allocation, handle: str) -> None:
        attempt, _ = self._attempt(alloc, handle)
        if attempt is None or (attempt / "status.json").exists():
            return
        (attempt / "cancel").touch()  # the runner escalates TERM -> KILL and records it
        job = read_json(attempt / "job.json")
        if visible(job):
            kill_group(int(job["pid"]), signal.SIGTERM)
        deadline = time.time() + self.cfg.kill_grace_s + 2
        while time.time() < deadline and not (attempt / "status.json").exists():
            if not runner_alive(attempt):
                self._lost(attempt)
                break
            time.sleep(0.05)
        _reap()
