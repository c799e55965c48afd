"""The job layout of a deployment sandbox, shared by the kinds whose jobs write where
Stratoflow can read (local processes, kubernetes pods on a shared volume).

``jobs/<step>/<index>/attempt-<n>/`` holds each attempt (spec, status, log, ``out.tmp``);
``outputs/<step>/<index>/`` is the committed output, renamed into place by the one
attempt that succeeded. A job handle is ``<step>/<index>/attempt-<n>``, or
``<step>/<index>/committed`` when only the committed output is known.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from stratoflow.errors import SiteError

# A job gets the cores it asked for, no more: every runtime sets these to num_cpus.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
HANDLE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)/(-?\d+)/(attempt-\d+|committed)$")


def safe_name(value: str, what: str) -> str:
    """Names become path components; refuse anything that could climb out of the sandbox."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or value in (".", ".."):
        raise SiteError(f"invalid {what} {value!r}: use letters, digits, '_', '.', '-'")
    return value


class JobSlot:
    """One job (step, index) of a sandbox: its attempts and its committed output."""

    def __init__(self, sandbox: Path, step: str, index: int):
        step = safe_name(step, "step")
        self.prefix = f"{step}/{int(index)}"
        self.jobdir = sandbox / "jobs" / step / str(int(index))
        self.final = sandbox / "outputs" / step / str(int(index))

    def attempts(self) -> list[int]:
        """The attempt numbers so far, in order."""
        return sorted(
            int(p.name.split("-", 1)[1]) for p in self.jobdir.glob("attempt-*") if p.is_dir()
        )

    def attempt(self, n: int) -> Path:
        return self.jobdir / f"attempt-{n}"

    def handle(self, n: int) -> str:
        return f"{self.prefix}/attempt-{n}"

    def committed_handle(self, numbers: list[int]) -> str:
        """For a committed output: the attempt that succeeded, else ``committed``. A job
        whose output is committed never runs again."""
        for n in reversed(numbers):
            status = read_json(self.attempt(n) / "status.json")
            if status and status.get("state") == "succeeded":
                return self.handle(n)
        return f"{self.prefix}/committed"


def parse_handle(kind: str, sandbox: Path, handle: str) -> tuple[Path | None, Path]:
    """``(attempt directory or None when only committed, committed output directory)``."""
    m = HANDLE.match(handle)
    if not m:
        raise SiteError(f"{kind}: malformed job handle {handle!r}")
    slot = JobSlot(sandbox, m.group(1), int(m.group(2)))
    return (None if m.group(3) == "committed" else slot.jobdir / m.group(3)), slot.final


def write_artifacts(directory: Path, artifacts: dict[str, bytes]) -> None:
    """The job's artifacts (scripts) into ``directory``, each replaced atomically: a
    running job never sees a half-written script."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in artifacts.items():
        safe_name(name, "artifact name")
        path = directory / name
        data = content.encode() if isinstance(content, str) else bytes(content)
        if path.exists() and path.read_bytes() == data:
            continue
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never half of one (tmp + fsync + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def tail(path: Path, n: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-n:])


def build_argv(spec: dict[str, Any], outdir: Path) -> list[str]:
    def sub(s: str) -> str:
        # Only we know the attempt's output dir; {artifacts} is normally substituted
        # upstream, but replacing a leftover one is harmless and saves a confusing failure.
        return s.replace("{outdir}", str(outdir)).replace("{artifacts}", spec["artifacts_dir"])

    command = spec["command"]
    if isinstance(command, str):
        return ["/bin/sh", "-c", sub(command)]
    return [sub(str(a)) for a in command]
