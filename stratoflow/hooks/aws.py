"""AwsSiteHook: boto3 clients (S3, EC2) from an Airflow Connection.

The Connection holds everything secret, so DAG files, run conf and XCom only ever carry the
connection id:

* ``login``    the access key id;
* ``password`` the secret access key;
* ``extra``    ``{"region_name": ..., "endpoint_url": ..., "session_token": ...,
  "max_attempts": ..., "connect_timeout": ..., "read_timeout": ...}`` (all optional;
  ``endpoint_url`` points at an S3-compatible store such as Ceph RGW or MinIO, or at moto
  in tests). Without login/password boto3's default chain is used (instance profile,
  environment), which is what a worker running inside AWS wants.

This is not the Amazon provider's ``AwsBaseHook`` on purpose: Stratoflow needs only two
clients and one credential shape, and the provider pulls in a large dependency tree.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook

from stratoflow.errors import SiteError

log = logging.getLogger(__name__)

_PASSTHROUGH = ("region_name", "endpoint_url")


class AwsSiteHook(BaseHook):
    """Build (and cache) boto3 clients for an Airflow connection id."""

    conn_name_attr = "aws_conn_id"
    default_conn_name = "aws_default"
    conn_type = "aws"
    hook_name = "Stratoflow AWS site"

    def __init__(self, conn_id: str = default_conn_name, **overrides: Any) -> None:
        """``overrides`` (region_name, endpoint_url, max_attempts, ...) win over the
        connection's extra: a site entry in sites.yaml may pin its own region."""
        super().__init__()
        self.conn_id = conn_id
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self._session: Any = None
        self._settings: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}

    def _load(self) -> None:
        import boto3

        try:
            conn = self.get_connection(self.conn_id)
        except Exception as e:  # AirflowNotFoundException and friends
            raise SiteError(f"aws: cannot read Airflow connection {self.conn_id!r}: {e}") from e
        extra = dict(conn.extra_dejson or {})
        settings = {k: extra[k] for k in _PASSTHROUGH if extra.get(k)}
        for k in ("max_attempts", "connect_timeout", "read_timeout"):
            if k in extra:
                settings[k] = extra[k]
        settings.update(self.overrides)
        self._session = boto3.session.Session(
            aws_access_key_id=conn.login or None,
            aws_secret_access_key=conn.password or None,
            aws_session_token=extra.get("session_token") or None,
            region_name=settings.get("region_name") or "us-east-1",
        )
        self._settings = settings
        # Only what identifies the account is logged, never the secret or session token.
        log.info(
            "aws: connection %r as access key %s, region %s, endpoint %s",
            self.conn_id,
            _mask(conn.login),
            self._session.region_name,
            settings.get("endpoint_url") or "AWS default",
        )

    def client(self, service: str, **config: Any) -> Any:
        """A cached boto3 client for ``service`` ("s3", "ec2").

        ``config`` goes to ``botocore.config.Config`` (e.g. ``s3={"addressing_style":
        "path"}``). Retries default to botocore's "standard" mode with the connection's
        ``max_attempts`` (default 3); tests set it to 1 so injected faults reach our code.
        """
        from botocore.config import Config

        key = f"{service}:{sorted(config.items())!r}"
        if key in self._clients:
            return self._clients[key]
        if self._session is None:
            self._load()
        s = self._settings
        cfg = Config(
            # total_max_attempts counts the first try too (botocore's "max_attempts" does not)
            retries={"mode": "standard", "total_max_attempts": int(s.get("max_attempts", 3))},
            connect_timeout=float(s.get("connect_timeout", 10)),
            read_timeout=float(s.get("read_timeout", 60)),
            **config,
        )
        client = self._session.client(service, endpoint_url=s.get("endpoint_url"), config=cfg)
        self._clients[key] = client
        return client

    @property
    def region_name(self) -> str:
        if self._session is None:
            self._load()
        return str(self._session.region_name)

    def get_conn(self) -> Any:
        """The boto3 Session (Airflow's hook protocol)."""
        if self._session is None:
            self._load()
        return self._session


def _mask(access_key: str | None) -> str:
    """``AKIA…WXYZ``: enough to tell keys apart in a log, useless to an attacker."""
    if not access_key:
        return "(default credential chain)"
    return f"{access_key[:4]}…{access_key[-4:]}" if len(access_key) > 8 else "…"
