"""The lifecycle's Transport over the site catalogue's storage backends: each URL is
served by the backend of the endpoint (and so the site) that holds it."""

from __future__ import annotations

from urllib.parse import urlsplit

from stratoflow.errors import ChecksumsUnsupported, StratoflowError
from stratoflow.lifecycle.model import FileRecord
from stratoflow.sites.base import BulkTransfer, Storage
from stratoflow.sites.endpoints import StorageEndpoint, endpoint_for_url


class SiteTransport:
    def __init__(self, endpoints: dict[str, StorageEndpoint]):
        self.endpoints = endpoints

    def _storage(self, url: str) -> Storage:
        from stratoflow.execution.placement import storage_for_url

        return storage_for_url(url, self.site_of(url))

    def site_of(self, url: str) -> str | None:
        """The site whose endpoint holds ``url`` (None: no endpoint does)."""
        endpoint = endpoint_for_url(url, self.endpoints)
        return endpoint.site if endpoint else None

    def bulk_for(self, dest_url: str) -> BulkTransfer | None:
        """The service that moves files into ``dest_url`` in bulk (FTS3), if any."""
        return self._storage(dest_url).bulk_transfer()

    def moves_in_bulk(self, dest_url: str) -> bool:
        return self.bulk_for(dest_url) is not None

    def copy(self, source_url: str, dest_url: str, file: FileRecord) -> None:
        # As staging does: a remote destination's backend reads the source itself;
        # otherwise the source's backend writes the local destination.
        remote_dest = urlsplit(dest_url).scheme not in ("", "file")
        storage = self._storage(dest_url if remote_dest else source_url)
        storage.copy(
            source_url,
            dest_url,
            adler32=file.adler32,
            sha256=file.sha256,
            size=file.size,
            overwrite=True,  # a BAD or half-written replica is replaced
        )

    def checksums(self, url: str) -> tuple[int, str | None, str | None]:
        try:
            found = self._storage(url).checksums(url)
        except FileNotFoundError:
            raise
        except ChecksumsUnsupported as e:
            raise NotImplementedError(str(e)) from e
        except StratoflowError as e:  # refused or unreachable: not proof the file is gone
            raise OSError(str(e)) from e
        return found.size, found.adler32, found.sha256

    def delete(self, url: str) -> None:
        self._storage(url).delete(url)
