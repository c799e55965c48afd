"""The s3 backend: verified staging to, from and within S3-compatible object stores.

Nothing here imports boto3 until a copy is made, so registering the backend is free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["S3Storage", "S3StorageSite", "register"]


def register() -> None:
    """Register the ``s3://`` scheme and the storage-only site kind ``s3``.

    The catalogue requires a compute kind for every site entry; kind ``s3`` is one whose
    Compute refuses to provision (see ``config.S3StorageSite``).
    """
    from stratoflow.sites.catalogue import register_compute, register_storage
    from stratoflow.sites.s3.config import validate_entry

    register_storage("s3", "s3", "stratoflow.sites.s3:S3Storage")
    register_compute("s3", "stratoflow.sites.s3:S3StorageSite", validate_entry)


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from stratoflow.sites.s3.storage import S3Storage

        return S3Storage
    if name == "S3StorageSite":
        from stratoflow.sites.s3.config import S3StorageSite

        return S3StorageSite
    raise AttributeError(name)
