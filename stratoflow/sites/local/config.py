"""Configuration of the local site: capacity, working directory, staging roots."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratoflow.errors import Issue, SiteError
from stratoflow.store.config import stratoflow_home

SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def include_dir() -> Path:
    """The repository's ``include/`` (templates, site catalogue, demo data)."""
    import stratoflow

    return Path(stratoflow.__file__).resolve().parents[1] / "include"


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


def expand(value: str) -> str:
    """Expand ``{include}`` and ``{home}`` (STRATOFLOW_HOME) in a configured path."""
    return value.replace("{include}", str(include_dir())).replace("{home}", str(stratoflow_home()))


def safe_name(value: str, what: str) -> str:
    """Names become path components; refuse anything that could climb out of the sandbox."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or value in (".", ".."):
        raise SiteError(f"local: invalid {what} {value!r}: use letters, digits, '_', '.', '-'")
    return value


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


def is_within(path: Path, roots: tuple[Path, ...] | list[Path]) -> bool:
    """True if ``path`` (already resolved, symlinks followed) lies inside one of ``roots``."""
    return any(path == r or path.is_relative_to(r) for r in roots)


def validate_roots(path: str, entry: dict[str, Any]) -> list[Issue]:
    """``allowed_roots``/``writable_roots`` of any site kind that stages through the
    workers' filesystem: lists of absolute paths (``{include}``, ``{home}`` and ``~``
    allowed), each fault at ``sites[i].<key>[j]``."""
    issues: list[Issue] = []
    for key in ("allowed_roots", "writable_roots"):
        roots = entry.get(key)
        if roots is None:
            continue
        if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
            issues.append(Issue(f"{path}.{key}", "expected a list of directory paths"))
            continue
        for i, root in enumerate(roots):
            expanded = root.replace("{include}", "/").replace("{home}", "/")
            if not os.path.isabs(os.path.expanduser(expanded)):
                issues.append(Issue(f"{path}.{key}[{i}]", f"{root!r} is not an absolute path"))
    return issues


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
