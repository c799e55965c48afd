"""load_topology: safe load -> type system -> our checks -> tosca-parser -> Topology."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stratoflow.errors import Issue, TemplateError
from stratoflow.tosca.imports import (
    TYPE_SECTIONS,
    TypeDoc,
    normative_doc,
    resolve_imports,
    stratoflow_doc,
)
from stratoflow.tosca.inputs import bind_inputs, input_defs
from stratoflow.tosca.loader import load_yaml_text, read_text
from stratoflow.tosca.model import Topology
from stratoflow.tosca.parser_check import run_toscaparser
from stratoflow.tosca.typesys import TypeSystem
from stratoflow.tosca.validate import TemplateValidator

VERSIONS = ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_2", "tosca_simple_yaml_1_3")
TOP_KEYS = frozenset(
    {"tosca_definitions_version", "tosca_default_namespace", "template_name", "template_author"}
    | {"template_version", "description", "metadata", "dsl_definitions", "repositories"}
    | {"imports", "topology_template"}
    | set(TYPE_SECTIONS)
)
TT_KEYS = frozenset(
    {"description", "inputs", "node_templates", "relationship_templates", "outputs", "groups"}
    | {"substitution_mappings", "policies", "workflows"}
)


def load_topology(path: str | os.PathLike, inputs: dict[str, Any] | None = None) -> Topology:
    """Load, check and bind a TOSCA template file. Raises TemplateError listing every fault.

    ``inputs=None`` means "no run yet": only defaults are bound and missing required inputs
    are not an error. A dict (even empty) is a run's inputs: every required input must be in it.
    """
    p = Path(path)
    return load_topology_text(read_text(p, ""), p.parent, inputs, name_hint=p.stem)


def load_topology_text(
    text: str,
    base_dir: Path,
    inputs: dict[str, Any] | None = None,
    name_hint: str = "template",
) -> Topology:
    doc = load_yaml_text(text, "")
    base_dir = Path(base_dir)
    issues: list[Issue] = []
    if not isinstance(doc, dict):
        kind = "an empty document" if doc is None else f"a {type(doc).__name__}"
        raise TemplateError([Issue("", f"a TOSCA template must be a YAML mapping, got {kind}")])
    version = doc.get("tosca_definitions_version")
    if version is None:
        issues.append(Issue("tosca_definitions_version", "missing"))
    elif version not in VERSIONS:
        issues.append(
            Issue(
                "tosca_definitions_version",
                f"unsupported version {version!r} (supported: {', '.join(VERSIONS)})",
            )
        )
    for key in doc:
        if key not in TOP_KEYS:
            issues.append(Issue(str(key), "unknown top-level key"))
    tt = doc.get("topology_template")
    if not isinstance(tt, dict):
        issues.append(Issue("topology_template", "missing, or not a mapping"))
        raise TemplateError(issues)
    for key in tt:
        if key not in TT_KEYS:
            issues.append(Issue(f"topology_template.{key}", "unknown key"))

    ts = TypeSystem()
    ts.add(TypeDoc("normative", normative_doc()), issues, trusted=True)
    ts.add(TypeDoc("stratoflow-types", stratoflow_doc()), issues, trusted=True)
    for imported in resolve_imports(doc, base_dir, issues):
        ts.add(imported, issues)
    ts.add(TypeDoc("", doc), issues)
    ts.check_definitions(issues)

    defs = input_defs(tt, ts, issues)
    validator = TemplateValidator(tt, ts, defs, base_dir, issues)
    nodes = validator.nodes()
    policies = validator.policies()
    validator.groups()
    outputs = validator.outputs()
    try:
        bound = bind_inputs(defs, inputs, ts, require=inputs is not None)
    except TemplateError as exc:
        issues.extend(exc.issues)
    if issues:
        raise TemplateError(issues)

    # Values we normalised (a Job's string command -> argv) are handed over normalised, so
    # tosca-parser checks what the plan will actually get.
    raw_nodes = tt.get("node_templates") or {}
    overrides: dict[str, dict[str, Any]] = {}
    for name, node in nodes.items():
        given = raw_nodes[name].get("properties") or {}
        changed = {k: v for k, v in node.properties.items() if k in given and given[k] != v}
        if changed:
            overrides[name] = changed
    issues = run_toscaparser(doc, ts, bound, overrides, name=name_hint)
    if issues:
        raise TemplateError(issues)

    metadata = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    name = metadata.get("template_name") or doc.get("template_name") or name_hint
    return Topology(
        name=str(name),
        tosca_version=str(version),
        description=str(doc.get("description") or tt.get("description") or "").strip(),
        inputs=defs,
        nodes=nodes,
        outputs=outputs,
        policies=policies,
        bound_inputs=bound,
    )
