"""What every VM site (OpenStack, EC2) shares about the agent: its catalogue fields and
the cloud-init user data that starts it. Plain Python, no cloud client imports."""

from __future__ import annotations

import json
import re
from typing import Any

from stratoflow.errors import Issue
from stratoflow.sites.files import validate_roots

AGENT_FIELDS = {
    "workdir": "directory on the VMs holding the deployments' data (default /srv/stratoflow)",
    "agent_port": "TCP port of the Stratoflow agent on the VMs (default 8765)",
    "allowed_roots": "directories on the Airflow workers stage-in may read from",
    "writable_roots": "directories on the Airflow workers stage-out may write to",
}
DEFAULT_WORKDIR, DEFAULT_PORT = "/srv/stratoflow", 8765
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")


def validate_agent_fields(path: str, entry: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    workdir = entry.get("workdir", DEFAULT_WORKDIR)
    if not isinstance(workdir, str) or not _SAFE_PATH.match(workdir):  # goes into cloud-init
        issues.append(
            Issue(
                f"{path}.workdir", f"expected an absolute path of [A-Za-z0-9_./-], got {workdir!r}"
            )
        )
    port = entry.get("agent_port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        issues.append(Issue(f"{path}.agent_port", f"expected a TCP port number, got {port!r}"))
    issues += validate_roots(path, entry)
    return issues


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
