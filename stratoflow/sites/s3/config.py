"""Site entries of kind ``s3``: validation and parsed config. An object store runs no
jobs: the kind declares no Compute, so the broker never places a deployment there."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, Strict

from stratoflow.sites.fields import (
    Count,
    HttpUrl,
    NonEmptyText,
    Roots,
    Text,
    expect,
    home_only,
)
from stratoflow.sites.files import StagingRoots

MIB = 1 << 20
S3_MIN_PART = 5 * MIB  # S3 refuses multipart parts below 5 MiB (except the last)

PartSize = Annotated[int, Strict(), Field(ge=S3_MIN_PART), expect(f"an integer >= {S3_MIN_PART}")]


class S3Config(StagingRoots):
    conn_id: NonEmptyText = Field(
        description="Airflow connection id holding the access key (login) and secret (password)"
    )
    endpoint_url: HttpUrl | None = Field(None, description="S3 endpoint URL (omit for AWS itself)")
    region: Text | None = Field(None, description="region name")
    multipart_threshold: PartSize = Field(
        64 * MIB, description="bytes above which transfers are multipart (>= 5 MiB)"
    )
    multipart_chunksize: PartSize = Field(64 * MIB, description="part size in bytes (>= 5 MiB)")
    max_concurrency: Count = Field(4, description="parallel part transfers")
    max_attempts: Count | None = Field(None, description="botocore attempts per request")
    # As the local site: uploads read from STRATOFLOW_HOME, and nothing else, by default.
    allowed_roots: Roots = Field(
        default_factory=home_only, description="local directories uploads may read from"
    )

    @classmethod
    def from_dict(cls, name: str, config: dict[str, Any]) -> S3Config:
        return cls.parse(name, config)
