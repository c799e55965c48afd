"""Verified file copies on the local filesystem (file:// URLs and absolute paths)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from stratoflow.errors import ChecksumMismatch, StagingError, StagingRefused
from stratoflow.sites.base import StagedFile, Storage
from stratoflow.sites.checksums import BLOCK, Summer, compare, file_checksums
from stratoflow.sites.files import StagingArea, fsync_dir, is_within, url_to_path


class LocalStorage(Storage):
    schemes = ("file", "")

    def __init__(self, name: str = "local", config: dict[str, Any] | None = None):
        self.name = name
        self.config = dict(config or {})
        self.cfg = StagingArea.parse(name, self.config)

    def readable(self, url: str) -> Path:
        """The local file ``url`` names, if this site may read it (else StagingRefused)."""
        return self._readable(url)

    def _readable(self, url: str) -> Path:
        path = url_to_path(url).resolve()  # follow symlinks: no escaping a root via a link
        if not is_within(path, (self.cfg.workdir, *self.cfg.allowed_roots)):
            raise StagingRefused(
                f"{url}: outside the directories site {self.name!r} may stage from"
                f" ({', '.join(str(r) for r in (self.cfg.workdir, *self.cfg.allowed_roots))})"
            )
        if not path.is_file():
            raise StagingError(f"{url}: no such file")
        return path

    def endpoint_fault(self, base_url: str) -> str | None:
        # A replica is a copy's source (read) and destination (write): both roots must hold it.
        path = url_to_path(base_url).resolve()
        missing = [
            f"{verb} ({field}: {', '.join(str(r) for r in roots)})"
            for verb, field, roots in (
                ("read from", "allowed_roots", (self.cfg.workdir, *self.cfg.allowed_roots)),
                ("write to", "writable_roots", (self.cfg.workdir, *self.cfg.writable_roots)),
            )
            if not is_within(path, roots)
        ]
        if not missing:
            return None
        return f"{path} is outside the directories site {self.name!r} may " + " or ".join(missing)

    def checksums(self, url: str) -> StagedFile:
        path = url_to_path(url).resolve()
        if not is_within(
            path, (self.cfg.workdir, *self.cfg.allowed_roots, *self.cfg.writable_roots)
        ):
            raise StagingRefused(f"{url}: outside the directories site {self.name!r} may read")
        if not path.is_file():
            raise FileNotFoundError(f"{url}: no such file")
        size, adler32, sha256 = file_checksums(path)
        return StagedFile(path.as_uri(), size, adler32, sha256)

    def delete(self, url: str) -> None:
        path = self._writable(url)
        path.unlink(missing_ok=True)
        if path.parent.is_dir():
            fsync_dir(path.parent)

    def _writable(self, url: str) -> Path:
        path = url_to_path(url)
        resolved = path.parent.resolve() / path.name
        roots = (self.cfg.workdir, *self.cfg.writable_roots)
        if path.name in ("", ".", "..") or not is_within(resolved, roots):
            raise StagingRefused(
                f"{url}: outside the directories site {self.name!r} may write to"
                f" ({', '.join(str(r) for r in roots)})"
            )
        return resolved

    def copy(
        self,
        source_url: str,
        dest_url: str,
        *,
        adler32: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        overwrite: bool = False,
    ) -> StagedFile:
        src = self._readable(source_url)
        dest = self._writable(dest_url)
        declared: dict[str, Any] = {"adler32": adler32, "sha256": sha256, "size": size}
        if dest.exists() and not overwrite:
            actual = file_checksums(dest)
            try:
                compare(str(dest), actual, **declared)
                if not any(v is not None for v in declared.values()):
                    # Nothing declared: only an identical copy counts as "already staged".
                    size_, adler, sha = file_checksums(src)
                    compare(str(dest), actual, size=size_, adler32=adler, sha256=sha)
            except ChecksumMismatch as e:
                raise StagingError(
                    f"{dest_url}: exists and does not match the source ({e});"
                    " pass overwrite=True to replace it"
                ) from e
            return StagedFile(dest.as_uri(), actual[0], actual[1], actual[2])
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.part-{secrets.token_hex(6)}")
        try:
            summer = Summer()
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while block := fin.read(BLOCK):
                    summer.update(block)
                    fout.write(block)
                fout.flush()
                os.fsync(fout.fileno())
            compare(source_url, (summer.size, summer.adler32, summer.sha256), **declared)
            os.replace(tmp, dest)
        except ChecksumMismatch:
            tmp.unlink(missing_ok=True)
            raise
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StagingError(f"{source_url} -> {dest_url}: {e}") from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(dest.parent)  # the rename itself must survive a crash
        return StagedFile(dest.as_uri(), summer.size, summer.adler32, summer.sha256)
