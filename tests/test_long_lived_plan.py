"""Long-lived templates compile to provision-then-report plans; their outputs are
evaluated against the provisioned instances; tosca-parser's crashes are not the user's."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stratoflow.errors import TemplateError
from stratoflow.plan.outputs import evaluate, instances_by_node
from stratoflow.registration import compile_template

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "include" / "templates" / "local_cluster.yaml"

VM = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    cores: {type: integer, default: 2}
  node_templates:
    server:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: {get_input: cores}, mem_size: 2 GB}}
        scalable: {properties: {default_instances: 2}}
        endpoint: {properties: {network_name: PUBLIC}}
  outputs:
    first: {value: {get_attribute: [server, public_address, 0]}}
    all: {value: {get_attribute: [server, private_address]}}
    cores: {value: {get_property: [server, host, num_cpus]}}
    url: {value: {concat: ["ssh://", {get_attribute: [server, public_address, 1]}, ":22"]}}
"""


def compile_text(tmp_path: Path, text: str):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return compile_template(str(path), {})


def test_a_normative_vm_compiles_to_provision_then_report(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        _topology, plan = compile_text(tmp_path, VM)
    assert plan["long_lived"] is True
    assert [s["id"] for s in plan["steps"]] == ["broker", "provision", "report"]
    (host,) = plan["hosts"]
    assert host["count"] == 2 and host["public_endpoint"] is True
    # tosca-parser crashes on `default_instances` without `max_instances`: logged as its
    # limitation, with the template's name, never reported as the user's fault.
    assert "tosca-parser failed inside the library on template 't'" in caplog.text
    # get_property is resolved when compiling (here to the input it names).
    assert plan["outputs"]["cores"]["value"] == {"get_input": "cores"}


def test_outputs_are_read_from_the_instances(tmp_path):
    _topology, plan = compile_text(tmp_path, VM)
    hosts = [
        {"node": "server", "index": 1, "id": "b", "address": "10.0.0.2", "public_address": "1.2"},
        {"node": "server", "index": 0, "id": "a", "address": "10.0.0.1", "public_address": "1.1"},
    ]
    instances = instances_by_node(hosts)
    values = {k: evaluate(o["value"], {"cores": 4}, instances) for k, o in plan["outputs"].items()}
    assert values == {
        "first": "1.1",
        "all": ["10.0.0.1", "10.0.0.2"],
        "cores": 4,
        "url": "ssh://1.2:22",
    }
    # Before anything was provisioned, or past the last instance: None, never an error.
    assert evaluate(plan["outputs"]["first"]["value"], {}, {}) is None
    assert evaluate({"get_attribute": ["server", "public_address", 7]}, {}, instances) is None


def test_campaign_plans_keep_their_hashes():
    """Long-lived support adds plan fields only to long-lived plans, so every campaign's DAG
    id (and its runs' history) stays what it was."""
    _topology, plan = compile_template(str(ROOT / "include/templates/dimuon_campaign.yaml"), {})
    assert "long_lived" not in plan


def test_the_catalogue_cluster_compiles():
    _topology, plan = compile_template(str(CLUSTER), {"hosts": 3})
    assert plan["hosts"][0]["count"] == {"get_input": "hosts"}


def test_a_template_with_nothing_to_deploy_says_so(tmp_path):
    text = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [stratoflow-types]
topology_template:
  node_templates:
    data: {type: stratoflow.nodes.Dataset, properties: {files: []}}
"""
    with pytest.raises(TemplateError, match="nothing to deploy or run"):
        compile_text(tmp_path, text)


def test_volumes_are_per_host_and_only_in_plans_that_have_them(tmp_path):
    _topology, plan = compile_template(str(ROOT / "tests/templates/dag/cluster_volumes.yaml"), {})
    (host,) = plan["hosts"]
    assert host["count"] == 3
    assert host["volumes"] == [
        {"node": "scratch", "size": "10 GB", "device": None, "location": "/mnt/scratch"}
    ]
    _topology, plain = compile_text(tmp_path, VM)
    assert "volumes" not in plain["hosts"][0]


def test_block_storage_faults_name_their_field(tmp_path):
    unattached = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    server: {type: tosca.nodes.Compute}
    disk: {type: tosca.nodes.BlockStorage, properties: {size: 1 GB}}
"""
    with pytest.raises(TemplateError, match="node_templates.disk: a BlockStorage must be attached"):
        compile_text(tmp_path, unattached)
    bad_relationship = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    server:
      type: tosca.nodes.Compute
      requirements:
        - local_storage:
            node: disk
            relationship: {type: AttachesTo, properties: {location: 7, colour: red}}
    disk: {type: tosca.nodes.BlockStorage, properties: {size: 1 GB}}
"""
    with pytest.raises(TemplateError) as err:
        compile_text(tmp_path, bad_relationship)
    text = str(err.value)
    where = "server.requirements[0].local_storage.relationship.properties"
    assert f"{where}.colour: unknown property" in text
    assert f"{where}.location: expected string" in text


def test_the_broker_refuses_block_storage_on_kinds_without_volumes():
    """Before anything is provisioned: the deployment fails at its broker step with this."""
    from stratoflow.broker import SiteOffer, rank_sites

    offers = {
        "local": SiteOffer("local", "local", 8, 1 << 34),
        "cloud": SiteOffer("cloud", "ec2", 8, 1 << 34, block_storage=True),
    }
    assert rank_sites({}, 1, 1, offers, ["disk"]) == ["cloud"]
    with pytest.raises(TemplateError, match="local: kind 'local' cannot attach block storage"):
        rank_sites({"site": "local"}, 1, 1, offers, ["disk"])
