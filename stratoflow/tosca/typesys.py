"""The type system a template is checked against.

Built from tosca-parser's normative definitions, Stratoflow's library, imported files and the
template's own type sections, in that order. Later sources may add types but not silently
replace one from another source: a template that redefines ``stratoflow.nodes.Job`` would
otherwise compile to something other than what its type name promises.
"""

from __future__ import annotations

from typing import Any

from stratoflow.errors import Issue
from stratoflow.tosca.imports import TYPE_SECTIONS, TypeDoc

PREFIX = {
    "node_types": "tosca.nodes.",
    "capability_types": "tosca.capabilities.",
    "relationship_types": "tosca.relationships.",
    "policy_types": "tosca.policies.",
    "data_types": "tosca.datatypes.",
    "artifact_types": "tosca.artifacts.",
    "group_types": "tosca.groups.",
    "interface_types": "tosca.interfaces.",
}
PRIMITIVES = frozenset(
    {"string", "integer", "float", "boolean", "timestamp", "version", "range", "list", "map"}
    | {"scalar-unit.size", "scalar-unit.time", "scalar-unit.frequency", "scalar-unit.bitrate"}
)


def entry_type(entry_schema: Any) -> tuple[str | None, list]:
    """(type, constraints) of an entry_schema given as ``string`` or ``{type: string, ...}``."""
    if isinstance(entry_schema, str):
        return entry_schema, []
    if isinstance(entry_schema, dict) and isinstance(entry_schema.get("type"), str):
        constraints = entry_schema.get("constraints") or []
        return entry_schema["type"], constraints if isinstance(constraints, list) else []
    return None, []


