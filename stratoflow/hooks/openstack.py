"""OpenStackHook: an ``openstack.connection.Connection`` from an Airflow Connection.

The Connection holds everything secret, so DAG files, run conf and XCom only ever carry the
connection id. Two ways to authenticate, as Keystone v3 offers them:

* password: ``host`` = auth URL, ``login``/``password``, and in ``extra`` ``project_name``
  (or ``project_id``), ``user_domain_name``, ``project_domain_name``, ``region_name``;
* application credential: ``host`` = auth URL and in ``extra``
  ``application_credential_id`` + ``application_credential_secret`` (the credential is
  bound to its project, so no project or domain is needed).

Retries inside keystoneauth are switched off on purpose (``connect_retries=0``,
``status_code_retries=0``): a POST whose reply was lost would be sent again and create a
second server. The site code retries itself, and looks for the resource by its
idempotency key before every create.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook

from stratoflow.errors import SiteError

log = logging.getLogger(__name__)

_PASSWORD_EXTRAS = ("project_name", "project_id", "user_domain_name", "project_domain_name")
_PASSTHROUGH = ("region_name", "interface", "verify", "cacert", "api_timeout")


def auth_kwargs(host: str | None, login: str | None, password: str | None, extra: dict) -> dict:
    """Keyword arguments for ``openstack.connection.Connection`` (contains secrets)."""
    if not host:
        raise SiteError("openstack: the connection has no host; set it to the Keystone auth URL")
    kwargs: dict[str, Any] = {"auth_url": host}
    if extra.get("application_credential_id"):
        if not extra.get("application_credential_secret"):
            raise SiteError(
                "openstack: the connection's extra has application_credential_id but no"
                " application_credential_secret"
            )
        kwargs.update(
            auth_type="v3applicationcredential",
            application_credential_id=extra["application_credential_id"],
            application_credential_secret=extra["application_credential_secret"],
        )
    else:
        if not login or not password:
            raise SiteError(
                "openstack: the connection needs login and password, or extra"
                " application_credential_id and application_credential_secret"
            )
        kwargs.update(auth_type="password", username=login, password=password)
        kwargs.update({k: extra[k] for k in _PASSWORD_EXTRAS if extra.get(k)})
        kwargs.setdefault("user_domain_name", "Default")
        if "project_id" not in kwargs:
            kwargs.setdefault("project_domain_name", "Default")
    kwargs.update({k: extra[k] for k in _PASSTHROUGH if k in extra})
    return kwargs


def describe(kwargs: dict) -> str:
    """A loggable summary of ``auth_kwargs`` output: secrets are never part of it."""
    who = kwargs.get("username") or kwargs.get("application_credential_id")
    return f"{kwargs.get('auth_type')} auth as {who!r} at {kwargs.get('auth_url')}"


class OpenStackHook(BaseHook):
    """Build (and cache) an openstacksdk Connection for an Airflow connection id."""

    conn_name_attr = "openstack_conn_id"
    default_conn_name = "openstack_default"
    conn_type = "openstack"
    hook_name = "OpenStack"

    def __init__(self, conn_id: str = default_conn_name, **client_options: Any) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.client_options = client_options  # e.g. api_timeout; never credentials
        self._client: Any = None

    def get_conn(self) -> Any:
        """The ``openstack.connection.Connection``; authentication happens on first use."""
        if self._client is None:
            import openstack.connection  # heavy: imported only when a site is used

            try:
                conn = self.get_connection(self.conn_id)
            except Exception as e:  # AirflowNotFoundException and friends: name the fix
                raise SiteError(
                    f"openstack: cannot read Airflow connection {self.conn_id!r} ({e}); define"
                    " it in the UI, a secrets backend or AIRFLOW_CONN_<ID>"
                ) from e
            kwargs = auth_kwargs(conn.host, conn.login, conn.password, conn.extra_dejson or {})
            log.info("openstack connection %r: %s", self.conn_id, describe(kwargs))
            kwargs.update(self.client_options)
            # openstacksdk's defaults retry image calls 5 times with back-off; we decide.
            for option in ("connect_retries", "status_code_retries", "image_status_code_retries"):
                kwargs.setdefault(option, 0)
            self._client = openstack.connection.Connection(
                app_name="stratoflow", app_version="1", **kwargs
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
