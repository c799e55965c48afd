"""Pod manifests for jobs, and what a pod's status means for a JobStatus (pure functions)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stratoflow.sites.base import JobSpec
from stratoflow.sites.kubernetes.config import (
    L_ATTEMPT,
    L_DEPLOYMENT,
    L_INDEX,
    L_MANAGED,
    L_STEP,
    dns_label,
    label_value,
)
from stratoflow.sites.sandbox import THREAD_VARS, build_argv

MIB = 1 << 20
CONTAINER = "job"
# Waiting reasons a pod never recovers from by itself: fail fast instead of sitting in
# Pending until the job's deadline.
FATAL_WAITING = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)


def pod_name(step: str, index: int, attempt: int) -> str:
    # Deterministic, so a create retried after a lost reply hits 409 instead of a twin.
    return dns_label(f"sf-{step}-{'m' if index < 0 else index}-a{attempt}")


def _mount_dirs(sandbox: Path, inputs: list[str]) -> list[str]:
    """Directories holding inputs outside the sandbox: mounted read-only at the same path."""
    dirs: list[str] = []
    for f in inputs:
        d = os.path.dirname(os.path.abspath(f))
        if Path(d).is_relative_to(sandbox) or any(Path(d).is_relative_to(x) for x in dirs):
            continue
        dirs = [x for x in dirs if not Path(x).is_relative_to(d)] + [d]
    return sorted(dirs)


def pod_manifest(
    *,
    name: str,
    deployment_id: str,
    job: JobSpec,
    attempt: int,
    image: str,
    sandbox: Path,
    artifacts: Path,
    outdir: Path,
    grace_s: float = 5.0,
) -> dict[str, Any]:
    spec = {"command": job.command, "artifacts_dir": str(artifacts)}
    argv = build_argv(spec, outdir)  # the local runner's rules: str -> /bin/sh -c, placeholders
    env = {var: str(job.num_cpus) for var in THREAD_VARS}  # the cores it asked for, no more
    env.update(PYTHONUNBUFFERED="1", MPLBACKEND="Agg", TMPDIR=str(outdir.parent / "tmp"))
    env.update({str(k): str(v) for k, v in job.env.items()})
    env.update(
        STRATOFLOW_OUTDIR=str(outdir),
        STRATOFLOW_SANDBOX=str(sandbox),
        STRATOFLOW_INPUTS=os.pathsep.join(job.inputs),
        STRATOFLOW_ARTIFACTS=str(artifacts),
    )
    mounts = [("sandbox", str(sandbox), False)]
    mounts += [(f"in-{i}", d, True) for i, d in enumerate(_mount_dirs(sandbox, job.inputs))]
    resources = {"cpu": str(job.num_cpus), "memory": str(int(job.mem_bytes))}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                L_MANAGED: "stratoflow",
                L_DEPLOYMENT: label_value(deployment_id),
                L_STEP: label_value(job.step),
                L_INDEX: str(int(job.index)),
                L_ATTEMPT: str(attempt),
            },
            "annotations": {"stratoflow.io/step": job.step, "stratoflow.io/image": image},
        },
        "spec": {
            "restartPolicy": "Never",  # a retry is Airflow's decision, as a new attempt
            "activeDeadlineSeconds": max(1, int(job.timeout_s + 0.999)),
            "terminationGracePeriodSeconds": max(0, int(grace_s)),
            "automountServiceAccountToken": False,  # a user's job gets no API credentials
            "containers": [
                {
                    "name": CONTAINER,
                    "image": image,
                    "command": argv,
                    "workingDir": str(sandbox),
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "resources": {"requests": resources, "limits": dict(resources)},
                    "volumeMounts": [
                        {"name": n, "mountPath": p, "readOnly": ro} for n, p, ro in mounts
                    ],
                }
            ],
            "volumes": [
                {"name": n, "hostPath": {"path": p, "type": "Directory"}} for n, p, _ in mounts
            ],
        },
    }


def interpret(pod: Any) -> dict[str, Any]:
    """``{state, exit_code, kind, started, finished}`` from a V1Pod.

    ``kind`` is why it failed: "deadline", "oom", "exit", "signal", "fatal:<reason>",
    "evicted" or "" when it did not fail.
    """
    status = pod.status
    phase = status.phase if status else None
    cs = (status.container_statuses or [None])[0] if status else None
    term = cs.state.terminated if cs and cs.state else None
    waiting = cs.state.waiting if cs and cs.state else None
    out: dict[str, Any] = {"state": "running", "exit_code": None, "kind": "", "message": ""}
    if term is not None:
        out.update(
            exit_code=term.exit_code,
            started=term.started_at,
            finished=term.finished_at,
            message=term.message or "",
        )
    if phase == "Succeeded":
        out["state"] = "succeeded"
    elif phase == "Failed":
        out["state"] = "failed"
        if status.reason == "DeadlineExceeded":
            out["kind"] = "deadline"
        elif status.reason == "Evicted":
            out.update(kind="evicted", message=status.message or "")
        elif term is not None and term.reason == "OOMKilled":
            out["kind"] = "oom"
        elif term is not None and term.exit_code is not None and term.exit_code > 128:
            out["kind"] = "signal"
        else:
            out["kind"] = "exit"
    elif waiting is not None and waiting.reason in FATAL_WAITING:
        out.update(state="failed", kind=f"fatal:{waiting.reason}", message=waiting.message or "")
    return out


def describe(info: dict[str, Any], job: dict[str, Any], log_tail: str) -> str:
    """The human-readable reason of a failed pod, in the local site's words where they fit."""
    kind, code = info["kind"], info["exit_code"]
    if kind == "deadline":
        return f"timed out after {job['timeout_s']:g} s (activeDeadlineSeconds; pod killed)"
    if kind == "oom":
        return (
            f"memory limit {int(job['mem_bytes']) // MIB} MiB exceeded (OOMKilled, exit code"
            f" {code})"
        )
    if kind == "evicted":
        return f"pod evicted: {info['message']}"
    if kind.startswith("fatal:"):
        return f"pod cannot start: {kind[6:]}: {info['message']}"
    if kind == "signal":
        reason = f"killed (exit code {code}, signal {code - 128})"
        return f"{reason}: {log_tail}" if log_tail else reason
    reason = f"exit code {code}"
    if info["message"]:
        reason += f" ({info['message']})"
    return f"{reason}: {log_tail}" if log_tail else reason
