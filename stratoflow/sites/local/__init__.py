"""The local site: jobs run as processes on this machine, data on its filesystem.

Its classes are imported on first use: the job runner (``python -m
stratoflow.sites.local.runner``, one per job) imports this package and must start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stratoflow.sites.local.compute import LocalCompute
    from stratoflow.sites.local.config import LocalConfig
    from stratoflow.sites.local.storage import LocalStorage

__all__ = ["LocalCompute", "LocalConfig", "LocalStorage", "register"]

_LAZY = {
    "LocalCompute": "stratoflow.sites.local.compute",
    "LocalConfig": "stratoflow.sites.local.config",
    "LocalStorage": "stratoflow.sites.local.storage",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    """Declare the kind ``local``: processes on this machine, files on its disk."""
    from stratoflow.sites.kinds import SiteKind, register_kind
    from stratoflow.sites.local.config import LocalConfig

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
