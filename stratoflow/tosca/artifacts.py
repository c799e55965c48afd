"""Node artifacts: files next to the template, read at intake into the Topology.

Reading them now means the compiled plan is self-contained and a run never needs the
template's directory; the same path rules as imports keep a template inside its directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stratoflow.errors import Issue, TemplateError
from stratoflow.tosca.loader import read_bytes
from stratoflow.tosca.model import Artifact
from stratoflow.tosca.typesys import TypeSystem

MAX_ARTIFACT_BYTES = 1024 * 1024
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_KEYS = {"file", "type", "description", "deploy_path", "checksum", "checksum_algorithm"}


def read_artifacts(
    raw: Any, ts: TypeSystem, base_dir: Path, where: str, issues: list[Issue]
) -> dict[str, Artifact]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        issues.append(Issue(f"{where}.artifacts", "expected a mapping of artifacts"))
        return {}
    out: dict[str, Artifact] = {}
    root = base_dir.resolve()
    for name, a in raw.items():
        awhere = f"{where}.artifacts.{name}"
        if isinstance(a, str):
            a = {"file": a}
        if not isinstance(a, dict):
            issues.append(Issue(awhere, "expected a file name or {file: ..., type: ...}"))
            continue
        for key in a:
            if key not in _KEYS:
                problem = "not supported (no remote fetch)" if key == "repository" else "unknown"
                issues.append(Issue(f"{awhere}.{key}", f"{problem} key in an artifact"))
        atype = ts.resolve("artifact_types", a.get("type", "tosca.artifacts.File"))
        if atype is None:
            issues.append(Issue(f"{awhere}.type", f"unknown artifact type {a.get('type')!r}"))
            continue
        file = a.get("file")
        if not isinstance(file, str) or not file:
            issues.append(Issue(f"{awhere}.file", "expected a relative file path"))
            continue
        if _SCHEME.match(file) or file.startswith(("/", "\\", "~")) or Path(file).is_absolute():
            issues.append(
                Issue(
                    f"{awhere}.file",
                    f"{file!r} refused: an artifact is a file in the template's directory (for"
                    " a template posted as text, the catalogue's); nothing is fetched",
                )
            )
            continue
        try:
            target = (root / file).resolve()
        except (OSError, RuntimeError) as exc:
            issues.append(Issue(f"{awhere}.file", f"cannot resolve {file!r}: {exc}"))
            continue
        if not target.is_relative_to(root):
            issues.append(
                Issue(f"{awhere}.file", f"{file!r} resolves outside the template directory")
            )
            continue
        try:
            content = read_bytes(target, f"{awhere}.file", MAX_ARTIFACT_BYTES)
        except TemplateError as exc:
            issues.extend(exc.issues)
            continue
        out[str(name)] = Artifact(str(name), atype, file, content)
    return out
