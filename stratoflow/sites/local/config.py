"""Configuration of the local site: capacity, working directory, staging roots."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratoflow.config import expand, stratoflow_home
from stratoflow.errors import Issue, SiteError
from stratoflow.sites.files import validate_roots


def physical_memory() -> int:
    """Physical memory, or the container's cgroup limit when that is lower: "auto" must
    not promise jobs memory the kernel's OOM killer will take back."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


@dataclass(frozen=True)
class LocalConfig:
    name: str
    cores: int
    memory: int
    workdir: Path
    allowed_roots: tuple[Path, ...]  # staging may read from these (and the workdir)
    writable_roots: tuple[Path, ...]  # staging may write into these (and the workdir)
    kill_grace_s: float = 5.0
    # A backstop RLIMIT_AS on jobs (see runner.py); off for JVM/Go jobs that reserve
    # huge address space they never touch.
    address_space_limit: bool = True

    @classmethod
    def from_dict(cls, name: str, config: dict[str, Any] | None) -> LocalConfig:
        c = dict(config or {})
        cores = c.get("cores", "auto")
        cores = (os.cpu_count() or 1) if cores in (None, "auto") else int(cores)
        memory = c.get("memory", "auto")
        memory = physical_memory() if memory in (None, "auto") else int(memory)
        if cores < 1 or memory < 1:
            raise SiteError(f"local site {name!r}: cores and memory must be positive")
        workdir = c.get("workdir") or str(stratoflow_home() / "sites" / name)
        workdir_p = Path(expand(str(workdir))).expanduser().resolve()
        roots = tuple(
            Path(expand(str(r))).expanduser().resolve() for r in c.get("allowed_roots") or []
        )
        wroots = c.get("writable_roots")
        if wroots is None:
            wroots = [str(stratoflow_home())]
        writable = tuple(Path(expand(str(r))).expanduser().resolve() for r in wroots)
        return cls(
            name=name,
            cores=cores,
            memory=memory,
            workdir=workdir_p,
            allowed_roots=roots,
            writable_roots=writable,
            kill_grace_s=float(c.get("kill_grace_s", 5.0)),
            address_space_limit=bool(c.get("address_space_limit", True)),
        )


def worker_staging(name: str, config: dict[str, Any]) -> Any:
    """The worker-side LocalStorage of a site whose own storage is remote (a VM's agent,
    OneData): its own staging directory for temporary copies, and the site's roots for
    what stage-in may read and stage-out may write."""
    from stratoflow.sites.local.storage import LocalStorage

    return LocalStorage(
        name,
        {
            "workdir": str(stratoflow_home() / "sites" / name / "staging"),
            "allowed_roots": config.get("allowed_roots") or [],
            "writable_roots": config.get("writable_roots"),
        },
    )


def _positive_or_auto(path: str, value: Any) -> list[Issue]:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return []
    return [Issue(path, f"expected a positive integer or 'auto', got {value!r}")]


def validate_entry(path: str, entry: dict[str, Any]) -> list[Issue]:
    """The catalogue entry of a local site, each fault at its field."""
    issues: list[Issue] = []
    known = {
        "name",
        "kind",
        "cores",
        "memory",
        "workdir",
        "allowed_roots",
        "writable_roots",
        "kill_grace_s",
        "address_space_limit",
    }
    for key in entry:
        if key not in known:
            issues.append(
                Issue(f"{path}.{key}", f"unknown field; expected one of {', '.join(sorted(known))}")
            )
    for key in ("cores", "memory"):
        if key in entry:
            issues += _positive_or_auto(f"{path}.{key}", entry[key])
    if "workdir" in entry and not isinstance(entry["workdir"], str):
        issues.append(Issue(f"{path}.workdir", "expected a path string"))
    issues += validate_roots(path, entry)
    return issues
