"""Filesystem helpers every site kind that stages through the workers' disk shares:
names that become path components, staging roots, file URLs, durable renames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import ConfigDict, Field, model_validator

from stratoflow.config import stratoflow_home
from stratoflow.errors import StagingRefused
from stratoflow.sites.fields import LocalDir, Roots, home_only
from stratoflow.sites.schema import SiteSchema


def is_within(path: Path, roots: tuple[Path, ...] | list[Path]) -> bool:
    """True if ``path`` (already resolved, symlinks followed) lies inside one of ``roots``."""
    return any(path == r or path.is_relative_to(r) for r in roots)


class StagingRoots(SiteSchema):
    """Where staging through the workers' filesystem may read and write, besides the
    site's own workdir: the roots of every kind that stages through local disk."""

    allowed_roots: Roots = Field((), description="directories stage-in may read from")
    writable_roots: Roots = Field(
        default_factory=home_only,
        description="directories stage-out may write to (default: the Stratoflow home)",
    )


def default_workdir(data: Any) -> Any:
    """A site's sandbox defaults to ``<home>/sites/<name>``, so it depends on the name."""
    if isinstance(data, dict) and data.get("workdir") is None:
        return {**data, "workdir": str(stratoflow_home() / "sites" / str(data.get("name")))}
    return data


class StagingArea(StagingRoots):
    """Where a site's files sit on the workers' disk, read from any kind's entry that the
    kind's own schema has already checked (local, kubernetes, a VM site's worker-side
    copies): only the staging fields count here, so the rest of the entry is ignored."""

    model_config = ConfigDict(extra="ignore")

    workdir: LocalDir = Field(description="the site's directory on the workers")

    _workdir_default = model_validator(mode="before")(default_workdir)


def url_to_path(url: str) -> Path:
    """``file:///a/b`` or ``/a/b`` -> ``Path('/a/b')``; anything else is refused."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StagingRefused(f"{url}: file URLs must name a local path (file:///...)")
        path = unquote(parsed.path)
    elif parsed.scheme == "":
        path = url
    else:
        raise StagingRefused(f"{url}: local storage handles file:// URLs only")
    if not os.path.isabs(path):
        raise StagingRefused(f"{url}: local paths must be absolute")
    return Path(path)


def fsync_dir(path: Path) -> None:
    """Make a rename or create in ``path`` survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
