"""Calling the OpenStack APIs safely: classify errors, retry what is safe to retry.

keystoneauth's own retries are off (see ``hooks/openstack.py``), so every retry is decided
here. Reads are simply repeated. Creates are never repeated blindly: the caller
first looks the resource up by its idempotency key, because a lost reply may hide a create
that did happen (``create_or_adopt``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from stratoflow.errors import SiteError
from stratoflow.retry import create_or_adopt, retrying

log = logging.getLogger(__name__)
T = TypeVar("T")


def status_of(e: BaseException) -> int | None:
    """The HTTP status behind an openstacksdk or keystoneauth exception, if any."""
    for attr in ("status_code", "http_status"):
        value = getattr(e, attr, None)
        if isinstance(value, int):
            return value
    return None


def message_of(e: BaseException) -> str:
    """The API's own message (Nova's ``forbidden.message``, Neutron's ``NeutronError``),
    without the URL noise; falls back to the exception text."""
    details = getattr(e, "details", None)
    if isinstance(details, str) and details.strip():
        return details.strip()
    return str(e).strip() or type(e).__name__


def is_not_found(e: BaseException) -> bool:
    return status_of(e) == 404


def is_transient(e: BaseException) -> bool:
    """5xx, 429, lost connections and failed discovery may succeed when tried again."""
    from keystoneauth1 import exceptions as ksa

    if isinstance(e, ksa.ConnectionError | ksa.DiscoveryFailure):
        return True
    status = status_of(e)
    return status is not None and (status >= 500 or status == 429)


def site_error(site: str, what: str, e: BaseException) -> SiteError:
    """A SiteError a user can act on, naming the site, the operation and the API's words."""
    msg = message_of(e)
    status = status_of(e)
    if "quota" in msg.lower() or "overquota" in msg.lower():
        return SiteError(f"openstack: quota exceeded at site {site!r} ({what}): {msg}")
    if status == 401:
        return SiteError(
            f"openstack: authentication failed at site {site!r} ({what}): {msg}; check the"
            " site's Airflow connection (credentials, project, domains, auth URL)"
        )
    if status == 403:
        return SiteError(f"openstack: forbidden at site {site!r} ({what}): {msg}")
    return SiteError(f"openstack: {what} failed at site {site!r}: {msg}")


def _retryable(e: Exception) -> bool:
    """A transient API fault; our own SiteErrors (already worded) never are."""
    return not isinstance(e, SiteError) and is_transient(e)


class Caller:
    """Retries transient failures with exponential back-off."""

    def __init__(self, site: str, attempts: int, delay_s: float) -> None:
        self.site, self.attempts, self.delay_s = site, max(1, attempts), delay_s

    def __call__(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a *safe to repeat* call (read, delete, idempotent update)."""

        def warn(e: Exception, attempt: int) -> None:
            log.warning("openstack %s: %s (attempt %d): %s", self.site, what, attempt, e)

        try:
            return retrying(
                lambda: fn(*args, **kwargs),
                attempts=self.attempts,
                backoff_s=self.delay_s,
                transient=_retryable,
                on_retry=warn,
            )
        except SiteError:
            raise
        except Exception as e:
            raise site_error(self.site, what, e) from e

    def create_or_adopt(
        self, what: str, find: Callable[[], T | None], create: Callable[[], T]
    ) -> tuple[T, bool]:
        """``(resource, created)``: :func:`stratoflow.retry.create_or_adopt` with this
        site's retries, its look-ups retried as reads, its errors worded for the user."""

        def warn(e: Exception, attempt: int) -> None:
            log.warning("openstack %s: create %s (attempt %d): %s", self.site, what, attempt, e)

        try:
            return create_or_adopt(
                lambda: self(f"look up {what}", find),
                create,
                attempts=self.attempts,
                backoff_s=self.delay_s,
                transient=_retryable,
                on_retry=warn,
            )
        except SiteError:
            raise
        except Exception as e:
            raise site_error(self.site, f"create {what}", e) from e
