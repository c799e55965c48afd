"""How a compute site queues the deployments it has no room for yet (catalogue fields
every compute kind accepts; :mod:`stratoflow.admission` applies them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, Strict

from stratoflow.sites.fields import Flag, Timeout, expect
from stratoflow.sites.schema import SiteSchema

DAY_S = 24 * 3600.0


class QueueFields(SiteSchema):
    queue_timeout_s: Timeout = Field(
        DAY_S, description="longest a deployment waits for room here before it fails"
    )
    max_priority: Annotated[int, Strict(), Field(ge=0, le=100), expect("an integer 0..100")] = (
        Field(0, description="highest priority a deployment may ask for here (0: none)")
    )
    takes_overflow: Flag = Field(
        True, description="run deployments queued at an earlier candidate when this has room"
    )


class QueuePolicy(QueueFields):
    """The queue fields of any compute kind's entry (which its own schema has checked)."""

    model_config = ConfigDict(extra="ignore")
