"""TOSCA intake: safe loading, validation and input binding of templates.

Cheap to import: tosca-parser is only imported when a template has passed our own checks.
"""

from stratoflow.tosca.inputs import parse_cli_inputs
from stratoflow.tosca.intake import load_topology, load_topology_text
from stratoflow.tosca.model import Topology

__all__ = ["Topology", "load_topology", "load_topology_text", "parse_cli_inputs"]
