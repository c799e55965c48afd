"""The local site: jobs run as processes on this machine, data on its filesystem."""

from stratoflow.config import stratoflow_home
from stratoflow.sites.local.compute import LocalCompute
from stratoflow.sites.local.config import LocalConfig
from stratoflow.sites.local.storage import LocalStorage

__all__ = ["LocalCompute", "LocalConfig", "LocalStorage", "register", "stratoflow_home"]


def register() -> None:
    """Declare the kind ``local``: processes on this machine, files on its disk."""
    from stratoflow.sites.kinds import SiteKind, register_kind

    storage = "stratoflow.sites.local:LocalStorage"
    register_kind(
        SiteKind(
            "local",
            "this machine (processes in a sandbox directory)",
            LocalConfig,
            compute="stratoflow.sites.local:LocalCompute",
            storage={"file": storage, "": storage},
        )
    )
