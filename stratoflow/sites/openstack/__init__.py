"""The OpenStack site: Nova servers (openstacksdk), floating IPs, Keystone credentials from
an Airflow Connection. See docs/sites-openstack.md."""

from __future__ import annotations

from stratoflow.sites.openstack.config import OpenStackConfig, validate_entry


def register() -> None:
    """Make kind ``openstack`` known to the site catalogue. Cheap: openstacksdk is only
    imported when a site of this kind is used."""
    from stratoflow.sites.catalogue import register_compute, register_storage
    from stratoflow.sites.waits import register_waiter

    register_compute("openstack", "stratoflow.sites.openstack:OpenStackCompute", validate_entry)
    # Deployment sandboxes live on the VMs, behind the agent: sfagent:// URLs.
    register_storage("sfagent", "openstack", "stratoflow.sites.agent.jobs:AgentStorage")
    register_waiter("openstack.servers_active", "stratoflow.sites.openstack.waits:ServersActive")


def __getattr__(name: str):  # lazy, so importing the package does not import openstacksdk
    if name == "OpenStackCompute":
        from stratoflow.sites.openstack.compute import OpenStackCompute

        return OpenStackCompute
    raise AttributeError(name)


__all__ = ["OpenStackCompute", "OpenStackConfig", "register", "validate_entry"]
