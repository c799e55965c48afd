"""Site entries of kind ``onedata``: the kind runs no jobs, only stores."""

from __future__ import annotations

from pydantic import Field

from stratoflow.sites.fields import NonEmptyText
from stratoflow.sites.files import StagingRoots


class OnedataConfig(StagingRoots):
    conn_id: NonEmptyText = Field(
        description="Airflow connection id: host = provider URL, password = access token"
    )
