"""Resolution of a template's ``imports:`` without ever touching the network.

An import may only name (1) a type library bundled with Stratoflow, (2) a well-known URL that
maps to a bundled library, or (3) a relative file inside the template's own directory. This
keeps intake hermetic: the same template always means the same types, and a hostile
template cannot make the server fetch URLs or read files outside its directory.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from stratoflow.errors import Issue
from stratoflow.tosca.loader import load_yaml_file

MAX_IMPORT_DEPTH = 5
MAX_IMPORTED_FILES = 50
TYPES_DIR = Path(__file__).parent / "types"

INDIGO_TYPES_URL = (
    "https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml"
)
NORMATIVE_URLS = (
    "http://docs.oasis-open.org/tosca/tosca-simple-profile/v1.0/TOSCA_definition.yaml",
    "https://raw.githubusercontent.com/openstack/tosca-parser/master/toscaparser/elements/"
    "TOSCA_definition.yaml",
)
# Import names that stand for a bundled library. "normative" is always loaded anyway.
BUNDLED: dict[str, str] = {
    "stratoflow-types": "stratoflow",
    "stratoflow/types.yaml": "stratoflow",
    "stratoflow.yaml": "stratoflow",
    INDIGO_TYPES_URL: "stratoflow",
    "tosca-normative-types": "normative",
    "tosca_definition.yaml": "normative",
    **{url: "normative" for url in NORMATIVE_URLS},
}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
TYPE_SECTIONS = (
    "data_types",
    "artifact_types",
    "capability_types",
    "interface_types",
    "relationship_types",
    "node_types",
    "group_types",
    "policy_types",
)
_IMPORTED_KEYS = frozenset(
    {"tosca_definitions_version", "description", "metadata", "imports", "dsl_definitions"}
    | {"template_name", "template_author", "template_version", "repositories"}
    | set(TYPE_SECTIONS)
)


@dataclass(frozen=True)
class TypeDoc:
    """One source of type definitions: a bundled library or an imported file."""

    label: str  # where issues point, e.g. "imports[0]" or "normative"
    doc: dict[str, Any]
    namespace_prefix: str | None = None


@lru_cache(maxsize=1)
def normative_doc() -> dict[str, Any]:
    """tosca-parser's own normative definitions, so our checks and its checks agree.

    Located with find_spec, which does not import toscaparser (that costs ~0.5 s).
    """
    spec = importlib.util.find_spec("toscaparser")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tosca-parser is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "elements" / "TOSCA_definition.yaml"
    return load_yaml_file(path, "normative")


@lru_cache(maxsize=1)
def stratoflow_doc() -> dict[str, Any]:
    return load_yaml_file(TYPES_DIR / "stratoflow.yaml", "stratoflow-types")


def _entry_file(entry: Any) -> tuple[str | None, str | None, str | None]:
    """(file, namespace_prefix, problem) for the string, {file: ...} and {name: ...} forms."""
    if isinstance(entry, str):
        return entry, None, None
    if isinstance(entry, dict):
        if "file" not in entry and len(entry) == 1:
            (value,) = entry.values()  # TOSCA 1.0 form: `- name: file` or `- name: {file: ..}`
            return _entry_file(value)
        if "repository" in entry:
            return None, None, "imports from a repository are not supported (no network)"
        unknown = set(entry) - {"file", "namespace_prefix", "namespace_uri"}
        if unknown:
            return None, None, f"unknown import keys: {', '.join(sorted(map(str, unknown)))}"
        file, prefix = entry.get("file"), entry.get("namespace_prefix")
        if not isinstance(file, str) or (prefix is not None and not isinstance(prefix, str)):
            return None, None, "file and namespace_prefix must be strings"
        return file, prefix, None
    return None, None, f"expected a file name or a mapping with 'file', got {entry!r}"


def resolve_imports(doc: dict[str, Any], root_dir: Path, issues: list[Issue]) -> list[TypeDoc]:
    """Type documents imported by ``doc`` (recursively), in dependency order."""
    out: list[TypeDoc] = []
    seen: set[Path] = set()
    _resolve(doc, root_dir.resolve(), root_dir.resolve(), "", [], seen, out, issues)
    return out


def _resolve(
    doc: dict[str, Any],
    here: Path,
    root: Path,
    prefix: str,
    stack: list[Path],
    seen: set[Path],
    out: list[TypeDoc],
    issues: list[Issue],
) -> None:
    entries = doc.get("imports")
    if entries is None:
        return
    if not isinstance(entries, list):
        issues.append(Issue(f"{prefix}imports", "expected a list of imports"))
        return
    for i, entry in enumerate(entries):
        where = f"{prefix}imports[{i}]"
        name, ns, problem = _entry_file(entry)
        if problem or name is None:
            issues.append(Issue(where, problem or "missing file"))
            continue
        bundled = BUNDLED.get(name.strip())
        if bundled is not None:
            continue  # bundled libraries are always part of the type system
        if _SCHEME.match(name) or name.startswith("//"):
            issues.append(
                Issue(
                    where,
                    f"import {name!r} refused: only bundled libraries and relative "
                    "files inside the template directory may be imported",
                )
            )
            continue
        if name.startswith(("/", "\\", "~")) or Path(name).is_absolute():
            issues.append(Issue(where, f"import {name!r} refused: absolute paths are not allowed"))
            continue
        try:
            target = (here / name).resolve()
        except (OSError, RuntimeError) as exc:  # symlink loops
            issues.append(Issue(where, f"cannot resolve {name!r}: {exc}"))
            continue
        if not target.is_relative_to(root):
            issues.append(
                Issue(where, f"import {name!r} refused: it resolves outside the template directory")
            )
            continue
        if target in stack:
            issues.append(Issue(where, f"import cycle: {name!r} imports itself"))
            continue
        if len(stack) >= MAX_IMPORT_DEPTH:
            issues.append(Issue(where, f"imports nested deeper than {MAX_IMPORT_DEPTH}"))
            continue
        if target in seen:
            continue
        if len(seen) >= MAX_IMPORTED_FILES:
            issues.append(Issue(where, f"more than {MAX_IMPORTED_FILES} imported files"))
            return
        seen.add(target)
        try:
            sub = load_yaml_file(target, where)
        except Exception as exc:  # TemplateError: keep its issues, go on with the others
            issues.extend(getattr(exc, "issues", [Issue(where, str(exc))]))
            continue
        if not isinstance(sub, dict):
            issues.append(Issue(where, f"{name!r} must hold a mapping of type definitions"))
            continue
        bad = [k for k in sub if k not in _IMPORTED_KEYS]
        for key in bad:
            issues.append(Issue(f"{where}.{key}", "not allowed in an imported type file"))
        _resolve(sub, target.parent, root, f"{where}.", [*stack, target], seen, out, issues)
        out.append(TypeDoc(where, sub, ns))
