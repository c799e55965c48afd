"""The kubernetes site: a namespace per deployment, a pod per job attempt.

``register()`` adds the kind to the site catalogue. It imports neither the kubernetes client
nor Airflow: those load on first use, so listing sites stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratoflow.sites.kubernetes.config import KubernetesConfig

if TYPE_CHECKING:
    from stratoflow.sites.kubernetes.compute import KubernetesCompute

__all__ = ["KubernetesCompute", "KubernetesConfig", "register"]


def register() -> None:
    """Make ``kind: kubernetes`` known to the site catalogue."""
    from stratoflow.sites.kinds import SiteKind, register_kind

    # Pods mount the site's workdir from a shared filesystem the Airflow workers also see,
    # so staging into and out of a deployment is a verified local copy under this site's
    # own roots.
    local = "stratoflow.sites.local:LocalStorage"
    register_kind(
        SiteKind(
            "kubernetes",
            "a Kubernetes cluster (a namespace per deployment)",
            KubernetesConfig,
            compute="stratoflow.sites.kubernetes:KubernetesCompute",
            storage={"file": local, "": local},
            secret_fields=("bearer_token", "client_key"),
        )
    )


def __getattr__(name: str) -> Any:
    # The catalogue resolves "stratoflow.sites.kubernetes:KubernetesCompute" by getattr.
    if name == "KubernetesCompute":
        from stratoflow.sites.kubernetes.compute import KubernetesCompute

        return KubernetesCompute
    raise AttributeError(name)
