"""A second opinion from tosca-parser, run only after our own checks passed.

tosca-parser is given the already-loaded dict with ``imports`` removed and every non-normative
type definition merged inline, so it never resolves an import, reads a file or opens a URL.
It is imported lazily: importing it costs ~0.5 s, which ``import stratoflow.tosca`` must not.
Its ExceptionCollector is process-global state, hence the lock.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import threading
import types
from typing import Any

from stratoflow.errors import Issue
from stratoflow.tosca.imports import TYPE_SECTIONS
from stratoflow.tosca.typesys import PRIMITIVES, TypeSystem

log = logging.getLogger(__name__)

_lock = threading.Lock()
_QUOTED = re.compile(r'"([^"]+)"')
# A Python error inside tosca-parser, not a fault it reports: our own checks decide then.
_CRASHES = (TypeError, AttributeError, KeyError, IndexError, RecursionError)


def inline_types(doc: dict[str, Any], ts: TypeSystem) -> dict[str, Any]:
    tpl = {k: v for k, v in doc.items() if k != "imports"}
    for section in TYPE_SECTIONS:
        defs = {
            name: d
            for name, d in ts.defs[section].items()
            if ts.origin.get((section, name)) != "normative"
        }
        if section == "data_types":
            defs = {name: _parser_dialect(d) for name, d in defs.items()}
        for alias, name in ts.aliases[section].items():
            if name in defs:
                defs[alias] = defs[name]
        if defs:
            tpl[section] = defs
    return tpl


def _parser_dialect(d: dict[str, Any]) -> dict[str, Any]:
    """``derived_from: integer`` -> tosca-parser's ``derived_from: tosca.datatypes.Root`` +
    ``type: integer``: it cannot build a DataType for a primitive parent."""
    if d.get("derived_from") in PRIMITIVES:
        return {**d, "derived_from": "tosca.datatypes.Root", "type": d["derived_from"]}
    return d


def _path(message: str, nodes: dict[str, Any]) -> str:
    """Best effort: point at the node template a tosca-parser message names."""
    for name in _QUOTED.findall(message):
        if name in nodes:
            return f"topology_template.node_templates.{name}"
    return "topology_template"


def _without_indexes(value: Any) -> Any:
    """``get_attribute: [server, public_address, 0]`` -> ``[server, public_address]``.

    A Compute's addresses are per instance (INDIGO's templates index them), but tosca-parser
    allows an index only on list-typed attributes and the normative ones are strings. Our
    own checks have validated the indexes already."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("get_attribute"), list):
            args = value["get_attribute"]
            while len(args) > 2 and isinstance(args[-1], int):
                args = args[:-1]
            return {"get_attribute": args}
        return {k: _without_indexes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_indexes(v) for v in value]
    return value


class _NoCSAR:
    def __init__(self, *args: Any, **kwargs: Any):
        raise RuntimeError("CSAR archives are not accepted")


def _skip_csar_reader() -> None:
    """tosca_template imports its CSAR reader, which imports ``requests`` (~0.2 s, a third
    of a validation). tosca-parser only ever gets an in-memory dict from us, never a path, so
    no CSAR can reach it: register an inert module in its place unless the real one is
    already loaded."""
    name = "toscaparser.prereq.csar"
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.CSAR = _NoCSAR  # type: ignore[attr-defined]
        sys.modules[name] = module


def run_toscaparser(
    doc: dict[str, Any],
    ts: TypeSystem,
    params: dict[str, Any],
    node_overrides: dict[str, dict[str, Any]],
    name: str = "template",
) -> list[Issue]:
    _skip_csar_reader()
    from toscaparser.common.exception import ExceptionCollector
    from toscaparser.tosca_template import ToscaTemplate

    tpl = _without_indexes(copy.deepcopy(inline_types(doc, ts)))
    nodes = (tpl.get("topology_template") or {}).get("node_templates") or {}
    for name, props in node_overrides.items():
        nodes[name].setdefault("properties", {}).update(copy.deepcopy(props))
    with _lock:
        try:
            ToscaTemplate(yaml_dict_tpl=tpl, parsed_params=copy.deepcopy(params), a_file=False)
            return []
        except Exception as exc:  # ValidationError, or a crash on input it did not expect
            caught = list(ExceptionCollector.getExceptions()) or [exc]
        finally:
            ExceptionCollector.clear()
            ExceptionCollector.stop()
    reported = [e for e in caught if not isinstance(e, _CRASHES)]
    for e in caught:
        if isinstance(e, _CRASHES):
            # Info, not warning: a catalogue template that trips it would print this on
            # every `stratoflow up`, though nothing is wrong with it.
            log.info(
                "tosca-parser failed inside the library on template %r (%s: %s); a limitation"
                " of tosca-parser, not a fault of the template: Stratoflow's own checks decide",
                name,
                type(e).__name__,
                e,
            )
    issues = []
    for e in reported:
        message = str(e).strip() or e.__class__.__name__
        issues.append(Issue(_path(message, nodes), f"tosca-parser: {message}"))
    return issues
