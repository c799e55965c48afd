"""Verified copies between OneData spaces and the local filesystem: onedata://space/path.

Download: the content is streamed to a temporary file, compared with the provider's size
and the declared checksums, then renamed into place by the local backend (under this
site's roots). Upload: the source is read under this site's roots and checked, written to
the provider, and read back; a copy that does not match is deleted and raised as
``ChecksumMismatch``. The REST API has no rename, so an upload is visible under its final
name while it is written; readers should wait for the staging task to finish.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stratoflow.errors import ChecksumMismatch, StagingError
from stratoflow.sites.base import Replication, StagedFile, Storage
from stratoflow.sites.checksums import compare, file_checksums
from stratoflow.sites.credentials import credentials
from stratoflow.sites.onedata.config import OnedataConfig
from stratoflow.sites.waits import WaitSpec

SCHEME = "onedata"


def split_url(url: str) -> tuple[str, str]:
    """``onedata://space/dir/file`` -> (``space``, ``dir/file``)."""
    parts = urlsplit(url)
    rel = unquote(parts.path).strip("/")
    if parts.scheme != SCHEME or not parts.netloc or not rel or ".." in rel.split("/"):
        raise StagingError(f"{url}: expected onedata://<space>/<path> without '..'")
    return parts.netloc, rel


class OnedataStorage(Storage, Replication):
    schemes = (SCHEME,)
    service = "OneData"

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        from stratoflow.sites.local.config import worker_staging

        self.name = name
        self.config = dict(config or {})
        self.cfg = OnedataConfig.parse(name, self.config)
        self.local = worker_staging(name, self.config)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = credentials().onedata_client(self.cfg.conn_id)
        return self._client

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
        declared: dict[str, Any] = {"adler32": adler32, "sha256": sha256, "size": size}
        self.local.cfg.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="copy-", dir=self.local.cfg.workdir) as tmp:
            local = Path(tmp) / "file"
            if urlsplit(source_url).scheme == SCHEME:
                self._download(source_url, local, declared)
                if urlsplit(dest_url).scheme != SCHEME:
                    return self.local.copy(
                        local.as_uri(), dest_url, **declared, overwrite=overwrite
                    )
                source_url = local.as_uri()
            return self._upload(source_url, dest_url, declared, overwrite)

    def replication(self) -> Replication:
        return self

    def replicas_wait(self, requirement_ids: list[str]) -> WaitSpec:
        return WaitSpec(
            "onedata.replicas_done",
            {"conn_id": self.cfg.conn_id, "qos_ids": list(requirement_ids)},
            poll_interval_s=2.0,
        )

    def require_replicas(self, urls: list[str], expression: str, replicas: int) -> list[str]:
        """Add a QoS requirement per file; wait on the ids with ``replicas_wait``."""
        from stratoflow.sites.onedata.replication import require_replicas

        return require_replicas(self.client, urls, expression, replicas)

    def checksums(self, url: str) -> StagedFile:
        """The file's bytes read back from the provider and summed."""
        space, rel = split_url(url)
        fid = self.client.file_id(f"{space}/{rel}")
        if fid is None:
            raise FileNotFoundError(f"{url}: no such file in space {space!r}")
        with tempfile.TemporaryDirectory(prefix="verify-", dir=self.local.cfg.workdir) as tmp:
            back = Path(tmp) / "file"
            self.client.download(fid, back)
            return StagedFile(url, *file_checksums(back))

    def delete(self, url: str) -> None:
        space, rel = split_url(url)
        fid = self.client.file_id(f"{space}/{rel}")
        if fid is not None:  # gone already is not an error
            self.client.delete(fid)

    def _download(self, url: str, local: Path, declared: dict) -> None:
        space, rel = split_url(url)
        fid = self.client.file_id(f"{space}/{rel}")
        if fid is None:
            raise StagingError(f"{url}: no such file in space {space!r}")
        expected = int(self.client.attributes(fid).get("size", -1))
        self.client.download(fid, local)
        actual = file_checksums(local)
        if expected >= 0 and actual[0] != expected:
            raise ChecksumMismatch(f"{url}: size expected {expected}, got {actual[0]}")
        compare(url, actual, **declared)

    def _upload(self, source: str, dest: str, declared: dict, overwrite: bool) -> StagedFile:
        space, rel = split_url(dest)
        src = self.local.readable(source)
        n, adler, sha = file_checksums(src)
        compare(source, (n, adler, sha), **declared)
        existing = self.client.file_id(f"{space}/{rel}")
        if existing is not None:
            if not overwrite:
                return self._adopt(dest, existing, (n, adler, sha))
            self.client.delete(existing)
        root = self.client.file_id(space)
        if root is None:
            raise StagingError(f"{dest}: no space {space!r} at this provider")
        fid = self.client.create(root, rel, src.read_bytes())
        self._verify_remote(dest, fid, (n, adler, sha))
        return StagedFile(dest, n, adler, sha)

    def _verify_remote(
        self, url: str, fid: str, want: tuple[int, str, str], *, ours: bool = True
    ) -> None:
        """Read the copy back: what the provider stored must be what was sent."""
        with tempfile.TemporaryDirectory(prefix="check-", dir=self.local.cfg.workdir) as tmp:
            back = Path(tmp) / "file"
            self.client.download(fid, back)
            try:
                compare(f"{url} (read back)", file_checksums(back), size=want[0], sha256=want[2])
            except ChecksumMismatch:
                if ours:  # never delete a file this copy did not write
                    self.client.delete(fid)
                raise

    def _adopt(self, url: str, fid: str, want: tuple[int, str, str]) -> StagedFile:
        """An identical file already there is the result of an earlier try."""
        try:
            self._verify_remote(url, fid, want, ours=False)
        except ChecksumMismatch as e:
            raise StagingError(
                f"{url}: exists and does not match the source ({e}); pass overwrite=True"
            ) from e
        return StagedFile(url, *want)
