"""Filesystem helpers every site kind that stages through the workers' disk shares:
names that become path components, staging roots, file URLs, durable renames."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from stratoflow.errors import Issue, SiteError, StagingRefused

SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def safe_name(value: str, what: str) -> str:
    """Names become path components; refuse anything that could climb out of the sandbox."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or value in (".", ".."):
        raise SiteError(f"invalid {what} {value!r}: use letters, digits, '_', '.', '-'")
    return value


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
