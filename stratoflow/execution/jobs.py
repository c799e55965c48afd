"""Turn a plan's job step into a concrete JobSpec for one map index."""

from __future__ import annotations

import base64
import os
import re
import shlex
from typing import Any

from stratoflow.plan.model import Step, resolve
from stratoflow.sites.base import JobSpec
from stratoflow.tosca.scalars import parse_duration, parse_size

PLACEHOLDER = re.compile(r"\{(inputs|input|index)\}")


def render_command(command: list[str] | str, *, inputs: list[str], index: int) -> list[str] | str:
    """Substitute ``{inputs}``, ``{input}`` and ``{index}``.

    ``{outdir}`` and ``{artifacts}`` are left for the site's runner, which alone knows
    where they are. In argv form a lone ``{inputs}`` item expands to one item per file;
    in shell form every value is shell-quoted so file names cannot inject commands. Each
    placeholder is replaced in one pass over the template: a substituted file name is
    never scanned again, so a name that itself holds ``{input}`` cannot undo the quoting.
    """
    first = inputs[0] if inputs else ""
    if isinstance(command, str):
        shell = {
            "inputs": " ".join(shlex.quote(p) for p in inputs),
            "input": shlex.quote(first),
            "index": str(index),
        }
        return PLACEHOLDER.sub(lambda m: shell[m.group(1)], command)
    plain = {"inputs": " ".join(inputs), "input": first, "index": str(index)}
    argv: list[str] = []
    for item in command:
        if item == "{inputs}":
            argv.extend(inputs)
            continue
        argv.append(PLACEHOLDER.sub(lambda m: plain[m.group(1)], item))
    return argv


def job_spec(step: Step, inputs_values: dict[str, Any], files: list[str], index: int) -> JobSpec:
    job = resolve(step["job"], inputs_values)
    return JobSpec(
        step=step["id"],
        index=index,
        command=render_command(job["command"], inputs=files, index=index),
        inputs=list(files),
        env={str(k): str(v) for k, v in (job.get("environment") or {}).items()},
        num_cpus=int(job.get("num_cpus") or 1),
        mem_bytes=_bytes(job.get("mem_size")),
        timeout_s=_seconds(job.get("timeout")),
        image=job.get("image"),
        # Jobs refer to artifacts by file name ({artifacts}/analysis.py), as written.
        artifacts={
            os.path.basename(a["file"]): base64.b64decode(a["content_b64"])
            for a in (job.get("artifacts") or {}).values()
        },
    )


def _bytes(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else parse_size(value or "1 GB")


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else parse_duration(value or "1 h")


def chunk(files: list[Any], size: int) -> list[list[Any]]:
    size = max(1, int(size))
    return [files[i : i + size] for i in range(0, len(files), size)]
