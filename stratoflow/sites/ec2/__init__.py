"""The ec2 backend: instances on Amazon EC2 (or an EC2-compatible API) for bursting.

Nothing here imports boto3 until the site is used, so registering the backend is free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EC2Compute", "register"]


def register() -> None:
    """Declare the kind ``ec2``: instances that run jobs through the Stratoflow agent."""
    from stratoflow.sites.ec2.config import EC2Config
    from stratoflow.sites.kinds import SiteKind, register_kind

    register_kind(
        SiteKind(
            "ec2",
            "Amazon EC2 (or an EC2-compatible API)",
            EC2Config,
            compute="stratoflow.sites.ec2:EC2Compute",
            # Deployment sandboxes live on the VMs, behind the agent.
            storage={"sfagent": "stratoflow.sites.agent.jobs:AgentStorage"},
            block_storage=True,
            secret_fields=("aws_secret_access_key", "aws_session_token"),
        )
    )


def __getattr__(name: str) -> Any:
    if name == "EC2Compute":
        from stratoflow.sites.ec2.compute import EC2Compute

        return EC2Compute
    raise AttributeError(name)
