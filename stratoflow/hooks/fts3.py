"""FTS3Hook: an ``fts3.rest.client.easy.Context`` from an Airflow Connection.

The Connection holds everything secret, so DAG files, run conf, XCom and trigger kwargs
carry only the connection id. Fields:

* ``host``: the FTS3 REST endpoint URL, e.g. ``https://fts3-pilot.cern.ch:8446`` (a bare
  host name gets ``https://`` and ``port``, default 8446);
* ``password``: the OIDC access token (audience = the FTS host, scope includes ``fts``);
  or in ``extra``: ``token``; or ``ucert`` + ``ukey`` (paths to an X.509 proxy) instead;
* ``extra.verify``: ``false`` to skip TLS verification (test servers), or a CA bundle /
  directory path; ``extra.timeout``: seconds per request (default 30).

Secrets never reach a log line: ``describe()`` names the auth method only.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import BaseHook

from stratoflow.retry import retrying
from stratoflow.sites.fts3.errors import FTS3AuthError, FTS3Unavailable

log = logging.getLogger(__name__)

DEFAULT_PORT = 8446
GRID_CA_DIR = "/etc/grid-security/certificates"


def endpoint_url(host: str | None, port: int | None, conn_id: str) -> str:
    if not host:
        raise FTS3AuthError(
            f"fts3: connection {conn_id!r} has no host; set it to the FTS3 REST endpoint URL"
            " (e.g. https://fts3.example.org:8446)"
        )
    if "://" in host:
        return host.rstrip("/")
    return f"https://{host}:{port or DEFAULT_PORT}"


def _ca_path(verify: Any) -> str | None:
    """What requests' ``verify`` gets. The fts3 client replaces ``verify=True`` with its
    ``capath`` (default /etc/grid-security/certificates even where it does not exist), so
    pass a CA location that exists: the configured one, the grid CA dir, or certifi's."""
    if isinstance(verify, str) and verify.lower() not in ("true", "false", ""):
        return verify
    if os.environ.get("X509_CERT_DIR"):
        return os.environ["X509_CERT_DIR"]
    if os.path.isdir(GRID_CA_DIR):
        return GRID_CA_DIR
    import certifi  # a dependency of requests

    return certifi.where()


def context_kwargs(
    conn_id: str, host: str | None, port: int | None, password: str | None, extra: dict
) -> dict[str, Any]:
    """Keyword arguments for ``Context`` (contains the secret token)."""
    kwargs: dict[str, Any] = {"endpoint": endpoint_url(host, port, conn_id)}
    token = password or extra.get("token")
    if token:
        kwargs["fts_access_token"] = str(token)
    elif extra.get("ucert"):
        kwargs["ucert"] = extra["ucert"]
        kwargs["ukey"] = extra.get("ukey") or extra["ucert"]
    else:
        # Without this check the client silently looks for a proxy in /tmp and then talks
        # to FTS anonymously: the failure would surface later as a bare "Unauthorized".
        raise FTS3AuthError(
            f"fts3: connection {conn_id!r} has no credential: set its password (or extra"
            " 'token') to an OIDC access token for the FTS3 endpoint, or extra 'ucert' and"
            " 'ukey' to an X.509 proxy"
        )
    verify = extra.get("verify", True)
    if isinstance(verify, str) and verify.lower() == "false":
        verify = False
    kwargs["verify"] = bool(verify)
    if verify:
        kwargs["capath"] = _ca_path(verify)
    if extra.get("timeout"):
        kwargs["timeout"] = kwargs["connectTimeout"] = float(extra["timeout"])
    return kwargs


def describe(kwargs: dict[str, Any]) -> str:
    """A loggable summary of ``context_kwargs`` output: never the token or key paths."""
    method = "OIDC token" if kwargs.get("fts_access_token") else "X.509 proxy"
    return f"{method} at {kwargs['endpoint']} (verify={'on' if kwargs['verify'] else 'off'})"


class FTS3Hook(BaseHook):
    """Build (and cache) an FTS3 easy-API ``Context`` for an Airflow connection id."""

    conn_name_attr = "fts3_conn_id"
    default_conn_name = "fts3_default"
    conn_type = "fts3"
    hook_name = "FTS3"

    def __init__(
        self, conn_id: str = default_conn_name, *, attempts: int = 3, backoff_s: float = 1.0
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._context: Any = None

    def get_conn(self) -> Any:
        """The ``fts3.rest.client.easy.Context``. Building it calls ``GET /`` (API version),
        so a dead endpoint fails here, with retries for transient errors."""
        if self._context is None:
            import requests
            from fts3.rest.client import easy as fts3
            from fts3.rest.client.exceptions import BadEndpoint, ServerError, Unauthorized

            conn = self.get_connection(self.conn_id)
            kwargs = context_kwargs(
                self.conn_id, conn.host, conn.port, conn.password, conn.extra_dejson or {}
            )
            log.info("fts3 connection %r: %s", self.conn_id, describe(kwargs))
            unavailable = (BadEndpoint, ServerError, requests.RequestException)
            try:
                self._context = retrying(
                    lambda: fts3.Context(**kwargs),
                    attempts=self.attempts,
                    backoff_s=self.backoff_s,
                    transient=lambda e: isinstance(e, unavailable),
                )
            except Unauthorized as e:
                raise FTS3AuthError(
                    f"fts3: {kwargs['endpoint']} rejected connection {self.conn_id!r}: {e}"
                ) from None
            except unavailable as e:
                raise FTS3Unavailable(
                    f"fts3: {kwargs['endpoint']} unreachable for connection"
                    f" {self.conn_id!r}: {type(e).__name__}: {e}"
                ) from None
        return self._context

    get_context = get_conn
