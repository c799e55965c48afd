"""The ec2 backend: instances on Amazon EC2 (or an EC2-compatible API) for bursting.

Nothing here imports boto3 until the site is used, so registering the backend is free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EC2Compute", "register"]


def register() -> None:
    """Register the compute kind ``ec2`` with its sites.yaml validator."""
    from stratoflow.sites.catalogue import register_compute, register_storage
    from stratoflow.sites.ec2.config import validate_entry

    register_compute("ec2", "stratoflow.sites.ec2:EC2Compute", validate_entry)
    register_storage("sfagent", "ec2", "stratoflow.sites.agent.jobs:AgentStorage")


def __getattr__(name: str) -> Any:
    if name == "EC2Compute":
        from stratoflow.sites.ec2.compute import EC2Compute

        return EC2Compute
    raise AttributeError(name)
