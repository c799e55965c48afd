"""What every VM site (OpenStack, EC2) shares about the agent: its catalogue fields and
the cloud-init user data that starts it. Plain Python, no cloud client imports."""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import Field, Strict

from stratoflow.sites.fields import Port, expect
from stratoflow.sites.files import StagingRoots
from stratoflow.sites.queue_policy import QueueFields

DEFAULT_WORKDIR, DEFAULT_PORT = "/srv/stratoflow", 8765
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
# The workdir goes into cloud-init's YAML and shell lines.
VmDir = Annotated[
    str,
    Strict(),
    Field(pattern=r"^/[A-Za-z0-9_./-]*$"),
    expect("an absolute path of [A-Za-z0-9_./-]"),
]


class AgentFields(StagingRoots, QueueFields):
    """The fields of every kind whose hosts run the Stratoflow agent (VM sites)."""

    workdir: VmDir = Field(
        DEFAULT_WORKDIR, description="directory on the VMs holding the deployments' data"
    )
    agent_port: Port = Field(DEFAULT_PORT, description="TCP port of the agent on the VMs")


def user_data(deployment_id: str, key: str, node: str, workdir: str, agent: dict) -> str:
    """The cloud-init user data each VM boots with.

    It writes the agent's configuration and starts ``stratoflow-agent`` (the image must
    provide it: ``pip install stratoflow`` in the image build). The configuration holds the
    deployment's agent token, derived from the site's connection secret: readable on this
    VM only, and useless for any other deployment. No site credential is ever put here.
    """
    # Values land in YAML and shell lines: keep only characters that are safe in both.
    dep, node = _SAFE.sub("_", deployment_id), _SAFE.sub("_", node)
    config = json.dumps({"deployment": deployment_id, "workdir": workdir, **agent})
    return "\n".join(
        [
            "#cloud-config",
            "# Stratoflow bootstrap (see docs/sites.md)",
            "write_files:",
            "  - path: /etc/stratoflow/host.env",
            "    permissions: '0644'",
            "    content: |",
            f"      STRATOFLOW_DEPLOYMENT={dep}",
            f"      STRATOFLOW_KEY={key}",
            f"      STRATOFLOW_NODE={node}",
            f"      STRATOFLOW_WORKDIR={workdir}/deployments/{dep}",
            "  - path: /etc/stratoflow/agent.json",
            "    permissions: '0600'",
            f"    content: {json.dumps(config)}",
            "runcmd:",
            f"  - [mkdir, -p, {workdir}/deployments/{dep}]",
            "  - [sh, -c, 'nohup stratoflow-agent --config /etc/stratoflow/agent.json"
            " >> /var/log/stratoflow-agent.log 2>&1 &']",
            "",
        ]
    )
