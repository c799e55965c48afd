"""The fts3 backend: bulk, checksum-verified third-party copies through an FTS3 server.

Nothing here imports the ``fts3`` client or Airflow until a transfer is made, so
registering the backend is free.
"""

from __future__ import annotations

from typing import Any

from stratoflow.sites.fts3.jobs import SCHEMES

__all__ = ["FTS3Site", "FTS3Transfer", "SCHEMES", "register"]


def register() -> None:
    """Route davs/root/gsiftp/srm/https URLs to FTS3 and declare the site kind ``fts3``.

    The catalogue requires a compute kind for every site entry; kind ``fts3`` is one whose
    Compute refuses to provision (see ``site.FTS3Site``), as for ``s3``.
    """
    from stratoflow.sites.catalogue import register_compute, register_storage
    from stratoflow.sites.fts3.jobs import validate_config
    from stratoflow.sites.waits import register_waiter

    for scheme in SCHEMES:
        register_storage(scheme, "fts3", "stratoflow.sites.fts3:FTS3Transfer")
    register_compute("fts3", "stratoflow.sites.fts3:FTS3Site", validate_config)
    register_waiter("fts3.jobs_done", "stratoflow.sites.fts3.waits:JobsDone")


def __getattr__(name: str) -> Any:
    if name == "FTS3Transfer":
        from stratoflow.sites.fts3.transfer import FTS3Transfer

        return FTS3Transfer
    if name == "FTS3Site":
        from stratoflow.sites.fts3.site import FTS3Site

        return FTS3Site
    raise AttributeError(name)
