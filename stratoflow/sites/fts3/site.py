"""The Compute face of an FTS3 site: it moves data between storage, it runs no jobs."""

from __future__ import annotations

from stratoflow.sites.storage_only import StorageOnlySite


class FTS3Site(StorageOnlySite):
    kind = "fts3"
    what = "a transfer service"
