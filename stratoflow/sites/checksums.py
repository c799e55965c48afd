"""Streaming file checksums: ADLER32 (what FTS3/Rucio/dCache use) and SHA-256.

Files can be many GB, so everything reads in fixed-size blocks and computes both sums in
one pass: staging already reads the data once to copy it, and must not read it again.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

from stratoflow.errors import ChecksumMismatch

BLOCK = 1 << 20  # 1 MiB: large enough to amortise syscalls, small enough for the cache


class Summer:
    """Incremental size + adler32 + sha256, fed block by block (also used by copiers)."""

    def __init__(self) -> None:
        self.size = 0
        self._adler = 1  # zlib's adler32 start value
        self._sha = hashlib.sha256()

    def update(self, block: bytes | memoryview) -> None:
        self.size += len(block)
        self._adler = zlib.adler32(block, self._adler)
        self._sha.update(block)

    @property
    def adler32(self) -> str:
        return format(self._adler & 0xFFFFFFFF, "08x")

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def adler32_file(path: str | os.PathLike[str]) -> str:
    """ADLER32 of a file as 8 lowercase, zero-padded hex digits."""
    value = 1
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            value = zlib.adler32(block, value)
    return format(value & 0xFFFFFFFF, "08x")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def file_checksums(path: str | os.PathLike[str]) -> tuple[int, str, str]:
    """``(size, adler32, sha256)`` of a file, reading it once."""
    s = Summer()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            s.update(block)
    return s.size, s.adler32, s.sha256


def normalise(value: str | None, algorithm: str) -> str | None:
    """Lowercase hex without an FTS-style ``ADLER32:`` prefix; None stays None."""
    if value is None:
        return None
    v = str(value).strip().lower()
    prefix = algorithm.lower() + ":"
    if v.startswith(prefix):
        v = v[len(prefix) :]
    if algorithm.lower() == "adler32":
        v = v.zfill(8)  # some catalogues drop leading zeros
    return v


def compare(
    name: str,
    actual: tuple[int, str, str],
    *,
    adler32: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
) -> None:
    """Raise ``ChecksumMismatch`` listing every declared value that ``actual`` contradicts."""
    a_size, a_adler, a_sha = actual
    faults = []
    if size is not None and int(size) != a_size:
        faults.append(f"size expected {int(size)}, got {a_size}")
    want = normalise(adler32, "adler32")
    if want is not None and want != a_adler:
        faults.append(f"adler32 expected {want}, got {a_adler}")
    want = normalise(sha256, "sha256")
    if want is not None and want != a_sha:
        faults.append(f"sha256 expected {want}, got {a_sha}")
    if faults:
        raise ChecksumMismatch(f"{name}: " + "; ".join(faults))


def verify(
    path: str | os.PathLike[str],
    adler32: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
) -> tuple[int, str, str]:
    """Check a file against declared values; return its ``(size, adler32, sha256)``."""
    actual = file_checksums(path)
    compare(str(Path(path)), actual, adler32=adler32, sha256=sha256, size=size)
    return actual
