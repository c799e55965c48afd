"""A template's ``outputs``: what can be known when compiling, and the rest at run time.

At compile time, ``get_property`` (and ``get_attribute`` of a property) is replaced by the
property's value, which may itself be a ``{"get_input": ...}`` marker: the plan then needs
no copy of the nodes. What only exists once hosts are up (a Compute's addresses and ids)
stays a ``get_attribute`` and is evaluated by :func:`evaluate` against the provisioned
instances.

Attributes are per instance, as in INDIGO's templates: ``[server, public_address, 0]`` is
the first instance's address. Without an index, a node with one instance gives its value
and a node with several gives the list, in instance order.
"""

from __future__ import annotations

from typing import Any

from stratoflow.plan.model import resolve
from stratoflow.tosca.model import Topology

#: The attributes that exist once provisioned, and the key of each instance's allocation
#: entry they come from (a Compute's host entry, or a BlockStorage's volume entry in it).
RUNTIME_ATTRIBUTES = {
    "private_address": "address",
    "public_address": "public_address",
    "tosca_id": "id",
    "tosca_name": "node",
    "volume_id": "id",
}
_NESTING = 8  # properties that point at properties: deeper than this is a cycle


def static_output(topology: Topology, output: dict[str, Any]) -> dict[str, Any]:
    """The output with every property reference replaced by its value."""
    return {**output, "value": _static(topology, output.get("value"), 0)}


def _static(topology: Topology, value: Any, depth: int) -> Any:
    if isinstance(value, list):
        return [_static(topology, v, depth) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((fn, args),) = value.items()
        if fn == "get_property" or (
            fn == "get_attribute" and isinstance(args, list) and not _is_runtime(topology, args)
        ):
            found = _property(topology, args)
            return _static(topology, found, depth + 1) if depth < _NESTING else None
    return {k: _static(topology, v, depth) for k, v in value.items()}


def _is_runtime(topology: Topology, args: list[Any]) -> bool:
    node = topology.nodes.get(args[0]) if args and isinstance(args[0], str) else None
    return node is None or len(args) < 2 or args[1] in RUNTIME_ATTRIBUTES


def _property(topology: Topology, args: Any) -> Any:
    """``[node, name]`` or ``[node, capability, name]``, then nested keys or indexes."""
    if not isinstance(args, list) or len(args) < 2:
        return None
    node = topology.nodes.get(args[0])
    if node is None:
        return None
    rest = list(args[1:])
    if rest[0] in node.capabilities and len(rest) >= 2 and isinstance(rest[1], str):
        current: Any = node.capabilities[rest[0]].get(rest[1])
        rest = rest[2:]
    else:
        current = node.properties.get(rest[0])
        rest = rest[1:]
    for key in rest:
        current = _index(current, key)
    return current


def _index(value: Any, key: Any) -> Any:
    if isinstance(key, int) and isinstance(value, list):
        return value[key] if -len(value) <= key < len(value) else None
    if isinstance(value, dict):
        return value.get(key)
    return None


def evaluate(value: Any, inputs: dict[str, Any], instances: dict[str, list[dict]]) -> Any:
    """An output's value for a run: inputs bound, attributes read from ``instances``
    (node name -> its instances' allocation entries, in index order). None when an input
    it needs is missing (the run failed before its inputs were bound)."""
    try:
        value = resolve(value, inputs)
    except (KeyError, IndexError, TypeError):
        return None
    return _evaluate(value, instances)


def _evaluate(value: Any, instances: dict[str, list[dict]]) -> Any:
    if isinstance(value, list):
        return [_evaluate(v, instances) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((fn, args),) = value.items()
        if fn == "get_attribute" and isinstance(args, list):
            return _attribute(args, instances)
        if fn == "concat" and isinstance(args, list):
            parts = [_evaluate(a, instances) for a in args]
            return None if any(p is None for p in parts) else "".join(str(p) for p in parts)
        if fn == "join" and isinstance(args, list) and args:
            items = _evaluate(args[0], instances)
            sep = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            if isinstance(items, list) and None not in items:
                return sep.join(str(i) for i in items)
            return None
    return {k: _evaluate(v, instances) for k, v in value.items()}


def _attribute(args: list[Any], instances: dict[str, list[dict]]) -> Any:
    node, name, rest = args[0], args[1] if len(args) > 1 else None, list(args[2:])
    field = RUNTIME_ATTRIBUTES.get(name) if isinstance(name, str) else None
    found = instances.get(node) if isinstance(node, str) else None
    if field is None or not found:
        return None
    values = [entry.get(field) for entry in found]
    current: Any = values[0] if len(values) == 1 and not rest else values
    if rest and isinstance(rest[0], int):
        current = _index(values, rest.pop(0))
    for key in rest:
        current = _index(current, key)
    return current


def instances_by_node(hosts: list[dict]) -> dict[str, list[dict]]:
    """Group an allocation's per-instance entries by node, in index order; the volumes
    attached to each host are instances of their BlockStorage node, in the hosts' order."""
    out: dict[str, list[dict]] = {}
    for entry in sorted(hosts, key=lambda h: (str(h.get("node")), int(h.get("index") or 0))):
        out.setdefault(str(entry.get("node")), []).append(entry)
        for volume in entry.get("volumes") or []:
            out.setdefault(str(volume.get("node")), []).append(volume)
    return out
