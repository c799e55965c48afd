"""Errors of the FTS3 backend: all are ``StagingError`` so staging steps handle them alike."""

from __future__ import annotations

from stratoflow.errors import ChecksumMismatch, StagingError, StagingRefused


class FTS3AuthError(StagingRefused):
    """The connection has no usable credential, or FTS3 rejected it (401/403). Retrying with
    the same connection cannot help, so it is a refusal: the operator fixes the connection."""


class FTS3QuotaExceeded(StagingError):
    """FTS3 refused a submission for quota (HTTP 429). The site is full for now: failover
    to another site, or retry later."""


class FTS3Unavailable(StagingError):
    """FTS3 kept failing (5xx, dropped connections, timeouts) after every retry."""


def failure_error(failed: list[tuple[str, str, str]], attempts: int) -> StagingError:
    """One error naming the failed files with FTS's reasons (the first five); a
    ``ChecksumMismatch`` when every failure is a checksum fault, so it is retried as one."""
    from stratoflow.sites.fts3.jobs import is_checksum_failure

    shown = "; ".join(f"{s} -> {d}: {r}" for s, d, r in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    msg = f"fts3: {len(failed)} file(s) failed after {attempts} attempt(s): {shown}{more}"
    if all(is_checksum_failure(r) for _, _, r in failed):
        return ChecksumMismatch(msg)
    return StagingError(msg)
