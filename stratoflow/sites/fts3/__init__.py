"""The fts3 backend: bulk, checksum-verified third-party copies through an FTS3 server.

Nothing here imports the ``fts3`` client or Airflow until a transfer is made, so
registering the backend is free.
"""

from __future__ import annotations

from typing import Any

from stratoflow.sites.fts3.jobs import SCHEMES

__all__ = ["FTS3Transfer", "SCHEMES", "register"]


def register() -> None:
    """Declare the kind ``fts3``: it moves davs/root/gsiftp/srm/https URLs, runs no jobs."""
    from stratoflow.sites.fts3.jobs import FTS3Config
    from stratoflow.sites.kinds import SiteKind, register_kind

    register_kind(
        SiteKind(
            "fts3",
            "an FTS3 transfer service",
            FTS3Config,
            storage={scheme: "stratoflow.sites.fts3:FTS3Transfer" for scheme in SCHEMES},
            waiters={"fts3.jobs_done": "stratoflow.sites.fts3.waits:JobsDone"},
            secret_fields=("proxy", "ucert", "ukey"),
        )
    )


def __getattr__(name: str) -> Any:
    if name == "FTS3Transfer":
        from stratoflow.sites.fts3.transfer import FTS3Transfer

        return FTS3Transfer
    raise AttributeError(name)
