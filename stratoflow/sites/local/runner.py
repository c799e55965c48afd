"""Supervisor of one local job attempt: ``python -m stratoflow.sites.local.runner SPEC``.

It runs detached from the Airflow task (its own session), so a deferred task, or a worker
that restarts, does not take the job down. It starts the command in a process group of its
own, enforces the time and memory limits, and ends by writing ``status.json`` atomically;
that file is the single source of truth the compute backend reads.

Memory: RLIMIT_AS alone is not an honest limit. It caps *virtual* address space: importing
numpy + matplotlib and saving a figure maps 318 MB while only 82 MB is resident (measured
on the 2-core dev box), and the mapped part grows with the core count (OpenBLAS buffers and
glibc malloc arenas per thread) to ~1 GB on big hosts, so a job asking for 512 MiB would
die before it had used any of it. The primary limit is therefore what
Slurm's jobacct_gather does without cgroups: poll the resident set size (RSS) of every
process in the job's process group and SIGKILL the group when the sum exceeds
``mem_bytes``. Polling can be outrun by a very fast allocation, so RLIMIT_AS stays as a
backstop at ``max(2 * mem_bytes, mem_bytes + 2 GiB)``: far above what any honest job maps,
low enough to stop a runaway before it takes the machine. Both report "memory limit".
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeGuard

from stratoflow.filelock import locked
from stratoflow.sites.sandbox import (
    THREAD_VARS,
    build_argv,
    read_json,
    tail,
    write_json_atomic,
)

GIB = 1 << 30
MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
# Only these leave the task's environment: Airflow workers carry connection strings and
# secrets in theirs (AIRFLOW_CONN_*, the metadata DB URL) and a user's job must not see them.
PASSED_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if it is gone or a zombie.

    Pairing the pid with its start time guards against a recycled pid looking alive."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


# The runner beats (touches HEARTBEAT) this often. A process in another PID namespace (a
# Celery worker in its own container, the triggerer) cannot see it in /proc, so it counts
# the runner alive until LEASE_S after its last beat, and stops it through the cancel marker.
HEARTBEAT = "heartbeat"
HEARTBEAT_S = 1.0
LEASE_S = 10.0


@functools.cache  # a process never changes its own PID namespace or boot
def _namespace() -> tuple[int, str]:
    """This process's PID namespace and boot: where a recorded pid means something."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return os.stat("/proc/self/ns/pid").st_ino, boot


def identity(pid: int) -> dict[str, Any]:
    """What runner.json and job.json record of a process this one started."""
    pidns, boot = _namespace()
    return {"pid": pid, "start": proc_start_time(pid), "pidns": pidns, "boot": boot}


def _recorded_here(info: dict[str, Any]) -> bool:
    """The record was written in this PID namespace and boot, so its pid means something
    here. (Records without a namespace predate it and were written in this one.)"""
    pidns, boot = _namespace()
    return info.get("pidns", pidns) == pidns and info.get("boot", boot) == boot


