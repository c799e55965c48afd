import hashlib
import zlib

import pytest

from stratoflow.errors import ChecksumMismatch
from stratoflow.sites.checksums import adler32_file, file_checksums, sha256_file, verify


@pytest.fixture
def data_file(tmp_path):
    # Larger than one read block, so the streaming path is exercised across blocks.
    data = bytes(range(256)) * 9000 + b"tail"
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    return p, data


def test_single_pass_matches_reference(data_file):
    p, data = data_file
    adler = format(zlib.adler32(data), "08x")
    sha = hashlib.sha256(data).hexdigest()
    assert adler32_file(p) == adler
    assert sha256_file(p) == sha
    assert file_checksums(p) == (len(data), adler, sha)


def test_adler32_zero_padded(tmp_path):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    assert adler32_file(p) == "00000001"
    assert file_checksums(p) == (0, "00000001", hashlib.sha256(b"").hexdigest())


def test_verify_accepts_prefix_and_case(data_file):
    p, data = data_file
    adler = format(zlib.adler32(data), "08x")
    sha = hashlib.sha256(data).hexdigest()
    verify(p, adler32="ADLER32:" + adler.upper(), sha256=sha.upper(), size=len(data))
    verify(p, adler32="adler32:" + adler)
    verify(p)  # nothing declared: nothing to contradict


def test_verify_mismatch_names_file_and_values(data_file):
    p, data = data_file
    with pytest.raises(ChecksumMismatch) as e:
        verify(p, adler32="deadbeef", size=len(data) + 1)
    msg = str(e.value)
    assert str(p) in msg and "deadbeef" in msg and "adler32 expected" in msg
    assert f"size expected {len(data) + 1}, got {len(data)}" in msg
    with pytest.raises(ChecksumMismatch, match="sha256 expected 0+, got"):
        verify(p, sha256="0" * 64)
