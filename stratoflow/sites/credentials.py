"""The seam through which sites get authenticated clients, without knowing Airflow.

A site names a connection id in the catalogue; turning that id into a client (reading
the secret, logging in) is the deployment's business, not the site's. Sites call
:func:`credentials`; whoever runs them installs a provider once: Airflow's hooks
(``hooks/credentials.py``) in tasks, the triggerer and the CLI, or anything
that satisfies :class:`Credentials` elsewhere.
"""

from __future__ import annotations

from typing import Any, Protocol

from stratoflow.errors import SiteError


class Credentials(Protocol):
    def aws_client(
        self,
        conn_id: str,
        service: str,
        *,
        region_name: str | None,
        endpoint_url: str | None,
        max_attempts: int | None,
        **config: Any,
    ) -> Any:
        """A boto3 client for ``service`` with the connection's keys."""

    def openstack_connection(self, conn_id: str) -> Any:
        """An ``openstack.connection.Connection`` authenticated with the connection."""

    def kubernetes_api(self, conn_id: str) -> tuple[Any, str]:
        """``(kubernetes ApiClient, namespace prefix)`` for the connection's cluster."""

    def fts3_context(self, conn_id: str, *, attempts: int = 3, backoff_s: float = 1.0) -> Any:
        """An ``fts3.rest.client.Context`` on the connection's endpoint; building it asks the
        endpoint its version, retried like the site's other calls."""

    def onedata_client(self, conn_id: str) -> Any:
        """A :class:`stratoflow.sites.onedata.client.OnedataClient` with its token."""

    def agent_token(self, conn_id: str, deployment_id: str) -> str:
        """The bearer token of one deployment's VM agents, derived from the connection."""


_installed: Credentials | None = None


def install(provider: Credentials) -> None:
    """Make ``provider`` the source of every site's credentials in this process."""
    global _installed
    _installed = provider


def credentials() -> Credentials:
    if _installed is None:
        raise SiteError(
            "no credentials provider is installed: call"
            " use_airflow_connections() from hooks/credentials.py (tasks, the triggerer and"
            " the CLI do) or stratoflow.sites.credentials.install(...)"
        )
    return _installed