class TypeSystem:
    def __init__(self) -> None:
        self.defs: dict[str, dict[str, dict]] = {s: {} for s in TYPE_SECTIONS}
        self.origin: dict[tuple[str, str], str] = {}
        self.untrusted: list[tuple[str, str, str]] = []  # (label, section, name) to check
        self.aliases: dict[str, dict[str, str]] = {s: {} for s in TYPE_SECTIONS}

    def add(self, source: TypeDoc, issues: list[Issue], trusted: bool = False) -> None:
        label = f"{source.label}." if source.label else ""
        for section in TYPE_SECTIONS:
            types = source.doc.get(section)
            if types is None:
                continue
            if not isinstance(types, dict):
                issues.append(Issue(f"{label}{section}", "expected a mapping of type definitions"))
                continue
            for name, definition in types.items():
                where = f"{label}{section}.{name}"
                if not isinstance(name, str) or not isinstance(definition, dict | None):
                    issues.append(Issue(where, "a type definition must be a mapping"))
                    continue
                definition = definition or {}
                old = self.defs[section].get(name)
                if old is not None and old != definition:
                    issues.append(
                        Issue(
                            where,
                            f"redefines {name}, already defined by {self.origin[(section, name)]}",
                        )
                    )
                    continue
                self.defs[section][name] = definition
                self.origin.setdefault((section, name), source.label or "the template")
                if source.namespace_prefix:
                    self.aliases[section][f"{source.namespace_prefix}:{name}"] = name
                if not trusted:
                    self.untrusted.append((label, section, name))

    # -- lookups -----------------------------------------------------------------------

    def resolve(self, section: str, name: Any) -> str | None:
        """The full name of a type, accepting TOSCA short forms (``Compute``, ``tosca:Compute``)."""
        if not isinstance(name, str):
            return None
        table = self.defs[section]
        if name in table:
            return name
        if name in self.aliases[section]:
            return self.aliases[section][name]
        short = name[len("tosca:") :] if name.startswith("tosca:") else name
        full = PREFIX[section] + short
        return full if full in table else None

    def chain(self, section: str, name: str) -> tuple[str, ...]:
        """The type and its ancestors; stops at an unknown parent or a derivation cycle."""
        out: list[str] = []
        current: str | None = self.resolve(section, name)
        while current is not None and current not in out:
            out.append(current)
            current = self.resolve(section, self.defs[section][current].get("derived_from"))
        return tuple(out)

    def is_a(self, section: str, name: str, ancestor: str) -> bool:
        full = self.resolve(section, ancestor) or ancestor
        return full in self.chain(section, name)

    def merged(self, section: str, name: str, key: str) -> dict[str, Any]:
        """A mapping section (properties, attributes, capabilities...) merged down the chain."""
        out: dict[str, Any] = {}
        for t in reversed(self.chain(section, name)):
            block = self.defs[section][t].get(key)
            if not isinstance(block, dict):
                continue
            for k, v in block.items():
                if key == "capabilities" and isinstance(v, str):
                    v = {"type": v}
                if isinstance(v, dict) and isinstance(out.get(k), dict):
                    v = {**out[k], **v}  # a refinement keeps what it does not restate
                out[k] = v
        return out

    def requirements(self, node_type: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for t in reversed(self.chain("node_types", node_type)):
            for item in self.defs["node_types"][t].get("requirements") or []:
                if not isinstance(item, dict) or len(item) != 1:
                    continue
                ((rname, rdef),) = item.items()
                rdef = {"capability": rdef} if isinstance(rdef, str) else dict(rdef or {})
                out[rname] = {**out.get(rname, {}), **rdef}
        return out

    def capability_properties(self, node_type: str, cap: str) -> dict[str, Any]:
        cdef = self.merged("node_types", node_type, "capabilities").get(cap) or {}
        props = self.merged("capability_types", cdef.get("type", ""), "properties")
        refined = cdef.get("properties")
        if isinstance(refined, dict):
            for k, v in refined.items():
                if isinstance(v, dict):
                    props[k] = {**props.get(k, {}), **v}
        return props

    def is_value_type(self, name: Any) -> bool:
        return name in PRIMITIVES or self.resolve("data_types", name) is not None

    def primitive_of(self, data_type: str) -> tuple[str | None, list[tuple[list, Any]]]:
        """For a data type derived from a primitive: (primitive, [(constraints, entry_schema)])."""
        layers = []
        for t in self.chain("data_types", data_type):
            d = self.defs["data_types"][t]
            layers.append((d.get("constraints") or [], d.get("entry_schema")))
            # Standard TOSCA says `derived_from: integer`; tosca-parser's dialect (as in its
            # PortDef) says `derived_from: tosca.datatypes.Root` plus `type: integer`.
            for key in ("derived_from", "type"):
                if d.get(key) in PRIMITIVES:
                    return d[key], layers
        return None, layers

    # -- checks of the definitions themselves ---------------------------------------------

    def check_definitions(self, issues: list[Issue]) -> None:
        for label, section, name in self.untrusted:
            where = f"{label}{section}.{name}"
            d = self.defs[section][name]
            parent = d.get("derived_from")
            if parent is not None:
                ok = self.resolve(section, parent) is not None or (
                    section == "data_types" and parent in PRIMITIVES
                )
                if not ok:
                    issues.append(Issue(f"{where}.derived_from", f"unknown type {parent!r}"))
            chain = self.chain(section, name)
            last = self.defs[section][chain[-1]].get("derived_from") if chain else None
            if last is not None and self.resolve(section, last) in chain:
                issues.append(Issue(f"{where}.derived_from", "derivation cycle"))
            for key in ("properties", "attributes"):
                block = d.get(key) or {}
                if not isinstance(block, dict):
                    issues.append(Issue(f"{where}.{key}", "expected a mapping"))
                    continue
                for pname, pdef in block.items():
                    self._check_prop_def(f"{where}.{key}.{pname}", pdef, issues)
            if section == "node_types":
                self._check_node_type(where, d, issues)

    def _check_prop_def(self, where: str, pdef: Any, issues: list[Issue]) -> None:
        if not isinstance(pdef, dict):
            issues.append(Issue(where, "a property definition must be a mapping"))
            return
        ptype = pdef.get("type")
        if not self.is_value_type(ptype):
            issues.append(Issue(f"{where}.type", f"unknown type {ptype!r}"))
        if "entry_schema" in pdef:
            etype, _ = entry_type(pdef["entry_schema"])
            if not self.is_value_type(etype):
                issues.append(Issue(f"{where}.entry_schema", f"unknown type {etype!r}"))
        if "constraints" in pdef and not isinstance(pdef["constraints"], list):
            issues.append(Issue(f"{where}.constraints", "expected a list"))

    def _check_node_type(self, where: str, d: dict, issues: list[Issue]) -> None:
        caps = d.get("capabilities") or {}
        if not isinstance(caps, dict):
            issues.append(Issue(f"{where}.capabilities", "expected a mapping"))
            caps = {}
        for cname, cdef in caps.items():
            ctype = cdef if isinstance(cdef, str) else (cdef or {}).get("type")
            if ctype is not None and self.resolve("capability_types", ctype) is None:
                issues.append(Issue(f"{where}.capabilities.{cname}.type", f"unknown {ctype!r}"))
        reqs = d.get("requirements") or []
        if not isinstance(reqs, list):
            issues.append(Issue(f"{where}.requirements", "expected a list"))
            return
        for i, item in enumerate(reqs):
            if not isinstance(item, dict) or len(item) != 1:
                issues.append(Issue(f"{where}.requirements[{i}]", "expected `- name: {...}`"))
                continue
            ((rname, rdef),) = item.items()
            rdef = {"capability": rdef} if isinstance(rdef, str) else rdef
            if not isinstance(rdef, dict):
                issues.append(Issue(f"{where}.requirements[{i}].{rname}", "expected a mapping"))
                continue
            for key, section in (
                ("capability", "capability_types"),
                ("node", "node_types"),
                ("relationship", "relationship_types"),
            ):
                ref = rdef.get(key)
                if isinstance(ref, dict):
                    ref = ref.get("type")
                if ref is not None and self.resolve(section, ref) is None:
                    issues.append(
                        Issue(f"{where}.requirements[{i}].{rname}.{key}", f"unknown type {ref!r}")
                    )
