"""Compiled plans on disk: the only thing the DAG files read at parse time.

The store is the system of record; this directory is its parse-time projection, one JSON
file per DAG, written atomically so the dag-processor never reads half a plan.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stratoflow.plan.model import Plan


def plans_dir() -> Path:
    explicit = os.environ.get("STRATOFLOW_PLANS_DIR")
    if explicit:
        return Path(explicit)
    from stratoflow.config import stratoflow_home

    return stratoflow_home() / "plans"


def write_plan(plan: Plan, directory: Path | None = None) -> Path:
    directory = directory or plans_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{plan['dag_id']}.json"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".plan-", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(plan, fh, sort_keys=True)
    os.replace(tmp, target)
    return target


def read_plans(directory: Path | None = None, only_dag_id: str | None = None) -> Iterator[Plan]:
    """Yield stored plans; with ``only_dag_id`` read just that one (a worker's parse)."""
    directory = directory or plans_dir()
    if only_dag_id:
        path = directory / f"{only_dag_id}.json"
        paths = [path] if path.is_file() else []
    else:
        try:
            paths = sorted(p for p in directory.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return
    for path in paths:
        with open(path, "rb") as fh:
            yield json.load(fh)
