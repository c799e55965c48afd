"""The supervisor's health report: one JSON file per Airflow home, read by every waiter.

The supervisor rewrites it (atomically) whenever a component changes state; ``stratoflow
health``, ``submit --wait``, ``demo``, the benchmarks and the test fixtures read it, so that
nothing waits for runs that a dead scheduler can never finish.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# A component's states. ``backoff``: exited, restart scheduled; ``failed``: exited too often
# (or told not to restart) and left down.
RUNNING, BACKOFF, FAILED, STOPPED = "running", "backoff", "failed", "stopped"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ComponentHealth:
    name: str
    state: str = STOPPED
    pid: int | None = None
    since: str | None = None
    restarts: int = 0
    last_exit: str | None = None
    last_exit_at: str | None = None
    # Process groups started for this component, each as (pgid, the leader's start time in
    # clock ticks since boot): a later supervisor kills what is left of them after a crash
    # of this one, and the start time tells a leftover from a new process with a reused PID.
    groups: list[list[int]] = field(default_factory=list)


@dataclass
class HealthReport:
    supervisor_pid: int
    started_at: str
    database: str
    components: list[ComponentHealth]
    stopping: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HealthReport:
        comps = [ComponentHealth(**c) for c in data.get("components", [])]
        return cls(
            supervisor_pid=int(data["supervisor_pid"]),
            started_at=str(data["started_at"]),
            database=str(data.get("database", "")),
            components=comps,
            stopping=bool(data.get("stopping", False)),
        )


def report_path(airflow_home: Path) -> Path:
    return airflow_home / "stratoflow-supervisor.json"


def write(airflow_home: Path, report: HealthReport) -> None:
    path = report_path(airflow_home)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(report.to_json(), indent=1))
    os.replace(tmp, path)


def read(airflow_home: Path) -> HealthReport | None:
    try:
        return HealthReport.from_json(json.loads(report_path(airflow_home).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def problem(report: HealthReport | None) -> str | None:
    """Why runs cannot progress on this engine, or None when it can."""
    if report is None:
        return "the embedded Airflow is not running (no supervisor health report)"
    if not pid_alive(report.supervisor_pid):
        return f"the supervisor (pid {report.supervisor_pid}) is gone"
    if report.stopping:
        return "the embedded Airflow is stopping"
    failed = [c for c in report.components if c.state == FAILED]
    if failed:
        return "gave up restarting: " + ", ".join(f"{c.name} ({c.last_exit})" for c in failed)
    return None


def render(report: HealthReport | None) -> str:
    if report is None:
        return "the embedded Airflow is not running (no supervisor health report)"
    alive = pid_alive(report.supervisor_pid)
    lines = [
        f"supervisor pid {report.supervisor_pid} "
        + (f"up since {report.started_at}" if alive else "NOT RUNNING (stale report)")
        + f"; database: {report.database}",
        f"{'COMPONENT':14} {'STATE':8} {'PID':>8}  {'SINCE':20}  {'RESTARTS':>8}  LAST EXIT",
    ]
    for c in report.components:
        last = f"{c.last_exit} at {c.last_exit_at}" if c.last_exit else "-"
        lines.append(
            f"{c.name:14} {c.state:8} {c.pid or '-':>8}  {c.since or '-':20}  "
            f"{c.restarts:>8}  {last}"
        )
    return "\n".join(lines)
