"""Bind a run's inputs (an Airflow run conf) against the plan's input definitions.

The same checks as ``stratoflow validate -i``, so a REST call or a trigger form gets the
same message, naming the same field, as the command line.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from stratoflow.tosca.model import MISSING, InputDef


@lru_cache(maxsize=1)
def _library_types():
    from stratoflow.tosca.imports import TypeDoc, normative_doc, stratoflow_doc
    from stratoflow.tosca.typesys import TypeSystem

    issues: list = []
    ts = TypeSystem()
    ts.add(TypeDoc("normative", normative_doc()), issues, trusted=True)
    ts.add(TypeDoc("stratoflow-types", stratoflow_doc()), issues, trusted=True)
    return ts


def input_defs(plan_inputs: dict[str, dict]) -> dict[str, InputDef]:
    return {
        name: InputDef(
            name=name,
            type=d.get("type", "string"),
            description=d.get("description", ""),
            default=d["default"] if "default" in d else MISSING,
            required=d.get("required", True),
            constraints=tuple(d.get("constraints") or ()),
            entry_schema=d.get("entry_schema"),
        )
        for name, d in plan_inputs.items()
    }


def bind_inputs(plan_inputs: dict[str, dict], values: dict[str, Any]) -> dict[str, Any]:
    """Typed, checked values (defaults applied); ``TemplateError`` naming each bad field.

    Keys that are not inputs and are ``None`` are dropped: Airflow fills a run's params
    with every declared param, and nothing else.
    """
    from stratoflow.tosca.inputs import bind_inputs as bind

    given = {k: v for k, v in values.items() if not (v is None and k not in plan_inputs)}
    given = {k: v for k, v in given.items() if not (v is None and k in plan_inputs)}
    return bind(input_defs(plan_inputs), given, _library_types())
