"""Template inputs: their definitions, and binding given values (CLI strings or JSON) to them."""

from __future__ import annotations

import json
import re
from typing import Any

from stratoflow.errors import Issue, TemplateError
from stratoflow.tosca.loader import load_yaml_text
from stratoflow.tosca.model import MISSING, InputDef
from stratoflow.tosca.typesys import TypeSystem, entry_type
from stratoflow.tosca.values import ValueChecker, describe, is_function

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_INT_RE = re.compile(r"^[+-]?[0-9]{1,18}$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_INPUT_KEYS = {"type", "description", "default", "required", "constraints", "entry_schema"}
_INPUT_KEYS |= {"status", "metadata", "value", "key_schema"}


def parse_cli_inputs(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a pair without ``=`` is an error."""
    out: dict[str, str] = {}
    issues = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not _NAME_RE.match(name):
            issues.append(
                Issue(f"inputs.{name or pair}", f"malformed input {pair!r}: use NAME=VALUE")
            )
            continue
        out[name] = value
    if issues:
        raise TemplateError(issues)
    return out


def input_defs(tt: dict, ts: TypeSystem, issues: list[Issue]) -> dict[str, InputDef]:
    raw = tt.get("inputs") or {}
    if not isinstance(raw, dict):
        issues.append(Issue("topology_template.inputs", "expected a mapping"))
        return {}
    defs: dict[str, InputDef] = {}
    checker = ValueChecker(ts, issues)
    for name, d in raw.items():
        where = f"topology_template.inputs.{name}"
        if not isinstance(d, dict):
            issues.append(Issue(where, "an input definition must be a mapping"))
            continue
        for key in d:
            if key not in _INPUT_KEYS:
                issues.append(Issue(f"{where}.{key}", "unknown key in an input definition"))
        itype = d.get("type", "string")
        if not ts.is_value_type(itype):
            issues.append(Issue(f"{where}.type", f"unknown type {itype!r}"))
            continue
        constraints = d.get("constraints") or []
        if not isinstance(constraints, list):
            issues.append(Issue(f"{where}.constraints", "expected a list"))
            constraints = []
        etype, _ = entry_type(d.get("entry_schema"))
        if "entry_schema" in d and not ts.is_value_type(etype):
            issues.append(Issue(f"{where}.entry_schema", f"unknown type {etype!r}"))
            continue
        default = d.get("default", MISSING)
        if default is not MISSING and default is not None and not is_function(default):
            default = checker.check(
                default, itype, d.get("entry_schema"), constraints, f"{where}.default"
            )
        required = d.get("required", True)
        if not isinstance(required, bool):
            issues.append(Issue(f"{where}.required", f"expected boolean, got {describe(required)}"))
            required = True
        defs[name] = InputDef(
            name=str(name),
            type=itype,
            description=str(d.get("description") or ""),
            default=default,
            required=required,
            constraints=tuple(c for c in constraints if isinstance(c, dict)),
            entry_schema=etype,
        )
    return defs


def _coerce(text: str, t: str, ts: TypeSystem, where: str) -> Any:
    """A CLI string -> the declared type; left as is (and then rejected) when it does not fit."""
    s = text.strip()
    if t == "integer" and _INT_RE.match(s):
        return int(s)
    if t == "float":
        try:
            return float(s) if s.lower() not in ("nan", "inf", "-inf", "+inf") else text
        except ValueError:
            return text
    if t == "boolean":
        return True if s.lower() in _TRUE else False if s.lower() in _FALSE else text
    base: str | None = t
    if t not in ("list", "map", "range") and ts.resolve("data_types", t):
        base, _ = ts.primitive_of(ts.resolve("data_types", t) or t)
        if base is None:
            base = "map"  # complex data types are given as JSON/YAML mappings
        elif base not in ("list", "map", "range"):
            return _coerce(text, base, ts, where)
    if base in ("list", "map", "range") and s[:1] in "[{":
        try:
            return json.loads(s)
        except ValueError:
            return load_yaml_text(s, where)  # flow YAML: [a, b] or {k: v}
    return text


def bind_inputs(
    defs: dict[str, InputDef], given: dict[str, Any] | None, ts: TypeSystem, require: bool = True
) -> dict[str, Any]:
    """Validated, typed values for every input that has one (given or default).

    ``require=False`` (no run yet) binds defaults only and tolerates missing required inputs.
    """
    issues: list[Issue] = []
    given = dict(given or {})
    checker = ValueChecker(ts, issues)
    for name in given:
        if name not in defs:
            known = ", ".join(sorted(defs)) or "none"
            issues.append(Issue(f"inputs.{name}", f"unknown input (declared: {known})"))
    bound: dict[str, Any] = {}
    for name, d in defs.items():
        where = f"topology_template.inputs.{name}"
        if name in given:
            value = given[name]
            if is_function(value):
                issues.append(Issue(where, "an input value may not be a TOSCA function"))
                continue
            if isinstance(value, str) and d.type != "string":
                try:
                    value = _coerce(value, d.type, ts, where)
                except TemplateError as exc:
                    issues.extend(exc.issues)
                    continue
            bound[name] = checker.check(value, d.type, d.entry_schema, list(d.constraints), where)
        elif d.has_default and d.default is not None:
            bound[name] = d.default
        elif d.required and require:
            issues.append(Issue(where, "required input not given"))
    if issues:
        raise TemplateError(issues)
    return bound
