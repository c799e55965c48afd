"""Staging helpers: naming, selection of outputs, and verified copies with accounting."""

from __future__ import annotations

import fnmatch
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stratoflow.errors import TemplateError
from stratoflow.sites.base import StagedFile

log_ = logging.getLogger(__name__)


def url_basename(url: str) -> str:
    return os.path.basename(unquote(urlsplit(url).path)) or "file"


def site_path(url: str) -> str:
    """The path a job sees for a staged file (staged files are file:// URLs at the site)."""
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme in ("", "file") else url


def staged_name(index: int | None, url: str) -> str:
    """A collision-free name in the sandbox: two datasets may share base names."""
    base = url_basename(url)
    return base if index is None else f"{index:05d}_{base}"


def results_dir(location: str, deployment_id: str) -> Path:
    """Where a deployment's staged-out results go.

    A relative location is a directory under STRATOFLOW_HOME; ``file://`` URLs and
    absolute paths are taken as given. Either way the deployment gets its own directory so
    two runs never overwrite each other.
    """
    from stratoflow.config import stratoflow_home

    if not isinstance(location, str) or not location.strip():
        raise TemplateError(f"output_location: expected a path or file:// URL, got {location!r}")
    parts = urlsplit(location)
    if parts.scheme not in ("", "file"):
        raise TemplateError(
            f"output_location: scheme '{parts.scheme}' is not served by the local site"
        )
    path = Path(unquote(parts.path)) if parts.scheme else Path(location)
    if not path.is_absolute():
        if ".." in path.parts:
            raise TemplateError(f"output_location: '{location}' must not contain '..'")
        path = stratoflow_home() / path
    return path / deployment_id


def select_outputs(sources: list[Any], patterns: list[str]) -> list[dict]:
    """Files from job results (a result, or a mapped job's list of them) that match."""
    results: list[dict] = []
    for src in sources:
        if isinstance(src, dict):
            results.append(src)
        elif src is not None:
            results.extend(r for r in src if r)
    files: list[dict] = []
    seen: set[str] = set()
    for result in results:
        for path in result.get("files", []):
            name = os.path.basename(path)
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            if name in seen:
                name = f"{result.get('index', len(seen))}_{name}"
            seen.add(name)
            url = path if "://" in path else Path(path).as_uri()  # remote sandboxes give URLs
            files.append({"url": url, "name": name})
    if patterns and not files:
        raise FileNotFoundError(f"no job output matches {patterns}")
    return files


def stage_files(
    files: list[dict],
    dests: list[str],
    store: Any,
    deployment_id: str,
    site: str,
    step: str,
    *,
    log: Any = log_,
    overwrite: bool = False,
) -> list[StagedFile]:
    from stratoflow.execution.placement import storage_for_url as storage_for

    staged: list[StagedFile] = []
    moved = 0
    for ref, dest in zip(files, dests, strict=True):
        # A remote destination (a VM's sandbox) is served by its own backend, which reads
        # the source itself; otherwise the source's backend writes to the local dest.
        remote_dest = urlsplit(dest).scheme not in ("", "file")
        storage = storage_for(dest if remote_dest else ref["url"], site)
        copy = storage.copy(
            ref["url"],
            dest,
            adler32=ref.get("adler32"),
            sha256=ref.get("sha256"),
            size=ref.get("size"),
            overwrite=overwrite,
        )
        log.info(
            "staged %s -> %s (%d bytes, adler32 %s)", ref["url"], copy.url, copy.size, copy.adler32
        )
        staged.append(copy)
        moved += copy.size
    store.add_usage(deployment_id, site, step, bytes_moved=moved)
    return staged
