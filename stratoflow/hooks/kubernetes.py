"""KubernetesSiteHook: a ``kubernetes.client.ApiClient`` from an Airflow Connection,
built through the cncf.kubernetes provider's ``KubernetesHook``.

The Connection holds the secret, so DAG files, run conf and XCom only carry the conn id.
Either the provider's own type, ``kubernetes`` (``kube_config``, ``kube_config_path``,
``in_cluster``, ``cluster_context``; plus our ``namespace_prefix`` in extra), read by
``KubernetesHook`` as Airflow users already configure it; or type ``kubernetes_site``:

* ``host``: the API server URL (``https://k8s.example.org:6443``; a bare host gets https);
* ``password``: a bearer token (a ServiceAccount token bound to a role that may manage
  namespaces and pods);
* ``extra``: ``{"verify_ssl": true, "ssl_ca_cert": "/path/ca.crt", "namespace_prefix": "sf"}``.

urllib3's own retries are off on purpose: it would resend a POST whose reply was lost.
The site code retries itself and adopts what a lost reply created (names are derived from
idempotency keys, so the API server refuses a second copy with 409 AlreadyExists).

The token is never logged: only the conn id and the API URL are.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook

from stratoflow.errors import SiteError

log = logging.getLogger(__name__)

# The cncf.kubernetes provider's connection type; its extras are the provider's own.
PROVIDER_CONN_TYPE = "kubernetes"


class KubernetesSiteHook(BaseHook):
    """Build (and cache) a Kubernetes ApiClient for an Airflow connection id."""

    conn_name_attr = "kubernetes_site_conn_id"
    default_conn_name = "kubernetes_site_default"
    conn_type = "kubernetes_site"
    hook_name = "Stratoflow Kubernetes site"

    def __init__(self, conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.conn_id = conn_id
        self._client: Any = None
        self._extra: dict[str, Any] | None = None
        self._url: str | None = None

    def _load(self) -> tuple[str, str | None, dict[str, Any]]:
        """``(API URL, token, extra)``; ``("", None, extra)`` for a connection of the
        provider's own type, which ``KubernetesHook`` reads itself."""
        try:
            conn = self.get_connection(self.conn_id)
        except Exception as e:  # AirflowNotFoundException and friends; never echo the conn
            raise SiteError(
                f"kubernetes: Airflow connection {self.conn_id!r} is not defined"
                f" ({type(e).__name__})"
            ) from None
        if conn.conn_type == PROVIDER_CONN_TYPE:  # kube_config, in_cluster, a context...
            return "", None, dict(conn.extra_dejson or {})
        if not conn.host:
            raise SiteError(
                f"kubernetes: connection {self.conn_id!r} has no host; set it to the API server URL"
            )
        if not conn.password:
            raise SiteError(
                f"kubernetes: connection {self.conn_id!r} has no password; set it to the"
                " bearer token of a ServiceAccount allowed to manage namespaces and pods"
            )
        url = conn.host if "://" in conn.host else f"https://{conn.host}"
        if conn.port and url.count(":") < 2:
            url = f"{url}:{conn.port}"
        return url.rstrip("/"), conn.password, dict(conn.extra_dejson or {})

    @property
    def extra(self) -> dict[str, Any]:
        if self._extra is None:
            self._url, _, self._extra = self._load()
        return self._extra

    @property
    def url(self) -> str:
        if not self._url:
            self.get_conn()  # for the provider's connection only the kubeconfig says where
        return self._url or ""

    @property
    def namespace_prefix(self) -> str:
        return str(self.extra.get("namespace_prefix") or "")

    def get_conn(self) -> Any:
        """The cached ``kubernetes.client.ApiClient``, built by the cncf.kubernetes
        provider's ``KubernetesHook`` from a kubeconfig made of this connection."""
        if self._client is None:
            from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
            from kubernetes import client

            url, token, extra = self._load()
            self._extra = extra
            cfg = client.Configuration()
            cfg.retries = False  # see the module docstring: we retry, adopting, ourselves
            cfg.debug = False  # the client's debug log prints request headers
            if token is None:
                hook = KubernetesHook(conn_id=self.conn_id, client_configuration=cfg)
            else:
                # No conn id of its own: everything it needs is in the kubeconfig, so it
                # never reads (or falls back to) another connection or ~/.kube/config.
                hook = KubernetesHook(
                    conn_id=None,
                    kubernetes_conn_id=None,
                    config_dict=_kubeconfig(url, token, extra),
                    client_configuration=cfg,
                )
            try:
                self._client = hook.get_conn()
            except Exception as e:  # a bad kube_config, no in-cluster service account...
                raise SiteError(
                    f"kubernetes: connection {self.conn_id!r}: cannot build a client"
                    f" ({type(e).__name__}: {e})"
                ) from None
            self._url = url or str(self._client.configuration.host)
            log.info("kubernetes: connection %r -> %s", self.conn_id, self._url)
        return self._client

    def test_connection(self) -> tuple[bool, str]:
        """For the Airflow UI's Test button: can we reach the API with this token?"""
        try:
            from kubernetes import client

            info = client.VersionApi(self.get_conn()).get_code()
            return True, f"connected to Kubernetes {info.git_version} at {self.url}"
        except Exception as e:  # report, never raise: this is a UI probe
            status = getattr(e, "status", None)
            return False, f"cannot reach {self._url or self.conn_id}: {status or type(e).__name__}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _kubeconfig(url: str, token: str, extra: dict[str, Any]) -> dict[str, Any]:
    """A one-context kubeconfig: the API server, its CA (or no TLS check), the token."""
    cluster: dict[str, Any] = {"server": url}
    if not _truthy(extra.get("verify_ssl", True)):
        cluster["insecure-skip-tls-verify"] = True
    elif extra.get("ssl_ca_cert"):
        cluster["certificate-authority"] = str(extra["ssl_ca_cert"])
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "site", "cluster": cluster}],
        "users": [{"name": "site", "user": {"token": token}}],
        "contexts": [{"name": "site", "context": {"cluster": "site", "user": "site"}}],
        "current-context": "site",
    }


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)
