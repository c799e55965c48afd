"""Configuration of the local site: capacity, working directory, staging roots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, Strict

from stratoflow.config import stratoflow_home
from stratoflow.sites.fields import Flag, Interval, auto, expect
from stratoflow.sites.files import StagingArea
from stratoflow.sites.queue_policy import QueueFields


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


def cpu_count() -> int:
    return os.cpu_count() or 1


AUTO = expect("a positive integer or 'auto'")
Cores = Annotated[int, Strict(), Field(ge=1), AUTO, auto(cpu_count)]
Memory = Annotated[int, Strict(), Field(ge=1), AUTO, auto(physical_memory)]


class LocalConfig(StagingArea, QueueFields):
    model_config = ConfigDict(extra="forbid")  # the kind's own entry: every field is known

    cores: Cores = Field(default_factory=cpu_count, description="cores jobs may use, or 'auto'")
    memory: Memory = Field(
        default_factory=physical_memory, description="memory in bytes jobs may use, or 'auto'"
    )
    kill_grace_s: Interval = Field(5.0, description="seconds a cancelled job has to exit")
    # A backstop RLIMIT_AS on jobs (see runner.py); off for JVM/Go jobs that reserve
    # huge address space they never touch.
    address_space_limit: Flag = Field(True, description="limit jobs' address space")

    @classmethod
    def from_dict(cls, name: str, config: dict[str, Any] | None) -> LocalConfig:
        return cls.parse(name, config)


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
