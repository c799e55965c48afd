"""Errors of the FTS3 backend: all are ``StagingError`` so staging steps handle them alike."""

from __future__ import annotations

from stratoflow.errors import StagingError, StagingRefused


class FTS3AuthError(StagingRefused):
    """The connection has no usable credential, or FTS3 rejected it (401/403). Retrying with
    the same connection cannot help, so it is a refusal: the operator fixes the connection."""


class FTS3QuotaExceeded(StagingError):
    """FTS3 refused a submission for quota (HTTP 429). The site is full for now: failover
    to another site, or retry later."""


class FTS3Unavailable(StagingError):
    """FTS3 kept failing (5xx, dropped connections, timeouts) after every retry."""
