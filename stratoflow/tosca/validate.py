"""Our own checks of a topology template, producing the typed NodeTemplates and Policies.

Issues are collected, not raised, so a user sees every fault of a template in one go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stratoflow.errors import Issue
from stratoflow.tosca.artifacts import read_artifacts
from stratoflow.tosca.functions import FunctionChecker
from stratoflow.tosca.model import InputDef, NodeTemplate, Policy, Requirement
from stratoflow.tosca.typesys import TypeSystem
from stratoflow.tosca.values import ValueChecker

TT = "topology_template"
NODE_KEYS = frozenset(
    {"type", "description", "metadata", "directives", "properties", "attributes"}
    | {"requirements", "capabilities", "interfaces", "artifacts", "node_filter", "copy"}
)
POLICY_KEYS = frozenset({"type", "description", "metadata", "properties", "targets", "triggers"})


SCALABLE = "tosca.capabilities.Scalable"
SCALABLE_KEYS = ("min_instances", "default_instances", "max_instances")


def _occurrences(rdef: dict) -> tuple[int, float] | None:
    occ = rdef.get("occurrences")
    if not isinstance(occ, list) or len(occ) != 2 or not isinstance(occ[0], int):
        return None
    return occ[0], float("inf") if occ[1] == "UNBOUNDED" else float(occ[1])


class TemplateValidator:
    def __init__(
        self,
        tt: dict[str, Any],
        ts: TypeSystem,
        inputs: dict[str, InputDef],
        base_dir: Path,
        issues: list[Issue],
    ):
        self.tt, self.ts, self.base_dir, self.issues = tt, ts, base_dir, issues
        raw = tt.get("node_templates")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            issues.append(Issue(f"{TT}.node_templates", "expected a mapping of node templates"))
            raw = {}
        self.raw_nodes: dict[str, Any] = {str(k): v for k, v in raw.items()}
        self.types: dict[str, str] = {}
        for name, node in self.raw_nodes.items():
            self._resolve_type(name, node)
        self.fn = FunctionChecker(ts, inputs, self.types, issues)
        self.fn.all_nodes = set(self.raw_nodes)
        self.values = ValueChecker(ts, issues, self.fn.hook)
        self.edges: dict[str, list[tuple[int, str, str]]] = {}  # node -> [(i, req, target)]

    def _resolve_type(self, name: str, node: Any) -> None:
        where = f"{TT}.node_templates.{name}"
        if not isinstance(node, dict):
            self.issues.append(Issue(where, "a node template must be a mapping"))
            return
        full = self.ts.resolve("node_types", node.get("type"))
        if full is None:
            hint = ""
            if str(node.get("type", "")).startswith("tosca.nodes.indigo."):
                hint = " (INDIGO types are not bundled; use stratoflow.nodes.*)"
            self.issues.append(
                Issue(f"{where}.type", f"unknown node type {node.get('type')!r}{hint}")
            )
            return
        self.types[name] = full

    # -- node templates ---------------------------------------------------------------------

    def nodes(self) -> dict[str, NodeTemplate]:
        out: dict[str, NodeTemplate] = {}
        for name, node in self.raw_nodes.items():
            if name not in self.types:
                continue
            self.fn.current = name
            built = self._node(name, node, self.types[name])
            if built is not None:
                out[name] = built
        self.fn.current = None
        self._cycles()
        return out

    def _node(self, name: str, node: dict, ntype: str) -> NodeTemplate | None:
        where = f"{TT}.node_templates.{name}"
        for key in node:
            if key not in NODE_KEYS:
                self.issues.append(Issue(f"{where}.{key}", "unknown key in a node template"))
        props = node.get("properties") or {}
        if not isinstance(props, dict):
            self.issues.append(Issue(f"{where}.properties", "expected a mapping"))
            props = {}
        pdefs = self.ts.merged("node_types", ntype, "properties")
        properties = self.values.check_fields(props, pdefs, f"{where}.properties")
        capabilities = self._capabilities(where, node.get("capabilities"), ntype)
        requirements = self._requirements(name, where, node.get("requirements"), ntype)
        artifacts = read_artifacts(
            node.get("artifacts"), self.ts, self.base_dir, where, self.issues
        )
        return NodeTemplate(
            name=name,
            type=ntype,
            type_chain=self.ts.chain("node_types", ntype),
            properties=properties,
            capabilities=capabilities,
            requirements=requirements,
            artifacts=artifacts,
        )

    def _capabilities(self, where: str, caps: Any, ntype: str) -> dict[str, dict[str, Any]]:
        if caps is None:
            return {}
        if not isinstance(caps, dict):
            self.issues.append(Issue(f"{where}.capabilities", "expected a mapping"))
            return {}
        known = self.ts.merged("node_types", ntype, "capabilities")
        out: dict[str, dict[str, Any]] = {}
        for cname, assignment in caps.items():
            cwhere = f"{where}.capabilities.{cname}"
            if cname not in known:
                names = ", ".join(sorted(known)) or "none"
                self.issues.append(Issue(cwhere, f"{ntype} has no capability {cname!r} ({names})"))
                continue
            assignment = assignment or {}
            if not isinstance(assignment, dict):
                self.issues.append(Issue(cwhere, "expected a mapping with properties"))
                continue
            for key in assignment:
                if key not in ("properties", "attributes", "occurrences"):
                    self.issues.append(Issue(f"{cwhere}.{key}", "unknown key in a capability"))
            props = assignment.get("properties") or {}
            if not isinstance(props, dict):
                self.issues.append(Issue(f"{cwhere}.properties", "expected a mapping"))
                continue
            pdefs = self.ts.capability_properties(ntype, cname)
            out[cname] = self.values.check_fields(props, pdefs, f"{cwhere}.properties")
            ctype = (known[cname] or {}).get("type", "")
            if self.ts.is_a("capability_types", ctype, SCALABLE):
                self._scalable_range(f"{cwhere}.properties", props)
        return out

    def _scalable_range(self, where: str, given: dict[str, Any]) -> None:
        """min <= default <= max, on the values written (inputs are checked when bound).

        An absent ``max_instances`` is no bound: the normative default of 1 would refuse the
        common ``default_instances: 3`` alone, which INDIGO's templates write."""
        low, default, high = (given.get(k) for k in SCALABLE_KEYS)
        low = 1 if low is None else low
        literal = [v for v in (low, default, high) if v is not None]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in literal):
            return
        if default is not None and default < low:
            self.issues.append(
                Issue(f"{where}.default_instances", f"{default} is below min_instances ({low})")
            )
        if high is not None and default is not None and default > high:
            self.issues.append(
                Issue(f"{where}.default_instances", f"{default} is above max_instances ({high})")
            )
        if high is not None and high < low:
            self.issues.append(
                Issue(f"{where}.max_instances", f"{high} is below min_instances ({low})")
            )

    def _relationship_properties(self, where: str, rtype: Any, given: Any) -> dict[str, Any]:
        """An inline relationship's properties, checked against its type (only when some
        are written: most templates rely on the defaults)."""
        if given is None:
            return {}
        where = f"{where}.relationship.properties"
        if not isinstance(given, dict):
            self.issues.append(Issue(where, "expected a mapping"))
            return {}
        full = self.ts.resolve("relationship_types", rtype) if isinstance(rtype, str) else None
        if full is None:
            self.issues.append(Issue(where, f"unknown relationship type {rtype!r}"))
            return {}
        pdefs = self.ts.merged("relationship_types", full, "properties")
        return self.values.check_fields(given, pdefs, where)

    def _requirements(self, name: str, where: str, reqs: Any, ntype: str) -> tuple:
        defs = self.ts.requirements(ntype)
        out: list[Requirement] = []
        counts: dict[str, int] = {}
        if reqs is None:
            reqs = []
        if not isinstance(reqs, list):
            self.issues.append(Issue(f"{where}.requirements", "expected a list of `- name: node`"))
            reqs = []
        for i, item in enumerate(reqs):
            if not isinstance(item, dict) or len(item) != 1:
                self.issues.append(Issue(f"{where}.requirements[{i}]", "expected `- name: node`"))
                continue
            ((rname, target),) = item.items()
            rwhere = f"{where}.requirements[{i}].{rname}"
            rdef = defs.get(rname)
            if rdef is None:
                names = ", ".join(sorted(defs)) or "none"
                self.issues.append(Issue(rwhere, f"{ntype} has no requirement {rname!r} ({names})"))
                continue
            counts[rname] = counts.get(rname, 0) + 1
            relationship = rdef.get("relationship")  # the type's default, unless overridden
            if isinstance(relationship, dict):
                relationship = relationship.get("type")
            rel_props: Any = None
            if isinstance(target, dict):
                rel = target.get("relationship")
                if isinstance(rel, dict):
                    rel_props = rel.get("properties")
                    rel = rel.get("type")
                relationship = rel or relationship
                target = target.get("node")
            if not isinstance(target, str):
                self.issues.append(Issue(rwhere, "the requirement must name a target node"))
                continue
            if target not in self.raw_nodes:
                known = ", ".join(sorted(self.raw_nodes))
                self.issues.append(
                    Issue(rwhere, f"unknown target node {target!r} (nodes: {known})")
                )
                continue
            self._check_target(rwhere, rname, rdef, target)
            self.edges.setdefault(name, []).append((i, rname, target))
            props = self._relationship_properties(rwhere, relationship, rel_props)
            out.append(Requirement(str(rname), target, relationship, props))
        for rname, rdef in defs.items():
            occ = _occurrences(rdef)
            if occ is None:
                continue
            n = counts.get(rname, 0)
            if n < occ[0]:
                wanted = rdef.get("node") or rdef.get("capability")
                self.issues.append(
                    Issue(
                        f"{where}.requirements",
                        f"requirement {rname!r} is missing ({ntype} needs a {wanted})",
                    )
                )
            elif n > occ[1]:
                self.issues.append(
                    Issue(
                        f"{where}.requirements",
                        f"requirement {rname!r} given {n} times, at most {int(occ[1])} allowed",
                    )
                )
        return tuple(out)

    def _check_target(self, rwhere: str, rname: str, rdef: dict, target: str) -> None:
        ttype = self.types.get(target)
        if ttype is None:
            return
        want_node = rdef.get("node")
        if want_node and not self.ts.is_a("node_types", ttype, want_node):
            self.issues.append(Issue(rwhere, f"target {target!r} is a {ttype}, not a {want_node}"))
            return
        want_cap = rdef.get("capability")
        if want_cap:
            caps = self.ts.merged("node_types", ttype, "capabilities")
            if not any(
                self.ts.is_a("capability_types", (c or {}).get("type", ""), want_cap)
                for c in caps.values()
            ):
                what = "host" if rname == "host" else want_cap
                self.issues.append(
                    Issue(
                        rwhere,
                        f"target {target!r} ({ttype}) does not provide a {what} "
                        f"capability ({want_cap})",
                    )
                )

    def _cycles(self) -> None:
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done

        def visit(node: str, trail: list[str]) -> None:
            state[node] = 1
            for i, rname, target in self.edges.get(node, []):
                if state.get(target) == 1:
                    loop = " -> ".join([*trail[trail.index(target) :], node, target])
                    self.issues.append(
                        Issue(
                            f"{TT}.node_templates.{node}.requirements[{i}].{rname}",
                            f"requirement cycle: {loop}",
                        )
                    )
                elif target not in state:
                    visit(target, [*trail, node])
            state[node] = 2

        for node in list(self.edges):  # depth is bounded by the YAML size limits
            if node not in state:
                visit(node, [])

    # -- policies, groups and outputs --------------------------------------------------------

    def policies(self) -> tuple[Policy, ...]:
        raw = self.tt.get("policies") or []
        if isinstance(raw, dict):
            raw = [{k: v} for k, v in raw.items()]
        if not isinstance(raw, list):
            self.issues.append(Issue(f"{TT}.policies", "expected a list of policies"))
            return ()
        groups = self.tt.get("groups") or {}
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or len(item) != 1:
                self.issues.append(Issue(f"{TT}.policies[{i}]", "expected `- name: {type: ...}`"))
                continue
            ((pname, p),) = item.items()
            where = f"{TT}.policies.{pname}"
            if not isinstance(p, dict):
                self.issues.append(Issue(where, "a policy must be a mapping"))
                continue
            for key in p:
                if key not in POLICY_KEYS:
                    self.issues.append(Issue(f"{where}.{key}", "unknown key in a policy"))
            ptype = self.ts.resolve("policy_types", p.get("type"))
            if ptype is None:
                self.issues.append(Issue(f"{where}.type", f"unknown policy type {p.get('type')!r}"))
                continue
            props = p.get("properties") or {}
            if not isinstance(props, dict):
                self.issues.append(Issue(f"{where}.properties", "expected a mapping"))
                props = {}
            pdefs = self.ts.merged("policy_types", ptype, "properties")
            properties = self.values.check_fields(props, pdefs, f"{where}.properties")
            targets = p.get("targets") or []
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                self.issues.append(Issue(f"{where}.targets", "expected a list of node names"))
                targets = []
            for t in targets:
                if t not in self.raw_nodes and t not in groups:
                    self.issues.append(Issue(f"{where}.targets", f"unknown node or group {t!r}"))
            chain = self.ts.chain("policy_types", ptype)
            out.append(Policy(str(pname), ptype, chain, properties, tuple(targets)))
        return tuple(out)

    def groups(self) -> None:
        raw = self.tt.get("groups") or {}
        if not isinstance(raw, dict):
            self.issues.append(Issue(f"{TT}.groups", "expected a mapping"))
            return
        for gname, g in raw.items():
            members = (g or {}).get("members", []) if isinstance(g, dict) else None
            if not isinstance(members, list):
                self.issues.append(Issue(f"{TT}.groups.{gname}", "expected members: [nodes]"))
                continue
            for m in members:
                if m not in self.raw_nodes:
                    self.issues.append(Issue(f"{TT}.groups.{gname}.members", f"unknown node {m!r}"))

    def outputs(self) -> dict[str, dict[str, Any]]:
        raw = self.tt.get("outputs") or {}
        if not isinstance(raw, dict):
            self.issues.append(Issue(f"{TT}.outputs", "expected a mapping"))
            return {}
        out: dict[str, dict[str, Any]] = {}
        for oname, o in raw.items():
            where = f"{TT}.outputs.{oname}"
            if not isinstance(o, dict) or "value" not in o:
                self.issues.append(Issue(where, "an output needs a value"))
                continue
            self.fn.walk(o["value"], f"{where}.value")
            out[str(oname)] = {"value": o["value"], "description": str(o.get("description") or "")}
        return out
