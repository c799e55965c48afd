"""The validated, typed result of TOSCA intake: what the plan compiler consumes.

Values may still hold intrinsic functions as plain dicts (``{"get_input": "n"}``): the
template's shape is compiled once, and inputs are bound per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MISSING: Any = object()


@dataclass(frozen=True)
class InputDef:
    name: str
    type: str  # TOSCA type: string, integer, float, boolean, list, map, scalar-unit.size, ...
    description: str = ""
    default: Any = MISSING
    required: bool = True
    constraints: tuple[dict, ...] = ()  # TOSCA constraint clauses, e.g. {"greater_or_equal": 1}
    entry_schema: str | None = None  # element type for list/map

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING


@dataclass(frozen=True)
class Requirement:
    name: str  # e.g. "host", "dataset"
    node: str  # target node template name
    relationship: str | None = None
    #: The inline relationship's checked properties (AttachesTo: location, device).
    properties: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Artifact:
    name: str
    type: str
    file: str  # path relative to the template's directory (already checked not to escape)
    content: bytes  # read at intake so the plan never needs the template directory


@dataclass(frozen=True)
class NodeTemplate:
    name: str
    type: str
    type_chain: tuple[str, ...]  # the type then its ancestors, up to tosca.nodes.Root
    properties: dict[str, Any] = field(default_factory=dict)  # defaults applied
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)  # cap -> properties
    requirements: tuple[Requirement, ...] = ()
    artifacts: dict[str, Artifact] = field(default_factory=dict)

    def is_a(self, type_name: str) -> bool:
        return type_name in self.type_chain

    def requirement(self, name: str) -> str | None:
        """The target node of the first requirement called ``name``."""
        for req in self.requirements:
            if req.name == name:
                return req.node
        return None


@dataclass(frozen=True)
class Policy:
    name: str
    type: str
    type_chain: tuple[str, ...]
    properties: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    name: str  # metadata.template_name, else the file's stem
    tosca_version: str
    description: str
    inputs: dict[str, InputDef]
    nodes: dict[str, NodeTemplate]
    outputs: dict[str, dict[str, Any]]  # name -> {"value": ..., "description": ...}
    policies: tuple[Policy, ...] = ()
    bound_inputs: dict[str, Any] = field(default_factory=dict)  # validated, coerced values

    def nodes_of(self, type_name: str) -> list[NodeTemplate]:
        return [n for n in self.nodes.values() if n.is_a(type_name)]
