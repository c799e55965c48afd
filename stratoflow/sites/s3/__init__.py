"""The s3 backend: verified staging to, from and within S3-compatible object stores.

Nothing here imports boto3 until a copy is made, so registering the backend is free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["S3Storage", "register"]


def register() -> None:
    """Declare the kind ``s3``: it serves ``s3://`` URLs and runs no jobs."""
    from stratoflow.sites.kinds import SiteKind, register_kind
    from stratoflow.sites.s3.config import S3Config

    register_kind(
        SiteKind(
            "s3",
            "an S3-compatible object store",
            S3Config,
            storage={"s3": "stratoflow.sites.s3:S3Storage"},
            secret_fields=("aws_secret_access_key", "aws_session_token"),
        )
    )


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from stratoflow.sites.s3.storage import S3Storage

        return S3Storage
    raise AttributeError(name)
