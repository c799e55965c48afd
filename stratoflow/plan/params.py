"""TOSCA input definitions -> JSON Schema, the shape of Airflow Params (trigger forms).

Kept free of airflow so it is cheap to test; the DAG factory wraps each result in a Param.
"""

from __future__ import annotations

from typing import Any

_SCALAR_PATTERNS = {
    "scalar-unit.size": r"^\s*\d+(\.\d+)?\s*(B|kB|KB|KiB|MB|MiB|GB|GiB|TB|TiB)\s*$",
    "scalar-unit.time": r"^\s*\d+(\.\d+)?\s*(d|h|m|s|ms|us|ns)\s*$",
    "scalar-unit.frequency": r"^\s*\d+(\.\d+)?\s*(Hz|kHz|MHz|GHz)\s*$",
}
_JSON_TYPES = {
    "string": "string",
    "integer": "integer",
    "float": "number",
    "boolean": "boolean",
    "list": "array",
    "map": "object",
    "timestamp": "string",
    "version": "string",
    "range": "array",
}
_BOUNDS = {
    "greater_or_equal": "minimum",
    "greater_than": "exclusiveMinimum",
    "less_or_equal": "maximum",
    "less_than": "exclusiveMaximum",
}


def param_schema(definition: dict) -> dict[str, Any]:
    """JSON Schema keywords (plus ``description``) for one plan input definition."""
    tosca_type = definition.get("type", "string")
    schema: dict[str, Any] = {}
    if tosca_type in _SCALAR_PATTERNS:
        schema["type"] = "string"
        schema["pattern"] = _SCALAR_PATTERNS[tosca_type]
    else:
        schema["type"] = _JSON_TYPES.get(tosca_type, "string")
    if tosca_type == "timestamp":
        schema["format"] = "date-time"
    if not definition.get("required", True) and "default" not in definition:
        schema["type"] = [schema["type"], "null"]
    is_sized = schema["type"] in ("string", "array", "object")
    for clause in definition.get("constraints") or []:
        for op, arg in clause.items():
            if op in _BOUNDS and not is_sized:
                schema[_BOUNDS[op]] = arg
            elif op == "in_range" and isinstance(arg, list) and len(arg) == 2:
                schema["minimum"], schema["maximum"] = arg
            elif op == "valid_values":
                schema["enum"] = list(arg)
            elif op == "equal":
                schema["const"] = arg
            elif op in ("min_length", "max_length", "length"):
                _length(schema, op, arg)
            elif op == "pattern":
                schema["pattern"] = arg
    if definition.get("description"):
        schema["description"] = definition["description"]
    return schema


def _length(schema: dict, op: str, arg: int) -> None:
    kind = schema["type"]
    prefix = {"array": "Items", "object": "Properties"}.get(kind, "Length")
    if op in ("min_length", "length"):
        schema["min" + prefix] = arg
    if op in ("max_length", "length"):
        schema["max" + prefix] = arg
