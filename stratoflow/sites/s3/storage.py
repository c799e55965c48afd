"""Verified copies between S3 (``s3://bucket/key``) and local files, and within S3.

Integrity, end to end:

* upload: the local file is summed first (size, adler32, sha256) and compared with what
  the dataset declares, so a bad source never leaves the machine. The object is then
  written with those sums as metadata (``x-amz-meta-sha256``/``-adler32``) and with
  ``ChecksumAlgorithm=SHA256`` so S3 checks every part on arrival; the bytes actually sent
  are summed again, and the stored object's size, metadata and (single-part) stored
  ``x-amz-checksum-sha256`` are checked. Any mismatch deletes the object.
* download: streamed in order (multipart ranged GETs reassembled by s3transfer) into a
  temporary name beside the destination while being summed, compared with the declared
  sums and the object's recorded sums, then ``os.replace``d into place.
* s3 -> s3: a server-side copy. The source's recorded sums (or, if it has none, a
  streamed read of it) are checked first; the copy carries them as metadata.

The local file is read twice on upload. That is the price of refusing a corrupt source
before any byte is sent and of stamping the object with its sums atomically at creation.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from stratoflow.errors import ChecksumMismatch, StagingError, StagingRefused
from stratoflow.sites.base import StagedFile, Storage
from stratoflow.sites.checksums import BLOCK, Summer, compare, file_checksums
from stratoflow.sites.credentials import credentials
from stratoflow.sites.files import fsync_dir, is_within, url_to_path
from stratoflow.sites.s3.config import S3Config

BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_RANGE = 64 << 20  # read_range returns bytes in memory: bound it
Sums = tuple[int, str | None, str | None]  # size, adler32, sha256 (None: not known)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; anything else is refused."""
    parsed = urlparse(url)
    if parsed.scheme != "s3":
        raise StagingRefused(f"{url}: not an s3:// URL")
    bucket, key = parsed.netloc, unquote(parsed.path).lstrip("/")
    if not BUCKET.match(bucket) or ".." in bucket:
        raise StagingRefused(f"{url}: invalid bucket name {bucket!r}")
    if not key or key.endswith("/"):
        raise StagingRefused(f"{url}: must name an object (s3://bucket/key), not a prefix")
    return bucket, key


class _SummingReader:
    """Read-only and deliberately not seekable: s3transfer then reads strictly in order,
    so the sums cover exactly the bytes sent, once."""

    def __init__(self, f: Any):
        self._f = f
        self.summer = Summer()

    def read(self, n: int = -1) -> bytes:
        block = self._f.read(n)
        self.summer.update(block)
        return block


class _SummingWriter:
    """Write-only, not seekable: s3transfer writes ranged parts in order, so the sums are
    computed while the data lands, without a second read."""

    def __init__(self, f: Any):
        self._f = f
        self.summer = Summer()

    def write(self, block: bytes) -> int:
        self.summer.update(block)
        return self._f.write(block)


def _client_errors() -> tuple[type[BaseException], ...]:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError, S3UploadFailedError)


