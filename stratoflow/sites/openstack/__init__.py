"""The OpenStack site: Nova servers (openstacksdk), floating IPs, Keystone credentials from
an Airflow Connection. See docs/sites-openstack.md."""

from __future__ import annotations

from stratoflow.sites.openstack.config import OpenStackConfig


def register() -> None:
    """Make kind ``openstack`` known to the site catalogue. Cheap: openstacksdk is only
    imported when a site of this kind is used."""
    from stratoflow.sites.kinds import SiteKind, register_kind

    register_kind(
        SiteKind(
            "openstack",
            "an OpenStack cloud (Nova servers)",
            OpenStackConfig,
            compute="stratoflow.sites.openstack:OpenStackCompute",
            # Deployment sandboxes live on the VMs, behind the agent: sfagent:// URLs.
            storage={"sfagent": "stratoflow.sites.agent.jobs:AgentStorage"},
            waiters={"openstack.servers_active": "stratoflow.sites.openstack.waits:ServersActive"},
            block_storage=True,
            secret_fields=("application_credential_secret",),
        )
    )


def __getattr__(name: str):  # lazy, so importing the package does not import openstacksdk
    if name == "OpenStackCompute":
        from stratoflow.sites.openstack.compute import OpenStackCompute

        return OpenStackCompute
    raise AttributeError(name)


__all__ = ["OpenStackCompute", "OpenStackConfig", "register"]