def visible(info: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """The recorded process runs, in this PID namespace: it can be signalled from here."""
    if not info or "pid" not in info or not _recorded_here(info):
        return False
    start = proc_start_time(int(info["pid"]))
    return start is not None and start == info.get("start")


def runner_alive(attempt: Path) -> bool:
    """Whether the attempt's runner still runs: seen in /proc when it was started in this
    PID namespace, else by its heartbeat (runner.json's own time until its first beat)."""
    info = read_json(attempt / "runner.json")
    if not info or "pid" not in info:
        return False
    if _recorded_here(info):
        return visible(info)
    beats = []
    for name in (HEARTBEAT, "runner.json"):
        try:
            beats.append((attempt / name).stat().st_mtime)
        except FileNotFoundError:
            continue
    return bool(beats) and time.time() - max(beats) < LEASE_S


def group_rss(pgid: int) -> int:
    """Sum of resident memory of every process in process group ``pgid``, in bytes."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid:
            total += int(fields[21]) * PAGE
    return total


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def job_env(spec: dict[str, Any], outdir: Path, tmpdir: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
    for var in THREAD_VARS:  # a job gets the cores it asked for, no more
        env[var] = str(spec["num_cpus"])
    env.update(
        PYTHONUNBUFFERED="1",  # log lines reach job.log as they are printed
        MPLBACKEND="Agg",
        TMPDIR=str(tmpdir),
    )
    env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
    env.update(
        STRATOFLOW_OUTDIR=str(outdir),
        STRATOFLOW_SANDBOX=spec["sandbox"],
        STRATOFLOW_INPUTS=os.pathsep.join(spec.get("inputs") or []),
        STRATOFLOW_ARTIFACTS=spec["artifacts_dir"],
    )
    return env


def run(spec_path: Path) -> dict[str, Any]:
    spec = json.loads(spec_path.read_text())
    attempt = spec_path.parent
    outdir, tmpdir = attempt / "out.tmp", attempt / "tmp"
    outdir.mkdir(exist_ok=True)
    tmpdir.mkdir(exist_ok=True)
    mem = int(spec["mem_bytes"])
    timeout = float(spec["timeout_s"])
    grace = float(spec.get("kill_grace_s", 5.0))
    backstop = max(2 * mem, mem + 2 * GIB) if spec.get("address_space_limit", True) else None

    def limits() -> None:  # runs in the child between fork and exec
        if backstop is not None:
            resource.setrlimit(resource.RLIMIT_AS, (backstop, backstop))

    started = time.time()
    cause = None  # "timeout" | "memory" | "cancelled"
    peak = 0
    with open(attempt / "job.log", "ab", buffering=0) as log:
        if (attempt / "cancel").exists():
            cause, rc = "cancelled", None
        else:
            try:
                child = subprocess.Popen(
                    build_argv(spec, outdir),
                    cwd=spec["sandbox"],
                    env=job_env(spec, outdir, tmpdir),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                    preexec_fn=limits,
                )
            except OSError as e:
                log.write(f"cannot start {spec['command']!r}: {e}\n".encode())
                return finish(spec, attempt, started, 127, None, f"cannot start command: {e}")
            write_json_atomic(attempt / "job.json", identity(child.pid))
            deadline = started + timeout
            interval = 0.05
            beat = 0.0
            while (rc := child.poll()) is None:
                if time.time() - beat >= HEARTBEAT_S:
                    (attempt / HEARTBEAT).touch()
                    beat = time.time()
                rss = group_rss(child.pid)
                peak = max(peak, rss)
                if cause is None:
                    if rss > mem:
                        cause = "memory"
                        kill_group(child.pid, signal.SIGKILL)
                    elif (attempt / "cancel").exists():
                        cause = "cancelled"
                        kill_group(child.pid, signal.SIGTERM)
                        deadline = time.time()
                    elif time.time() > deadline:
                        cause = "timeout"
                        kill_group(child.pid, signal.SIGTERM)
                elif time.time() > deadline + grace:
                    kill_group(child.pid, signal.SIGKILL)
                try:  # returns as soon as the job exits: a sleep here made each job later
                    child.wait(timeout=interval)
                except subprocess.TimeoutExpired:
                    pass
                interval = min(0.25, interval * 1.5)
            # Background processes the job left behind belong to the job: end them too.
            kill_group(child.pid, signal.SIGKILL)
    return finish(spec, attempt, started, rc, cause, None, peak)


def describe(
    spec: dict[str, Any], attempt: Path, rc: int | None, cause: str | None, peak: int
) -> str:
    mem_mib = int(spec["mem_bytes"]) // MIB
    if cause == "memory":
        return f"memory limit {mem_mib} MiB exceeded (resident {peak // MIB} MiB); killed"
    if cause == "timeout":
        return f"timed out after {spec['timeout_s']:g} s"
    if cause == "cancelled":
        return "cancelled"
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"killed by {name}"
    log_tail = tail(attempt / "job.log")
    if "MemoryError" in log_tail or "Cannot allocate memory" in log_tail:
        return f"exit code {rc} (memory limit {mem_mib} MiB exceeded): {log_tail}"
    return f"exit code {rc}: {log_tail}"


def finish(
    spec: dict[str, Any],
    attempt: Path,
    started: float,
    rc: int | None,
    cause: str | None,
    reason: str | None,
    peak: int = 0,
) -> dict[str, Any]:
    ended = time.time()
    wall = ended - started
    outdir = attempt / "out.tmp"
    final = Path(spec["final_outdir"])
    ok = rc == 0 and cause is None
    if ok:
        final.parent.mkdir(parents=True, exist_ok=True)
        with locked(attempt.parent / ".lock"):
            # Atomic commit: the final dir appears complete or not at all. If an earlier
            # attempt already committed, keep that one: a retry never duplicates output.
            if final.exists():
                shutil.rmtree(outdir, ignore_errors=True)
            else:
                os.rename(outdir, final)
    else:
        shutil.rmtree(outdir, ignore_errors=True)
        reason = reason or describe(spec, attempt, rc, cause, peak)
    shutil.rmtree(attempt / "tmp", ignore_errors=True)
    status = {
        "state": "succeeded" if ok else "failed",
        "exit_code": rc,
        "signal": signal.Signals(-rc).name if rc is not None and rc < 0 else None,
        "reason": "" if ok else reason,
        "started": started,
        "ended": ended,
        "wall_s": wall,
        "core_seconds": wall * int(spec["num_cpus"]),
        "peak_rss_bytes": peak,
        "outdir": str(final) if ok else None,
    }
    write_json_atomic(attempt / "status.json", status)
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m stratoflow.sites.local.runner SPEC.json", file=sys.stderr)
        return 2
    # The supervisor must outlive a SIGTERM/SIGHUP aimed at the task that started it, and
    # still record how the job ended; cancellation goes through the 'cancel' marker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run(Path(args[0]).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
