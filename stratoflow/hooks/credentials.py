"""Site credentials from Airflow Connections: the hooks behind ``sites.credentials``."""

from __future__ import annotations

from typing import Any

from stratoflow.sites import credentials as seam


class AirflowConnections:
    """:class:`stratoflow.sites.credentials.Credentials` over Airflow's hooks.

    Each hook is imported on first use, so a deployment without a cloud client library
    only fails when a site of that kind is used.
    """

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
        from stratoflow.hooks.aws import AwsSiteHook

        hook = AwsSiteHook(
            conn_id, region_name=region_name, endpoint_url=endpoint_url, max_attempts=max_attempts
        )
        return hook.client(service, **config)

    def openstack_connection(self, conn_id: str) -> Any:
        from stratoflow.hooks.openstack import OpenStackHook

        return OpenStackHook(conn_id).get_conn()

    def kubernetes_api(self, conn_id: str) -> tuple[Any, str]:
        from stratoflow.hooks.kubernetes import KubernetesSiteHook

        hook = KubernetesSiteHook(conn_id)
        return hook.get_conn(), hook.namespace_prefix

    def fts3_context(self, conn_id: str, *, attempts: int = 3, backoff_s: float = 1.0) -> Any:
        from stratoflow.hooks.fts3 import FTS3Hook

        return FTS3Hook(conn_id, attempts=attempts, backoff_s=backoff_s).get_conn()

    def onedata_client(self, conn_id: str) -> Any:
        from stratoflow.hooks.onedata import OnedataHook

        return OnedataHook(conn_id).get_conn()

    def agent_token(self, conn_id: str, deployment_id: str) -> str:
        from stratoflow.hooks.agent import agent_token

        return agent_token(conn_id, deployment_id)


def use_airflow_connections() -> None:
    """Install Airflow Connections as the credentials of every site in this process."""
    seam.install(AirflowConnections())
