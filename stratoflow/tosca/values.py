"""Typing and constraint checks of TOSCA values (properties, inputs, defaults).

``ValueChecker.check`` returns the value normalised (data-type defaults applied, a Job's
string command split) and records an Issue per fault instead of stopping at the first.
Intrinsic functions are not evaluated here: they are handed to a callback, because their
meaning depends on the template (declared inputs, node names).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from datetime import datetime
from typing import Any

from stratoflow.errors import Issue
from stratoflow.tosca.scalars import UNIT_TABLES, parse_scalar
from stratoflow.tosca.typesys import PRIMITIVES, TypeSystem, entry_type

FUNCTIONS = frozenset(
    {"get_input", "get_property", "get_attribute", "get_operation_output", "get_nodes_of_type"}
    | {"get_artifact", "concat", "join", "token", "get_secret"}
)
_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(\.[0-9]+)?(\.[0-9A-Za-z]+)?(-[0-9]+)?$")
# A quantified group holding a quantifier ("(a+)+") can backtrack exponentially; Python's re
# has no timeout, so such patterns are refused rather than risk a hung validation.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*}][^()]*\)\s*[+*{]")
MAX_PATTERN_INPUT = 10_000

FunctionHook = Callable[[dict, str, Any, str], None]  # (fn, type, entry_schema, path)


def is_function(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in FUNCTIONS


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_timestamp(value: str) -> bool:
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


class ValueChecker:
    def __init__(
        self, ts: TypeSystem, issues: list[Issue], on_function: FunctionHook | None = None
    ):
        self.ts = ts
        self.issues = issues
        self.on_function = on_function

    def fail(self, path: str, message: str) -> None:
        self.issues.append(Issue(path, message))

    def check_property(self, value: Any, pdef: dict, path: str) -> Any:
        """Check a value against a property definition (type, entry_schema, constraints)."""
        ptype = pdef.get("type", "string")
        meta = pdef.get("metadata") or {}
        if (
            isinstance(value, str)
            and ptype == "list"
            and meta.get("stratoflow.string_form") == "shlex"
        ):
            try:
                value = shlex.split(value)
            except ValueError as exc:
                self.fail(path, f"cannot split command string: {exc}")
                return value
        return self.check(value, ptype, pdef.get("entry_schema"), pdef.get("constraints"), path)

    def check(
        self, value: Any, type_name: str, entry_schema: Any, constraints: Any, path: str
    ) -> Any:
        if is_function(value):
            if self.on_function is not None:
                self.on_function(value, type_name, entry_schema, path)
            return value
        errors_before = len(self.issues)
        base: str | None
        if type_name in PRIMITIVES:
            value = self._primitive(value, type_name, entry_schema, path)
            base = type_name
        else:
            full = self.ts.resolve("data_types", type_name)
            if full is None:
                self.fail(path, f"unknown data type {type_name!r}")
                return value
            base, layers = self.ts.primitive_of(full)
            if base is None:
                return self._complex(value, full, path)
            for _c, es in layers:
                entry_schema = entry_schema or es
            value = self._primitive(value, base, entry_schema, path)
            if len(self.issues) == errors_before:
                for layer_constraints, _es in layers:
                    self._constraints(value, base, layer_constraints, path)
        if len(self.issues) == errors_before and constraints:
            self._constraints(value, base, constraints, path)
        return value

    def _primitive(self, value: Any, t: str, entry_schema: Any, path: str) -> Any:
        ok = True
        if t == "string":
            ok = isinstance(value, str)
        elif t == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif t == "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        elif t == "boolean":
            ok = isinstance(value, bool)
        elif t == "timestamp":
            ok = isinstance(value, str) and _is_timestamp(value)
        elif t == "version":
            ok = isinstance(value, str | int | float) and not isinstance(value, bool)
            ok = ok and bool(_VERSION_RE.match(str(value)))
        elif t == "range":
            ok = (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], int)
                and not isinstance(value[0], bool)
                and (value[1] == "UNBOUNDED" or (type(value[1]) is int and value[0] <= value[1]))
            )
        elif t in UNIT_TABLES:
            try:
                parse_scalar(value, t)
            except ValueError:
                ok = False
        elif t == "list":
            if not isinstance(value, list):
                ok = False
            elif entry_schema is not None:
                et, ec = entry_type(entry_schema)
                return [
                    self.check(v, et or "string", None, ec, f"{path}[{i}]")
                    for i, v in enumerate(value)
                ]
        elif t == "map":
            if not isinstance(value, dict):
                ok = False
            elif entry_schema is not None:
                et, ec = entry_type(entry_schema)
                return {
                    k: self.check(v, et or "string", None, ec, f"{path}.{k}")
                    for k, v in value.items()
                }
        if not ok:
            self.fail(path, f"expected {t}, got {describe(value)}")
        return value

    def _complex(self, value: Any, data_type: str, path: str) -> Any:
        if not isinstance(value, dict):
            self.fail(path, f"expected {data_type} (a mapping), got {describe(value)}")
            return value
        return self.check_fields(value, self.ts.merged("data_types", data_type, "properties"), path)

    def check_fields(self, value: dict, defs: dict[str, Any], path: str) -> dict:
        """Check a mapping of property values: unknown names, required, defaults, types."""
        out: dict[str, Any] = {}
        for name, v in value.items():
            pdef = defs.get(name)
            if not isinstance(pdef, dict):
                known = ", ".join(sorted(map(str, defs))) or "none"
                self.fail(f"{path}.{name}", f"unknown property (known: {known})")
                continue
            out[name] = self.check_property(v, pdef, f"{path}.{name}")
        for name, pdef in defs.items():
            if name in out or name in value or not isinstance(pdef, dict):
                continue
            if "default" in pdef:
                out[name] = pdef["default"]
            elif pdef.get("required", True) not in (False, "false"):
                self.fail(f"{path}.{name}", "required property missing")
        return out

    # -- constraints ----------------------------------------------------------------------

    def _key(self, value: Any, t: str) -> Any:
        if t in UNIT_TABLES:
            return parse_scalar(value, t)
        if t == "version":
            return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.-]", str(value)))
        return value

    def _constraints(self, value: Any, t: str, constraints: Any, path: str) -> None:
        if not isinstance(constraints, list):
            self.fail(path, "constraints must be a list")
            return
        for clause in constraints:
            if not isinstance(clause, dict) or len(clause) != 1:
                self.fail(path, f"malformed constraint {describe(clause)}")
                continue
            ((op, arg),) = clause.items()
            try:
                problem = self._one(value, t, op, arg)
            except (ValueError, TypeError, re.error) as exc:
                problem = f"cannot apply constraint {op}: {exc}"
            if problem:
                self.fail(path, problem)

    def _one(self, value: Any, t: str, op: str, arg: Any) -> str | None:
        key = self._key
        shown = describe(value)
        if op == "equal":
            return None if key(value, t) == key(arg, t) else f"{shown} is not equal to {arg!r}"
        compare = {
            "greater_than": (lambda a, b: a > b, "greater than"),
            "greater_or_equal": (lambda a, b: a >= b, "at least"),
            "less_than": (lambda a, b: a < b, "less than"),
            "less_or_equal": (lambda a, b: a <= b, "at most"),
        }
        if op in compare:
            fn, words = compare[op]
            return None if fn(key(value, t), key(arg, t)) else f"{shown} must be {words} {arg}"
        if op == "in_range":
            if not isinstance(arg, list) or len(arg) != 2:
                raise ValueError("in_range takes [min, max]")
            lo, hi = arg
            v = key(value, t)
            if v < key(lo, t) or (hi != "UNBOUNDED" and v > key(hi, t)):
                return f"{shown} is not in range [{lo}, {hi}]"
            return None
        if op == "valid_values":
            if not isinstance(arg, list):
                raise ValueError("valid_values takes a list")
            if any(key(value, t) == key(a, t) for a in arg):
                return None
            return f"{shown} is not one of {', '.join(map(str, arg))}"
        if op in ("length", "min_length", "max_length"):
            n = len(value)
            limit = int(arg)
            bad = {"length": n != limit, "min_length": n < limit, "max_length": n > limit}[op]
            return f"length {n} violates {op} {limit}" if bad else None
        if op == "pattern":
            if not isinstance(arg, str) or _NESTED_QUANTIFIER.search(arg):
                raise ValueError(f"pattern {arg!r} refused (nested quantifiers can hang)")
            if len(value) > MAX_PATTERN_INPUT:
                return f"value longer than {MAX_PATTERN_INPUT} characters for a pattern"
            return None if re.fullmatch(arg, value) else f"{shown} does not match pattern {arg!r}"
        raise ValueError(f"unknown constraint {op!r}")