def _status(e: BaseException) -> int:
    return int(getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3Storage(Storage):
    schemes = ("s3",)

    def __init__(self, name: str = "s3", config: dict[str, Any] | None = None):
        self.name = name
        self.config = dict(config or {})
        self.cfg = S3Config.from_dict(name, self.config)
        self._s3: Any = None

    # ---- clients and paths ----------------------------------------------------------

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            # Path-style addressing: S3-compatible stores and 127.0.0.1 have no
            # per-bucket DNS names.
            self._s3 = credentials().aws_client(
                self.cfg.conn_id,
                "s3",
                region_name=self.cfg.region,
                endpoint_url=self.cfg.endpoint_url,
                max_attempts=self.cfg.max_attempts,
                s3={"addressing_style": "path"},
            )
        return self._s3

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.cfg.multipart_threshold,
            multipart_chunksize=self.cfg.multipart_chunksize,
            max_concurrency=self.cfg.max_concurrency,
        )

    def _readable(self, url: str) -> Path:
        path = url_to_path(url).resolve()
        if not is_within(path, self.cfg.allowed_roots):
            raise StagingRefused(f"{url}: outside the directories site {self.name!r} may read")
        if not path.is_file():
            raise StagingError(f"{url}: no such file")
        return path

    def _writable(self, url: str) -> Path:
        path = url_to_path(url)
        resolved = path.parent.resolve() / path.name
        if path.name in ("", ".", "..") or not is_within(resolved, self.cfg.writable_roots):
            raise StagingRefused(f"{url}: outside the directories site {self.name!r} may write")
        return resolved

    def _fail(self, what: str, e: BaseException) -> StagingError:
        status = _status(e)
        if status == 403:
            return StagingRefused(f"{what}: access denied by the object store ({e})")
        if status == 404 or "NoSuch" in str(e) or "Not Found" in str(e):
            return StagingError(f"{what}: no such bucket or object ({e})")
        return StagingError(f"{what}: {e}")

    # ---- object facts ---------------------------------------------------------------

    def _head(self, bucket: str, key: str) -> dict | None:
        try:
            return self.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except _client_errors() as e:
            if _status(e) == 404:
                return None
            raise self._fail(f"s3://{bucket}/{key}", e) from e

    @staticmethod
    def _recorded(head: dict) -> Sums:
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        return int(head["ContentLength"]), meta.get("adler32"), meta.get("sha256")

    @staticmethod
    def _stored_sha256(head: dict) -> str | None:
        """S3's own whole-object SHA-256, when the object has one. Multipart objects carry
        a checksum of part checksums (ETag and checksum end in ``-N``): not comparable."""
        value = head.get("ChecksumSHA256")
        if not value or "-" in value or "-" in str(head.get("ETag", "")):
            return None
        return base64.b64decode(value).hex()

    def _stream_sums(self, bucket: str, key: str) -> tuple[int, str, str]:
        summer = Summer()
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
            while block := body.read(BLOCK):
                summer.update(block)
        except _client_errors() as e:
            raise self._fail(f"s3://{bucket}/{key}", e) from e
        return summer.size, summer.adler32, summer.sha256

    def _object_sums(self, bucket: str, key: str, head: dict) -> tuple[int, str, str]:
        """Size and both sums of an object: from its metadata when it records both (as
        every object this backend writes does), else by reading it."""
        size, adler, sha = self._recorded(head)
        if adler is not None and sha is not None:
            return size, adler, sha
        return self._stream_sums(bucket, key)

    # ---- Storage ---------------------------------------------------------------------

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
        src_s3, dst_s3 = source_url.startswith("s3://"), dest_url.startswith("s3://")
        if src_s3 and dst_s3:
            return self._s3_to_s3(source_url, dest_url, declared, overwrite)
        if dst_s3:
            return self._upload(source_url, dest_url, declared, overwrite)
        if src_s3:
            return self._download(source_url, dest_url, declared, overwrite)
        raise StagingRefused(
            f"{source_url} -> {dest_url}: the s3 backend copies to or from s3:// URLs only"
        )

    def checksums(self, url: str) -> StagedFile:
        """The object's bytes read and summed: a verification trusts no recorded metadata."""
        bucket, key = parse_s3_url(url)
        if self._head(bucket, key) is None:
            raise FileNotFoundError(f"{url}: no such object")
        return StagedFile(url, *self._stream_sums(bucket, key))

    def delete(self, url: str) -> None:
        bucket, key = parse_s3_url(url)
        try:  # S3 answers a missing key with success too: gone already is not an error
            self.s3.delete_object(Bucket=bucket, Key=key)
        except _client_errors() as e:
            raise self._fail(url, e) from e

    def read_range(self, url: str, start: int, length: int) -> bytes:
        """``length`` bytes of an object from offset ``start`` (fewer at its end)."""
        bucket, key = parse_s3_url(url)
        if start < 0 or length <= 0 or length > MAX_RANGE:
            raise StagingRefused(
                f"{url}: invalid range start={start} length={length} (1..{MAX_RANGE} bytes)"
            )
        try:
            resp = self.s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
            )
            return resp["Body"].read()
        except _client_errors() as e:
            if _status(e) == 416:
                raise StagingError(f"{url}: range starts past the end of the object") from e
            raise self._fail(url, e) from e

    # ---- directions ------------------------------------------------------------------

    def _already_there(
        self, dest_url: str, actual: tuple[int, str, str], declared: dict, source: Any
    ) -> StagedFile:
        """``overwrite=False`` and the destination exists: success if it is identical
        (an idempotent retry), else a refusal naming the difference."""
        try:
            if any(v is not None for v in declared.values()):
                compare(dest_url, actual, **declared)
            else:  # nothing declared: only an identical copy counts as "already staged"
                compare(
                    dest_url,
                    actual,
                    **dict(zip(("size", "adler32", "sha256"), source(), strict=True)),
                )
        except ChecksumMismatch as e:
            raise StagingError(
                f"{dest_url}: exists and does not match the source ({e});"
                " pass overwrite=True to replace it"
            ) from e
        return StagedFile(dest_url, *actual)

    def _upload(
        self, source_url: str, dest_url: str, declared: dict, overwrite: bool
    ) -> StagedFile:
        src = self._readable(source_url)
        bucket, key = parse_s3_url(dest_url)
        if not overwrite and (head := self._head(bucket, key)) is not None:
            existing = self._object_sums(bucket, key, head)
            return self._already_there(dest_url, existing, declared, lambda: file_checksums(src))
        actual = file_checksums(src)
        compare(source_url, actual, **declared)  # a bad source never leaves the machine
        size, adler, sha = actual
        try:
            with open(src, "rb") as f:
                reader = _SummingReader(f)
                self.s3.upload_fileobj(
                    reader,
                    bucket,
                    key,
                    ExtraArgs={
                        "Metadata": {"sha256": sha, "adler32": adler},
                        "ChecksumAlgorithm": "SHA256",
                    },
                    Config=self._transfer_config(),
                )
        except OSError as e:
            raise StagingError(f"{source_url}: {e}") from e
        except _client_errors() as e:
            raise self._fail(f"{source_url} -> {dest_url}", e) from e
        sent = (reader.summer.size, reader.summer.adler32, reader.summer.sha256)
        try:
            compare(f"{source_url} (changed while uploading)", sent, size=size, sha256=sha)
            self._check_stored(bucket, key, dest_url, actual)
        except ChecksumMismatch:
            self._delete(bucket, key)
            raise
        return StagedFile(dest_url, size, adler, sha)

    def _check_stored(self, bucket: str, key: str, url: str, actual: tuple) -> None:
        head = self._head(bucket, key)
        if head is None:
            raise StagingError(f"{url}: the object is missing right after it was written")
        size, adler, sha = self._recorded(head)
        compare(f"{url} (as stored)", actual, size=size, adler32=adler, sha256=sha)
        compare(f"{url} (S3 checksum)", actual, sha256=self._stored_sha256(head))

    def _delete(self, bucket: str, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=bucket, Key=key)
        except _client_errors() as e:
            raise StagingError(
                f"s3://{bucket}/{key} failed verification and could not be deleted: {e}"
            ) from e

    def _download(
        self, source_url: str, dest_url: str, declared: dict, overwrite: bool
    ) -> StagedFile:
        bucket, key = parse_s3_url(source_url)
        dest = self._writable(dest_url)
        head = self._head(bucket, key)
        if head is None:
            raise StagingError(f"{source_url}: no such object")
        size, adler, sha = self._recorded(head)
        recorded: dict[str, Any] = {"size": size, "adler32": adler, "sha256": sha}
        if dest.exists() and not overwrite:
            return self._already_there(
                dest.as_uri(),
                file_checksums(dest),
                declared,
                lambda: self._object_sums(bucket, key, head),
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.part-{secrets.token_hex(6)}")
        try:
            with open(tmp, "wb") as fout:
                writer = _SummingWriter(fout)
                self.s3.download_fileobj(bucket, key, writer, Config=self._transfer_config())
                fout.flush()
                os.fsync(fout.fileno())
            s = writer.summer
            got = (s.size, s.adler32, s.sha256)
            compare(source_url, got, **declared)
            compare(f"{source_url} (recorded at upload)", got, **recorded)
            compare(f"{source_url} (S3 checksum)", got, sha256=self._stored_sha256(head))
            os.replace(tmp, dest)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, _client_errors()):
                if type(e).__name__ == "FlexibleChecksumError":  # botocore's own check
                    raise ChecksumMismatch(f"{source_url}: {e}") from e
                raise self._fail(f"{source_url} -> {dest_url}", e) from e
            if isinstance(e, OSError):
                raise StagingError(f"{source_url} -> {dest_url}: {e}") from e
            raise
        fsync_dir(dest.parent)
        return StagedFile(dest.as_uri(), *got)

    def _s3_to_s3(
        self, source_url: str, dest_url: str, declared: dict, overwrite: bool
    ) -> StagedFile:
        sbucket, skey = parse_s3_url(source_url)
        dbucket, dkey = parse_s3_url(dest_url)
        head = self._head(sbucket, skey)
        if head is None:
            raise StagingError(f"{source_url}: no such object")
        actual = self._object_sums(sbucket, skey, head)
        if not overwrite and (dhead := self._head(dbucket, dkey)) is not None:
            existing = self._object_sums(dbucket, dkey, dhead)
            return self._already_there(dest_url, existing, declared, lambda: actual)
        compare(source_url, actual, **declared)
        size, adler, sha = actual
        try:
            self.s3.copy(
                {"Bucket": sbucket, "Key": skey},
                dbucket,
                dkey,
                ExtraArgs={
                    "MetadataDirective": "REPLACE",
                    "Metadata": {"sha256": sha, "adler32": adler},
                },
                Config=self._transfer_config(),
            )
        except _client_errors() as e:
            raise self._fail(f"{source_url} -> {dest_url}", e) from e
        try:
            self._check_stored(dbucket, dkey, dest_url, actual)
        except ChecksumMismatch:
            self._delete(dbucket, dkey)
            raise
        return StagedFile(dest_url, size, adler, sha)
