"""Static checks of intrinsic functions (get_input, get_property, get_attribute, ...).

Functions stay unevaluated in the Topology (one compiled plan serves many runs), so all we can
do at intake is make sure each one *could* resolve: the input is declared and of a fitting
type, and the node and property it names exist.
"""

from __future__ import annotations

from typing import Any

from stratoflow.errors import Issue
from stratoflow.tosca.model import InputDef
from stratoflow.tosca.typesys import PRIMITIVES, TypeSystem, entry_type
from stratoflow.tosca.values import is_function

KEYWORDS = frozenset({"SELF", "SOURCE", "TARGET", "HOST"})


def _base(ts: TypeSystem, t: str | None) -> str | None:
    if t is None or t in PRIMITIVES:
        return t
    full = ts.resolve("data_types", t)
    if full is None:
        return t
    prim, _ = ts.primitive_of(full)
    return prim or full


def compatible(ts: TypeSystem, idef: InputDef, ptype: str, pentry: Any) -> bool:
    """Can a value of the input's type stand where ``ptype`` is expected?"""
    bi, bp = _base(ts, idef.type), _base(ts, ptype)
    if bi == bp:
        if bi in ("list", "map") and idef.entry_schema and pentry is not None:
            pe, _ = entry_type(pentry)
            ie = _base(ts, idef.entry_schema)
            return ie == _base(ts, pe) or (ie == "integer" and _base(ts, pe) == "float")
        return True
    if bi == "integer" and bp == "float":
        return True
    # A complex data type may be supplied by a map input (checked when bound).
    return bi == "map" and bp is not None and bp not in PRIMITIVES


class FunctionChecker:
    def __init__(
        self,
        ts: TypeSystem,
        inputs: dict[str, InputDef],
        node_types: dict[str, str],
        issues: list[Issue],
    ):
        self.ts = ts
        self.inputs = inputs
        self.node_types = node_types  # node template name -> resolved type (known ones only)
        self.all_nodes: set[str] = set(node_types)
        self.issues = issues
        self.current: str | None = None  # the node whose properties are being checked

    def hook(self, fn: dict, ptype: str, pentry: Any, path: str) -> None:
        self.check(fn, ptype, pentry, path)

    def walk(self, value: Any, path: str) -> None:
        """Find and check functions anywhere in an untyped value (outputs, concat args)."""
        if is_function(value):
            self.check(value, None, None, path)
        elif isinstance(value, dict):
            for k, v in value.items():
                self.walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.walk(v, f"{path}[{i}]")

    def check(self, fn: dict, ptype: str | None, pentry: Any, path: str) -> None:
        ((name, args),) = fn.items()
        if name == "get_input":
            self._get_input(args, ptype, pentry, path)
        elif name in ("get_property", "get_attribute"):
            self._get_ref(name, args, path)
        elif name in ("concat", "join", "token"):
            self.walk(args, f"{path}.{name}")

    def _get_input(self, args: Any, ptype: str | None, pentry: Any, path: str) -> None:
        indexed = isinstance(args, list)
        target = args[0] if indexed and args else args
        if not isinstance(target, str):
            self.issues.append(Issue(path, f"get_input needs an input name, got {target!r}"))
            return
        idef = self.inputs.get(target)
        if idef is None:
            declared = ", ".join(sorted(self.inputs)) or "none"
            self.issues.append(
                Issue(path, f"get_input of undeclared input {target!r} (declared: {declared})")
            )
            return
        if ptype is not None and not indexed and not compatible(self.ts, idef, ptype, pentry):
            self.issues.append(
                Issue(path, f"input {target!r} is of type {idef.type}, but {ptype} is expected")
            )

    def _get_ref(self, fname: str, args: Any, path: str) -> None:
        # TOSCA 1.3: [entity, (capability or requirement,) name, nested names or indexes...]
        if (
            not isinstance(args, list)
            or len(args) < 2
            or not all(isinstance(a, str) for a in args[:2])
            or not all(isinstance(a, str | int) and not isinstance(a, bool) for a in args[2:])
        ):
            self.issues.append(
                Issue(path, f"{fname} takes [node, name, ...]: names, then names or indexes")
            )
            return
        node = args[0]
        if node in ("SOURCE", "TARGET", "HOST"):
            return  # resolved through relationships at run time
        if node == "SELF":
            if self.current is None:
                self.issues.append(Issue(path, f"{fname} of SELF outside a node template"))
                return
            node = self.current
        elif node not in self.all_nodes:
            known = ", ".join(sorted(self.all_nodes)) or "none"
            self.issues.append(Issue(path, f"{fname} of unknown node {node!r} (nodes: {known})"))
            return
        ntype = self.node_types.get(node)
        if ntype is None:
            return  # the node's own type is unknown; reported elsewhere
        props = self.ts.merged("node_types", ntype, "properties")
        names = set(props)
        if fname == "get_attribute":
            names |= set(self.ts.merged("node_types", ntype, "attributes"))
        caps = self.ts.merged("node_types", ntype, "capabilities")
        reqs = self.ts.requirements(ntype)
        second = args[1]
        if len(args) >= 3 and second in caps and isinstance(args[2], str):
            cap_names = set(self.ts.capability_properties(ntype, second))
            ctype = (caps[second] or {}).get("type", "")
            cap_names |= set(self.ts.merged("capability_types", ctype, "attributes"))
            if args[2] not in cap_names and fname == "get_property":
                self.issues.append(
                    Issue(path, f"capability {second!r} of {node!r} has no property {args[2]!r}")
                )
            return
        if len(args) >= 3 and second in reqs:
            return  # a property of the requirement's target: known only at run time
        if second not in names:
            what = "property" if fname == "get_property" else "property or attribute"
            self.issues.append(Issue(path, f"node {node!r} ({ntype}) has no {what} {second!r}"))
