"""Jobs at a kubernetes site: one pod per attempt, verdicts and outputs on the shared disk.

A mixin of ``KubernetesCompute``; it needs ``self._kube()`` and ``self.cfg`` from there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.filelock import locked
from stratoflow.sites.base import Allocation, JobSpec, JobStatus
from stratoflow.sites.kubernetes.api import KubeApi
from stratoflow.sites.kubernetes.config import KubernetesConfig
from stratoflow.sites.kubernetes.pods import describe, interpret, pod_manifest, pod_name
from stratoflow.sites.sandbox import (
    JobSlot,
    parse_handle,
    read_json,
    tail,
    write_artifacts,
    write_json_atomic,
)


class PodJobs:
    cfg: KubernetesConfig

    def _kube(self) -> KubeApi:
        raise NotImplementedError

    def _attempt(self, alloc: Allocation, handle: str) -> tuple[Path | None, Path]:
        return parse_handle("kubernetes", Path(alloc.workdir), handle)

    def start_job(self, alloc: Allocation, job: JobSpec) -> str:
        sandbox = Path(alloc.workdir)
        if not sandbox.is_dir():
            raise SiteError(f"kubernetes: sandbox {sandbox} is gone (torn down?); provision first")
        namespace = alloc.data["namespace"]
        slot = JobSlot(sandbox, job.step, int(job.index))
        final = slot.final
        kube = self._kube()
        with locked(slot.jobdir / ".lock"):
            numbers = slot.attempts()
            if final.exists():  # a committed output means succeeded: never run it again
                return slot.committed_handle(numbers)
            if numbers:
                last = slot.attempt(numbers[-1])
                spec = read_json(last / "spec.json")
                if spec and not (last / "status.json").exists():
                    pod = kube.read_pod(namespace, spec["pod"])
                    info = interpret(pod) if pod is not None else None
                    if info is not None and info["state"] != "failed":
                        return slot.handle(numbers[-1])  # adopt: running or done
                    self._finalize(alloc, last, spec, info)  # record why, then try again
            n = (numbers[-1] if numbers else 0) + 1
            attempt = slot.attempt(n)
            outdir = attempt / "out.tmp"
            outdir.mkdir(parents=True)
            (attempt / "tmp").mkdir()
            artifacts = sandbox / "artifacts"
            write_artifacts(artifacts, job.artifacts)
            name = pod_name(job.step, int(job.index), n)
            spec = {
                "step": job.step,
                "index": int(job.index),
                "command": job.command,
                "num_cpus": int(job.num_cpus),
                "mem_bytes": int(job.mem_bytes),
                "timeout_s": float(job.timeout_s),
                "namespace": namespace,
                "pod": name,
                "final_outdir": str(final),
            }
            write_json_atomic(attempt / "spec.json", spec)
            manifest = pod_manifest(
                name=name,
                deployment_id=alloc.deployment_id,
                job=job,
                attempt=n,
                image=job.image or self.cfg.image,
                sandbox=sandbox,
                artifacts=artifacts,
                outdir=outdir,
                grace_s=self.cfg.kill_grace_s,
            )
            try:
                kube.create_pod(namespace, manifest)  # False: a lost reply had created it
            except SiteError as e:
                # A create whose reply was lost may still have made the pod (and a resend
                # can then be refused, e.g. by quota). Keep the attempt unless the pod is
                # known to be absent: the next start adopts it, or records it lost.
                try:
                    if kube.read_pod(namespace, name) is not None:
                        return slot.handle(n)
                except SiteError:
                    raise e from None
                shutil.rmtree(attempt, ignore_errors=True)  # refused: leave nothing behind
                raise
            return slot.handle(n)

    def _finalize(
        self, alloc: Allocation, attempt: Path, spec: dict, info: dict | None
    ) -> dict[str, Any]:
        """Write the attempt's verdict once (caller holds the job's lock); commit outputs."""
        status = read_json(attempt / "status.json")
        if status is not None:
            return status
        kube = self._kube()
        text = kube.pod_log(spec["namespace"], spec["pod"]) if info is not None else ""
        (attempt / "job.log").write_text(text)  # the log outlives the pod and the namespace
        outdir, final = attempt / "out.tmp", Path(spec["final_outdir"])
        ok = info is not None and info["state"] == "succeeded"
        if ok:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # an earlier attempt already committed: keep that one
                shutil.rmtree(outdir, ignore_errors=True)
            else:
                os.rename(outdir, final)  # atomic: the outputs appear whole or not at all
            reason = ""
        else:
            shutil.rmtree(outdir, ignore_errors=True)
            if info is None:
                reason = (
                    f"pod {spec['pod']} disappeared before it finished (deleted, evicted and"
                    " garbage-collected, or its namespace removed)"
                )
            else:
                reason = describe(info, spec, tail(attempt / "job.log"))
        seconds = 0.0
        if info is not None and info.get("started") and info.get("finished"):
            seconds = max(0.0, (info["finished"] - info["started"]).total_seconds())
        status = {
            "state": "succeeded" if ok else "failed",
            "exit_code": info.get("exit_code") if info else None,
            "reason": reason,
            "wall_s": seconds,
            "core_seconds": seconds * int(spec["num_cpus"]),
            "outdir": str(final) if ok else None,
        }
        shutil.rmtree(attempt / "tmp", ignore_errors=True)
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
            spec = read_json(attempt / "spec.json")
            if spec is None:
                return JobStatus(handle, "failed", reason=f"no such job attempt {handle}")
            pod = self._kube().read_pod(spec["namespace"], spec["pod"])
            info = interpret(pod) if pod is not None else None
            if info is not None and info["state"] == "running":
                return JobStatus(handle, "running")
            with locked(attempt.parent / ".lock"):
                status = self._finalize(alloc, attempt, spec, info)
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
        saved = attempt / "job.log"
        if saved.exists():
            text = saved.read_text(errors="replace")
        else:
            spec = read_json(attempt / "spec.json")
            if spec is None:
                return
            text = self._kube().pod_log(spec["namespace"], spec["pod"])
        yield from text.splitlines()

    def cancel_job(self, alloc: Allocation, handle: str) -> None:
        attempt, _ = self._attempt(alloc, handle)
        if attempt is None or (attempt / "status.json").exists():
            return
        spec = read_json(attempt / "spec.json")
        if spec is None:
            return
        with locked(attempt.parent / ".lock"):
            if (attempt / "status.json").exists():
                return  # it finished first; its verdict stands
            kube = self._kube()
            (attempt / "job.log").write_text(kube.pod_log(spec["namespace"], spec["pod"]))
            # The verdict first: once it exists no poller can commit this attempt's output.
            write_json_atomic(
                attempt / "status.json",
                {"state": "failed", "exit_code": None, "reason": "cancelled", "outdir": None},
            )
            kube.delete_pod(spec["namespace"], spec["pod"], self.cfg.kill_grace_s)
            shutil.rmtree(attempt / "out.tmp", ignore_errors=True)
